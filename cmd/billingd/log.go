package main

import (
	"io"
	"log/slog"
	"os"
	"strings"
)

// newLogger builds the slog logger of the config: JSON in production, text on a
// terminal (format auto), at the configured level.
func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(cfg.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	text := cfg.Format == "text" || cfg.Format == "auto" && isTerminal(w)
	return slog.New(journalHandler(w, os.Getenv("JOURNAL_STREAM"), func(w io.Writer) slog.Handler {
		if text {
			return slog.NewTextHandler(w, opts)
		}
		return slog.NewJSONHandler(w, opts)
	}))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// readableDurations writes durations as Go duration strings ("302ms", "30s") rather
// than the JSON handler's integer nanoseconds, which nobody reads at 3 a.m.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
