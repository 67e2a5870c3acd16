package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
)

// journald reads a line starting <N> on a service's stdout or stderr as that line's
// syslog priority (sd-daemon(3)), so `journalctl -p warning` and the journal's colors
// see billingd's levels. journalHandler adds the prefix when the log writer is the
// journal stream systemd connected ($JOURNAL_STREAM, "device:inode" of that stream);
// anywhere else (a terminal, a file, a container) the lines are unchanged.
//
// newHandler builds the handler of the configured format on a writer; it is called
// once per priority, and every handler writes whole lines to w under one lock.
func journalHandler(w io.Writer, journalStream string, newHandler func(io.Writer) slog.Handler) slog.Handler {
	f, ok := w.(*os.File)
	if !ok || journalStream == "" || !isJournalStream(f, journalStream) {
		return newHandler(w)
	}
	return newPriorityHandler(w, newHandler)
}

// priorityHandler hands each record to the handler of its syslog priority.
type priorityHandler struct {
	err, warn, info, debug slog.Handler
}

// newPriorityHandler returns a handler that prefixes every line with the syslog
// priority of its level: <3> error, <4> warning, <6> info, <7> debug.
func newPriorityHandler(w io.Writer, newHandler func(io.Writer) slog.Handler) slog.Handler {
	mu := new(sync.Mutex)
	pw := func(p string) io.Writer { return &prefixWriter{mu: mu, w: w, prefix: []byte(p)} }
	return &priorityHandler{
		err:   newHandler(pw("<3>")),
		warn:  newHandler(pw("<4>")),
		info:  newHandler(pw("<6>")),
		debug: newHandler(pw("<7>")),
	}
}

func (h *priorityHandler) of(l slog.Level) slog.Handler {
	switch {
	case l >= slog.LevelError:
		return h.err
	case l >= slog.LevelWarn:
		return h.warn
	case l >= slog.LevelInfo:
		return h.info
	}
	return h.debug
}

func (h *priorityHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.of(l).Enabled(ctx, l)
}

func (h *priorityHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.of(r.Level).Handle(ctx, r)
}

func (h *priorityHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &priorityHandler{h.err.WithAttrs(as), h.warn.WithAttrs(as), h.info.WithAttrs(as), h.debug.WithAttrs(as)}
}

func (h *priorityHandler) WithGroup(name string) slog.Handler {
	return &priorityHandler{h.err.WithGroup(name), h.warn.WithGroup(name), h.info.WithGroup(name), h.debug.WithGroup(name)}
}

// prefixWriter writes prefix and p in one Write: slog's handlers write one whole
// record per call, so the prefix starts the line. The lock is shared by the four
// priorities' writers, so lines never interleave.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix []byte
}

func (pw *prefixWriter) Write(p []byte) (int, error) {
	buf := make([]byte, 0, len(pw.prefix)+len(p))
	buf = append(append(buf, pw.prefix...), p...)
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if _, err := pw.w.Write(buf); err != nil {
		return 0, err
	}
	return len(p), nil
}
