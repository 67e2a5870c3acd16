//go:build !voprbugs

package scheduler

func has(bug) bool { return false }
