package gcpercent

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestApply(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	t.Setenv("GOGC", "")
	got, env := Apply(Default)
	assert.Equal(t, Default, got)
	assert.Empty(t, env)
	assert.Equal(t, Default, debug.SetGCPercent(Default), "in force")

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // as the runtime read it at start
	got, env = Apply(Default)
	assert.Equal(t, 150, got, "GOGC wins")
	assert.Equal(t, "150", env)
	assert.Equal(t, 150, debug.SetGCPercent(150), "unchanged")
}

func TestEnvValid(t *testing.T) {
	for v, want := range map[string]bool{"off": true, "100": true, "400": true, "-1": true, "0": true,
		"junk": false, "150%": false, "1.5": false, " 100": false, "OFF": false, "99999999999": false} {
		assert.Equal(t, want, EnvValid(v), "GOGC=%q", v)
	}
}
