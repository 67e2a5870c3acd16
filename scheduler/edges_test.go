package scheduler

// Edge cases of the scheduler: crash points, retries around expiry and the next
// cycle, attach-mode strategies, window edges, DST-era dates, stale index entries,
// and operators racing scans. The TestSchedulerRegression_* tests pin behaviour that
// was once wrong; each comment says what used to happen.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
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

// ---------------------------------------------------------------------------
// helpers

// useKlavi rebuilds the harness's scheduler on another Klavi (a wrapper of h.kl),
// keeping the config, the clock and the event log.
func (h *harness) useKlavi(k Klavi) {
	h.t.Helper()
	s, err := New(h.s.cfg, h.db, k, WithClock(h.clock), WithObserver(func(e Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}))
	require.NoError(h.t, err)
	h.s = s
}

// recordingKlavi records the autoRetryStrategy of every create, by clientRequestId.
type recordingKlavi struct {
	*fakeKlavi
	smu        sync.Mutex
	strategies map[string]*retry.Strategy
}

func newRecordingKlavi(f *fakeKlavi) *recordingKlavi {
	return &recordingKlavi{fakeKlavi: f, strategies: map[string]*retry.Strategy{}}
}

func (r *recordingKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	r.smu.Lock()
	if s := req.AutoRetryStrategy; s != nil {
		cp := *s
		cp.Days = append([]int(nil), s.Days...)
		r.strategies[req.ClientRequestID] = &cp
	} else {
		r.strategies[req.ClientRequestID] = nil
	}
	r.smu.Unlock()
	return r.fakeKlavi.CreatePayment(ctx, id, req)
}

// cycleOfCRID reads the cycle and attempt out of billingd-<hash>-<k>-<n>.
func cycleOfCRID(t *testing.T, crid string) (k, n int) {
	t.Helper()
	parts := strings.Split(crid, "-")
	require.Len(t, parts, 4, crid)
	k, err := strconv.Atoi(parts[2])
	require.NoError(t, err)
	n, err = strconv.Atoi(parts[3])
	require.NoError(t, err)
	return k, n
}

// assertExactlyOnce checks the money invariants at the fake Klavi: one payment per
// clientRequestId, at most one settled payment per cycle, and every create sent inside
// the D−10..D−2 window.
func assertExactlyOnce(t *testing.T, h *harness) {
	t.Helper()
	h.kl.mu.Lock()
	defer h.kl.mu.Unlock()
	paid := map[string]int{}
	for _, p := range h.kl.payments {
		k, _ := cycleOfCRID(t, p.CRID)
		if p.Status == klavi.PaymentCompleted {
			key := fmt.Sprintf("%s/%d", p.ConsentID, k)
			paid[key]++
			assert.LessOrEqual(t, paid[key], 1, "two settled payments for cycle %s", key)
		}
	}
	assert.Len(t, h.kl.byCRID, len(h.kl.payments), "one payment per clientRequestId")
	for _, c := range h.kl.creates {
		if c.Err == nil {
			dd := c.Date.DaysSince(c.Day)
			assert.True(t, dd >= 2 && dd <= 10, "create for %s sent on %s", c.Date, c.Day)
		}
	}
}

// assertNoneStuck checks that no attempt of the consent is left SUBMITTING or
// PLANNED with no due entry, or SUBMITTED with no poll entry, to move it on.
func assertNoneStuck(t *testing.T, h *harness, id string) {
	t.Helper()
	atts, err := h.db.Attempts(context.Background(), id)
	require.NoError(t, err)
	due, err := h.db.DueBefore(context.Background(), at("2100-01-01", 0, 0), 100000)
	require.NoError(t, err)
	poll, err := h.db.PollBefore(context.Background(), at("2100-01-01", 0, 0), 100000)
	require.NoError(t, err)
	inDue, inPoll := map[storage.AttemptKey]bool{}, map[storage.AttemptKey]bool{}
	for _, e := range due {
		inDue[e.Key] = true
	}
	for _, e := range poll {
		inPoll[e.Key] = true
	}
	for _, a := range atts {
		switch a.State {
		case storage.AttemptSubmitting, storage.AttemptPlanned:
			assert.True(t, inDue[a.AttemptKey], "%s is %s with no due entry", a.AttemptKey, a.State)
		case storage.AttemptSubmitted:
			assert.True(t, inPoll[a.AttemptKey], "%s is SUBMITTED with no poll entry", a.AttemptKey)
		}
	}
}

func unknownErr(op string) error {
	return fmt.Errorf("%s: timeout: %w", op, klavi.ErrOutcomeUnknown)
}

// ---------------------------------------------------------------------------
// Regressions: each of these failed before its fix.

// Was wrong: the last cycle of an expiring consent in local mode never gets its
// retries: advance() marks the consent EXPIRED as soon as the last cycle is
// *submitted* (there is no cycle k+1), and planRetry / handleRetry refuse to act for a
// consent that is not active. The preview shows the retries (21 and 27 Jan 2027, both
// before the 31 Jan expiry) but the daemon never requests them and records nothing
// for them (no DROPPED attempt, no event).
func TestSchedulerRegression_LocalRetriesOfLastCycleBeforeExpiry(t *testing.T) {
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
func TestSchedulerRegression_AttachStrategyCarriesDroppedDays(t *testing.T) {
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

// Was wrong: in attach mode a rejection that means the consent is gone
// (REVOKED_USER / REVOKED_MERCHANT) is not acted on until the last retry day has
// passed: handlePoll's "attach: follow until LastRetryDate" case comes before the
// ConsentGone check. Klavi will not retry under a revoked consent, but billingd keeps
// the consent active for up to 7 more days and submits the next cycle meanwhile (a
// charge attempt after the payer revoked). Local mode stops at once.
func TestSchedulerRegression_AttachRevocationActedOnLate(t *testing.T) {
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	c := loadExample(t, "weekly-retries.json") // Thursdays from 5 Mar, [1,2,3] skipWeekend → 6, 9, 10 Mar
	c.Billing.RetryMode = consent.Attach
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-03-05")
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		return klavi.PaymentRejected, klavi.ReasonRevokedUser
	}
	h.add(c)
	h.runUntil(at("2026-03-06", 12, 0)) // the payer's revocation is visible from 5 Mar 06:00
	assert.Equal(t, storage.ConsentRevoked, mustConsent(t, h, c.ID).State, "revocation seen on 5 Mar, consent still billed")
	h.runUntil(at("2026-03-20", 0, 0))
	for _, call := range h.kl.createCalls() {
		assert.False(t, call.Date.After(d("2026-03-05")), "cycle dated %s submitted on %s after the payer revoked", call.Date, call.Day)
	}
}

// Was wrong: SetAmount accepts a new amount for a cycle whose payment is already in
// flight (SUBMITTING, outcome unknown): the check is only k < NextCycle, and the
// cursor does not move until the outcome is known. The re-send (rightly) carries the
// amount first sent, so the operator is told the new amount is set while the old one
// is charged, and the stored amount disagrees with the payment.
func TestSchedulerRegression_SetAmountWhileCycleInFlight(t *testing.T) {
	h := newHarness(t, at("2026-02-01", 8, 0), nil)
	c := loadExample(t, "variable-amount.json") // the 10th, monthly; cycle 0 submitted 7 Feb
	h.add(c)
	require.NoError(t, h.s.SetAmount(c.ID, 0, 100_00, ""))
	h.kl.inject = func(op, crid string) (error, bool) { return unknownErr("create payment"), false }
	h.runUntil(at("2026-02-07", 9, 0))
	require.Equal(t, storage.AttemptSubmitting, h.attempt(c.ID, 0, 0).State)

	err := h.s.SetAmount(c.ID, 0, 200_00, "")
	assert.ErrorIs(t, err, ErrConflict, "the cycle's payment is in flight with 100.00: its amount is decided")

	h.kl.inject = nil
	h.runUntil(at("2026-02-12", 0, 0))
	a := h.attempt(c.ID, 0, 0)
	require.Equal(t, storage.AttemptCompleted, a.State)
	stored, ok, err := h.db.Amount(context.Background(), c.ID, 0)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, a.Amount, stored, "amount charged %s, amount on record for the cycle %s", a.Amount, stored)
}

// Was wrong (minor): a payer revocation seen on the last cycle of an expiring consent
// leaves the consent EXPIRED (and its Klavi status CONSENT_AUTHORIZED): advance()
// already stopped it when the last cycle was submitted, and handlePoll only records
// the revocation for an active consent.
func TestSchedulerRegression_RevocationOnLastCycleRecorded(t *testing.T) {
	h := newHarness(t, at("2026-12-01", 8, 0), nil)
	c := loadExample(t, "expiring-quarterly.json")
	c.Billing.RetryMode = consent.Off
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		return klavi.PaymentRejected, klavi.ReasonRevokedUser
	}
	h.add(c)
	h.runUntil(at("2027-02-01", 0, 0))
	rec := mustConsent(t, h, c.ID)
	assert.Equal(t, storage.ConsentRevoked, rec.State, "the payer revoked it (reason %q)", rec.StateReason)
	assert.Equal(t, klavi.ConsentRevoked, rec.Consent.Status)
}

// slowKlavi makes every create take some (fake) time: the clock moves on by step
// after each call, as it does in a long catch-up drain.
type slowKlavi struct {
	*fakeKlavi
	step time.Duration
	clk  interface{ Advance(time.Duration) time.Time }
}

func (s *slowKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	p, err := s.fakeKlavi.CreatePayment(ctx, id, req)
	s.clk.Advance(s.step)
	return p, err
}

// Was wrong (minor): drain() reads the clock once and hands that instant to every
// entry of the pass, however long the pass takes. A catch-up pass that starts just
// before midnight of D−2 decides "late, still inside the window" for entries it
// reaches after midnight, and sends them on D−1: DESIGN.md says such a cycle is
// recorded MISSED and never submitted late. Klavi refuses it, and it is recorded
// FAILED ("refused by Klavi") instead of MISSED.
func TestSchedulerRegression_StaleNowAcrossMidnight(t *testing.T) {
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

func mustConsent(t *testing.T, h *harness, id string) *storage.ConsentRecord {
	t.Helper()
	rec, err := h.db.GetConsent(context.Background(), id)
	require.NoError(t, err)
	return rec
}

// ---------------------------------------------------------------------------
// Edge cases that behave correctly.

// stepUntil runs scans and polls like runUntil, but stops as soon as cond holds
// (checked after every scan and every poll), leaving the clock where it is.
func (h *harness) stepUntil(end time.Time, cond func() bool) bool {
	h.t.Helper()
	ctx := context.Background()
	for {
		_, err := h.s.Scan(ctx)
		require.NoError(h.t, err)
		if cond() {
			return true
		}
		_, err = h.s.Poll(ctx)
		require.NoError(h.t, err)
		if cond() {
			return true
		}
		next, err := h.db.NextWork(ctx, h.clock.Now())
		require.NoError(h.t, err)
		if next.IsZero() || next.After(end) {
			return false
		}
		h.clock.Set(next)
	}
}

func (h *harness) attemptOK(id string, k, n int) (*storage.Attempt, bool) {
	a, err := h.db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: id, Cycle: k, Attempt: n})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false
	}
	require.NoError(h.t, err)
	return a, true
}

// retryFaultKlavi injects failures into RetryPayment (the fake injects only creates).
type retryFaultKlavi struct {
	*fakeKlavi
	fault func(crid string) (err error, commit bool)
}

func (r *retryFaultKlavi) RetryPayment(ctx context.Context, consentID, paymentID string, req *klavi.RetryPaymentRequest) (*klavi.Payment, error) {
	if r.fault != nil {
		if err, commit := r.fault(req.ClientRequestID); err != nil {
			if commit { // Klavi stores it, then the answer is lost
				_, _ = r.fakeKlavi.RetryPayment(ctx, consentID, paymentID, req)
				r.fakeKlavi.mu.Lock()
				r.fakeKlavi.retries[len(r.fakeKlavi.retries)-1].Err = err
				r.fakeKlavi.mu.Unlock()
				return nil, err
			}
			r.fakeKlavi.mu.Lock()
			r.fakeKlavi.retries = append(r.fakeKlavi.retries, fakeCall{Day: cycle.DateOf(r.fakeKlavi.clock.Now()), ConsentID: consentID, CRID: req.ClientRequestID, Date: req.Date, Err: err})
			r.fakeKlavi.mu.Unlock()
			return nil, err
		}
	}
	return r.fakeKlavi.RetryPayment(ctx, consentID, paymentID, req)
}

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

func TestSchedulerEdge_CrashAroundRetryPOST(t *testing.T) {
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

func TestSchedulerEdge_RetryOutcomes(t *testing.T) {
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

func TestSchedulerEdge_RetryAndNextCycleAtTheSameInstant(t *testing.T) {
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

func TestSchedulerEdge_WeeklyLead10TwoCyclesInFlight(t *testing.T) {
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

func TestSchedulerEdge_NextBusinessDay(t *testing.T) {
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

func TestSchedulerEdge_WindowEdges(t *testing.T) {
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

func TestSchedulerEdge_DSTEraDates(t *testing.T) {
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

func TestSchedulerEdge_ExpiryOnADueDate(t *testing.T) {
	t.Run("expiry the due date itself: billed, no retry after it, then expired", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		rk := newRecordingKlavi(h.kl)
		h.useKlavi(rk)
		c := loadExample(t, "expiring-quarterly.json") // attach [1,7]
		exp := klavi.DateTime{Time: at("2026-10-20", 12, 0).UTC()}
		c.ExpirationDateTime = &exp
		h.add(c)
		h.runUntil(at("2027-02-01", 0, 0))
		calls := h.kl.createCalls()
		require.Len(t, calls, 4, "20 Jan, Apr, Jul, Oct 2026")
		assert.Equal(t, "2026-10-20", calls[3].Date.String())
		assert.Nil(t, rk.strategies[calls[3].CRID], "both retry days are after expiry: no strategy")
		rec := mustConsent(t, h, c.ID)
		assert.Equal(t, storage.ConsentExpired, rec.State)
		due, _ := h.db.DueBefore(context.Background(), at("2100-01-01", 0, 0), 10)
		assert.Empty(t, due)
	})
	t.Run("expiry the evening before the due date (UTC instant on the due date)", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "expiring-quarterly.json")
		exp := klavi.DateTime{Time: time.Date(2026, 10, 20, 2, 0, 0, 0, time.UTC)} // 19 Oct 23:00 in Brasília
		c.ExpirationDateTime = &exp
		h.add(c)
		h.runUntil(at("2027-02-01", 0, 0))
		assert.Len(t, h.kl.createCalls(), 3)
		assert.Equal(t, storage.ConsentExpired, mustConsent(t, h, c.ID).State)
	})
}

func TestSchedulerEdge_StaleIndexEntries(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	h.add(c)
	h.runUntil(at("2026-01-15", 0, 0))
	require.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
	now := h.clock.Now()
	k := func(cy, n int) storage.AttemptKey { return storage.AttemptKey{ConsentID: c.ID, Cycle: cy, Attempt: n} }
	require.NoError(t, h.db.Apply(context.Background(), &storage.Change{
		PutDue: []storage.DueItem{
			{At: now.Add(-time.Hour), Key: k(0, 0)},                                                   // a decided cycle
			{At: now.Add(-time.Hour), Key: k(5, 0)},                                                   // a future cycle that is not next
			{At: now.Add(-time.Hour), Key: k(0, 1)},                                                   // a retry never planned
			{At: now.Add(-time.Hour), Key: storage.AttemptKey{ConsentID: "urn:klavi:gone", Cycle: 0}}, // no consent
		},
		PutPoll: []storage.PollItem{
			{At: now.Add(-time.Hour), Key: k(0, 0)}, // a settled payment
			{At: now.Add(-time.Hour), Key: k(3, 0)}, // no attempt
		},
	}))
	gets := h.kl.gets
	_, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	_, err = h.s.Poll(context.Background())
	require.NoError(t, err)
	assert.Equal(t, gets, h.kl.gets, "no status fetched for stale poll entries")
	due, _ := h.db.DueBefore(context.Background(), now, 10)
	assert.Empty(t, due)
	poll, _ := h.db.PollBefore(context.Background(), now, 10)
	assert.Empty(t, poll)
	h.runUntil(at("2026-03-15", 0, 0))
	assert.Len(t, h.kl.createCalls(), 3, "cycles 0, 1, 2; the stale entry for cycle 5 sent nothing")
	assert.Equal(t, 3, mustConsent(t, h, c.ID).NextCycle)
	assertExactlyOnce(t, h)
	assertNoneStuck(t, h, c.ID)
}

func TestSchedulerEdge_PollStatuses(t *testing.T) {
	run := func(t *testing.T, st klavi.PaymentStatus, code klavi.ReasonCode) (*harness, *consent.Consent) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := loadExample(t, "weekly-retries.json") // local
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-03-05")
		c.ExpirationDateTime = &klavi.DateTime{Time: at("2026-03-06", 12, 0).UTC()} // one cycle
		h.kl.outcome = func(*fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) { return st, code }
		h.add(c)
		h.runUntil(at("2026-03-20", 0, 0))
		return h, c
	}
	t.Run("CANCELED with a retryable reason: REJECTED, no retry", func(t *testing.T) {
		h, c := run(t, klavi.PaymentCanceled, klavi.ReasonNotInformed)
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptRejected, a.State)
		assert.Equal(t, klavi.PaymentCanceled, a.Status)
		assert.Empty(t, h.kl.retryCalls())
	})
	t.Run("ERROR: REJECTED", func(t *testing.T) {
		h, c := run(t, klavi.PaymentError, "")
		assert.Equal(t, storage.AttemptRejected, h.attempt(c.ID, 0, 0).State)
		assert.Equal(t, "ERROR", h.attempt(c.ID, 0, 0).Reason)
	})
	t.Run("an unknown status past StuckAfter: looked up, then STUCK and polled on", func(t *testing.T) {
		h, c := run(t, klavi.PaymentStatus("PAYMENT_ON_HOLD"), "")
		a := h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptStuck, a.State)
		assert.Contains(t, a.Reason, "PAYMENT_ON_HOLD")
		assert.GreaterOrEqual(t, a.Lookups, 1)
		stuck, err := h.db.Attention(context.Background(), storage.AttemptStuck, 10)
		require.NoError(t, err)
		assert.Len(t, stuck, 1, "an attention item")
		assert.Len(t, h.eventsOf(EventStuck), 1, "reported once")
		assertNoneStuck(t, h, c.ID)
		// Klavi answers a known status again: it leaves STUCK by itself.
		h.kl.outcome = func(*fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) { return klavi.PaymentCompleted, "" }
		h.kl.mu.Lock()
		for _, p := range h.kl.payments {
			p.Status = klavi.PaymentPending
		}
		h.kl.mu.Unlock()
		h.runUntil(at("2026-03-22", 0, 0))
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
		stuck, _ = h.db.Attention(context.Background(), storage.AttemptStuck, 10)
		assert.Empty(t, stuck)
	})
}

func TestSchedulerEdge_RevokeWithRetries(t *testing.T) {
	t.Run("a planned retry is dropped, never sent", func(t *testing.T) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := localWeekly(t, h, nil)
		h.add(c)
		require.True(t, h.stepUntil(at("2026-03-06", 0, 0), func() bool {
			a, ok := h.attemptOK(c.ID, 0, 1)
			return ok && a.State == storage.AttemptPlanned
		}))
		_, err := h.s.Revoke(c.ID, "", "")
		require.NoError(t, err)
		h.runUntil(at("2026-03-20", 0, 0))
		assert.Empty(t, h.kl.retryCalls())
		assert.Equal(t, storage.AttemptDropped, h.attempt(c.ID, 0, 1).State)
		assert.Len(t, h.kl.createCalls(), 1, "cycle 0 only")
		assertNoneStuck(t, h, c.ID)
	})
	t.Run("a retry in flight is looked up, not re-sent", func(t *testing.T) {
		h := newHarness(t, at("2026-02-25", 8, 0), nil)
		c := localWeekly(t, h, nil)
		h.useKlavi(&retryFaultKlavi{fakeKlavi: h.kl, fault: func(string) (error, bool) { return unknownErr("retry payment"), true }})
		h.kl.findErr = func(string) error { return fmt.Errorf("list orders: 503: %w", klavi.ErrUnavailable) }
		h.add(c)
		require.True(t, h.stepUntil(at("2026-03-06", 0, 0), func() bool {
			a, ok := h.attemptOK(c.ID, 0, 1)
			return ok && a.State == storage.AttemptSubmitting
		}))
		_, err := h.s.Revoke(c.ID, "", "")
		require.NoError(t, err)
		h.kl.findErr = nil
		h.runUntil(at("2026-03-20", 0, 0))
		a := h.attempt(c.ID, 0, 1)
		assert.Equal(t, storage.AttemptRejected, a.State, "found at Klavi, adopted, and canceled: the consent was revoked")
		assert.Equal(t, klavi.PaymentCanceled, a.Status)
		assert.Contains(t, h.kl.cancels, a.PaymentID)
		assert.Len(t, h.kl.retryCalls(), 1)
		assertNoneStuck(t, h, c.ID)
	})
}

func TestSchedulerEdge_BillFrom(t *testing.T) {
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

// Operators act (Revoke, SetAmount, Authorize) while scans and polls run; whatever
// the interleaving, no cycle is charged twice and nothing is left stuck.
func TestSchedulerEdge_AdminRacingScans(t *testing.T) {
	h := newHarness(t, at("2026-02-07", 9, 0), func(c *Config) { c.Workers = 8 })
	var ids []string
	for i := 0; i < 24; i++ {
		name := []string{"monthly-31st.json", "weekly-retries.json", "variable-amount.json"}[i%3]
		c := loadExample(t, name)
		c.ID = fmt.Sprintf("urn:klavi:race-%d", i)
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-02-10")
		if i%4 == 0 {
			c.Status = klavi.ConsentAwaitingAuthorization
		}
		h.add(c)
		ids = append(ids, c.ID)
	}
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if _, n := cycleOfCRID(t, p.CRID); n == 0 && p.Date.Day()%2 == 0 {
			return klavi.PaymentRejected, klavi.ReasonNotInformed
		}
		return klavi.PaymentCompleted, ""
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for round := 0; round < 3; round++ {
		wg.Add(3)
		go func() { defer wg.Done(); _, _ = h.s.Scan(ctx) }()
		go func() { defer wg.Done(); _, _ = h.s.Poll(ctx) }()
		go func() {
			defer wg.Done()
			for i, id := range ids {
				switch i % 4 {
				case 0:
					_, _ = h.s.Authorize(id, "")
				case 1:
					_, _ = h.s.Revoke(id, "", "")
				case 2:
					_ = h.s.SetAmount(id, 0, 50_00, "")
					_ = h.s.SetAmount(id, 1, 60_00, "")
				}
			}
		}()
		wg.Wait()
		h.clock.Advance(6 * time.Hour)
	}
	h.runUntil(at("2026-04-30", 0, 0))
	assertExactlyOnce(t, h)
	for _, id := range ids {
		assertNoneStuck(t, h, id)
	}
}

// Two scans at once (the cron scan and POST /v1/scheduler/scan) over the same entries.
func TestSchedulerEdge_ConcurrentScans(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), nil)
	var ids []string
	for i := 0; i < 16; i++ {
		c := loadExample(t, "monthly-31st.json")
		c.ID = fmt.Sprintf("urn:klavi:twice-%d", i)
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		h.add(c)
		ids = append(ids, c.ID)
	}
	n := 0
	var mu sync.Mutex
	h.kl.inject = func(op, crid string) (error, bool) {
		mu.Lock()
		defer mu.Unlock()
		if n++; n%3 == 0 {
			_, have := h.kl.byCRID[crid] // inject runs under the fake's lock
			return unknownErr("create payment"), n%2 == 0 && !have
		}
		return nil, false
	}
	for round := 0; round < 6; round++ {
		var wg sync.WaitGroup
		for j := 0; j < 3; j++ {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = h.s.Scan(context.Background()) }()
		}
		wg.Wait()
		h.clock.Advance(20 * time.Minute)
	}
	h.kl.inject = nil
	h.runUntil(at("2026-02-01", 0, 0))
	assert.Len(t, h.kl.payments, len(ids), "one payment per consent's cycle 0")
	assertExactlyOnce(t, h)
	for _, id := range ids {
		a := h.attempt(id, 0, 0)
		assert.Contains(t, []storage.AttemptState{storage.AttemptCompleted, storage.AttemptUnconfirmed}, a.State)
		assertNoneStuck(t, h, id)
	}
}

// A payer's revocation seen (by the poll) while the next cycle's outcome is unknown:
// the next cycle's entry is kept and it ends UNCONFIRMED, never SUBMITTING forever.
func TestSchedulerEdge_PayerRevocationWhileNextCycleUnknown(t *testing.T) {
	h := newHarness(t, at("2025-12-20", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
	c := loadExample(t, "weekly-retries.json") // Mondays from 5 Jan 2026; cycle 1 submitted 2 Jan
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		return klavi.PaymentRejected, klavi.ReasonRevokedUser
	}
	cycle1 := consent.ClientRequestID(c.ID, 1, 0)
	committed := false // the fake stores on every committed injection; Klavi stores once
	h.kl.inject = func(op, crid string) (error, bool) {
		if crid == cycle1 {
			first := !committed
			committed = true
			return unknownErr("create payment"), first
		}
		return nil, false
	}
	h.add(c)
	h.runUntil(at("2026-01-20", 0, 0))
	rec := mustConsent(t, h, c.ID)
	assert.Equal(t, storage.ConsentRevoked, rec.State)
	a := h.attempt(c.ID, 1, 0)
	assert.Equal(t, storage.AttemptRejected, a.State, "the lost answer was looked up, adopted, and canceled (the consent is revoked)")
	assert.Equal(t, klavi.PaymentCanceled, a.Status)
	_, later := h.attemptOK(c.ID, 2, 0)
	assert.False(t, later)
	assertExactlyOnce(t, h)
	assertNoneStuck(t, h, c.ID)
}
