package scheduler

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// TestResolve is the table of reconciliation's transitions: what an attempt becomes
// from what its send got, what Klavi's orders list said, how many sends were made,
// whether this is a second look, and whether its window is open.
func TestResolve(t *testing.T) {
	rows := []struct {
		name string
		f    facts
		want resolution
	}{
		// Found: whatever the send got, Klavi holds the payment.
		{"lost answer, found", facts{Answer: answerUnknown, Lookup: lookupFound, Sends: 1, WindowOpen: true}, resAdopt},
		{"409, found", facts{Answer: answerConflict, Lookup: lookupFound, Sends: 1, WindowOpen: true}, resAdopt},
		{"refused re-send, found", facts{Answer: answerRefused, Lookup: lookupFound, Sends: 2}, resAdopt},
		{"second look past the window, found", facts{Answer: answerUnknown, Lookup: lookupFound, Sends: 5, Confirming: true}, resAdopt},

		// Not found after a refusal.
		{"first send refused: a refusal", facts{Answer: answerRefused, Lookup: lookupNotFound, Sends: 1, WindowOpen: true}, resFail},
		{"409 on the first send, not found: look again (the key may be in use by a create in flight)", facts{Answer: answerConflict, Lookup: lookupNotFound, Sends: 1, WindowOpen: true}, resConfirm},
		{"409, not found twice: a refusal (seeds: permissions)", facts{Answer: answerConflict, Lookup: lookupNotFound, Sends: 1, Confirming: true}, resFail},
		{"409 on a re-send, not found: look again", facts{Answer: answerConflict, Lookup: lookupNotFound, Sends: 2, WindowOpen: true}, resConfirm},
		{"refused re-send, not found: look again", facts{Answer: answerRefused, Lookup: lookupNotFound, Sends: 3}, resConfirm},
		{"refused re-send, not found twice: a refusal", facts{Answer: answerRefused, Lookup: lookupNotFound, Sends: 3, Confirming: true}, resFail},

		// Not found after a lost answer.
		{"lost, not found, window open: re-send same key", facts{Answer: answerUnknown, Lookup: lookupNotFound, Sends: 1, WindowOpen: true}, resResend},
		{"lost, not found, window closed: look again", facts{Answer: answerUnknown, Lookup: lookupNotFound, Sends: 4}, resConfirm},
		{"lost, not found twice, window closed: lapsed", facts{Answer: answerUnknown, Lookup: lookupNotFound, Sends: 4, Confirming: true}, resLapsed},

		// The list cannot be read.
		{"first send refused, list down: a refusal (nothing was ever sent before)", facts{Answer: answerRefused, Lookup: lookupUnavailable, Sends: 1, WindowOpen: true}, resFail},
		{"409, list down, window open: re-send same key", facts{Answer: answerConflict, Lookup: lookupUnavailable, Sends: 1, WindowOpen: true}, resResend},
		{"lost, list down, window open: re-send same key", facts{Answer: answerUnknown, Lookup: lookupUnavailable, Sends: 2, WindowOpen: true}, resResend},
		{"lost, list down, window closed: UNCONFIRMED", facts{Answer: answerUnknown, Lookup: lookupUnavailable, Sends: 2}, resUnconfirmed},
		{"refused re-send, list down, window closed: UNCONFIRMED", facts{Answer: answerRefused, Lookup: lookupUnavailable, Sends: 2}, resUnconfirmed},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			assert.Equal(t, r.want.String(), resolve(r.f).String())
		})
	}
}

func TestAnswerOf(t *testing.T) {
	rows := []struct {
		name string
		err  error
		want sendAnswer
	}{
		{"nil", nil, answerCreated},
		{"409 APIError", &klavi.APIError{StatusCode: 409, Endpoint: "create_payment"}, answerConflict},
		{"ErrDuplicateRequest", fmt.Errorf("x: %w", klavi.ErrDuplicateRequest), answerConflict},
		{"416", &klavi.APIError{StatusCode: 416, Endpoint: "create_payment"}, answerRefused},
		{"invalid", fmt.Errorf("x: %w", klavi.ErrInvalidRequest), answerRefused},
		{"outcome unknown", fmt.Errorf("x: %w", klavi.ErrOutcomeUnknown), answerUnknown},
		{"malformed", fmt.Errorf("x: %w", klavi.ErrMalformedResponse), answerUnknown},
		{"auth", fmt.Errorf("x: %w", klavi.ErrAuth), answerUnknown},
		{"anything else", errors.New("boom"), answerUnknown},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) { assert.Equal(t, r.want, answerOf(r.err)) })
	}
}

func TestScheduler_StatusUnknown(t *testing.T) {
	notFound := func(string) error { return &klavi.APIError{StatusCode: 404, Endpoint: "get_payment"} }
	setup := func(t *testing.T) (*harness, string) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		c.ExpirationDateTime = &klavi.DateTime{Time: at("2026-01-20", 0, 0).UTC()} // one cycle
		h.add(c)
		h.kl.getErr = notFound
		return h, c.ID
	}
	t.Run("GET answers 404, the orders list knows the payment: its status is taken from the list", func(t *testing.T) {
		h, id := setup(t)
		h.runUntil(at("2026-01-09", 0, 0))
		a := h.attempt(id, 0, 0)
		assert.Equal(t, storage.AttemptSubmitted, a.State, "before stuck_after: polled on")
		assert.False(t, a.UnknownSince.IsZero())
		h.runUntil(at("2026-01-15", 0, 0))
		a = h.attempt(id, 0, 0)
		assert.Equal(t, storage.AttemptCompleted, a.State, "settled on the 10th, told by the list")
		stuck, _ := h.db.Attention(context.Background(), storage.AttemptStuck, 10)
		assert.Empty(t, stuck)
	})
	t.Run("GET answers 404 and the list does not have it: STUCK, polled on, recovers", func(t *testing.T) {
		h, id := setup(t)
		h.kl.findErr = func(string) error { return fmt.Errorf("find: %w", klavi.ErrOrderNotFound) }
		h.runUntil(at("2026-01-15", 0, 0))
		a := h.attempt(id, 0, 0)
		assert.Equal(t, storage.AttemptStuck, a.State)
		assert.Contains(t, a.Reason, "has no payment for clientRequestId")
		assert.Len(t, h.eventsOf(EventStuck), 1)
		assertNoneStuck(t, h, id) // still has its poll entry
		h.kl.getErr, h.kl.findErr = nil, nil
		h.runUntil(at("2026-01-17", 0, 0))
		assert.Equal(t, storage.AttemptCompleted, h.attempt(id, 0, 0).State)
	})
	t.Run("Reconcile looks a STUCK payment up at once", func(t *testing.T) {
		h, id := setup(t)
		h.kl.findErr = func(string) error { return fmt.Errorf("find: %w", klavi.ErrOrderNotFound) }
		h.runUntil(at("2026-01-15", 0, 0))
		require.Equal(t, storage.AttemptStuck, h.attempt(id, 0, 0).State)
		h.kl.findErr = nil
		res, err := h.s.Reconcile(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, ReconcileResult{Looked: 1, Resolved: 1}, res)
		assert.Equal(t, storage.AttemptCompleted, h.attempt(id, 0, 0).State)
	})
}

func TestScheduler_ReconcileLegacyUnconfirmed(t *testing.T) {
	// An attempt stored UNCONFIRMED by an earlier version: no due entry, no lookups.
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	h.add(c)
	h.runUntil(at("2026-01-08", 0, 0))
	a := h.attempt(c.ID, 0, 0)
	require.Equal(t, storage.AttemptSubmitted, a.State)
	paymentID := a.PaymentID
	a.State, a.PaymentID, a.Reason, a.NextPoll = storage.AttemptUnconfirmed, "", "Klavi already has clientRequestId (409)", time.Time{}
	require.NoError(t, h.db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
	res, err := h.s.Reconcile(context.Background(), "")
	require.NoError(t, err)
	assert.Equal(t, ReconcileResult{Looked: 1, Resolved: 1}, res)
	a = h.attempt(c.ID, 0, 0)
	assert.Equal(t, storage.AttemptSubmitted, a.State)
	assert.Equal(t, paymentID, a.PaymentID, "adopted from the orders list")
	h.runUntil(at("2026-01-20", 0, 0))
	assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
}
