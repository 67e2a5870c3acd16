package scheduler

// Edge cases of the due and poll indexes: entries that outlived their attempt, and
// every status a poll can read.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

func TestScheduler_StaleIndexEntries(t *testing.T) {
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

func TestScheduler_PollStatuses(t *testing.T) {
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
