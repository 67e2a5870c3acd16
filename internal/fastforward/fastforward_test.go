package fastforward

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
)

// work is a store whose work falls at fixed instants, each done by the pass
// (scan and poll) that runs at or after it.
type work struct {
	clk   *clock.Fake
	at    []time.Time // pending, in order
	done  []time.Time // the clock at each pass that did work
	scans int
}

func (w *work) runner() Runner {
	return Runner{
		Clock: w.clk,
		Scan: func(context.Context) error {
			w.scans++
			now := w.clk.Now()
			for len(w.at) > 0 && !w.at[0].After(now) {
				w.done = append(w.done, now)
				w.at = w.at[1:]
			}
			return nil
		},
		Poll: func(context.Context) error { return nil },
		NextWork: func(_ context.Context, now time.Time) (time.Time, error) {
			for _, t := range w.at {
				if t.After(now) {
					return t, nil
				}
			}
			return time.Time{}, nil
		},
		Pending: func(_ context.Context, now time.Time) (bool, error) {
			return len(w.at) > 0 && !w.at[0].After(now), nil
		},
	}
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func hours(hs ...int) []time.Time {
	var out []time.Time
	for _, h := range hs {
		out = append(out, t0.Add(time.Duration(h)*time.Hour))
	}
	return out
}

func TestRunner_Through(t *testing.T) {
	w := &work{clk: clock.NewFake(t0), at: hours(1, 5, 10, 20)}
	require.NoError(t, w.runner().Through(context.Background(), t0.Add(10*time.Hour)))
	assert.Equal(t, hours(1, 5, 10), w.done, "the work at end itself is done")
	assert.Equal(t, t0.Add(10*time.Hour), w.clk.Now())
	assert.Equal(t, 4, w.scans, "one pass at the start and one at each instant")

	require.NoError(t, w.runner().Through(context.Background(), t0.Add(100*time.Hour)))
	assert.Equal(t, hours(1, 5, 10, 20), w.done)
	assert.Equal(t, t0.Add(100*time.Hour), w.clk.Now(), "left at end, past the last work")
}

func TestRunner_Before(t *testing.T) {
	w := &work{clk: clock.NewFake(t0), at: hours(1, 5, 10, 20)}
	require.NoError(t, w.runner().Before(context.Background(), t0.Add(10*time.Hour)))
	assert.Equal(t, hours(1, 5), w.done, "the work at end is left")
	assert.Equal(t, t0.Add(10*time.Hour), w.clk.Now())
}

func TestRunner_Until(t *testing.T) {
	w := &work{clk: clock.NewFake(t0), at: hours(1, 5, 10, 20)}
	ok, err := w.runner().Until(context.Background(), t0.Add(50*time.Hour), func() bool { return len(w.done) == 2 })
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, t0.Add(5*time.Hour), w.clk.Now(), "left where cond began to hold")

	ok, err = w.runner().Until(context.Background(), t0.Add(15*time.Hour), func() bool { return false })
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Equal(t, t0.Add(10*time.Hour), w.clk.Now(), "left at the last work, not at end")
}

func TestRunner_Errors(t *testing.T) {
	t.Run("a pass fails", func(t *testing.T) {
		w := &work{clk: clock.NewFake(t0), at: hours(1, 5)}
		r := w.runner()
		boom := errors.New("store: input/output error")
		r.Poll = func(context.Context) error {
			if w.clk.Now().Equal(t0.Add(time.Hour)) {
				return boom
			}
			return nil
		}
		require.ErrorIs(t, r.Through(context.Background(), t0.Add(10*time.Hour)), boom)
		assert.Equal(t, t0.Add(time.Hour), w.clk.Now(), "the clock stays where the failure was")
	})
	t.Run("canceled", func(t *testing.T) {
		w := &work{clk: clock.NewFake(t0), at: hours(1, 5)}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, w.runner().Before(ctx, t0.Add(10*time.Hour)), context.Canceled)
		assert.Zero(t, w.scans)
		assert.True(t, slices.Equal(w.at, hours(1, 5)))
	})
}

// Was wrong: work the poll queues at the instant it runs (a local retry whose
// rejection is seen after its request day's submit time is requested at once) was
// left until the next instant the store held work, NextWork reporting only work
// after the clock; in billingd simulate that was days later, and the retry was
// DROPPED. The daemon's next scan, a minute later, sends it; the runner runs one more
// pass at the same instant.
func TestRunner_WorkQueuedByThePoll(t *testing.T) {
	w := &work{clk: clock.NewFake(t0), at: hours(1, 72)}
	r := w.runner()
	r.Poll = func(context.Context) error {
		if now := w.clk.Now(); now.Equal(t0.Add(time.Hour)) && len(w.done) == 1 {
			w.at = append([]time.Time{now}, w.at...) // queued for now, after the scan
		}
		return nil
	}
	require.NoError(t, r.Through(context.Background(), t0.Add(100*time.Hour)))
	assert.Equal(t, hours(1, 1, 72), w.done, "the poll's work is done at the instant it was queued, not at the next work")
	assert.Equal(t, 4, w.scans, "the start, two passes at 1 h, one at 72 h")
}

// Work the scheduler leaves due on purpose (a clock in doubt, a store error) gets one
// more pass at the same instant, then waits for the next work: the loop never spins
// at a fixed instant.
func TestRunner_WorkLeftDue(t *testing.T) {
	w := &work{clk: clock.NewFake(t0), at: hours(1, 5)}
	r := w.runner()
	r.Scan = func(context.Context) error { w.scans++; return nil } // never does it
	require.NoError(t, r.Through(context.Background(), t0.Add(10*time.Hour)))
	assert.Equal(t, 5, w.scans, "one pass at the start, two at 1 h, two at 5 h")
	assert.Equal(t, t0.Add(10*time.Hour), w.clk.Now())
}
