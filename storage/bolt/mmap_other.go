//go:build !linux

package bolt

import "os"

func releaseMapped(uintptr, int64) {}

func unmapLeaked(*os.File) {}

// mappedFile is unknown here: the mapped budget does nothing.
func mappedFile() int64 { return -1 }

func dropPages(*os.File, uintptr, int64, int64) {}

// cacheVector is unknown here: prefetchFile reads the whole file.
func cacheVector(uintptr, int64) ([]byte, bool) { return nil, false }
