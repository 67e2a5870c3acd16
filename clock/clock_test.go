package clock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestFake(t *testing.T) {
	t0 := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	f := NewFake(t0)
	assert.Equal(t, t0, f.Now())
	assert.Equal(t, t0.Add(time.Hour), f.Advance(time.Hour))
	f.Set(t0)
	assert.Equal(t, t0, f.Now())
	assert.IsType(t, Real{}, Or(nil))
	assert.Equal(t, f, Or(f))
	assert.WithinDuration(t, time.Now(), Real{}.Now(), time.Minute)
}
