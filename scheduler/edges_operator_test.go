package scheduler

// Edge cases of operators and concurrent passes: an amount set while its cycle is in
// flight, operators acting while scans run, and two scans at once. The tests whose
// comment begins "Was wrong" pin behaviour that was once wrong; the comment says what
// used to happen.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// Was wrong: SetAmount accepts a new amount for a cycle whose payment is already in
// flight (SUBMITTING, outcome unknown): the check is only k < NextCycle, and the
// cursor does not move until the outcome is known. The re-send (rightly) carries the
// amount first sent, so the operator is told the new amount is set while the old one
// is charged, and the stored amount disagrees with the payment.
func TestScheduler_SetAmountWhileCycleInFlight(t *testing.T) {
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

// Operators act (Revoke, SetAmount, Authorize) while scans and polls run; whatever
// the interleaving, no cycle is charged twice and nothing is left stuck.
func TestScheduler_AdminRacingScans(t *testing.T) {
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
func TestScheduler_ConcurrentScans(t *testing.T) {
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
