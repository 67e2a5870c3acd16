//go:build !linux

package bolt

func releaseMapped(uintptr, int64) {}
