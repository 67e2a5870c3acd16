//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// isJournalStream reports whether f is the stream $JOURNAL_STREAM names
// ("device:inode", decimal): systemd sets it for a service whose output goes to the
// journal, and a process whose stderr was redirected elsewhere still inherits it.
func isJournalStream(f *os.File, journalStream string) bool {
	var dev, ino uint64
	if _, err := fmt.Sscanf(journalStream, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && uint64(st.Ino) == ino //nolint:unconvert // int32 on some systems
}
