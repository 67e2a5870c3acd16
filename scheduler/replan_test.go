package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

func TestScheduler_ReplanFollowsTheSettings(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil) // lead 3, 09:00
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	rec := h.add(c)
	require.Equal(t, at("2026-01-07", 9, 0), rec.NextDue.In(at("2026-01-07", 9, 0).Location()))

	// The daemon starts with lead 4 and submit time 10:30: the queued cycle moves.
	h.s.cfg.Policy.LeadDays, h.s.cfg.SubmitHour, h.s.cfg.SubmitMinute = 4, 10, 30
	res, err := h.s.Replan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ReplanResult{Consents: 1, Moved: 1}, res)
	got := mustConsent(t, h, c.ID)
	assert.True(t, got.NextDue.Equal(at("2026-01-06", 10, 30)), "%s", got.NextDue)
	due, err := h.db.DueBefore(context.Background(), at("2026-12-31", 0, 0), 10)
	require.NoError(t, err)
	require.Len(t, due, 1, "the old entry is gone")
	assert.True(t, due[0].At.Equal(at("2026-01-06", 10, 30)))

	res, err = h.s.Replan(context.Background())
	require.NoError(t, err)
	assert.Zero(t, res.Moved, "idempotent")

	h.runUntil(at("2026-01-06", 11, 0))
	a := h.attempt(c.ID, 0, 0)
	assert.Equal(t, storage.AttemptSubmitted, a.State, "submitted on D−4, as the preview under lead 4 says")
	calls := h.kl.createCalls()
	require.Len(t, calls, 1)
	assert.Equal(t, "2026-01-06", calls[0].Day.String())
}

func TestScheduler_FirstScanReplans(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	h.add(c)
	h.s.cfg.Policy.LeadDays = 10 // D−10 = 31 Dec: already past, so due at once
	_, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptSubmitted, h.attempt(c.ID, 0, 0).State, "the first scan re-planned, then submitted the now-late cycle")
}

// heldListStore holds ListConsentTerms (the re-plan's read of every active
// consent) until release is closed or its context ends.
type heldListStore struct {
	storage.Store
	entered chan struct{} // one value on the first call
	release chan struct{}
}

func (h *heldListStore) ListConsentTerms(ctx context.Context, after string, limit int, st storage.ConsentState) ([]*storage.ConsentRecord, error) {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.Store.ListConsentTerms(ctx, after, limit, st)
}

// startHeld starts a scheduler on h's store, Klavi and clock, with h's config
// changed by mod (the settings the daemon starts with), whose re-plan is held in
// ListConsentTerms until hs.release is closed. creates receives a value at every
// CreatePayment, scans the result of every scan. Cron's own ticks are an hour away.
func startHeld(t *testing.T, h *harness, mod func(*Config)) (s *Scheduler, hs *heldListStore, creates <-chan struct{}, scans <-chan ScanResult) {
	t.Helper()
	cfg := h.s.cfg
	cfg.RefreshSchedule = "off"
	if mod != nil {
		mod(&cfg)
	}
	hs = &heldListStore{Store: h.db, entered: make(chan struct{}, 1), release: make(chan struct{})}
	bk := &blockingKlavi{fakeKlavi: h.kl, entered: make(chan struct{}, 16), release: make(chan struct{})}
	close(bk.release) // signals each create, holds none
	s, err := New(cfg, hs, bk, WithClock(h.clock))
	require.NoError(t, err)
	h.s = s
	done := make(chan ScanResult, 16)
	require.NoError(t, s.Start(context.Background(), kv.Fence{}, "@every 1h", "@every 1h", Hooks{
		AfterScan: func(_ time.Duration, res ScanResult, err error) {
			assert.NoError(t, err)
			done <- res
		}}))
	t.Cleanup(func() {
		select {
		case <-hs.release:
		default:
			close(hs.release)
		}
		_ = s.Close(context.Background())
	})
	return s, hs, bk.entered, done
}

// within receives from ch, failing the test with what when nothing comes in 10s.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("waited 10s for %s", what)
		panic("unreachable")
	}
}

// A started scheduler's first scan (a new leader's catch-up scan) sends what is due
// without waiting for the re-plan, which reads every active consent (on etcd,
// seconds at a few thousand consents: the HA crash test's failovers waited that
// long for their first payment request).
func TestScheduler_StartedScanDoesNotWaitForTheReplan(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 30), nil) // lead 3, 09:00
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10") // submit day: today, 09:00
	h.add(c)
	s, hs, creates, scans := startHeld(t, h, nil)

	within(t, hs.entered, "the re-plan to start")
	within(t, creates, "the catch-up scan's payment request while the re-plan is held")
	assert.Equal(t, 1, within(t, scans, "the catch-up scan").Handled)
	assert.False(t, s.replanned.Load(), "the re-plan is still held")

	close(hs.release)
	s.replanFirst(context.Background()) // waits for the re-plan's job (replanMu), then finds it done
	assert.True(t, s.replanned.Load(), "the re-plan went through beside the scan")
	require.NoError(t, s.Close(context.Background()))
	assert.Equal(t, storage.AttemptSubmitted, h.attempt(c.ID, 0, 0).State)
	assert.Len(t, h.kl.createCalls(), 1)
}

// A scan that decides before the re-plan has gone through keeps to the current
// settings: an original queued for 09:00 under the old submit time is moved to the
// new one (10:30), not sent at 09:30.
func TestScheduler_ScanBeforeTheReplanKeepsTheCurrentSettings(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 30), nil) // queued under lead 3, 09:00
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10") // queued for today 09:00
	h.add(c)
	s, hs, _, scans := startHeld(t, h, func(c *Config) { c.SubmitHour, c.SubmitMinute = 10, 30 })

	within(t, hs.entered, "the re-plan to start")
	assert.Equal(t, 1, within(t, scans, "the catch-up scan").Handled)
	assert.Empty(t, h.kl.createCalls(), "nothing sent at the old settings' instant")
	got := mustConsent(t, h, c.ID)
	assert.True(t, got.NextDue.Equal(at("2026-01-07", 10, 30)), "%s %+v", got.NextDue, got)
	due, err := h.db.DueBefore(context.Background(), at("2026-12-31", 0, 0), 10)
	require.NoError(t, err)
	require.Len(t, due, 1, "the old entry is gone")
	assert.True(t, due[0].At.Equal(at("2026-01-07", 10, 30)))

	close(hs.release)
	s.replanFirst(context.Background()) // waits for the re-plan's job
	assert.True(t, s.replanned.Load())
	require.NoError(t, s.Close(context.Background()))
	assert.Empty(t, h.kl.createCalls())
}

// A queued submission the re-plan moves to an instant already past (the lead days
// grew) is sent by the scan that follows the re-plan, not at cron's next tick (an
// hour away here).
func TestScheduler_ReplanAsideSendsWhatItMovedDue(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 30), nil) // lead 3, 09:00
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-11")
	rec := h.add(c)
	require.True(t, rec.NextDue.Equal(at("2026-01-08", 9, 0)), "queued for %s", rec.NextDue)
	s, hs, creates, scans := startHeld(t, h, func(c *Config) { c.Policy.LeadDays = 4 }) // D−4: today 09:00

	within(t, hs.entered, "the re-plan to start")
	assert.Zero(t, within(t, scans, "the catch-up scan").Handled, "not due by its queued instant")
	assert.Empty(t, h.kl.createCalls())

	close(hs.release)
	within(t, creates, "the payment request of the scan after the re-plan")
	assert.Equal(t, 1, within(t, scans, "the scan after the re-plan").Handled)
	require.NoError(t, s.Close(context.Background()))
	assert.Equal(t, storage.AttemptSubmitted, h.attempt(c.ID, 0, 0).State)
	calls := h.kl.createCalls()
	require.Len(t, calls, 1)
	assert.Equal(t, "2026-01-07", calls[0].Day.String(), "submitted on D−4, as the preview under lead 4 says")
}

func TestPolicy_PreviewStored(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json") // attach; 31st of each month, clamped
	c.PaymentMethodConfig.ReferenceStartDate = d("2025-11-30")
	rec, err := h.s.AddConsent(c, d("2026-01-01"), "operator") // cycles 0 and 1 are before billFrom
	require.NoError(t, err)
	h.runUntil(at("2026-02-02", 0, 0)) // cycle 2 (31 Jan) submitted and completed
	rec = mustConsent(t, h, c.ID)
	atts, err := h.db.Attempts(context.Background(), c.ID)
	require.NoError(t, err)
	pol := h.s.Policy()
	pv := pol.PreviewStored(rec, atts, d("2025-11-01"), 5, nil)
	require.Len(t, pv.Cycles, 5)
	assert.Equal(t, StateNotBilled, pv.Cycles[0].State)
	assert.Equal(t, StateNotBilled, pv.Cycles[1].State)
	assert.Equal(t, StateDecided, pv.Cycles[2].State)
	require.Len(t, pv.Cycles[2].Stored, 1)
	assert.Equal(t, storage.AttemptCompleted, pv.Cycles[2].Stored[0].State)
	assert.NotEmpty(t, pv.Cycles[2].Stored[0].PaymentID)
	assert.Equal(t, StatePlanned, pv.Cycles[3].State)

	_, err = h.s.Revoke(c.ID, "moved away", "operator")
	require.NoError(t, err)
	rec = mustConsent(t, h, c.ID)
	pv = pol.PreviewStored(rec, atts, d("2026-01-15"), 3, nil)
	assert.Equal(t, StateDecided, pv.Cycles[0].State, "history stays")
	assert.Equal(t, StateStopped, pv.Cycles[1].State)
	assert.Contains(t, pv.Cycles[1].Reason, "revoked")

	aw := loadExample(t, "weekly-retries.json")
	aw.Status = "CONSENT_AWAITING_AUTHORIZATION"
	arec := h.add(aw)
	pv = pol.PreviewStored(arec, nil, d("2026-02-02"), 2, nil)
	assert.Equal(t, StateAwaiting, pv.Cycles[0].State)
}

// stepBackStore steps the clock back by step right after the scan's first read of
// the due index: the wall clock corrected (an NTP step) by less than the clock
// tolerance while a pass runs, so the pass goes on and decides on readings a little
// behind the one it read the index at.
type stepBackStore struct {
	Store
	clock *clock.Fake
	step  time.Duration
	done  atomic.Bool
}

func (s *stepBackStore) DueBefore(ctx context.Context, t time.Time, limit int) ([]storage.DueItem, error) {
	items, err := s.Store.DueBefore(ctx, t, limit)
	if s.done.CompareAndSwap(false, true) {
		s.clock.Set(s.clock.Now().Add(-s.step))
	}
	return items, err
}

// An original queued at the current settings' instant is due once the pass has read
// it: a decision whose clock reads a few seconds before that instant (the clock
// stepped back within the tolerance) sends it, rather than "moving" it to where it
// is and leaving it a scan. On the window's last day at 23:59 (lead 2) the next scan
// is after midnight, and the cycle would be MISSED.
func TestScanDue_EntryAtItsInstantIsNotEarlyOnAClockReadBehind(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers %d", workers), func(t *testing.T) {
			h := newHarness(t, at("2026-01-08", 12, 0), func(c *Config) {
				c.Policy.LeadDays, c.SubmitHour, c.SubmitMinute, c.Workers = 2, 23, 59, workers
			})
			c := loadExample(t, "monthly-31st.json")
			c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
			rec := h.add(c)
			require.True(t, rec.NextDue.Equal(at("2026-01-08", 23, 59)), "queued for %s", rec.NextDue)

			h.clock.Set(at("2026-01-08", 23, 59)) // the minute's tick
			s, err := New(h.s.cfg, &stepBackStore{Store: h.db, clock: h.clock, step: 2 * time.Second}, h.kl, WithClock(h.clock))
			require.NoError(t, err)
			h.s = s
			res, err := s.Scan(context.Background())
			require.NoError(t, err)
			assert.Equal(t, 1, res.Handled)
			require.Len(t, h.kl.createCalls(), 1, "sent by the scan that read it due")

			h.clock.Set(at("2026-01-09", 0, 0)) // the next tick: the window has closed
			_, err = s.Scan(context.Background())
			require.NoError(t, err)
			assert.Equal(t, storage.AttemptSubmitted, h.attempt(c.ID, 0, 0).State)
			assertExactlyOnce(t, h)
		})
	}
}

// raceStore lets a started scheduler's re-plan (held in ListConsents) run at the
// scan's first read of the due index, and returns that read once the re-plan has
// moved the consent's entry: the scan then decides on an entry the re-plan moved
// after the scan read it, as the two may when they run side by side.
type raceStore struct {
	storage.Store
	release, moved chan struct{}
	read, signal   atomic.Bool
}

func (r *raceStore) ListConsents(ctx context.Context, after string, limit int, st storage.ConsentState) ([]*storage.ConsentRecord, error) {
	select {
	case <-r.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.Store.ListConsents(ctx, after, limit, st)
}

func (r *raceStore) Apply(ctx context.Context, ch *storage.Change) error {
	err := r.Store.Apply(ctx, ch)
	if err == nil && ch.Cursor != nil && len(ch.DelDue) == 1 && len(ch.PutDue) == 1 && r.signal.CompareAndSwap(false, true) {
		close(r.moved) // the re-plan's move
	}
	return err
}

func (r *raceStore) DueBefore(ctx context.Context, t time.Time, limit int) ([]storage.DueItem, error) {
	items, err := r.Store.DueBefore(ctx, t, limit)
	if r.read.CompareAndSwap(false, true) {
		close(r.release)
		select {
		case <-r.moved:
		case <-time.After(10 * time.Second): // a guard, not a wait for work
			return nil, errors.New("the re-plan moved nothing in 10s")
		}
	}
	return items, err
}

// A scan that sends an original the re-plan moved after the scan read it removes the
// entry where it is now, not only the one it read: the copy left behind would be read
// by the scan after the re-plan, which would send an attempt whose outcome is unknown
// again at once instead of after its wait.
func TestScheduler_ReplanBesideAScanLeavesNoStaleEntry(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 8, 0), nil) // lead 3, 09:00
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-11")
	rec := h.add(c)
	require.True(t, rec.NextDue.Equal(at("2026-01-08", 9, 0)), "queued for %s", rec.NextDue)
	h.clock.Set(at("2026-01-08", 9, 30)) // due under lead 3, and under lead 4 (7 Jan 09:00)
	h.kl.inject = func(op, crid string) (error, bool) { return unknownErr("create payment"), false }

	cfg := h.s.cfg
	cfg.RefreshSchedule = "off"
	cfg.Policy.LeadDays = 4
	rs := &raceStore{Store: h.db, release: make(chan struct{}), moved: make(chan struct{})}
	s, err := New(cfg, rs, h.kl, WithClock(h.clock))
	require.NoError(t, err)
	h.s = s
	scans := make(chan ScanResult, 16)
	require.NoError(t, s.Start(context.Background(), kv.Fence{}, "@every 1h", "@every 1h", Hooks{
		AfterScan: func(_ time.Duration, res ScanResult, err error) {
			assert.NoError(t, err)
			scans <- res
		}}))
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	// The catch-up scan and the scan after the re-plan (which moved the entry), in
	// either order: the second waits for the first, but their hooks may not.
	handled := within(t, scans, "a first scan").Handled + within(t, scans, "a second scan").Handled
	require.NoError(t, s.Close(context.Background()))
	assert.Equal(t, 1, handled, "one decision: the catch-up scan's")

	assert.Len(t, h.kl.createCalls(), 1, "sent once: the re-send waits its turn")
	a := h.attempt(c.ID, 0, 0)
	assert.Equal(t, storage.AttemptSubmitting, a.State)
	due, err := h.db.DueBefore(context.Background(), at("2026-12-31", 0, 0), 10)
	require.NoError(t, err)
	require.Len(t, due, 1, "one entry: the re-send's")
	assert.True(t, due[0].At.Equal(a.DueAt), "%s, re-send at %s", due[0].At, a.DueAt)
}
