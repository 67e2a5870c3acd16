//go:build !unix

package main

// freeBytes cannot read free space here: callers go by write outcomes alone.
func freeBytes(string) (uint64, bool) { return 0, false }
