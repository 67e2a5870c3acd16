package bolt

import (
	"syscall"
	"unsafe"
)

// cachedPages counts the pages of size bytes at offset off of the file mapped at
// data that are in the page cache (mincore(2)); -1 when it cannot tell.
func cachedPages(data uintptr, off, size int64) int {
	ps := int64(syscall.Getpagesize())
	vec := make([]byte, (size+ps-1)/ps)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, data+uintptr(off), uintptr(size), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return -1
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
