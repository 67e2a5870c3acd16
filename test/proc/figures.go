package proc

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
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

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// CPU is the CPU time (user and system) process pid has used so far, from
// /proc/<pid>/stat, in 10 ms ticks; pid 0 is this process. 0 where /proc cannot be
// read.
func CPU(pid int) time.Duration {
	p := "self"
	if pid != 0 {
		p = strconv.Itoa(pid)
	}
	raw, err := os.ReadFile("/proc/" + p + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; the fields after it are fixed.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / userHZ
}

// MachineCPU is the busy and the total CPU time of every CPU of the machine since
// boot, from /proc/stat's first line (busy is all but idle and iowait); zeros where
// it cannot be read. Two readings' difference is how busy the machine was between.
func MachineCPU() (busy, total time.Duration) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0
	}
	var all, idle int64
	for i, x := range f[1:] {
		if i >= 8 { // guest times are already counted in user and nice
			break
		}
		n, _ := strconv.ParseInt(x, 10, 64)
		all += n
		if i == 3 || i == 4 {
			idle += n
		}
	}
	return time.Duration(all-idle) * time.Second / userHZ, time.Duration(all) * time.Second / userHZ
}
