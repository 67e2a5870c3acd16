// Package fastforward runs a scheduler on a fake clock the way the daemon runs it
// on a real one, without the waiting: scan, poll, then set the clock to the next
// instant the store has work for, and again. The simulation (billingd simulate) and
// the scheduler's tests share it, so both drive the scheduler by the same loop.
//
// It does not import the scheduler (whose tests use it): a Runner is given the
// scheduler's Scan and Poll and the store's NextWork and Pending as functions.
//
// Work queued for the current instant. The scan drains every due entry at or before
// the clock, including those it queues itself as it goes; the poll runs after it and
// may queue due work for the instant it runs at: a local retry whose rejection is
// seen after its request day's submit time is requested "now" (scheduler.planRetry).
// The daemon's next scan, a minute later (scheduler.scan_schedule, "@every 1m"),
// sends it; NextWork only reports work after the clock, so a runner that jumped
// straight to it would skip that work until the next instant anything else was due,
// days later, when its request day has passed (DROPPED). So when the due index still
// holds an entry at or before the clock after a pass, the runner runs one more pass
// at the same instant before it moves the clock. One only: an entry the scheduler
// leaves due on purpose (a clock in doubt, a store error) waits, as before, for the
// next instant there is work, rather than spin the loop at a fixed instant.
package fastforward

import (
	"context"
	"time"

	"github.com/klavi-billing/billingd/clock"
)

// Runner moves Clock from one piece of scheduled work to the next. Every field
// must be set.
type Runner struct {
	Clock *clock.Fake
	// Scan and Poll run one pass of the scheduler's jobs at Clock's time.
	Scan, Poll func(ctx context.Context) error
	// NextWork is the earliest instant after now the store holds work for (the
	// zero time: none), as storage.Store.NextWork.
	NextWork func(ctx context.Context, now time.Time) (time.Time, error)
	// Pending reports whether the due index holds an entry at or before now (as
	// storage.Store.DueBefore(ctx, now, 1) returning one): work a pass left, or the
	// poll queued, for the current instant (see the package doc).
	Pending func(ctx context.Context, now time.Time) (bool, error)
}

// Through runs the work scheduled up to and including end, then sets the clock to
// end. It stops at the first error, or when ctx is done (ctx.Err()).
func (r Runner) Through(ctx context.Context, end time.Time) error {
	_, err := r.run(ctx, func(next time.Time) bool { return !next.After(end) }, nil)
	if err == nil {
		r.Clock.Set(end)
	}
	return err
}

// Before runs the work scheduled before end, then sets the clock to end: the work
// due at end itself is left for whoever runs from there.
func (r Runner) Before(ctx context.Context, end time.Time) error {
	_, err := r.run(ctx, func(next time.Time) bool { return next.Before(end) }, nil)
	if err == nil {
		r.Clock.Set(end)
	}
	return err
}

// Until runs like Through but returns true as soon as cond holds (it is checked
// after every scan and every poll), the clock left where it is. It returns false
// when the work up to end is done and cond never held; the clock is then at the
// last instant it was set to, not at end.
func (r Runner) Until(ctx context.Context, end time.Time, cond func() bool) (bool, error) {
	return r.run(ctx, func(next time.Time) bool { return !next.After(end) }, cond)
}

func (r Runner) run(ctx context.Context, more func(next time.Time) bool, cond func() bool) (bool, error) {
	again := false // this pass is the one more pass at the same instant
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if err := r.Scan(ctx); err != nil {
			return false, err
		}
		if cond != nil && cond() {
			return true, nil
		}
		if err := r.Poll(ctx); err != nil {
			return false, err
		}
		if cond != nil && cond() {
			return true, nil
		}
		if !again {
			left, err := r.Pending(ctx, r.Clock.Now())
			if err != nil {
				return false, err
			}
			if left {
				again = true
				continue
			}
		}
		again = false
		next, err := r.NextWork(ctx, r.Clock.Now())
		if err != nil {
			return false, err
		}
		if next.IsZero() || !more(next) {
			return false, nil
		}
		r.Clock.Set(next)
	}
}
