//go:build linux

package bolt

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

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

// unmapLeaked unmaps every mapping of f's file in this process (read from
// /proc/self/maps, matched by device and inode). bbolt maps the file in Open before
// it reads the free list; when a damaged free list panics there (recovered by
// guard), Open returns without unmapping it, and the mapping keeps the file's open
// description, and with it bbolt's flock, alive until the process ends: every later
// open of the path in this process would wait for the lock and fail as locked.
func unmapLeaked(f *os.File) {
	st, err := f.Stat()
	if err != nil {
		return
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(maps), "\n") {
		// start-end perms offset major:minor inode path
		fs := strings.Fields(line)
		if len(fs) < 6 {
			continue
		}
		ino, err := strconv.ParseUint(fs[4], 10, 64)
		if err != nil || ino != sys.Ino {
			continue
		}
		major, minor, ok := strings.Cut(fs[3], ":")
		ma, err1 := strconv.ParseUint(major, 16, 32)
		mi, err2 := strconv.ParseUint(minor, 16, 32)
		if !ok || err1 != nil || err2 != nil || mkdev(ma, mi) != sys.Dev {
			continue
		}
		lo, hi, ok := strings.Cut(fs[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, _ = syscall.Syscall(syscall.SYS_MUNMAP, uintptr(start), uintptr(end-start), 0)
	}
}

// mkdev encodes a device number as Linux's stat does (glibc's makedev).
func mkdev(major, minor uint64) uint64 {
	return (major&0xfffff000)<<32 | (major&0xfff)<<8 | (minor&0xffffff00)<<12 | minor&0xff
}

// mappedFile is the resident file-backed and shared memory of this process
// (/proc/self/statm's third field, in bytes); -1 where it cannot be read.
func mappedFile() int64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return -1
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return -1
	}
	return pages * int64(os.Getpagesize())
}

// dropPages drops size bytes at offset off of the file f, mapped at data, from this
// process's page tables (madvise MADV_DONTNEED) and from the page cache (fadvise
// POSIX_FADV_DONTNEED: clean pages only; a page being written stays).
func dropPages(f *os.File, data uintptr, off, size int64) {
	if data != 0 {
		releaseMapped(data+uintptr(off), size)
	}
	_ = unix.Fadvise(int(f.Fd()), off, size, unix.FADV_DONTNEED)
}

// cacheVector reports which pages of the first size bytes of the mapping at data
// are in the page cache (mincore(2): bit 0 of each byte, one byte a system page),
// without reading them; false when it cannot tell.
func cacheVector(data uintptr, size int64) ([]byte, bool) {
	if data == 0 || size <= 0 {
		return nil, false
	}
	ps := int64(os.Getpagesize())
	vec := make([]byte, (size+ps-1)/ps)
	if _, _, errno := syscall.Syscall(syscall.SYS_MINCORE, data, uintptr(size), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return nil, false
	}
	return vec, true
}
