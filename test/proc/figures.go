package proc

import (
	"os"
	"slices"
	"strconv"
	"strings"
)

// Median is the median of xs (0 for none), for the benchmark harnesses' runs.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// JoinRates formats rates per second without decimals, comma-separated.
func JoinRates(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, ", ")
}

// LoadAvg is the first three fields of /proc/loadavg ("?" elsewhere): how busy the
// shared machine was during a run.
func LoadAvg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}
