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

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/simulation"
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

// Was wrong: retries recorded DROPPED were silent in simulate's output; the timeline
// shows them with their reason and the summary counts them.
func TestSimulate_DroppedRetries(t *testing.T) {
	day := cycle.MustDate(2026, 12, 18)
	amount := klavi.Cents(2500)
	ev := simulation.Event{Day: day, Event: "retry_dropped", ConsentID: "urn:klavi:consent-weekly-0002", Cycle: 49, Attempt: 2,
		Date: cycle.MustDate(2026, 12, 16), Amount: &amount, Reason: "its request day 2026-12-15 has passed", At: day.At(9, 0)}
	res := &simulation.Result{
		Events: []simulation.Event{ev},
		Summaries: []*simulation.Summary{
			{ConsentID: "urn:klavi:consent-weekly-0002", Interval: cycle.Weekly, Mode: consent.Local, Retries: 1, Dropped: 2},
			{ConsentID: "urn:klavi:consent-monthly-31st-0001", Interval: cycle.Monthly, Mode: consent.Attach},
		},
	}
	var b strings.Builder
	writeTimeline(&b, res, nil)
	assert.Contains(t, b.String(), "09:00  retry_dropped   urn:klavi:consent-weekly-0002 cycle 49 retry 2, dated Wed 2026-12-16, R$ 25,00: its request day 2026-12-15 has passed")
	b.Reset()
	writeSummary(&b, res)
	lines := strings.Split(b.String(), "\n")
	require.GreaterOrEqual(t, len(lines), 5)
	head := strings.Fields(lines[2])
	require.Equal(t, "dropped", head[7], "the column after retries: %s", lines[2])
	assert.Equal(t, []string{"1", "2"}, strings.Fields(lines[3])[6:8], "retries, dropped: %s", lines[3])
	assert.Equal(t, []string{"1", "2"}, strings.Fields(lines[5])[4:6], "the total: %s", lines[5])
}

// The example scenario the README points at is one simulate reads: the weekly
// consent's originals are rejected and each is retried.
func TestSimulate_ExampleScenario(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "simulate", "--scenario", "../../examples/scenario.json", "--from", "2026-11-26", "--days", "60")
	require.Equal(t, 0, code, stderr)
	var weekly []string
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, "urn:klavi:consent-weekly-0002 ") {
			weekly = strings.Fields(l)
		}
	}
	require.NotEmpty(t, weekly, stdout)
	// submitted, completed, rejected, retries
	assert.Equal(t, []string{"9", "8", "8", "8"}, weekly[3:7], stdout)
}

// Was wrong: --html or --svg naming the --db file wrote the picture over the
// database the run had just made (exit 0).
func TestSimulate_OutputsDistinct(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "same.db")
	for _, flag := range []string{"--html", "--svg"} {
		code, _, stderr := runCLI(t, nil, "simulate", "--days", "5", "--db", p, flag, p)
		assert.Equal(t, 2, code, flag)
		assert.Contains(t, stderr, "--db and "+flag+" name the same file", flag)
		assert.NoFileExists(t, p, flag)
	}
	require.NoError(t, os.Symlink(p, filepath.Join(dir, "link")))
	code, _, stderr := runCLI(t, nil, "simulate", "--days", "5", "--db", p, "--svg", filepath.Join(dir, "link"))
	assert.Equal(t, 2, code, "through a link")
	assert.Contains(t, stderr, "name the same file")
}
