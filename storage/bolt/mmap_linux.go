//go:build linux

package bolt

import "syscall"

// releaseMapped drops the pages of bbolt's read-only shared mapping from this
// process's page tables (madvise MADV_DONTNEED): they stay in the page cache, and a
// later read maps them again from there. After a walk of the whole file, resident
// memory goes back to what the daemon uses instead of the file's size.
func releaseMapped(data uintptr, size int64) {
	if data == 0 || size <= 0 {
		return
	}
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(size), syscall.MADV_DONTNEED)
}
