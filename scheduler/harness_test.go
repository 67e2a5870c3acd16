package scheduler

// The one harness of the scheduler's tests: a scheduler on a fake clock, the test
// binary's store (store_test.go: bolt, or etcd) and the fake Klavi (fake_test.go),
// driven by the simulation's loop (internal/fastforward); and the checks every
// test of a run makes.

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

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/fastforward"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// harness runs a scheduler on a fake clock, a real store (openStore: bolt, or etcd
// with BILLINGD_TEST_STORE=etcd) and a fake Klavi.
type harness struct {
	t     *testing.T
	clock *clock.Fake
	db    storage.Store
	kl    *fakeKlavi
	s     *Scheduler

	mu     sync.Mutex
	events []Event
}

func newHarness(t *testing.T, start time.Time, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, clock: clock.NewFake(start), db: openStore(t)}
	h.kl = newFakeKlavi(h.clock)
	cfg := Config{Policy: Policy{LeadDays: 3, RetryMode: consent.Attach, Calendar: cycle.NewCalendar()}, SubmitHour: 9, Workers: 4}
	if mod != nil {
		mod(&cfg)
	}
	var err error
	h.s, err = New(cfg, h.db, h.kl, WithClock(h.clock), WithObserver(func(e Event) {
		h.mu.Lock()
		h.events = append(h.events, e)
		h.mu.Unlock()
	}))
	require.NoError(t, err)
	return h
}

// at is an instant in Brasília.
func at(date string, hour, minute int) time.Time { return d(date).At(hour, minute) }

func (h *harness) add(c *consent.Consent) *storage.ConsentRecord {
	h.t.Helper()
	rec, err := h.s.AddConsent(c, cycle.Date{}, "")
	require.NoError(h.t, err)
	return rec
}

// runner drives the harness's current scheduler (h.s, which a test may replace) on
// its clock, as the simulation drives its own.
func (h *harness) runner() fastforward.Runner {
	return fastforward.Runner{
		Clock:    h.clock,
		Scan:     func(ctx context.Context) error { _, err := h.s.Scan(ctx); return err },
		Poll:     func(ctx context.Context) error { _, err := h.s.Poll(ctx); return err },
		NextWork: h.db.NextWork,
		Pending:  pending(h.db),
	}
}

// runUntil runs scans and polls, jumping the clock from one piece of scheduled work
// to the next, up to end; the clock is left at end.
func (h *harness) runUntil(end time.Time) {
	h.t.Helper()
	require.NoError(h.t, h.runner().Through(context.Background(), end))
}

// stepUntil runs scans and polls like runUntil, but stops as soon as cond holds
// (checked after every scan and every poll), leaving the clock where it is.
func (h *harness) stepUntil(end time.Time, cond func() bool) bool {
	h.t.Helper()
	ok, err := h.runner().Until(context.Background(), end, cond)
	require.NoError(h.t, err)
	return ok
}

func (h *harness) eventsOf(kinds ...EventKind) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		for _, k := range kinds {
			if e.Kind == k {
				out = append(out, e)
			}
		}
	}
	return out
}

func (h *harness) attempt(id string, k, n int) *storage.Attempt {
	h.t.Helper()
	a, err := h.db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: id, Cycle: k, Attempt: n})
	require.NoError(h.t, err)
	return a
}

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

func (h *harness) attemptOK(id string, k, n int) (*storage.Attempt, bool) {
	a, err := h.db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: id, Cycle: k, Attempt: n})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false
	}
	require.NoError(h.t, err)
	return a, true
}

func mustConsent(t *testing.T, h *harness, id string) *storage.ConsentRecord {
	t.Helper()
	rec, err := h.db.GetConsent(context.Background(), id)
	require.NoError(t, err)
	return rec
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

// pending is fastforward.Runner.Pending on db: whether a due entry is at or before now.
func pending(db storage.Store) func(context.Context, time.Time) (bool, error) {
	return func(ctx context.Context, now time.Time) (bool, error) {
		due, err := db.DueBefore(ctx, now, 1)
		return len(due) > 0, err
	}
}
