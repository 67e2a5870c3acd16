package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSimulate_Pictures(t *testing.T) {
	t.Run("html and svg calendars of the run", func(t *testing.T) {
		dir := t.TempDir()
		htmlPath, svgPath := filepath.Join(dir, "year.html"), filepath.Join(dir, "year.svg")
		require.NoError(t, os.WriteFile(svgPath, []byte("old"), 0o600))
		code, stdout, stderr := runCLI(t, nil, "simulate", "--days", "40", "--from", "2026-02-01", "--format", "json", "--html", htmlPath, "--svg", svgPath)
		require.Equal(t, 0, code, stderr)
		assert.NotContains(t, stdout, "<svg", "stdout stays one event per line")
		page, err := os.ReadFile(htmlPath)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(string(page), "<!DOCTYPE html>"))
		assert.Contains(t, string(page), "February 2026")
		img, err := os.ReadFile(svgPath)
		require.NoError(t, err, "an existing file is replaced")
		d := xml.NewDecoder(strings.NewReader(string(img)))
		for {
			_, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
		}
		assert.Contains(t, string(img), "March 2026")
		st, err := os.Stat(svgPath)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
		left, err := filepath.Glob(filepath.Join(dir, ".billingd-calendar-*"))
		require.NoError(t, err)
		assert.Empty(t, left, "no temporary file left behind")
	})
	t.Run("bad paths", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, "simulate", "--days", "5", "--svg", filepath.Join(t.TempDir(), "nope", "year.svg"))
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "no directory")
		p := filepath.Join(t.TempDir(), "same")
		code, _, stderr = runCLI(t, nil, "simulate", "--days", "5", "--svg", p, "--html", p)
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "the same file")
	})
}
