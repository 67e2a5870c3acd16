//go:build !race

package proc

// RaceFlags are empty: the suite runs without the race detector (see race.go).
var RaceFlags []string
