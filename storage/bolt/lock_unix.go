//go:build unix

package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// fileID names a file independently of its path: the device and inode a path
// resolves to. A file moved over the path, or a path removed, gives another fileID.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, true
}

// exists reports whether path names something (a missing directory is told
// apart from other failures to open a file in it).
func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// lockPath is the lock file of the database at path.
func lockPath(path string) string { return path + ".lock" }

// acquireLock takes an flock on the lock file beside the database: exclusive for a
// writer, shared for a reader. The lock belongs to the lock file, not to the
// database file, so a database file moved over the path is still covered: a second
// writer on the same path waits for the first one even then. A reader of a path
// that has no lock file (a backup copy, a read-only medium) takes none and relies on
// bbolt's own lock of the database file. It retries until timeout, then fails with
// ErrLocked.
func acquireLock(path string, exclusive bool, timeout time.Duration) (*os.File, error) {
	lp := lockPath(path)
	flag := os.O_RDWR | os.O_CREATE
	if !exclusive {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(lp, flag|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		if !exclusive && errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if dir := filepath.Dir(path); errors.Is(err, os.ErrNotExist) && !exists(dir) {
			return nil, fmt.Errorf("directory %s does not exist: create it, writable by the user billingd runs as, or give another database path (lock file %s: %w)", dir, lp, err)
		}
		return nil, fmt.Errorf("lock file %s: %w", lp, err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock file %s: %w", lp, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("%w (waited %s for %s; is billingd already running?)", ErrLocked, timeout, lp)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sameOwner gives the file at path the owner and group of fi (best effort: a
// process that may not chown keeps its own, which is the file's when it made it).
func sameOwner(path string, fi os.FileInfo) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = os.Chown(path, int(st.Uid), int(st.Gid))
	}
}
