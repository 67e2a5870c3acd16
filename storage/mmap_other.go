//go:build !linux

package storage

func releaseMapped(uintptr, int64) {}
