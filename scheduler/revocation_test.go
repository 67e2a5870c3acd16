package scheduler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// An operator revokes a consent while its next cycle's payment is in flight
// (SUBMITTING: Klavi created it, the answer was lost and the orders list could not
// be read). The next scan finds it in the orders list and adopts it; the poll that
// follows cancels it, as it would have been had the answer arrived in time: the
// payer is not charged on 31 Jan for a consent revoked on 21 Jan.
func TestScheduler_RevokeWhileCycleInFlightCancelsTheAdoptedPayment(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-31") // cycle 0 submitted on 21 Jan
	h.add(c)
	h.kl.inject = func(op, crid string) (error, bool) { return unknownErr("create payment"), true }
	h.kl.findErr = func(string) error { return errors.New("orders list: 503") }
	h.runUntil(at("2026-01-21", 9, 0))
	require.Equal(t, storage.AttemptSubmitting, h.attempt(c.ID, 0, 0).State)
	require.Len(t, h.kl.originals(c.ID), 1, "Klavi holds the payment")

	_, err := h.s.Revoke(c.ID, "customer left", "maria")
	require.NoError(t, err)

	h.kl.inject, h.kl.findErr = nil, nil
	h.runUntil(at("2026-02-02", 0, 0))
	a := h.attempt(c.ID, 0, 0)
	assert.NotEqual(t, storage.AttemptCompleted, a.State, "a payment of a consent revoked on 21 Jan settled on 31 Jan")
	assert.Contains(t, h.kl.cancels, a.PaymentID, "the payment found after the revocation is never canceled")
}

// Which payments are "scheduled for a later date" is decided by the poll, on a
// checked clock: with the clock 15 days ahead of Klavi's the payment dated 31 Jan
// would look past and settle although the consent was revoked on 22 Jan. The poll
// waits for the clocks to agree, then cancels it.
func TestScheduler_RevokeWhileClockInDoubtLeavesScheduledPayment(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
	pk := &probingKlavi{fakeKlavi: h.kl}
	h.useKlavi(pk)
	pk.sched = h.s
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-31")
	h.add(c)
	h.runUntil(at("2026-01-22", 10, 0))
	a := h.attempt(c.ID, 0, 0)
	require.Equal(t, storage.AttemptSubmitted, a.State)

	// The clock steps 15 days ahead; Klavi's time says 22 Jan.
	pk.mu.Lock()
	pk.offset = -15 * 24 * time.Hour
	pk.mu.Unlock()
	h.clock.Set(at("2026-02-06", 10, 0))
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	require.True(t, res.Paused, "the clock is in doubt")

	_, err = h.s.Revoke(c.ID, "customer left", "maria")
	if err != nil {
		return // refusing, or deferring the cancellation, while in doubt is a fix
	}
	pk.mu.Lock()
	pk.offset = 0
	pk.mu.Unlock()
	h.clock.Set(at("2026-01-22", 10, 5))
	h.runUntil(at("2026-02-02", 0, 0))
	a = h.attempt(c.ID, 0, 0)
	assert.NotEqual(t, storage.AttemptCompleted, a.State, "a payment of a consent revoked on 22 Jan settled on 31 Jan")
}

// A cancellation that fails for a transient reason (a timeout) is tried again at the
// next poll (soon, not after the usual wait), until Klavi takes it.
func TestScheduler_RevokeCancellationFailureIsRetried(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
	fk := &flakyCancelKlavi{fakeKlavi: h.kl}
	fk.fail.Store(true)
	h.useKlavi(fk)
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-31")
	h.add(c)
	h.runUntil(at("2026-01-22", 10, 0))
	require.Equal(t, storage.AttemptSubmitted, h.attempt(c.ID, 0, 0).State)

	_, err := h.s.Revoke(c.ID, "customer left", "maria")
	require.NoError(t, err)
	fk.fail.Store(false) // Klavi answers again a minute later

	h.runUntil(at("2026-02-02", 0, 0))
	a := h.attempt(c.ID, 0, 0)
	assert.NotEqual(t, storage.AttemptCompleted, a.State, "one failed cancel call and the revoked consent's payment settles")
	if a.State == storage.AttemptCompleted {
		open, err := h.db.Attention(context.Background(), storage.AttemptStuck, 100)
		require.NoError(t, err)
		t.Logf("attention items: %d; the failure was only logged", len(open))
	}
}

// flakyCancelKlavi times out every cancel while fail is set.
type flakyCancelKlavi struct {
	*fakeKlavi
	fail atomic.Bool
}

func (f *flakyCancelKlavi) CancelPayment(ctx context.Context, consentID, paymentID string, r *klavi.CancelPaymentRequest) (*klavi.Payment, error) {
	if f.fail.Load() {
		return nil, unknownErr("cancel payment")
	}
	return f.fakeKlavi.CancelPayment(ctx, consentID, paymentID, r)
}

// steppingStore steps the wall clock when the first scan's re-plan lists the
// consents: an NTP step, or a restored VM's clock set right, in the seconds after
// start, while the re-plan walks every consent.
type steppingStore struct {
	storage.Store
	clk   *steppedClock
	step  time.Duration
	armed atomic.Bool
	once  sync.Once
}

func (s *steppingStore) ListConsents(ctx context.Context, after string, limit int, st storage.ConsentState) ([]*storage.ConsentRecord, error) {
	if s.armed.Load() {
		s.once.Do(func() { s.clk.set(s.step) })
	}
	return s.Store.ListConsents(ctx, after, limit, st)
}

// A 15-day step of the wall clock during the first scan's re-plan must be seen:
// the re-plan runs before the clock is judged, and the pass measures steps from the
// very reading it judged, so the scan never reads the due index up to a stepped
// instant and records MISSED for a cycle whose window is open.
func TestScheduler_ClockStepDuringFirstScanReplan(t *testing.T) {
	db := openStore(t)
	clk := &steppedClock{}
	st := &steppingStore{Store: db, clk: clk, step: 15 * 24 * time.Hour}
	p := &onOffProber{fakeKlavi: newFakeKlavi(clk), truth: time.Now}
	s, err := New(Config{Policy: Policy{LeadDays: 3, RetryMode: consent.Attach}, SubmitHour: 9}, st, p, WithClock(clk))
	require.NoError(t, err)
	p.sched = s

	today := cycle.DateOf(time.Now())
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = today.AddDays(6) // submitted in 3 days; window open until today+4
	_, err = s.AddConsent(c, today, "")
	require.NoError(t, err)

	st.armed.Store(true)
	res, err := s.Scan(context.Background())
	require.NoError(t, err)

	a, err := db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: c.ID, Cycle: 0})
	if err == nil {
		assert.NotEqual(t, storage.AttemptMissed, a.State, "MISSED written on a clock stepped 15 days during the re-plan: %s", a.Reason)
	} else {
		require.ErrorIs(t, err, storage.ErrNotFound)
	}
	t.Logf("scan: %+v; clock state: %+v", res, s.ClockState())
}

// A re-plan that fails on a store error is tried again by the next scan, so the
// queued submission does not keep the old settings' instant (and the daemon and the
// preview agree).
func TestScheduler_FailedReplanIsTriedAgain(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10") // lead 3: 7 Jan 09:00
	h.add(c)
	fs := &failingListStore{Store: h.db}
	fs.fails.Store(1)
	s, err := New(h.s.cfg, fs, h.kl, WithClock(h.clock))
	require.NoError(t, err)
	s.cfg.Policy.LeadDays = 4 // the daemon starts with lead 4: 6 Jan 09:00
	h.s = s

	_, err = s.Scan(context.Background()) // the re-plan fails: a store error
	require.NoError(t, err)
	_, err = s.Scan(context.Background())
	require.NoError(t, err)
	got := mustConsent(t, h, c.ID)
	assert.True(t, got.NextDue.Equal(at("2026-01-06", 9, 0)), "queued for %s, the lead-3 instant; the preview says 6 Jan", got.NextDue.In(cycle.Brasilia))
}

// failingListStore fails ListConsents the first fails times.
type failingListStore struct {
	storage.Store
	fails atomic.Int32
}

func (f *failingListStore) ListConsents(ctx context.Context, after string, limit int, st storage.ConsentState) ([]*storage.ConsentRecord, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, errors.New("store: input/output error")
	}
	return f.Store.ListConsents(ctx, after, limit, st)
}
