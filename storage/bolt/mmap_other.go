//go:build !linux

package bolt

import "os"

func releaseMapped(uintptr, int64) {}

func unmapLeaked(*os.File) {}
