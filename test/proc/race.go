//go:build race

package proc

// RaceFlags are the go build flags that give the binary the race detector when the
// suite itself runs under it (go test -race): a suite that reads "DATA RACE" in a
// process's output needs a binary that can write it.
var RaceFlags = []string{"-race"}
