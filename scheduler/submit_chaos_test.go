package scheduler

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// chaosKlavi answers after a short real delay, so that the pipeline's stages
// interleave with concurrent scans, polls and operator actions.
type chaosKlavi struct {
	*fakeKlavi
	mu  sync.Mutex
	rnd *rand.Rand
}

func (c *chaosKlavi) nap() {
	c.mu.Lock()
	d := time.Duration(c.rnd.Intn(300)) * time.Microsecond
	c.mu.Unlock()
	time.Sleep(d)
}

func (c *chaosKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	c.nap()
	return c.fakeKlavi.CreatePayment(ctx, id, req)
}

func (c *chaosKlavi) RetryPayment(ctx context.Context, id, pid string, req *klavi.RetryPaymentRequest) (*klavi.Payment, error) {
	c.nap()
	return c.fakeKlavi.RetryPayment(ctx, id, pid, req)
}

func (c *chaosKlavi) FindOrder(ctx context.Context, id, crid string) (*klavi.Order, error) {
	c.nap()
	return c.fakeKlavi.FindOrder(ctx, id, crid)
}

func (c *chaosKlavi) GetPayment(ctx context.Context, id, pid string) (*klavi.Payment, error) {
	c.nap()
	return c.fakeKlavi.GetPayment(ctx, id, pid)
}

// watchdog fails the test with every goroutine's stack when done is not closed in d.
func watchdog(t *testing.T, d time.Duration, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(d):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		t.Fatalf("no progress in %s: deadlock (stacks above)", d)
	}
}

// The due scan's pipeline under concurrent scans, polls and operator actions, with
// lost answers and a clock that moves during the passes: nothing deadlocks, every
// payment Klavi created is followed, no cycle is charged twice, and no consent lock
// is left behind.
func TestScanDue_PipelineChaos(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) {
		c.Workers, c.Batch, c.RecordBatch = 8, 3, 2
	})
	ck := &chaosKlavi{fakeKlavi: h.kl, rnd: rand.New(rand.NewSource(1))}
	h.useKlavi(ck)
	var rmu sync.Mutex
	rnd := rand.New(rand.NewSource(2))
	roll := func(p float64) bool { rmu.Lock(); defer rmu.Unlock(); return rnd.Float64() < p }
	h.kl.mu.Lock()
	h.kl.inject = func(op, crid string) (error, bool) {
		if roll(0.15) {
			return unknownErr(op), roll(0.5)
		}
		return nil, false
	}
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if p.Original == "" && len(p.CRID)%3 == 0 {
			return klavi.PaymentRejected, klavi.ReasonNotInformed
		}
		return klavi.PaymentCompleted, ""
	}
	h.kl.mu.Unlock()
	var ids []string
	for i := range 48 {
		name := "monthly-31st.json"
		if i%2 == 1 {
			name = "weekly-retries.json"
		}
		c := loadExample(t, name)
		c.ID = fmt.Sprintf("urn:klavi:chaos-%03d", i)
		if i%4 == 0 {
			c.Billing.RetryMode = consent.Local
		}
		h.add(c)
		ids = append(ids, c.ID)
	}

	end := at("2026-03-15", 0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var scans, polls atomic.Int64
	loop := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				fn()
			}
		}()
	}
	for range 3 {
		loop(func() { _, _ = h.s.Scan(ctx); scans.Add(1) })
	}
	loop(func() { _, _ = h.s.Poll(ctx); polls.Add(1) })
	loop(func() {
		rmu.Lock()
		id := ids[rnd.Intn(len(ids))]
		rmu.Unlock()
		switch {
		case roll(0.002):
			_, _ = h.s.Revoke(id, "chaos", "test")
		case roll(0.3):
			_, _ = h.s.RefreshConsent(ctx, id)
		default:
			time.Sleep(50 * time.Microsecond)
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for h.clock.Now().Before(end) {
			h.clock.Advance(20 * time.Minute)
			time.Sleep(200 * time.Microsecond)
		}
		cancel()
		wg.Wait()
	}()
	watchdog(t, 90*time.Second, done)
	t.Logf("%d scans, %d polls", scans.Load(), polls.Load())

	// Settle what is left, one pass at a time.
	h.kl.mu.Lock()
	h.kl.inject = nil
	h.kl.mu.Unlock()
	h.runUntil(at("2026-05-01", 0, 0))

	assertExactlyOnce(t, h)
	for _, id := range ids {
		assertNoneStuck(t, h, id)
	}
	// Every payment Klavi holds is followed by the attempt of its clientRequestId.
	h.kl.mu.Lock()
	pays := make([]fakePayment, 0, len(h.kl.payments))
	for _, p := range h.kl.payments {
		pays = append(pays, *p)
	}
	h.kl.mu.Unlock()
	for _, p := range pays {
		k, n := cycleOfCRID(t, p.CRID)
		a, ok := h.attemptOK(p.ConsentID, k, n)
		if assert.True(t, ok, "Klavi holds %s, billingd has no attempt", p.CRID) {
			assert.Equal(t, p.ID, a.PaymentID, "Klavi holds %s (%s), billingd's attempt is %s", p.CRID, p.ID, a.State)
		}
	}
	h.s.locks.mu.Lock()
	assert.Empty(t, h.s.locks.locks, "consent locks left held or awaited")
	h.s.locks.mu.Unlock()
}

// lapseStore moves the clock past midnight while the chunk's SUBMITTING attempts
// commit (a chunk decided at 23:59), and fails one attempt read.
type lapseStore struct {
	Store
	h       *harness
	step    time.Duration
	failKey storage.AttemptKey
	failed  atomic.Bool
}

func (l *lapseStore) ApplyAll(ctx context.Context, chs []*storage.Change) (int, error) {
	n, err := l.Store.ApplyAll(ctx, chs)
	l.h.clock.Advance(l.step)
	return n, err
}

func (l *lapseStore) GetAttempt(ctx context.Context, k storage.AttemptKey) (*storage.Attempt, error) {
	if k == l.failKey && l.failed.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("store: transient read error (test)")
	}
	return l.Store.GetAttempt(ctx, k)
}

// A local retry decided at 23:59 of its request day lapses (DROPPED) when its turn
// to go comes after midnight. If planning the next retry fails on a store read,
// the lapse's change must not be recorded half-done: the retry DROPPED with its due
// entry gone and no next retry planned loses the rest of the cycle's retries for
// good, with no error left to retry (handleRetry's own drop returns the error and
// writes nothing).
func TestScanDue_LapseWithFailedRetryPlanKeepsTheEntry(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Workers = 1 })
	c := loadExample(t, "weekly-retries.json") // local, [1,2,3]
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if p.Original == "" {
			return klavi.PaymentRejected, klavi.ReasonNotInformed
		}
		return klavi.PaymentCompleted, ""
	}
	h.add(c)
	var r1 *storage.Attempt
	require.True(t, h.stepUntil(at("2026-03-01", 0, 0), func() bool {
		atts, err := h.db.Attempts(context.Background(), c.ID)
		require.NoError(t, err)
		for _, a := range atts {
			if a.Attempt == 1 && a.State == storage.AttemptPlanned {
				r1 = a
				return true
			}
		}
		return false
	}), "a local retry is planned")
	k := r1.Cycle
	reqDay := r1.Date.AddDays(-1)
	h.clock.Set(reqDay.At(23, 59))

	ls := &lapseStore{Store: h.db, h: h, step: 2 * time.Minute,
		failKey: storage.AttemptKey{ConsentID: c.ID, Cycle: k, Attempt: 2}}
	s, err := New(h.s.cfg, ls, h.kl, WithClock(h.clock))
	require.NoError(t, err)
	res, err := s.Scan(context.Background())
	require.NoError(t, err)
	t.Logf("scan: %+v", res)

	a1 := h.attempt(c.ID, k, 1)
	_, has2 := h.attemptOK(c.ID, k, 2)
	due, err := h.db.DueBefore(context.Background(), at("2100-01-01", 0, 0), 1000)
	require.NoError(t, err)
	var r1Due bool
	for _, e := range due {
		if e.Key == a1.AttemptKey {
			r1Due = true
		}
	}
	assert.Empty(t, h.kl.retryCalls(), "nothing sent after midnight")
	assert.True(t, has2 || r1Due,
		"retry 1 is %s, its due entry is gone and retry 2 was never planned: the cycle's remaining retries are lost", a1.State)
}
