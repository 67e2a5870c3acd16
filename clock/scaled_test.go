package clock

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScaled_Now(t *testing.T) {
	start := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	epoch := time.UnixMilli(1_764_558_000_000)
	base := NewFake(epoch)

	t.Run("reads start at epoch and runs rate times faster", func(t *testing.T) {
		s := &Scaled{Start: start, Epoch: epoch, Rate: 3600, Base: base}
		base.Set(epoch)
		assert.Equal(t, start, s.Now())
		base.Set(epoch.Add(time.Second))
		assert.Equal(t, start.Add(time.Hour), s.Now())
		base.Set(epoch.Add(24 * time.Second))
		assert.Equal(t, start.Add(24*time.Hour), s.Now())
		base.Set(epoch.Add(250 * time.Millisecond))
		assert.Equal(t, start.Add(15*time.Minute), s.Now())
	})
	t.Run("before epoch reads before start", func(t *testing.T) {
		s := &Scaled{Start: start, Epoch: epoch, Rate: 60, Base: base}
		base.Set(epoch.Add(-time.Second))
		assert.Equal(t, start.Add(-time.Minute), s.Now())
	})
	t.Run("two clocks with the same parameters agree", func(t *testing.T) {
		// A restarted daemon and the sandbox build their clocks separately from
		// the same spec: they must read the same instant at the same real time.
		base.Set(epoch.Add(12345 * time.Millisecond))
		a := &Scaled{Start: start, Epoch: epoch, Rate: 21600, Base: base}
		spec, err := ParseScaled(a.String())
		require.NoError(t, err)
		spec.Base = base
		assert.Equal(t, a.Now(), spec.Now())
		assert.Equal(t, start.Add(12345*time.Millisecond*21600), a.Now())
	})
	t.Run("zero rate is real speed", func(t *testing.T) {
		s := &Scaled{Start: start, Epoch: epoch, Base: base}
		base.Set(epoch.Add(time.Minute))
		assert.Equal(t, start.Add(time.Minute), s.Now())
	})
	t.Run("saturates instead of overflowing", func(t *testing.T) {
		s := &Scaled{Start: start, Epoch: epoch, Rate: 1e6, Base: base}
		base.Set(epoch.Add(1000 * 24 * time.Hour))
		assert.Equal(t, start.Add(math.MaxInt64), s.Now())
		base.Set(epoch.Add(-1000 * 24 * time.Hour))
		assert.Equal(t, start.Add(math.MinInt64), s.Now())
	})
	t.Run("nil base reads the real clock", func(t *testing.T) {
		now := time.Now()
		s := &Scaled{Start: start, Epoch: now, Rate: 1}
		assert.WithinDuration(t, start, s.Now(), time.Minute)
	})
	t.Run("concurrent reads", func(t *testing.T) {
		s := &Scaled{Start: start, Epoch: epoch, Rate: 3600}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 100 {
					_ = s.Now()
				}
			}()
		}
		wg.Wait()
	})
}

func TestParseScaled(t *testing.T) {
	start := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	t.Run("valid", func(t *testing.T) {
		for _, spec := range []string{
			"start=2026-12-01T03:00:00Z,epoch=1764558000000,rate=3600",
			"rate=3600, epoch=1764558000000, start=2026-12-01T00:00:00-03:00",
		} {
			s, err := ParseScaled(spec)
			require.NoError(t, err, spec)
			assert.True(t, s.Start.Equal(start), spec)
			assert.Equal(t, time.UnixMilli(1764558000000), s.Epoch, spec)
			assert.Equal(t, 3600.0, s.Rate, spec)
			assert.Nil(t, s.Base)
		}
		s, err := ParseScaled("start=2026-12-01T03:00:00.5Z,epoch=1,rate=0.5")
		require.NoError(t, err)
		assert.Equal(t, 0.5, s.Rate)
		assert.Equal(t, "start=2026-12-01T03:00:00.5Z,epoch=1,rate=0.5", s.String())
	})
	for _, tc := range []struct{ name, spec, want string }{
		{"empty", "", `"" is not key=value`},
		{"no equals", "start", `"start" is not key=value`},
		{"missing start", "epoch=1,rate=2", "start is missing"},
		{"missing epoch", "start=2026-12-01T03:00:00Z,rate=2", "epoch is missing"},
		{"missing rate", "start=2026-12-01T03:00:00Z,epoch=1", "rate is missing"},
		{"repeated key", "start=2026-12-01T03:00:00Z,start=2026-12-01T03:00:00Z,epoch=1,rate=2", "start given twice"},
		{"unknown key", "start=2026-12-01T03:00:00Z,epoch=1,rate=2,speed=3", `unknown key "speed"`},
		{"date only", "start=2026-12-01,epoch=1,rate=2", "want an RFC 3339 instant"},
		{"epoch in seconds with fraction", "start=2026-12-01T03:00:00Z,epoch=1.5,rate=2", "want a positive Unix time in milliseconds"},
		{"negative epoch", "start=2026-12-01T03:00:00Z,epoch=-1,rate=2", "want a positive Unix time"},
		{"zero rate", "start=2026-12-01T03:00:00Z,epoch=1,rate=0", "more than 0"},
		{"negative rate", "start=2026-12-01T03:00:00Z,epoch=1,rate=-3", "more than 0"},
		{"NaN rate", "start=2026-12-01T03:00:00Z,epoch=1,rate=NaN", "more than 0"},
		{"huge rate", "start=2026-12-01T03:00:00Z,epoch=1,rate=1e7", "at most 1e6"},
		{"word rate", "start=2026-12-01T03:00:00Z,epoch=1,rate=fast", "more than 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseScaled(tc.spec)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrScaledSpec))
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func FuzzParseScaled(f *testing.F) {
	f.Add("start=2026-12-01T03:00:00Z,epoch=1764558000000,rate=3600")
	f.Add("rate=1,epoch=1,start=2000-01-01T00:00:00+01:00")
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseScaled(spec)
		if err != nil {
			return
		}
		// What parses formats back to an equal clock.
		again, err := ParseScaled(s.String())
		require.NoError(t, err, s.String())
		assert.True(t, s.Start.Equal(again.Start))
		assert.Equal(t, s.Epoch.UnixMilli(), again.Epoch.UnixMilli())
		assert.Equal(t, s.Rate, again.Rate)
	})
}

// Sleep waits its duration divided by the rate, and returns early with ctx's error.
func TestScaled_Sleep(t *testing.T) {
	s := &Scaled{Start: time.Unix(0, 0), Epoch: time.Now(), Rate: 3.6e12} // an hour is 1 ns
	require.NoError(t, s.Sleep(context.Background(), time.Hour))
	require.NoError(t, s.Sleep(context.Background(), 0))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	slow := &Scaled{Start: time.Unix(0, 0), Epoch: time.Now(), Rate: 1}
	require.ErrorIs(t, slow.Sleep(ctx, time.Hour), context.Canceled, "an hour of real time, cut short")
}
