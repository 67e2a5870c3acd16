// Package logtest holds what tests use to read back a logger's output.
package logtest

import (
	"bytes"
	"log/slog"
	"sync"
)

// Buffer is a log a test reads back: an io.Writer that several goroutines may
// write (a daemon's, a server's), and String returns what was written so far.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger is slog's text handler into b, at debug level.
func (b *Buffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
