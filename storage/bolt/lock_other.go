//go:build !unix

package bolt

import (
	"os"
	"time"
)

// fileID is empty where the platform gives no device and inode: the identity check
// then always passes and only bbolt's own lock of the database file applies.
type fileID struct{}

func idOf(os.FileInfo) (fileID, bool) { return fileID{}, false }

func lockPath(path string) string { return path + ".lock" }

func acquireLock(string, bool, time.Duration) (*os.File, error) { return nil, nil }

func sameOwner(string, os.FileInfo) {}
