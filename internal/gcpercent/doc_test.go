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
	assert.False(t, env)
	assert.Equal(t, Default, debug.SetGCPercent(Default), "in force")

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // as the runtime read it at start
	got, env = Apply(Default)
	assert.Equal(t, 150, got, "GOGC wins")
	assert.True(t, env)
	assert.Equal(t, 150, debug.SetGCPercent(150), "unchanged")
}
