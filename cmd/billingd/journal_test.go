//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func jsonHandler(level slog.Level) func(io.Writer) slog.Handler {
	return func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}) }
}

func TestPriorityHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newPriorityHandler(&buf, jsonHandler(slog.LevelDebug))).With("component", "scheduler").WithGroup("g")
	log.Debug("d", "k", 1)
	log.Info("i")
	log.Warn("w")
	log.Error("e")
	log.Log(context.Background(), slog.LevelError+4, "above error")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.Len(t, lines, 5)
	for i, prefix := range []string{"<7>", "<6>", "<4>", "<3>", "<3>"} {
		assert.True(t, strings.HasPrefix(lines[i], prefix+"{"), "line %d: %s", i, lines[i])
		assert.Contains(t, lines[i], `"component":"scheduler"`, "attrs reach every priority")
	}
	assert.Contains(t, lines[0], `"g":{"k":1}`, "groups reach every priority")

	t.Run("level filter kept", func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(newPriorityHandler(&buf, jsonHandler(slog.LevelWarn)))
		log.Info("dropped")
		log.Warn("kept")
		assert.Equal(t, 1, strings.Count(buf.String(), "\n"))
		assert.True(t, strings.HasPrefix(buf.String(), "<4>"))
	})

	t.Run("concurrent lines do not interleave", func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(newPriorityHandler(&buf, jsonHandler(slog.LevelDebug)))
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				for range 50 {
					log.Log(context.Background(), []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}[i%4], "m")
				}
			})
		}
		wg.Wait()
		for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
			require.Regexp(t, `^<[3467]>\{"time":.*\}$`, l)
		}
	})
}

func TestJournalHandler(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	stream := fmt.Sprintf("%d:%d", st.Dev, st.Ino)

	for _, tc := range []struct {
		name   string
		w      io.Writer
		stream string
		prefix bool
	}{
		{"the journal stream", f, stream, true},
		{"no JOURNAL_STREAM", f, "", false},
		{"another file (stderr redirected)", f, fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"malformed JOURNAL_STREAM", f, "journal", false},
		{"not a file", &bytes.Buffer{}, stream, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, isPriority := journalHandler(tc.w, tc.stream, jsonHandler(slog.LevelInfo)).(*priorityHandler)
			assert.Equal(t, tc.prefix, isPriority)
		})
	}
}
