//go:build !unix

package main

import "os"

// isJournalStream: the journal exists on Linux only.
func isJournalStream(*os.File, string) bool { return false }
