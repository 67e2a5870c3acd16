package scheduler

import (
	"context"
	"errors"
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
	"github.com/klavi-billing/billingd/storage/kv"
)

func TestScheduler_MatchesPreviewTwoYears(t *testing.T) {
	tests := []struct {
		name   string
		ref    string
		iv     cycle.Interval
		lead   int
		adjust cycle.DueAdjust
	}{
		{"weekly", "2026-01-05", cycle.Weekly, 3, cycle.AdjustNone},
		{"weekly lead 10", "2026-01-09", cycle.Weekly, 10, cycle.AdjustNone},
		{"monthly on the 31st", "2025-10-31", cycle.Monthly, 3, cycle.AdjustNone},
		{"monthly lead 2 next business day", "2026-01-31", cycle.Monthly, 2, cycle.AdjustNextBusinessDay},
		{"quarterly on the 30th", "2025-11-30", cycle.Quarterly, 5, cycle.AdjustNone},
		{"semiannual on the 31st", "2025-08-31", cycle.Semiannual, 3, cycle.AdjustNone},
		{"yearly on 29 Feb", "2024-02-29", cycle.Yearly, 7, cycle.AdjustNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := d(tt.ref).AddDays(-20)
			h := newHarness(t, start.At(8, 0), func(c *Config) {
				c.Policy.LeadDays = tt.lead
				c.Policy.DueAdjust = tt.adjust
			})
			c := loadExample(t, "monthly-31st.json")
			c.PaymentMethodConfig.Interval = tt.iv
			c.PaymentMethodConfig.ReferenceStartDate = d(tt.ref)
			if tt.iv == cycle.Weekly {
				c.Billing.AutoRetryStrategy = &retry.Strategy{Days: []int{1, 2}, SkipWeekend: true}
			}
			h.add(c)
			end := start.AddDays(730)
			h.runUntil(end.At(23, 59))

			pv := h.s.Policy().Preview(c, start, 1000, nil)
			type sub struct {
				cycle          int
				submitOn, date string
				strategy       bool
			}
			var want, got []sub
			for _, cp := range pv.Cycles {
				require.Equal(t, StatePlanned, cp.State)
				if !cp.SubmitOn.After(end) {
					want = append(want, sub{cp.Index, cp.SubmitOn.String(), cp.Due.String(), len(cp.Retries) > 0})
				}
			}
			for _, call := range h.kl.createCalls() {
				require.NoError(t, call.Err)
			}
			for _, e := range h.eventsOf(EventSubmitted) {
				a := h.attempt(c.ID, e.Cycle, 0)
				got = append(got, sub{e.Cycle, cycle.DateOf(e.At).String(), e.Date.String(), a.Strategy != nil})
				assert.Equal(t, 9, e.At.In(cycle.Brasilia).Hour(), "submitted at the configured time")
			}
			require.NotEmpty(t, want)
			assert.Equal(t, want, got, "the daemon submits exactly what the preview shows")
			assert.Len(t, h.kl.originals(c.ID), len(want), "one payment per cycle at Klavi")
			assert.Len(t, h.eventsOf(EventCompleted), len(want)-countPending(h, c.ID))
			assert.Empty(t, h.eventsOf(EventMissed, EventUnconfirmed, EventFailed, EventSkipped))
		})
	}
}

// countPending counts the consent's payments not settled when the run ended.
func countPending(h *harness, id string) int {
	n := 0
	for _, p := range h.kl.originals(id) {
		if !p.Status.Final() {
			n++
		}
	}
	return n
}

func TestScheduler_CatchUpAfterDowntime(t *testing.T) {
	// Monthly on the 20th, lead 3: cycle 1 (due 20 Feb) is submitted on 17 Feb.
	tests := []struct {
		downDays int
		state    storage.AttemptState
		event    EventKind
	}{
		{1, storage.AttemptSubmitted, EventSubmitted}, // back on 18 Feb = D−2: late but inside the window
		{5, storage.AttemptMissed, EventMissed},       // back on 22 Feb: window closed on 18 Feb
		{12, storage.AttemptMissed, EventMissed},      // back on 1 Mar
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d days", tt.downDays), func(t *testing.T) {
			h := newHarness(t, at("2026-01-10", 8, 0), nil)
			c := loadExample(t, "monthly-31st.json")
			c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-20")
			h.add(c)
			h.runUntil(at("2026-02-16", 23, 0)) // cycle 0 done; down from the night before 17 Feb
			require.Len(t, h.eventsOf(EventSubmitted), 1)
			back := d("2026-02-17").AddDays(tt.downDays)
			h.clock.Set(back.At(10, 30))
			h.runUntil(at("2026-04-30", 0, 0))

			a := h.attempt(c.ID, 1, 0)
			if tt.state == storage.AttemptSubmitted {
				assert.Equal(t, storage.AttemptCompleted, a.State)
				subs := h.eventsOf(EventSubmitted)
				require.Len(t, subs, 4) // cycles 0..3 (20 Jan … 20 Apr)
				assert.Equal(t, back, cycle.DateOf(subs[1].At), "submitted at once on return")
			} else {
				assert.Equal(t, storage.AttemptMissed, a.State)
				assert.Contains(t, a.Reason, "closed on 2026-02-18")
				require.Len(t, h.eventsOf(EventMissed), 1)
				missed, err := h.db.Attention(context.Background(), storage.AttemptMissed, 10)
				require.NoError(t, err)
				assert.Len(t, missed, 1, "listed for operators")
			}
			// Later cycles are billed normally, each once.
			assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 2, 0).State)
			assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 3, 0).State)
			for _, p := range h.kl.createCalls() {
				assert.NoError(t, p.Err)
			}
		})
	}
	t.Run("weekly, 12 days", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "weekly-retries.json") // Mondays from 5 Jan, lead 3 → Fridays
		h.add(c)
		h.runUntil(at("2026-01-08", 23, 0))  // cycle 0 submitted 2 Jan; down before Fri 9 Jan
		h.clock.Set(at("2026-01-21", 9, 30)) // back on Wed 21 Jan
		h.runUntil(at("2026-02-10", 0, 0))
		assert.Equal(t, storage.AttemptMissed, h.attempt(c.ID, 1, 0).State) // due 12 Jan
		assert.Equal(t, storage.AttemptMissed, h.attempt(c.ID, 2, 0).State) // due 19 Jan
		// due 26 Jan: submit day Fri 23 Jan is after the return
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 3, 0).State)
		assert.Len(t, h.eventsOf(EventMissed), 2)
	})
}

func TestScheduler_LocalRetries(t *testing.T) {
	// Weekly on Thursdays from 5 Mar 2026, [1,2,3] skipWeekend → Fri 6, Mon 9, Tue 10.
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	c := loadExample(t, "weekly-retries.json") // local mode
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-03-05")
	c.PaymentMethodConfig.IsRetryAccepted = ptr(true)
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		// Cycle 0 fails the original and the first two retries; the third settles.
		if p.Date.Before(d("2026-03-10")) {
			return klavi.PaymentRejected, klavi.ReasonNotInformed
		}
		return klavi.PaymentCompleted, ""
	}
	h.add(c)
	h.runUntil(at("2026-03-11", 23, 0))

	retries := h.kl.retryCalls()
	require.Len(t, retries, 3)
	for i, want := range []struct{ day, date string }{{"2026-03-05", "2026-03-06"}, {"2026-03-08", "2026-03-09"}, {"2026-03-09", "2026-03-10"}} {
		assert.NoError(t, retries[i].Err)
		assert.Equal(t, want.date, retries[i].Date.String(), "retry %d date", i+1)
		assert.Equal(t, want.day, retries[i].Day.String(), "retry %d requested the day before its date", i+1)
		assert.Equal(t, consent.ClientRequestID(c.ID, 0, i+1), retries[i].CRID)
	}
	assert.Equal(t, storage.AttemptRejected, h.attempt(c.ID, 0, 0).State)
	assert.Equal(t, storage.AttemptRejected, h.attempt(c.ID, 0, 1).State)
	assert.Equal(t, storage.AttemptRejected, h.attempt(c.ID, 0, 2).State)
	assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 3).State)
	assert.Len(t, h.eventsOf(EventRetrySubmitted), 3)
	// The plan the daemon followed is the preview's.
	pv := h.s.Policy().Preview(c, d("2026-02-25"), 1, nil)
	assert.Equal(t, []retry.Retry{{Day: 1, Date: d("2026-03-06")}, {Day: 2, Date: d("2026-03-09")}, {Day: 3, Date: d("2026-03-10")}}, pv.Cycles[0].Retries)
}

func TestScheduler_LocalRetryRequestDayPassed(t *testing.T) {
	// [1,2,3] without skipWeekend: 6, 7, 8 Mar. The rejection of the original is only
	// seen on 7 Mar (polling was down), so the retry dated 6 and 7 Mar are dropped.
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	c := loadExample(t, "weekly-retries.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-03-05")
	c.Billing.AutoRetryStrategy = &retry.Strategy{Days: []int{1, 2, 3}}
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if p.Original == "" {
			return klavi.PaymentRejected, klavi.ReasonInfrastructureFailure
		}
		return klavi.PaymentCompleted, ""
	}
	h.add(c)
	h.runUntil(at("2026-03-04", 12, 0))
	h.clock.Set(at("2026-03-07", 8, 0))
	h.runUntil(at("2026-03-12", 0, 0))
	retries := h.kl.retryCalls()
	require.Len(t, retries, 1)
	assert.Equal(t, "2026-03-08", retries[0].Date.String())
	assert.Equal(t, storage.AttemptDropped, h.attempt(c.ID, 0, 1).State)
	assert.Equal(t, storage.AttemptDropped, h.attempt(c.ID, 0, 2).State)
	assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 3).State)
	assert.Len(t, h.eventsOf(EventRetryDropped), 2)
}

func TestScheduler_NoRetryAfterNonRetryableReason(t *testing.T) {
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	c := loadExample(t, "weekly-retries.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-03-05")
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		return klavi.PaymentRejected, klavi.ReasonUserRejected
	}
	h.add(c)
	h.runUntil(at("2026-03-12", 0, 0))
	assert.Empty(t, h.kl.retryCalls())
	assert.Equal(t, storage.AttemptRejected, h.attempt(c.ID, 0, 0).State)
}

func TestScheduler_AttachModeNeverSendsRetries(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json") // attach, [1,3,5] skipWeekend
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		return klavi.PaymentRejected, klavi.ReasonNotInformed
	}
	h.add(c)
	h.runUntil(at("2026-03-31", 0, 0))
	assert.Empty(t, h.kl.retryCalls(), "attach mode leaves retries to Klavi")
	creates := h.kl.createCalls()
	require.NotEmpty(t, creates)
	for _, call := range creates {
		assert.True(t, call.Strategy, "the strategy travels with the payment")
	}
	a := h.attempt(c.ID, 0, 0)
	assert.Equal(t, &retry.Strategy{Days: []int{1, 3, 5}, SkipWeekend: true}, a.Strategy)
	assert.Equal(t, storage.AttemptRejected, a.State, "followed until the last retry day, then final")
	assert.Equal(t, "2026-01-15", a.LastRetryDate.String())
	rej := h.eventsOf(EventRejected)
	require.NotEmpty(t, rej)
	assert.True(t, cycle.DateOf(rej[0].At).After(a.LastRetryDate), "not declared final while Klavi may still retry")
}

func TestScheduler_OffModeSendsNoStrategy(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.RetryMode = consent.Off })
	c := loadExample(t, "monthly-31st.json")
	c.Billing.RetryMode = ""
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	h.kl.outcome = func(*fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		return klavi.PaymentRejected, klavi.ReasonNotInformed
	}
	h.add(c)
	h.runUntil(at("2026-01-31", 0, 0))
	require.Len(t, h.kl.createCalls(), 1)
	assert.False(t, h.kl.createCalls()[0].Strategy)
	assert.Empty(t, h.kl.retryCalls())
}

func TestScheduler_ExpiryStopsBilling(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "expiring-quarterly.json") // 20 Jan, Apr, Jul, Oct 2026, 20 Jan 2027; expires 31 Jan 2027
	h.add(c)
	h.runUntil(at("2027-12-31", 0, 0))
	assert.Len(t, h.eventsOf(EventSubmitted), 5)
	rec, err := h.db.GetConsent(context.Background(), c.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentExpired, rec.State)
	assert.Contains(t, rec.StateReason, "2027-01-31")
	due, err := h.db.DueBefore(context.Background(), at("2100-01-01", 0, 0), 10)
	require.NoError(t, err)
	assert.Empty(t, due, "nothing left to do")
	assert.Len(t, h.eventsOf(EventConsentStopped), 1)
}

func TestScheduler_RevocationStopsBilling(t *testing.T) {
	t.Run("by the operator", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		h.add(c)
		h.runUntil(at("2026-02-15", 0, 0))
		require.Len(t, h.eventsOf(EventSubmitted), 2)
		_, err := h.s.Revoke(c.ID, "customer cancelled the plan", "")
		require.NoError(t, err)
		_, err = h.s.Revoke(c.ID, "", "")
		assert.ErrorIs(t, err, ErrConflict)
		h.runUntil(at("2026-12-31", 0, 0))
		assert.Len(t, h.eventsOf(EventSubmitted), 2, "nothing billed after revocation")
		atts, err := h.db.Attempts(context.Background(), c.ID)
		require.NoError(t, err)
		assert.Len(t, atts, 2, "history kept")
		rec, _ := h.db.GetConsent(context.Background(), c.ID)
		assert.Equal(t, storage.ConsentRevoked, rec.State)
		assert.Equal(t, klavi.ConsentRevoked, rec.Consent.Status)
	})
	t.Run("while a submission's outcome is unknown", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		h.add(c)
		h.kl.inject = func(op, crid string) (error, bool) {
			return fmt.Errorf("create payment: timeout: %w", klavi.ErrOutcomeUnknown), true
		}
		h.kl.findErr = func(string) error { return fmt.Errorf("list orders: 503: %w", klavi.ErrUnavailable) }
		h.runUntil(at("2026-01-07", 9, 0))
		require.Equal(t, storage.AttemptSubmitting, h.attempt(c.ID, 0, 0).State)
		_, err := h.s.Revoke(c.ID, "", "")
		require.NoError(t, err)
		h.kl.inject, h.kl.findErr = nil, nil
		h.runUntil(at("2026-02-28", 0, 0))
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptRejected, a.State, "looked up, adopted and canceled at Klavi: not left SUBMITTING, never charged")
		assert.Equal(t, klavi.PaymentCanceled, a.Status)
		assert.Equal(t, "urn:fake:pay-1", a.PaymentID)
		assert.Len(t, h.kl.createCalls(), 1, "and not re-sent for a revoked consent")
	})
	t.Run("by the payer", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "weekly-retries.json")
		h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
			if p.Date.After(d("2026-01-15")) {
				return klavi.PaymentRejected, klavi.ReasonRevokedUser
			}
			return klavi.PaymentCompleted, ""
		}
		h.add(c)
		h.runUntil(at("2026-04-01", 0, 0))
		rec, _ := h.db.GetConsent(context.Background(), c.ID)
		assert.Equal(t, storage.ConsentRevoked, rec.State)
		assert.Contains(t, rec.StateReason, "REVOKED_USER")
		assert.Equal(t, klavi.ConsentRevoked, rec.Consent.Status)
		assert.Empty(t, h.kl.retryCalls(), "a revoked consent is not retried")
		// Cycles 0, 1 (5, 12 Jan) paid; 19 Jan rejected as revoked; the cycle of 26 Jan
		// was submitted before the rejection was seen; nothing after.
		assert.LessOrEqual(t, len(h.eventsOf(EventSubmitted)), 4)
	})
}

func TestScheduler_VariableAmounts(t *testing.T) {
	h := newHarness(t, at("2026-02-01", 8, 0), nil)
	c := loadExample(t, "variable-amount.json") // the 10th monthly, 10.00..500.00
	h.add(c)
	require.NoError(t, h.s.SetAmount(c.ID, 1, 234_56, ""))
	assert.ErrorIs(t, h.s.SetAmount(c.ID, 2, 500_01, ""), ErrInvalid)
	assert.ErrorIs(t, h.s.SetAmount(c.ID, 2, 9_99, ""), ErrInvalid)
	h.runUntil(at("2026-03-31", 0, 0))

	skipped := h.attempt(c.ID, 0, 0)
	assert.Equal(t, storage.AttemptSkipped, skipped.State, "no amount for cycle 0")
	assert.Contains(t, skipped.Reason, "no amount was set for cycle 0")
	paid := h.attempt(c.ID, 1, 0)
	assert.Equal(t, storage.AttemptCompleted, paid.State)
	assert.Equal(t, klavi.Cents(234_56), paid.Amount)
	creates := h.kl.createCalls()
	require.Len(t, creates, 1)
	assert.Equal(t, klavi.Cents(234_56), creates[0].Amount)
	assert.Len(t, h.eventsOf(EventSkipped), 1)
	assert.ErrorIs(t, h.s.SetAmount(c.ID, 0, 100_00, ""), ErrConflict, "a decided cycle cannot change")
}

func TestScheduler_ExactlyOnce(t *testing.T) {
	setup := func(t *testing.T) (*harness, *consent.Consent) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		h.add(c)
		return h, c
	}
	t.Run("commit then lose the answer", func(t *testing.T) {
		h, c := setup(t)
		h.kl.inject = func(op, crid string) (error, bool) {
			if op == "create" && crid == consent.ClientRequestID(c.ID, 0, 0) {
				return fmt.Errorf("create payment: connection reset: %w", klavi.ErrOutcomeUnknown), true
			}
			return nil, false
		}
		h.runUntil(at("2026-01-07", 9, 0))
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptSubmitted, a.State, "the lost answer is looked up and the payment adopted")
		assert.Equal(t, "urn:fake:pay-1", a.PaymentID)
		assert.Equal(t, 1, a.Lookups)
		h.kl.inject = nil
		h.runUntil(at("2026-01-20", 0, 0))
		a = h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptCompleted, a.State)
		assert.Equal(t, 1, a.Sends, "found: never re-sent")
		require.Len(t, h.kl.createCalls(), 1)
		assert.Len(t, h.kl.originals(c.ID), 1, "never a second payment")
		un, _ := h.db.Attention(context.Background(), storage.AttemptUnconfirmed, 10)
		assert.Empty(t, un)
		// The next cycle goes on normally.
		h.runUntil(at("2026-02-12", 0, 0))
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 1, 0).State)
	})
	t.Run("lost before Klavi saw it", func(t *testing.T) {
		h, c := setup(t)
		n := 0
		h.kl.inject = func(op, crid string) (error, bool) {
			if n++; n <= 2 {
				return fmt.Errorf("create payment: timeout: %w", klavi.ErrOutcomeUnknown), false
			}
			return nil, false
		}
		h.runUntil(at("2026-01-20", 0, 0))
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptCompleted, a.State)
		assert.Equal(t, 3, a.Sends)
		crids := map[string]bool{}
		for _, call := range h.kl.createCalls() {
			crids[call.CRID] = true
		}
		assert.Len(t, crids, 1, "every send carries the same key")
		assert.Len(t, h.kl.originals(c.ID), 1)
	})
	t.Run("crash between SUBMITTING and the POST", func(t *testing.T) {
		h, c := setup(t)
		// The state a kill leaves: the attempt durably SUBMITTING, nothing sent.
		a := &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: c.ID}, State: storage.AttemptSubmitting,
			ClientRequestID: consent.ClientRequestID(c.ID, 0, 0), Date: d("2026-01-10"), Amount: 9990, Mode: consent.Attach, Sends: 1}
		require.NoError(t, h.db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
		h.runUntil(at("2026-01-20", 0, 0))
		got := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptCompleted, got.State)
		assert.Equal(t, 2, got.Sends)
		assert.Len(t, h.kl.originals(c.ID), 1)
	})
	t.Run("outcome unknown until the window closes, Klavi has nothing", func(t *testing.T) {
		h, c := setup(t)
		h.kl.inject = func(op, crid string) (error, bool) {
			return fmt.Errorf("create payment: 503: %w", klavi.ErrOutcomeUnknown), false
		}
		h.runUntil(at("2026-01-09", 12, 0))
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptMissed, a.State, "the list, read twice after the window closed, has no payment")
		assert.Contains(t, a.Reason, "its window has closed")
		for _, call := range h.kl.createCalls() {
			assert.LessOrEqual(t, call.Day.String(), "2026-01-08", "never sent after D−2")
		}
		un, _ := h.db.Attention(context.Background(), storage.AttemptUnconfirmed, 10)
		assert.Empty(t, un)
	})
	t.Run("outcome unknown and the list unavailable past the window: UNCONFIRMED, reconciled hourly", func(t *testing.T) {
		h, c := setup(t)
		sent := 0
		h.kl.inject = func(op, crid string) (error, bool) {
			sent++ // the first send is committed, and no answer ever arrives
			return fmt.Errorf("create payment: timeout: %w", klavi.ErrOutcomeUnknown), sent == 1
		}
		h.kl.findErr = func(string) error { return fmt.Errorf("list orders: 503: %w", klavi.ErrUnavailable) }
		h.runUntil(at("2026-01-09", 12, 0))
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptUnconfirmed, a.State)
		assert.Contains(t, a.Reason, "could not be read")
		assert.False(t, a.DueAt.IsZero(), "looked up again later")
		rec, err := h.db.GetConsent(context.Background(), c.ID)
		require.NoError(t, err)
		assert.Equal(t, 1, rec.NextCycle, "the cursor moved on")
		finds := h.kl.finds
		h.runUntil(at("2026-01-09", 15, 0))
		assert.Greater(t, h.kl.finds, finds, "looked up again every hour")
		assert.Equal(t, storage.AttemptUnconfirmed, h.attempt(c.ID, 0, 0).State)
		h.kl.findErr = nil // the list answers again
		h.runUntil(at("2026-01-20", 0, 0))
		a = h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptCompleted, a.State, "found, adopted and polled to its end")
		assert.Len(t, h.kl.originals(c.ID), 1)
		un, _ := h.db.Attention(context.Background(), storage.AttemptUnconfirmed, 10)
		assert.Empty(t, un)
	})
	t.Run("re-send refused after a lost answer", func(t *testing.T) {
		// Klavi may check its business rules before the key: the re-send of a
		// committed payment can meet a 416 instead of the 409. The list settles it.
		h, c := setup(t)
		n := 0
		h.kl.inject = func(op, crid string) (error, bool) {
			if n++; n == 1 {
				return fmt.Errorf("create payment: timeout: %w", klavi.ErrOutcomeUnknown), true
			}
			return fmt.Errorf("create payment: 416 window: %w", klavi.ErrRefused), false
		}
		lookups := 0
		h.kl.findErr = func(string) error {
			if lookups++; lookups == 1 {
				return fmt.Errorf("list orders: 503: %w", klavi.ErrUnavailable)
			}
			return nil
		}
		h.runUntil(at("2026-01-20", 0, 0))
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptCompleted, a.State)
		assert.Equal(t, 2, a.Sends)
		assert.Len(t, h.kl.originals(c.ID), 1)
	})
	t.Run("409 on the first send, Klavi has nothing: a refusal", func(t *testing.T) {
		h, c := setup(t)
		h.kl.inject = func(op, crid string) (error, bool) {
			return &klavi.APIError{StatusCode: 409, Code: "Conflict", Message: "Insufficient permissions requested", Endpoint: "create_payment"}, false
		}
		h.runUntil(at("2026-01-20", 0, 0))
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptFailed, a.State)
		assert.Contains(t, a.Reason, "Insufficient permissions requested")
		assert.Equal(t, 1, a.Sends)
		assert.Empty(t, h.kl.originals(c.ID))
	})
	t.Run("refused", func(t *testing.T) {
		h, c := setup(t)
		h.kl.inject = func(op, crid string) (error, bool) {
			return fmt.Errorf("create payment: 416 consent not authorized: %w", klavi.ErrRefused), false
		}
		h.runUntil(at("2026-01-20", 0, 0))
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptFailed, a.State)
		assert.Equal(t, 1, a.Sends, "a refusal is not re-sent")
		assert.Len(t, h.eventsOf(EventFailed), 1)
	})
}

func TestScheduler_AuthorizeAndAdd(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	c.Status = klavi.ConsentAwaitingAuthorization
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	rec := h.add(c)
	assert.Equal(t, storage.ConsentAwaiting, rec.State)
	_, err := h.s.AddConsent(c, cycle.Date{}, "")
	assert.ErrorIs(t, err, storage.ErrExists)
	h.runUntil(at("2026-02-01", 0, 0))
	assert.Empty(t, h.kl.createCalls(), "nothing billed before authorization")
	rec, err = h.s.Authorize(c.ID, "")
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentActive, rec.State)
	assert.Equal(t, 1, rec.NextCycle, "billing starts at the first cycle due from today")
	_, err = h.s.Authorize(c.ID, "")
	assert.ErrorIs(t, err, ErrConflict)
	h.runUntil(at("2026-02-15", 0, 0))
	assert.Len(t, h.kl.createCalls(), 1)
	_, err = h.s.Authorize("urn:t:none", "")
	assert.True(t, errors.Is(err, storage.ErrNotFound))
}

// Authorize takes Klavi's word: a consent Klavi still reports awaiting stays
// awaiting, one Klavi stopped stops, and only one Klavi reports authorized starts
// billing.
func TestScheduler_AuthorizeAsksKlavi(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	h.kl.consentStatus = map[string]klavi.ConsentStatus{}
	add := func(id string, klaviSays klavi.ConsentStatus) string {
		c := loadExample(t, "monthly-31st.json")
		c.ID, c.Status = id, klavi.ConsentAwaitingAuthorization
		h.add(c)
		h.kl.mu.Lock()
		h.kl.consentStatus[id] = klaviSays
		h.kl.mu.Unlock()
		return id
	}
	waiting := add("urn:t:waiting", klavi.ConsentAwaitingAuthorization)
	revoked := add("urn:t:revoked", klavi.ConsentRevoked)
	ok := add("urn:t:ok", klavi.ConsentAuthorized)

	_, err := h.s.Authorize(waiting, "")
	require.ErrorIs(t, err, ErrConflict)
	assert.Contains(t, err.Error(), "Klavi reports consent urn:t:waiting CONSENT_AWAITING_AUTHORIZATION")
	rec, err := h.db.GetConsent(context.Background(), waiting)
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentAwaiting, rec.State, "nothing changed")
	assert.Equal(t, klavi.ConsentAwaitingAuthorization, rec.Consent.Status)

	_, err = h.s.Authorize(revoked, "")
	require.ErrorIs(t, err, ErrConflict)
	rec, err = h.db.GetConsent(context.Background(), revoked)
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentRevoked, rec.State, "stopped, as the refresh job would")

	rec, err = h.s.Authorize(ok, "")
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentActive, rec.State)
	assert.Equal(t, klavi.ConsentAuthorized, rec.Consent.Status)
}

func TestScheduler_StartStop(t *testing.T) {
	h := newHarness(t, time.Now(), nil)
	require.NoError(t, h.s.Start(context.Background(), kv.Fence{}, "@every 1h", "@every 1h", Hooks{}))
	require.Error(t, h.s.Start(context.Background(), kv.Fence{}, "@every 1h", "@every 1h", Hooks{}), "already started")
	require.NoError(t, h.s.Close(context.Background()))
	require.NoError(t, h.s.Close(context.Background()), "stopping twice is harmless")
	require.Error(t, h.s.Start(context.Background(), kv.Fence{}, "not a spec", "@every 1h", Hooks{}))
	err := h.s.Start(context.Background(), kv.Fence{}, "@every 1h", "0 0 30 2 *", Hooks{})
	require.ErrorContains(t, err, `poll schedule "0 0 30 2 *" does not fire within a year`)
}

func TestParseSchedule(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want string // the error; "" for a schedule that works
	}{
		{spec: "@every 1m"},
		{spec: "*/5 * * * *"},
		{spec: "0 9 * * 1-5"},
		{spec: "0 9 31 * *"},   // months with 31 days
		{spec: "0 9 29 2 1"},   // 29 February or any Monday of February (cron's OR)
		{spec: "0 0 1 1 *"},    // once a year
		{spec: "@every 8760h"}, // 365 days
		{spec: " 0 9 * * *"},   // leading space: still five fields
		{spec: "CRON_TZ=UTC 0 9 * * *", want: "names a time zone (CRON_TZ=): billingd reads every schedule in Brasília time (America/Sao_Paulo)"},
		{spec: "  TZ=UTC 0 9 * * *", want: "names a time zone (TZ=)"},
		{spec: "CRON_TZ=America/Sao_Paulo @every 1m", want: "names a time zone (CRON_TZ=)"},
		{spec: "0 0 30 2 *", want: "does not fire within a year"},
		{spec: "0 9 31 4,6,9,11 *", want: "does not fire within a year"},
		{spec: "0 9 29 2 *", want: "does not fire within a year"}, // up to 8 years apart
		{spec: "@every 8761h", want: "does not fire within a year"},
		{spec: "@every 0s", want: "is an interval of 0s: want one above 0"},
		{spec: "@every -5m", want: "is an interval of -5m0s: want one above 0"},
		{spec: "0 9 * * * *", want: "is not a cron schedule: expected exactly 5 fields, found 6"},
		{spec: "", want: "is not a cron schedule"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			sched, err := ParseSchedule(tc.spec)
			if tc.want != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.want)
				return
			}
			require.NoError(t, err)
			assert.False(t, sched.Next(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)).IsZero())
		})
	}
	sched, err := ParseSchedule("0 9 * * *")
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC), sched.Next(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)).UTC(), "09:00 in Brasília is 12:00 UTC")
}

func ptr[T any](v T) *T { return &v }
