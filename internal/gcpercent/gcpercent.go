package gcpercent

import (
	"os"
	"runtime/debug"
	"strconv"
)

// Default is the daemon's target, 400 (Go's own is 100). A due scan allocates about
// 27 KB per submission, nearly all of it garbage at once; at 100 the collector took
// about a tenth of the scan's CPU. BenchmarkScanSubmit (the sandbox in the same
// process) measured 7,736/s at 100 and 8,562/s at 400, medians of three interleaved
// runs; make bench-peer, billingd's side alone, 3 to 6 % more (docs/BENCHMARKS.md).
// The cost is a heap that may grow to five times the live heap between
// collections; set GOMEMLIMIT to bound it.
const Default = 400

// Min and Max bound the configured target.
const (
	Min = 25
	Max = 2000
)

// Apply sets the collector's target to percent unless the GOGC environment variable
// is set (the operator's word wins), and returns the target in force and GOGC's
// value ("" when unset: the target is percent). percent outside Min..Max is the
// caller's error to report; Apply uses it as given.
func Apply(percent int) (inForce int, gogc string) {
	if v := os.Getenv("GOGC"); v != "" {
		prev := debug.SetGCPercent(100)
		debug.SetGCPercent(prev)
		return prev, v
	}
	debug.SetGCPercent(percent)
	return percent, ""
}

// EnvValid reports whether Go's runtime reads the GOGC value v as written: "off",
// or a whole number. It reads anything else ("junk", "150%", "1.5") as 100,
// silently (runtime.readGOGC).
func EnvValid(v string) bool {
	if v == "off" {
		return true
	}
	_, err := strconv.ParseInt(v, 10, 32)
	return err == nil
}
