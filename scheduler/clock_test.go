package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
)

func TestJudgeClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tol := 5 * time.Minute
	rows := []struct {
		name      string
		now, hw   time.Time
		skew      time.Duration
		seen      time.Time
		doubt     bool
		reasonHas string
	}{
		{"agrees with Klavi, after the latest instant", t0, t0.Add(-time.Minute), time.Second, t0, false, ""},
		{"first start: no latest instant, Klavi agrees", t0, time.Time{}, -time.Minute, t0, false, ""},
		{"Klavi never read", t0, time.Time{}, 0, time.Time{}, true, "not been read"},
		{"15 days ahead of Klavi", t0, time.Time{}, 15 * 24 * time.Hour, t0, true, "360h0m0s ahead of Klavi's"},
		{"10 minutes behind Klavi", t0, time.Time{}, -10 * time.Minute, t0, true, "10m0s behind Klavi's"},
		{"within the tolerance", t0, t0, 4 * time.Minute, t0, false, ""},
		{"stepped back past the latest instant", t0, t0.Add(2 * time.Hour), 0, t0, true, "stepped back"},
		{"a little back, within tolerance", t0, t0.Add(time.Minute), 0, t0, false, ""},
		{"jumped ahead, Klavi read before the jump", t0, t0.Add(-48 * time.Hour), 0, t0.Add(-48 * time.Hour), true, "waiting for Klavi's time"},
		{"jumped ahead, Klavi read since agrees: real downtime", t0, t0.Add(-48 * time.Hour), time.Second, t0, false, ""},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			doubt, reason := judgeClock(r.now, r.hw, r.skew, r.seen, tol)
			assert.Equal(t, r.doubt, doubt, reason)
			assert.Contains(t, reason, r.reasonHas)
		})
	}
}

// probingKlavi is the fake Klavi with a clock of its own: every probe reports it.
type probingKlavi struct {
	*fakeKlavi
	mu     sync.Mutex
	offset time.Duration // Klavi's time minus the local clock
	sched  *Scheduler
	probes int
}

func (p *probingKlavi) Probe(context.Context) error {
	p.mu.Lock()
	p.probes++
	off := p.offset
	p.mu.Unlock()
	local := p.clock.Now()
	p.sched.ObserveKlaviTime(local.Add(off), local)
	return nil
}

func TestScheduler_ClockInDoubt(t *testing.T) {
	t.Run("clock 15 days ahead of Klavi: nothing decided until they agree", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		pk := &probingKlavi{fakeKlavi: h.kl}
		h.useKlavi(pk)
		pk.sched = h.s
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10") // submitted on 7 Jan
		h.add(c)
		h.runUntil(at("2026-01-02", 8, 0)) // the latest instant acted on: 2 Jan
		// The clock jumps to 22 Jan (cycle 0's window closed on 8 Jan); Klavi says 2 Jan.
		pk.offset = -20 * 24 * time.Hour
		h.clock.Set(at("2026-01-22", 8, 0))
		res, err := h.s.Scan(context.Background())
		require.NoError(t, err)
		assert.True(t, res.Paused)
		st := h.s.ClockState()
		assert.True(t, st.Doubt)
		assert.Contains(t, st.Reason, "ahead of Klavi's")
		_, ok := h.attemptOK(c.ID, 0, 0)
		assert.False(t, ok, "no MISSED written")
		assert.Empty(t, h.kl.createCalls(), "nothing sent")
		assert.Len(t, h.eventsOf(EventClockDoubt), 1)
		// The clock is put back; Klavi agrees: billing resumes, cycle 0 (window open) once.
		pk.offset = 0
		h.clock.Set(at("2026-01-07", 9, 0))
		h.runUntil(at("2026-01-12", 0, 0))
		assert.False(t, h.s.ClockState().Doubt)
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
		assert.Len(t, h.kl.createCalls(), 1)
		assert.Len(t, h.eventsOf(EventClockTrusted), 1)
	})
	t.Run("clock and Klavi both ahead: real downtime, caught up as today", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		pk := &probingKlavi{fakeKlavi: h.kl}
		h.useKlavi(pk)
		pk.sched = h.s
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		h.add(c)
		h.runUntil(at("2026-01-02", 8, 0))
		h.clock.Set(at("2026-01-09", 8, 0)) // down a week; window closed on 8 Jan
		res, err := h.s.Scan(context.Background())
		require.NoError(t, err)
		assert.False(t, res.Paused)
		assert.Equal(t, storage.AttemptMissed, h.attempt(c.ID, 0, 0).State, "the catch-up of today: missed")
	})
	t.Run("clock stepped back past the latest instant: paused", func(t *testing.T) {
		h := newHarness(t, at("2026-01-05", 8, 0), nil)
		pk := &probingKlavi{fakeKlavi: h.kl}
		h.useKlavi(pk)
		pk.sched = h.s
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		h.add(c)
		h.runUntil(at("2026-01-05", 9, 0))
		pk.offset = 5 * 24 * time.Hour // Klavi is right; the local clock went back 5 days
		h.clock.Set(at("2026-01-01", 9, 0))
		res, err := h.s.Poll(context.Background())
		require.NoError(t, err)
		assert.True(t, res.Paused)
		assert.Contains(t, h.s.ClockState().Reason, "stepped back")
	})
}

func TestScheduler_ClockReasonNamesAnUnreachableKlavi(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	p := &onOffProber{fakeKlavi: h.kl, truth: h.clock.Now, fail: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}
	h.useKlavi(p)
	p.sched = h.s
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.True(t, res.Paused)
	st := h.s.ClockState()
	assert.Contains(t, st.Reason, "has not been read yet")
	assert.Contains(t, st.Reason, "Klavi did not answer: dial tcp 127.0.0.1:1: connect: connection refused")
	p.mu.Lock()
	p.fail = nil
	p.mu.Unlock()
	res, err = h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.False(t, res.Paused, "Klavi answers: the clock is checked and trusted")
}

func TestScheduler_ClockResumesAtTheNextPass(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	pk := &probingKlavi{fakeKlavi: h.kl}
	h.useKlavi(pk)
	pk.sched = h.s
	pk.offset = -24 * time.Hour // Klavi's clock a day behind: in doubt
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	require.True(t, res.Paused)
	pk.mu.Lock()
	pk.offset = 0 // put right a minute later
	pk.mu.Unlock()
	h.clock.Set(at("2026-01-01", 8, 1))
	res, err = h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.False(t, res.Paused, "in doubt, Klavi's time is read at every pass, not every ClockProbeEvery")
}

// AddConsents (`billingd consent import`) has no Klavi to check its clock against:
// it keeps the daemon's rule against the latest instant the store holds, and moves
// that instant, so that a daemon later on a clock behind it doubts its clock.
func TestScheduler_AddConsentsClock(t *testing.T) {
	now := at("2026-12-05", 9, 0)
	rows := []struct {
		name    string
		latest  time.Time // the store's latest instant before the import (zero: none)
		tol     time.Duration
		refused bool
		after   time.Time // the latest instant after it
	}{
		{"a new store: the import's instant becomes the latest", time.Time{}, 0, false, now},
		{"after the latest instant: it moves to the import's", now.Add(-24 * time.Hour), 0, false, now},
		{"behind it within the tolerance: imported, the latest kept", now.Add(4 * time.Minute), 0, false, now.Add(4 * time.Minute)},
		{"behind it past the tolerance: refused", now.Add(15 * 24 * time.Hour), 0, true, now.Add(15 * 24 * time.Hour)},
		{"behind it with the check off (negative tolerance): imported", now.Add(15 * 24 * time.Hour), -1, false, now.Add(15 * 24 * time.Hour)},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			h := newHarness(t, now, func(c *Config) { c.ClockTolerance = r.tol })
			ctx := context.Background()
			if !r.latest.IsZero() {
				require.NoError(t, h.db.Apply(ctx, &storage.Change{HighWater: r.latest}))
			}
			c := loadExample(t, "weekly-retries.json")
			added, _, err := h.s.AddConsents(ctx, []*consent.Consent{c}, cycle.Date{})
			if r.refused {
				require.ErrorIs(t, err, ErrClockBehind)
				assert.Contains(t, err.Error(), "it reads 2026-12-05T12:00:00Z, 360h0m0s before the latest instant the store holds (2026-12-20T12:00:00Z; tolerance 5m0s); nothing was stored")
				assert.Zero(t, added)
				_, err := h.db.GetConsent(ctx, c.ID)
				assert.ErrorIs(t, err, storage.ErrNotFound)
			} else {
				require.NoError(t, err)
				assert.Equal(t, 1, added)
				assert.Equal(t, d("2026-12-05"), mustConsent(t, h, c.ID).BillFrom, "today by the clock")
			}
			hw, err := h.db.HighWater(ctx)
			require.NoError(t, err)
			assert.True(t, r.after.Equal(hw), "latest instant %s, want %s", hw, r.after)
		})
	}

	t.Run("a clock ahead at the import: the scheduler later on the right clock doubts it", func(t *testing.T) {
		h := newHarness(t, at("2027-03-20", 9, 0), nil)
		c := loadExample(t, "weekly-retries.json")
		_, _, err := h.s.AddConsents(context.Background(), []*consent.Consent{c}, cycle.Date{})
		require.NoError(t, err)
		h.clock.Set(now)
		res, err := h.s.Scan(context.Background())
		require.NoError(t, err)
		assert.True(t, res.Paused)
		st := h.s.ClockState()
		assert.True(t, st.Doubt)
		assert.Contains(t, st.Reason, "stepped back")
		assert.Empty(t, h.kl.createCalls())
	})
}
