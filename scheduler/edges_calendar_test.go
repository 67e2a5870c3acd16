package scheduler

// Edge cases of dates and windows: two weekly cycles in flight, next-business-day due
// dates, the edges of the D−10..D−2 window, DST-era dates, a billing start in the
// past, and a catch-up pass across midnight. The tests whose comment begins "Was
// wrong" pin behaviour that was once wrong; the comment says what used to happen.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
	"github.com/klavi-billing/billingd/storage"
)

func TestScheduler_WeeklyLead10TwoCyclesInFlight(t *testing.T) {
	h := newHarness(t, at("2025-12-20", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
	c := loadExample(t, "weekly-retries.json") // Mondays from 5 Jan 2026, local [1,2,3] skipWeekend
	// Every other cycle's original is rejected; its first retry is rejected too.
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		k, n := cycleOfCRID(t, p.CRID)
		if k%2 == 1 && n < 2 {
			return klavi.PaymentRejected, klavi.ReasonInfrastructureFailure
		}
		return klavi.PaymentCompleted, ""
	}
	h.add(c)
	h.runUntil(at("2026-04-01", 0, 0))
	for _, call := range h.kl.createCalls() {
		require.NoError(t, call.Err)
	}
	for _, call := range h.kl.retryCalls() {
		require.NoError(t, call.Err)
	}
	subs := h.eventsOf(EventSubmitted)
	require.NotEmpty(t, subs)
	for i, e := range subs {
		assert.Equal(t, i, e.Cycle, "cycles submitted in order, each once")
		assert.Equal(t, e.Date.AddDays(-10), cycle.DateOf(e.At))
	}
	for k := 0; k < 10; k++ {
		if k%2 == 1 {
			assert.Equal(t, storage.AttemptRejected, h.attempt(c.ID, k, 1).State)
			assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, k, 2).State, "cycle %d", k)
			_, more := h.attemptOK(c.ID, k, 3)
			assert.False(t, more)
		} else {
			assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, k, 0).State, "cycle %d", k)
		}
	}
	assertExactlyOnce(t, h)
	assertNoneStuck(t, h, c.ID)
}

func TestScheduler_NextBusinessDay(t *testing.T) {
	t.Run("monthly over Carnival, local retries from the adjusted date", func(t *testing.T) {
		h := newHarness(t, at("2026-02-01", 8, 0), nil)
		c := loadExample(t, "next-business-day.json") // the 15th; Sun 15 Feb → Wed 18 Feb
		c.PaymentMethodConfig.IsRetryAccepted = ptr(true)
		c.Billing.RetryMode = consent.Local
		c.Billing.AutoRetryStrategy = &retry.Strategy{Days: []int{1, 2}}
		h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
			if p.Original == "" && p.Date == d("2026-02-18") {
				return klavi.PaymentRejected, klavi.ReasonNotInformed
			}
			return klavi.PaymentCompleted, ""
		}
		h.add(c)
		h.runUntil(at("2026-03-31", 0, 0))
		creates := h.kl.createCalls()
		require.Len(t, creates, 2)
		assert.Equal(t, "2026-02-18", creates[0].Date.String())
		assert.Equal(t, "2026-02-15", creates[0].Day.String())
		assert.Equal(t, "2026-03-16", creates[1].Date.String())
		assert.Equal(t, "2026-03-13", creates[1].Day.String())
		retries := h.kl.retryCalls()
		require.Len(t, retries, 1)
		assert.Equal(t, "2026-02-19", retries[0].Date.String())
		assertExactlyOnce(t, h)
	})
	t.Run("weekly over Carnival: retries stop at the next cycle's start", func(t *testing.T) {
		h := newHarness(t, at("2026-02-01", 8, 0), nil)
		c := loadExample(t, "weekly-retries.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-02-14") // Sat; due Wed 18 Feb
		adj := cycle.AdjustNextBusinessDay
		c.Billing.DueDateAdjust = &adj
		h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
			if p.Date.Before(d("2026-02-21")) {
				return klavi.PaymentRejected, klavi.ReasonNotInformed
			}
			return klavi.PaymentCompleted, ""
		}
		h.add(c)
		h.runUntil(at("2026-03-05", 0, 0))
		var dates []string
		for _, r := range h.kl.retryCalls() {
			dates = append(dates, r.Date.String())
		}
		// 18 Feb + [1,2,3] skipWeekend → 19, 20, Mon 23; 23 Feb is on/after the next start (Sat 21).
		assert.Equal(t, []string{"2026-02-19", "2026-02-20"}, dates)
		assert.Equal(t, "2026-02-18", h.attempt(c.ID, 0, 0).Date.String())
		assert.Equal(t, "2026-02-23", h.attempt(c.ID, 1, 0).Date.String())
		assertExactlyOnce(t, h)
	})
}

func TestScheduler_WindowEdges(t *testing.T) {
	mk := func(t *testing.T, start time.Time, mod func(*Config)) (*harness, *consent.Consent) {
		h := newHarness(t, start, mod)
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-20")
		h.add(c)
		return h, c
	}
	t.Run("lead 2 at 23:59: submitted on D−2 at 23:59", func(t *testing.T) {
		h, c := mk(t, at("2026-01-10", 8, 0), func(c *Config) { c.Policy.LeadDays, c.SubmitHour, c.SubmitMinute = 2, 23, 59 })
		h.runUntil(at("2026-01-25", 0, 0))
		calls := h.kl.createCalls()
		require.Len(t, calls, 1)
		assert.Equal(t, "2026-01-18", calls[0].Day.String())
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
	})
	t.Run("back at D−2 23:59:59: late but inside the window", func(t *testing.T) {
		h, c := mk(t, at("2026-01-10", 8, 0), nil)
		h.clock.Set(at("2026-01-18", 23, 59).Add(59 * time.Second))
		h.runUntil(at("2026-01-25", 0, 0))
		require.Len(t, h.kl.createCalls(), 1)
		require.NoError(t, h.kl.createCalls()[0].Err)
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
	})
	t.Run("back at D−1 00:00: MISSED, never sent", func(t *testing.T) {
		h, c := mk(t, at("2026-01-10", 8, 0), nil)
		h.clock.Set(at("2026-01-19", 0, 0))
		h.runUntil(at("2026-01-25", 0, 0))
		assert.Empty(t, h.kl.createCalls())
		assert.Equal(t, storage.AttemptMissed, h.attempt(c.ID, 0, 0).State)
		assert.Len(t, h.eventsOf(EventMissed), 1)
	})
	t.Run("lead 10: submitted on D−10, accepted", func(t *testing.T) {
		h, c := mk(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
		h.runUntil(at("2026-01-25", 0, 0))
		calls := h.kl.createCalls()
		require.Len(t, calls, 1)
		require.NoError(t, calls[0].Err)
		assert.Equal(t, "2026-01-10", calls[0].Day.String())
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
	})
}

func TestScheduler_DSTEraDates(t *testing.T) {
	// Brazil's DST started at 00:00 on 4 Nov 2018 (no midnight that day) and ended at
	// 00:00 on 18 Feb 2018 (23:00–23:59 of the 17th happened twice).
	tests := []struct {
		name         string
		ref          string
		iv           cycle.Interval
		hour, minute int
	}{
		{"submit at midnight on the day without one", "2018-11-07", cycle.Monthly, 0, 0},
		{"weekly at midnight across both transitions", "2017-10-04", cycle.Weekly, 0, 0},
		{"weekly at 23:30 across the repeated hour", "2018-02-20", cycle.Weekly, 23, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := d(tt.ref).AddDays(-20)
			h := newHarness(t, start.At(8, 0), func(c *Config) { c.SubmitHour, c.SubmitMinute = tt.hour, tt.minute })
			c := loadExample(t, "monthly-31st.json")
			c.PaymentMethodConfig.Interval = tt.iv
			c.PaymentMethodConfig.ReferenceStartDate = d(tt.ref)
			c.Billing.AutoRetryStrategy = &retry.Strategy{Days: []int{1, 2}}
			h.add(c)
			end := start.AddDays(200)
			h.runUntil(end.At(23, 59))
			pv := h.s.Policy().Preview(c, start, 1000, nil)
			var want, got []string
			for _, cp := range pv.Cycles {
				if !cp.SubmitOn.After(end) {
					want = append(want, cp.SubmitOn.String()+">"+cp.Due.String())
				}
			}
			for _, call := range h.kl.createCalls() {
				require.NoError(t, call.Err)
				got = append(got, call.Day.String()+">"+call.Date.String())
			}
			assert.Equal(t, want, got)
			assert.Empty(t, h.eventsOf(EventMissed, EventUnconfirmed, EventFailed))
			assertExactlyOnce(t, h)
		})
	}
}

func TestScheduler_BillFrom(t *testing.T) {
	add := func(t *testing.T, billFrom string) (*harness, *consent.Consent) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		_, err := h.s.AddConsent(c, d(billFrom), "")
		require.NoError(t, err)
		h.runUntil(at("2026-03-15", 0, 0))
		return h, c
	}
	t.Run("billFrom on a due date bills that cycle", func(t *testing.T) {
		h, _ := add(t, "2026-02-10")
		calls := h.kl.createCalls()
		require.Len(t, calls, 2)
		assert.Equal(t, "2026-02-10", calls[0].Date.String())
	})
	t.Run("billFrom the day after a due date does not", func(t *testing.T) {
		h, c := add(t, "2026-02-11")
		calls := h.kl.createCalls()
		require.Len(t, calls, 1)
		assert.Equal(t, "2026-03-10", calls[0].Date.String())
		atts, _ := h.db.Attempts(context.Background(), c.ID)
		assert.Len(t, atts, 1, "cycles before billFrom are neither billed nor reported")
		assert.Empty(t, h.eventsOf(EventMissed))
	})
	t.Run("billFrom in the past: a cycle due on/after it with a closed window is MISSED", func(t *testing.T) {
		h := newHarness(t, at("2026-01-09", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		_, err := h.s.AddConsent(c, d("2026-01-05"), "")
		require.NoError(t, err)
		h.runUntil(at("2026-02-15", 0, 0))
		assert.Equal(t, storage.AttemptMissed, h.attempt(c.ID, 0, 0).State)
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 1, 0).State)
	})
	t.Run("Authorize keeps a future billFrom", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.Status = klavi.ConsentAwaitingAuthorization
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		_, err := h.s.AddConsent(c, d("2026-03-01"), "")
		require.NoError(t, err)
		rec, err := h.s.Authorize(c.ID, "")
		require.NoError(t, err)
		assert.Equal(t, 2, rec.NextCycle)
		h.runUntil(at("2026-03-15", 0, 0))
		require.Len(t, h.kl.createCalls(), 1)
		assert.Equal(t, "2026-03-10", h.kl.createCalls()[0].Date.String())
	})
}

// Was wrong (minor): drain() reads the clock once and hands that instant to every
// entry of the pass, however long the pass takes. A catch-up pass that starts just
// before midnight of D−2 decides "late, still inside the window" for entries it
// reaches after midnight, and sends them on D−1: DESIGN.md says such a cycle is
// recorded MISSED and never submitted late. Klavi refuses it, and it is recorded
// FAILED ("refused by Klavi") instead of MISSED.
func TestScheduler_StaleNowAcrossMidnight(t *testing.T) {
	h := newHarness(t, at("2026-01-10", 8, 0), func(c *Config) { c.Workers = 1 })
	h.useKlavi(&slowKlavi{fakeKlavi: h.kl, step: 3 * time.Second, clk: h.clock})
	var ids []string
	for i := 0; i < 2; i++ {
		c := loadExample(t, "monthly-31st.json")
		c.ID = fmt.Sprintf("urn:klavi:midnight-%d", i)
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-20") // D−2 = 18 Jan
		h.add(c)
		ids = append(ids, c.ID)
	}
	h.clock.Set(at("2026-01-18", 23, 59).Add(58 * time.Second)) // back from downtime
	_, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	for _, call := range h.kl.createCalls() {
		assert.False(t, call.Day.After(call.Date.AddDays(-2)), "create for %s sent on %s, after D−2", call.Date, call.Day)
	}
	for _, id := range ids {
		a := h.attempt(id, 0, 0)
		assert.Contains(t, []storage.AttemptState{storage.AttemptSubmitted, storage.AttemptMissed}, a.State, "%s: %s", id, a.Reason)
	}
}
