//go:build unix

package storage

import (
	"errors"
	"strings"
	"syscall"
)

// isNoSpace reports a full file system or quota. bbolt formats some of its errors
// with %s, so the text is matched too.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		containsErr(err, syscall.ENOSPC) || containsErr(err, syscall.EDQUOT)
}

// isReadOnly reports a read-only file system or a missing write permission.
func isReadOnly(err error) bool {
	for _, e := range []syscall.Errno{syscall.EROFS, syscall.EACCES, syscall.EPERM} {
		if errors.Is(err, e) || containsErr(err, e) {
			return true
		}
	}
	return false
}

func containsErr(err error, e syscall.Errno) bool {
	return err != nil && strings.Contains(err.Error(), e.Error())
}
