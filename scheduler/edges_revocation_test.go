package scheduler

// Edge cases of the end of a consent: revocations seen by a poll or made by an
// operator while payments are in flight or retried, and expiry on a due date. The
// tests whose comment begins "Was wrong" pin behaviour that was once wrong; the
// comment says what used to happen.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// Was wrong: in attach mode a rejection that means the consent is gone
// (REVOKED_USER / REVOKED_MERCHANT) is not acted on until the last retry day has
// passed: handlePoll's "attach: follow until LastRetryDate" case comes before the
// ConsentGone check. Klavi will not retry under a revoked consent, but billingd keeps
// the consent active for up to 7 more days and submits the next cycle meanwhile (a
// charge attempt after the payer revoked). Local mode stops at once.
func TestScheduler_AttachRevocationActedOnLate(t *testing.T) {
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

// Was wrong (minor): a payer revocation seen on the last cycle of an expiring consent
// leaves the consent EXPIRED (and its Klavi status CONSENT_AUTHORIZED): advance()
// already stopped it when the last cycle was submitted, and handlePoll only records
// the revocation for an active consent.
func TestScheduler_RevocationOnLastCycleRecorded(t *testing.T) {
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

func TestScheduler_RevokeWithRetries(t *testing.T) {
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

// A payer's revocation seen (by the poll) while the next cycle's outcome is unknown:
// the next cycle's entry is kept and it ends UNCONFIRMED, never SUBMITTING forever.
func TestScheduler_PayerRevocationWhileNextCycleUnknown(t *testing.T) {
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

func TestScheduler_ExpiryOnADueDate(t *testing.T) {
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
