package scheduler

// Edge cases of retries: local retries around expiry and the next cycle, attach-mode
// strategies, crashes around a retry POST, and every outcome of a retry. The tests
// whose comment begins "Was wrong" pin behaviour that was once wrong; the comment
// says what used to happen.

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
	"github.com/klavi-billing/billingd/storage"
)

// localWeekly is the weekly example on Thursdays from 5 Mar 2026, local mode,
// [1,2,3] skipWeekend (retries Fri 6, Mon 9, Tue 10 Mar), originals rejected with a
// retryable reason and retries settling as retryOutcome says.
func localWeekly(t *testing.T, h *harness, retryOutcome func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode)) *consent.Consent {
	c := loadExample(t, "weekly-retries.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-03-05")
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if p.Original == "" {
			if p.Date == d("2026-03-05") {
				return klavi.PaymentRejected, klavi.ReasonNotInformed
			}
			return klavi.PaymentCompleted, ""
		}
		if retryOutcome != nil {
			return retryOutcome(p)
		}
		return klavi.PaymentCompleted, ""
	}
	return c
}

// Was wrong: the last cycle of an expiring consent in local mode never gets its
// retries: advance() marks the consent EXPIRED as soon as the last cycle is
// *submitted* (there is no cycle k+1), and planRetry / handleRetry refuse to act for a
// consent that is not active. The preview shows the retries (21 and 27 Jan 2027, both
// before the 31 Jan expiry) but the daemon never requests them and records nothing
// for them (no DROPPED attempt, no event).
func TestScheduler_LocalRetriesOfLastCycleBeforeExpiry(t *testing.T) {
	t.Run("the last cycle", func(t *testing.T) {
		h := newHarness(t, at("2026-12-01", 8, 0), nil)
		c := loadExample(t, "expiring-quarterly.json") // last cycle due Wed 20 Jan 2027; expires 31 Jan 2027; [1,7] skipWeekend
		c.Billing.RetryMode = consent.Local
		h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
			if p.Original == "" {
				return klavi.PaymentRejected, klavi.ReasonNotInformed
			}
			return klavi.PaymentCompleted, ""
		}
		rec := h.add(c)
		require.Equal(t, 4, rec.NextCycle, "only the last cycle is left")
		pv := h.s.Policy().Preview(c, d("2026-12-01"), 5, nil)
		require.Len(t, pv.Cycles, 1)
		require.Equal(t, []retry.Retry{{Day: 1, Date: d("2027-01-21")}, {Day: 7, Date: d("2027-01-27")}}, pv.Cycles[0].Retries,
			"the preview promises two retries for the last cycle")

		h.runUntil(at("2027-02-15", 0, 0))

		require.Equal(t, storage.AttemptRejected, h.attempt(c.ID, 4, 0).State)
		assert.Len(t, h.kl.retryCalls(), 1, "the first retry (21 Jan) should be requested on 20 Jan, as the preview shows")
		atts, err := h.db.Attempts(context.Background(), c.ID)
		require.NoError(t, err)
		assert.Greater(t, len(atts), 1, "no retry attempt at all was recorded for the last cycle (not even DROPPED)")
		assertExactlyOnce(t, h)
	})
	t.Run("weekly lead 10: the cycle before the last one too", func(t *testing.T) {
		// Mondays 5, 12, 19 Jan 2026; expires Sat 24 Jan, so 19 Jan is the last cycle and
		// it is submitted on 9 Jan, three days before cycle 1 (12 Jan) is even due.
		h := newHarness(t, at("2025-12-20", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
		c := loadExample(t, "weekly-retries.json") // local, [1,2,3] skipWeekend
		c.ExpirationDateTime = &klavi.DateTime{Time: at("2026-01-24", 12, 0).UTC()}
		h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
			if p.Original == "" && p.Date == d("2026-01-12") {
				return klavi.PaymentRejected, klavi.ReasonNotInformed
			}
			return klavi.PaymentCompleted, ""
		}
		h.add(c)
		h.runUntil(at("2026-02-01", 0, 0))
		require.Equal(t, storage.AttemptRejected, h.attempt(c.ID, 1, 0).State)
		require.Equal(t, storage.ConsentExpired, mustConsent(t, h, c.ID).State)
		assert.Len(t, h.kl.retryCalls(), 1, "cycle 1 (12 Jan) should be retried on 13 Jan, well before the 24 Jan expiry")
	})
}

// Was wrong: Attach mode sends the consent's whole strategy even when the plan dropped
// some of its days (past the 5/7-day window, on/after the next cycle's start, after
// expiry). DESIGN.md: such a date "is dropped and reported, never sent"; in attach
// mode the strategy IS the sending. Klavi then runs (or refuses the whole payment
// for) a retry billingd decided must not exist, and billingd stops following the
// payment at LastRetryDate, before Klavi's last retry.
func TestScheduler_AttachStrategyCarriesDroppedDays(t *testing.T) {
	t.Run("weekly, shifted past the 5-day window", func(t *testing.T) {
		h := newHarness(t, at("2026-02-20", 8, 0), nil)
		rk := newRecordingKlavi(h.kl)
		h.useKlavi(rk)
		c := loadExample(t, "weekly-retries.json")
		c.Billing.RetryMode = consent.Attach
		c.Billing.AutoRetryStrategy = &retry.Strategy{Days: []int{3, 4, 5}, SkipWeekend: true}
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-03-03") // Tuesday
		h.add(c)
		cp := h.s.Policy().Preview(c, d("2026-02-20"), 1, nil).Cycles[0]
		// Tue 3 Mar: +3 Fri 6; +4 Sat→Mon 9 and +5 Sun→Mon 9 are 6 days out: dropped.
		require.Equal(t, []retry.Retry{{Day: 3, Date: d("2026-03-06")}}, cp.Retries)
		require.Len(t, cp.Dropped, 2)

		h.runUntil(at("2026-02-28", 12, 0))
		sent := rk.strategies[consent.ClientRequestID(c.ID, 0, 0)]
		require.NotNil(t, sent)
		assert.Equal(t, []int{3}, sent.Days, "only the planned retry days may travel to Klavi")
	})
	t.Run("weekly over Carnival: a day on the next cycle's due date", func(t *testing.T) {
		// Sat 14 Feb 2026, next business day → due Wed 18 Feb (Carnival Mon, Tue). The
		// next cycle starts Sat 21 Feb and is due Mon 23 Feb. [1,2,3] skipWeekend gives
		// Thu 19, Fri 20 and Mon 23: the plan drops 23 Feb (on/after the next start), but
		// Klavi is sent [1,2,3] and may retry cycle 0 on the day cycle 1 settles.
		h := newHarness(t, at("2026-02-01", 8, 0), nil)
		rk := newRecordingKlavi(h.kl)
		h.useKlavi(rk)
		c := loadExample(t, "weekly-retries.json")
		c.Billing.RetryMode = consent.Attach
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-02-14")
		adj := cycle.AdjustNextBusinessDay
		c.Billing.DueDateAdjust = &adj
		h.add(c)
		cp := h.s.Policy().Preview(c, d("2026-02-01"), 1, nil).Cycles[0]
		require.Equal(t, []retry.Retry{{Day: 1, Date: d("2026-02-19")}, {Day: 2, Date: d("2026-02-20")}}, cp.Retries)
		require.Len(t, cp.Dropped, 1)
		require.Equal(t, "2026-02-23", cp.Dropped[0].Date.String())

		h.runUntil(at("2026-02-16", 12, 0))
		sent := rk.strategies[consent.ClientRequestID(c.ID, 0, 0)]
		require.NotNil(t, sent)
		assert.Equal(t, []int{1, 2}, sent.Days, "the day Klavi would run on 23 Feb, in cycle 1, must not be sent")
	})
	t.Run("days after the consent's expiry", func(t *testing.T) {
		h := newHarness(t, at("2026-12-01", 8, 0), nil)
		rk := newRecordingKlavi(h.kl)
		h.useKlavi(rk)
		c := loadExample(t, "expiring-quarterly.json") // attach, [1,7] skipWeekend; last due Wed 20 Jan 2027
		exp := klavi.DateTime{Time: at("2027-01-22", 12, 0).UTC()}
		c.ExpirationDateTime = &exp
		h.add(c)
		cp := h.s.Policy().Preview(c, d("2026-12-01"), 1, nil).Cycles[0]
		require.Equal(t, []retry.Retry{{Day: 1, Date: d("2027-01-21")}}, cp.Retries, "27 Jan is after the 22 Jan expiry")

		h.runUntil(at("2027-01-18", 12, 0))
		sent := rk.strategies[consent.ClientRequestID(c.ID, 4, 0)]
		require.NotNil(t, sent)
		assert.Equal(t, []int{1}, sent.Days, "a retry after expiry must not be sent to Klavi")
	})
}

func TestScheduler_CrashAroundRetryPOST(t *testing.T) {
	setup := func(t *testing.T) (*harness, *consent.Consent, *storage.Attempt) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := localWeekly(t, h, nil)
		h.add(c)
		ok := h.stepUntil(at("2026-03-06", 0, 0), func() bool {
			a, ok := h.attemptOK(c.ID, 0, 1)
			return ok && a.State == storage.AttemptPlanned
		})
		require.True(t, ok, "retry 1 planned")
		a := h.attempt(c.ID, 0, 1)
		require.Empty(t, h.kl.retryCalls())
		// The state a kill leaves between send's first write and the POST.
		a.State, a.Sends = storage.AttemptSubmitting, 1
		require.NoError(t, h.db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
		return h, c, a
	}
	t.Run("killed before the POST", func(t *testing.T) {
		h, c, _ := setup(t)
		h.runUntil(at("2026-03-12", 0, 0))
		got := h.attempt(c.ID, 0, 1)
		assert.Equal(t, storage.AttemptCompleted, got.State)
		assert.Equal(t, 2, got.Sends)
		require.Len(t, h.kl.retryCalls(), 1)
		assert.Equal(t, consent.ClientRequestID(c.ID, 0, 1), h.kl.retryCalls()[0].CRID)
		_, more := h.attemptOK(c.ID, 0, 2)
		assert.False(t, more, "no second retry once the first settled")
		assertExactlyOnce(t, h)
		assertNoneStuck(t, h, c.ID)
	})
	t.Run("killed after Klavi committed the retry", func(t *testing.T) {
		h, c, a := setup(t)
		h.kl.mu.Lock()
		orig := h.kl.byCRID[consent.ClientRequestID(c.ID, 0, 0)]
		h.kl.store(c.ID, a.ClientRequestID, a.Date, orig.Amount, orig.ID, false)
		h.kl.mu.Unlock()
		h.runUntil(at("2026-03-12", 0, 0))
		got := h.attempt(c.ID, 0, 1)
		assert.Equal(t, storage.AttemptCompleted, got.State, "409 on the re-send: looked up, adopted, polled")
		assert.Equal(t, 2, got.Sends)
		_, more := h.attemptOK(c.ID, 0, 2)
		assert.False(t, more, "the adopted retry settled: no further retry")
		assertExactlyOnce(t, h)
		assertNoneStuck(t, h, c.ID)
	})
}

func TestScheduler_RetryOutcomes(t *testing.T) {
	t.Run("409 on a retry that Klavi does not hold: FAILED, the next one is planned and sent", func(t *testing.T) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := localWeekly(t, h, nil)
		first := consent.ClientRequestID(c.ID, 0, 1)
		h.useKlavi(&retryFaultKlavi{fakeKlavi: h.kl, fault: func(crid string) (error, bool) {
			if crid == first {
				return &klavi.APIError{StatusCode: 409, Code: "Conflict", Message: "Insufficient permissions requested", Endpoint: "retry_payment"}, false
			}
			return nil, false
		}})
		h.add(c)
		h.runUntil(at("2026-03-12", 0, 0))
		a1 := h.attempt(c.ID, 0, 1)
		assert.Equal(t, storage.AttemptFailed, a1.State)
		assert.Contains(t, a1.Reason, "Insufficient permissions requested")
		assert.Equal(t, 2, a1.Lookups, "a 409 proves nothing by itself: looked up, and again before it is trusted")
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 2).State)
		un, _ := h.db.Attention(context.Background(), storage.AttemptUnconfirmed, 10)
		assert.Empty(t, un)
		assertExactlyOnce(t, h)
		assertNoneStuck(t, h, c.ID)
	})
	t.Run("refused retry: FAILED, the next one is planned and sent", func(t *testing.T) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := localWeekly(t, h, nil)
		first := consent.ClientRequestID(c.ID, 0, 1)
		h.useKlavi(&retryFaultKlavi{fakeKlavi: h.kl, fault: func(crid string) (error, bool) {
			if crid == first {
				return fmt.Errorf("retry payment: 416: %w", klavi.ErrRefused), false
			}
			return nil, false
		}})
		h.add(c)
		h.runUntil(at("2026-03-12", 0, 0))
		assert.Equal(t, storage.AttemptFailed, h.attempt(c.ID, 0, 1).State)
		a2 := h.attempt(c.ID, 0, 2)
		assert.Equal(t, storage.AttemptCompleted, a2.State)
		assert.Equal(t, "2026-03-09", a2.Date.String())
		assertExactlyOnce(t, h)
		assertNoneStuck(t, h, c.ID)
	})
	t.Run("retry outcome unknown past its request day: UNCONFIRMED", func(t *testing.T) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := localWeekly(t, h, nil)
		committed := false
		h.useKlavi(&retryFaultKlavi{fakeKlavi: h.kl, fault: func(string) (error, bool) {
			first := !committed
			committed = true
			return unknownErr("retry payment"), first
		}})
		h.kl.findErr = func(string) error { return fmt.Errorf("list orders: 503: %w", klavi.ErrUnavailable) }
		h.add(c)
		h.runUntil(at("2026-03-12", 0, 0))
		a := h.attempt(c.ID, 0, 1)
		assert.Equal(t, storage.AttemptUnconfirmed, a.State, "Klavi's list cannot be read: unknown")
		assert.Contains(t, a.Reason, "could not be read")
		crids := map[string]bool{}
		for _, r := range h.kl.retryCalls() {
			crids[r.CRID] = true
			assert.Equal(t, "2026-03-05", r.Day.String(), "never re-sent after its request day")
		}
		assert.Len(t, crids, 1, "one key")
		_, more := h.attemptOK(c.ID, 0, 2)
		assert.False(t, more)
		assertExactlyOnce(t, h)
		h.kl.findErr = nil // the list answers again: the hourly lookup adopts it
		h.runUntil(at("2026-03-20", 0, 0))
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 1).State)
		_, more = h.attemptOK(c.ID, 0, 2)
		assert.False(t, more)
		assertExactlyOnce(t, h)
		assertNoneStuck(t, h, c.ID)
	})
	t.Run("refused re-send of a retry whose first answer was lost: looked up and adopted", func(t *testing.T) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := localWeekly(t, h, nil)
		n := 0
		h.useKlavi(&retryFaultKlavi{fakeKlavi: h.kl, fault: func(string) (error, bool) {
			if n++; n == 1 {
				return unknownErr("retry payment"), true
			}
			return fmt.Errorf("retry payment: 416: %w", klavi.ErrRefused), false
		}})
		lookups := 0
		h.kl.findErr = func(string) error {
			if lookups++; lookups == 1 {
				return fmt.Errorf("list orders: 503: %w", klavi.ErrUnavailable)
			}
			return nil
		}
		h.add(c)
		h.runUntil(at("2026-03-12", 0, 0))
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 1).State)
		_, more := h.attemptOK(c.ID, 0, 2)
		assert.False(t, more, "the first send was committed and settled: no further retry")
		assertExactlyOnce(t, h)
	})
	t.Run("refused re-send of a retry that Klavi never got: looked at twice, then FAILED", func(t *testing.T) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := localWeekly(t, h, nil)
		n := 0
		first := consent.ClientRequestID(c.ID, 0, 1)
		h.useKlavi(&retryFaultKlavi{fakeKlavi: h.kl, fault: func(crid string) (error, bool) {
			if crid != first {
				return nil, false
			}
			if n++; n == 1 {
				return unknownErr("retry payment"), false // lost before Klavi saw it
			}
			return fmt.Errorf("retry payment: 416: %w", klavi.ErrRefused), false
		}})
		h.add(c)
		h.runUntil(at("2026-03-12", 0, 0))
		a1 := h.attempt(c.ID, 0, 1)
		assert.Equal(t, storage.AttemptFailed, a1.State)
		assert.GreaterOrEqual(t, a1.Lookups, 3, "after the lost answer, after the refusal, and once more")
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 2).State, "the next retry goes out")
		assertExactlyOnce(t, h)
	})
}

func TestScheduler_RetryAndNextCycleAtTheSameInstant(t *testing.T) {
	// Thursdays from 5 Mar: retry 3 (Tue 10 Mar) is requested on Mon 9 Mar at 09:00,
	// the very instant cycle 1 (due Thu 12 Mar) is submitted. Both run in one scan,
	// serialized by the consent lock.
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	c := localWeekly(t, h, func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if p.Date.Before(d("2026-03-10")) {
			return klavi.PaymentRejected, klavi.ReasonNotInformed
		}
		return klavi.PaymentCompleted, ""
	})
	h.add(c)
	h.runUntil(at("2026-03-20", 0, 0))
	retries := h.kl.retryCalls()
	require.Len(t, retries, 3)
	assert.Equal(t, "2026-03-09", retries[2].Day.String())
	var c1 *fakeCall
	for _, call := range h.kl.createCalls() {
		if k, _ := cycleOfCRID(t, call.CRID); k == 1 {
			call := call
			c1 = &call
		}
	}
	require.NotNil(t, c1)
	assert.Equal(t, "2026-03-09", c1.Day.String())
	assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 3).State)
	assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 1, 0).State)
	assertExactlyOnce(t, h)
	assertNoneStuck(t, h, c.ID)
}

// Was wrong (billingd simulate --faults 5xx=0.3,drop=0.2,timeout=0.1,seed=7 from
// 2026-11-30, the weekly example's cycle 49): the rejection of retry 1 (dated Tue 15
// Dec) was seen by a poll at 12:00 on 15 Dec, after 09:00, the submit time of retry
// 2's request day (15 Dec), so retry 2 was queued at that very instant. The
// fast-forward loop (internal/fastforward, shared by the simulation and this harness)
// then jumped to the next instant *after* now that held work (cycle 50 on Fri 18 Dec
// at 09:00): a due entry the poll queued at the instant the scan had already run at
// was left behind. The daemon scans every minute and would have sent it at 12:01; the
// loop recorded it DROPPED on 18 Dec, and retry 3 with it. Retry 2 must be requested
// on 15 Dec.
func TestScheduler_RetryQueuedByALatePollIsSentThatDay(t *testing.T) {
	h := newHarness(t, at("2026-12-10", 8, 0), nil)
	c := loadExample(t, "weekly-retries.json") // Mondays from 5 Jan 2026: cycle 49 due Mon 14 Dec; [1,2,3] → 15, 16, 17 Dec
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		switch p.Date {
		case d("2026-12-14"):
			return klavi.PaymentRejected, klavi.ReasonNotInformed
		case d("2026-12-15"):
			return klavi.PaymentRejected, klavi.ReasonInfrastructureFailure
		}
		return klavi.PaymentCompleted, ""
	}
	// Klavi does not answer status polls on 15 Dec until noon (the run's 5xx and
	// timeouts): retry 1's rejection is seen after 09:00, its settlement (06:00) long
	// past.
	h.kl.getErr = func(string) error {
		if now := h.clock.Now(); !now.Before(at("2026-12-15", 6, 0)) && now.Before(at("2026-12-15", 12, 0)) {
			return unknownErr("get payment")
		}
		return nil
	}
	rec := h.add(c)
	require.Equal(t, 49, rec.NextCycle)

	h.runUntil(at("2026-12-20", 0, 0))

	require.Equal(t, storage.AttemptRejected, h.attempt(c.ID, 49, 1).State)
	r1 := h.attempt(c.ID, 49, 1)
	require.True(t, r1.UpdatedAt.After(at("2026-12-15", 9, 0)), "the rejection is seen after retry 2's submit time: %s", r1.UpdatedAt)
	r2 := h.attempt(c.ID, 49, 2)
	assert.Equal(t, storage.AttemptCompleted, r2.State, "retry 2 (16 Dec) should be requested on 15 Dec; it ended %s: %s", r2.State, r2.Reason)
	var days []string
	for _, call := range h.kl.retryCalls() {
		days = append(days, fmt.Sprintf("%s on %s", call.Date, call.Day))
	}
	assert.Equal(t, []string{"2026-12-15 on 2026-12-14", "2026-12-16 on 2026-12-15"}, days, "retries requested (date on day)")
	_, planned3 := h.attemptOK(c.ID, 49, 3)
	assert.False(t, planned3, "retry 2 settled: no retry 3")
	assertExactlyOnce(t, h)
	assertNoneStuck(t, h, c.ID)
}

// Was wrong: a retry dropped because its request day passed (the scheduler was not
// running that day) plans the next one; when that one's request day has passed too
// it was recorded DROPPED with "had passed when the rejection was seen", though the
// rejection was seen days before, when its request day was still ahead. The reason
// now says when, and after what, it was found passed.
func TestScheduler_RetryDroppedAfterADropSaysWhy(t *testing.T) {
	h := newHarness(t, at("2026-12-10", 8, 0), nil)
	c := loadExample(t, "weekly-retries.json") // cycle 49 due Mon 14 Dec; retries 15, 16, 17 Dec
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if p.Date == d("2026-12-14") || p.Date == d("2026-12-15") {
			return klavi.PaymentRejected, klavi.ReasonNotInformed
		}
		return klavi.PaymentCompleted, ""
	}
	h.add(c)
	planned := func() bool {
		a, ok := h.attemptOK(c.ID, 49, 2)
		return ok && a.State == storage.AttemptPlanned
	}
	require.True(t, h.stepUntil(at("2026-12-16", 0, 0), planned), "retry 2 is planned when retry 1's rejection is seen")
	seen := cycle.DateOf(h.clock.Now())
	require.Equal(t, d("2026-12-15"), seen)

	// billingd is down from then until Fri 18 Dec 09:00: the request days of retries
	// 2 (15 Dec) and 3 (16 Dec) pass.
	h.clock.Set(at("2026-12-18", 9, 0))
	_, err := h.s.Scan(context.Background())
	require.NoError(t, err)

	r2, r3 := h.attempt(c.ID, 49, 2), h.attempt(c.ID, 49, 3)
	require.Equal(t, storage.AttemptDropped, r2.State)
	assert.Equal(t, "its request day 2026-12-15 has passed", r2.Reason)
	require.Equal(t, storage.AttemptDropped, r3.State)
	assert.NotContains(t, r3.Reason, "rejection", "no rejection was seen on 18 Dec")
	assert.Equal(t, "its request day 2026-12-16 had passed on 2026-12-18, when retry 2 was dropped", r3.Reason)
	assert.Empty(t, h.kl.retryCalls()[1:], "only retry 1 was ever requested")
}
