package scheduler

// Hazards of reconciliation and the clock witness: each test builds a schedule of
// answers, lookups and clock steps that could lose a cycle or charge one twice, and
// its comment says what would go wrong and why the code does not let it.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// settleAll settles every payment Klavi holds whose date has come, as Klavi does
// whether or not billingd ever asks about it.
func (f *fakeKlavi) settleAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.payments {
		f.settle(p)
	}
}

// Hazard (double charge). A 409 after a lost attempt (or on a first send) may mean
// the key is taken by a create still in flight at Klavi, which the orders list does
// not show yet (it proves absence only as of the read). Were one "not found" taken
// as a refusal, a local retry's FAILED would plan the next retry under a new key and
// two retries of one cycle would settle. The client reports such a 409 as outcome
// unknown, and resolve trusts a not-found only on a second look ConfirmAfter later.
func TestHazard_ConflictAfterLostAttemptThenListNotYetShowing(t *testing.T) {
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	c := localWeekly(t, h, nil) // original (5 Mar) rejected; retries 6, 9, 10 Mar settle
	retry1 := consent.ClientRequestID(c.ID, 0, 1)
	h.useKlavi(&retryFaultKlavi{fakeKlavi: h.kl, fault: func(crid string) (error, bool) {
		if crid == retry1 {
			// The client's first attempt reached Klavi and its answer was lost; the
			// client re-sent the same body within the call and Klavi answered 409.
			return &klavi.APIError{StatusCode: 409, Code: "Conflict", Message: "clientRequestId already used", Endpoint: "retry_payment"}, true
		}
		return nil, false
	}})
	looked := 0
	h.kl.findErr = func(crid string) error {
		if crid == retry1 {
			if looked++; looked == 1 { // the create is not in the list yet
				return fmt.Errorf("find order: %w", klavi.ErrOrderNotFound)
			}
		}
		return nil
	}
	h.add(c)
	h.runUntil(at("2026-03-12", 0, 0))
	h.kl.settleAll()

	a := h.attempt(c.ID, 0, 1)
	assert.NotEqual(t, storage.AttemptFailed, a.State, "retry 1 recorded FAILED while Klavi holds it: %s", a.Reason)
	_, second := h.attemptOK(c.ID, 0, 2)
	assert.False(t, second, "a second retry under a new key was planned while retry 1 exists at Klavi")
	assertExactlyOnce(t, h)
}

// wallStep returns t with its wall-clock reading moved by d (whole seconds) and its
// monotonic reading kept: what time.Now() returns in a running process after the
// system clock is stepped (NTP, a restored VM's RTC).
func wallStep(t time.Time, d time.Duration) time.Time {
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	l := (*layout)(unsafe.Pointer(&t))
	if l.wall&(1<<63) == 0 {
		return t.Add(d) // no monotonic reading
	}
	l.wall += uint64(d/time.Second) << 30
	return t
}

// steppedClock is the system clock with a wall-clock step applied.
type steppedClock struct {
	mu   sync.Mutex
	step time.Duration
}

func (c *steppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return wallStep(time.Now(), c.step)
}

func (c *steppedClock) set(d time.Duration) {
	c.mu.Lock()
	c.step = d
	c.mu.Unlock()
}

// onOffProber reports Klavi's (true) time on each probe, as the client's Date-header
// hook does (the local reading carries the monotonic clock, as the transport's
// start.Add(elapsed/2) does), or fails before any answer.
type onOffProber struct {
	*fakeKlavi
	sched *Scheduler
	truth func() time.Time
	mu    sync.Mutex
	fail  error
}

func (p *onOffProber) Probe(context.Context) error {
	p.mu.Lock()
	err := p.fail
	p.mu.Unlock()
	if err != nil {
		return err
	}
	p.sched.ObserveKlaviTime(p.truth(), p.clock.Now())
	return nil
}

// Hazard (lost cycles). Go's times carry a monotonic reading, and a difference of
// two of them measures real time elapsed, blind to a step of the wall clock. After a
// 15-day step, a probe that fails (Klavi unreachable; a TLS handshake refused because
// certificates look expired to the stepped clock) leaves the old reading, which would
// look seconds old: decisions would go on 15 days ahead and the latest instant acted
// on would be stored 15 days ahead. The wall and monotonic elapsed times are compared
// (stepSince), and a step with no Klavi reading since is doubt.
func TestHazard_ClockWallStepWhileKlaviUnreadable(t *testing.T) {
	db := openStore(t)
	clk := &steppedClock{}
	p := &onOffProber{fakeKlavi: newFakeKlavi(clk), truth: time.Now}
	s, err := New(Config{Policy: Policy{LeadDays: 3, RetryMode: consent.Attach}, SubmitHour: 9}, db, p, WithClock(clk))
	require.NoError(t, err)
	p.sched = s
	ctx := context.Background()

	require.True(t, s.checkClock(ctx), "clocks agree: %s", s.ClockState().Reason)
	before := time.Now()

	clk.set(15 * 24 * time.Hour)
	p.mu.Lock()
	p.fail = errors.New("list apps: tls: failed to verify certificate: x509: certificate has expired or is not yet valid")
	p.mu.Unlock()

	assert.False(t, s.checkClock(ctx), "a 15-day step of the wall clock, Klavi unreadable, must be doubted")
	hw, err := db.HighWater(ctx)
	require.NoError(t, err)
	assert.True(t, hw.Before(before.Add(time.Hour)), "latest instant acted on stored %s ahead while the clock is wrong", hw.Sub(before).Round(time.Hour))
}

// jumpingKlavi steps the local clock forward during the first create, as an NTP
// step in the middle of a long scan would; the answer's Date header (Klavi's true
// time) reaches the scheduler through ObserveKlaviTime, as in production.
type jumpingKlavi struct {
	*probingKlavi
	h      *harness
	jumped bool
}

func (j *jumpingKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	p, err := j.probingKlavi.CreatePayment(ctx, id, req)
	if !j.jumped {
		j.jumped = true
		truth := j.h.clock.Now()
		j.h.clock.Set(truth.Add(15 * 24 * time.Hour))
		j.probingKlavi.mu.Lock()
		j.offset = -15 * 24 * time.Hour
		j.probingKlavi.mu.Unlock()
		j.sched.ObserveKlaviTime(truth, j.h.clock.Now())
	}
	return p, err
}

// Hazard (lost cycle). A step during a long scan, were the clock judged only at the
// start of the pass, would make the rest of the scan write MISSED for cycles whose
// window is open, although the answer that arrived meanwhile already says the clock
// is 15 days off. Each entry checks the clock again (stillTrusted) before it is
// decided.
func TestHazard_ClockStepsDuringAScan(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Workers = 1 })
	pk := &probingKlavi{fakeKlavi: h.kl}
	jk := &jumpingKlavi{probingKlavi: pk, h: h}
	h.useKlavi(jk)
	pk.sched = h.s
	var ids []string
	for i := range 2 {
		c := loadExample(t, "monthly-31st.json")
		c.ID = fmt.Sprintf("%s-%d", c.ID, i)
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10") // submitted on 7 Jan
		h.add(c)
		ids = append(ids, c.ID)
	}
	h.runUntil(at("2026-01-02", 8, 0))
	h.clock.Set(at("2026-01-07", 9, 0))
	_, err := h.s.Scan(context.Background())
	require.NoError(t, err)

	for _, id := range ids {
		if a, ok := h.attemptOK(id, 0, 0); ok {
			assert.NotEqual(t, storage.AttemptMissed, a.State, "%s: MISSED written on a clock 15 days ahead of Klavi's", id)
		}
	}
	assert.Empty(t, h.eventsOf(EventMissed))
}

// Hazard (lost retries). Reconcile (the start-up pass, `billingd payments
// reconcile`, POST /v1/reconcile) plans local retries from "today" when the orders
// list shows a STUCK payment REJECTED: with the clock 15 days ahead every retry's
// request day would look past and be DROPPED. Reconcile checks the clock first.
func TestHazard_ReconcileWhileClockInDoubt(t *testing.T) {
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	pk := &probingKlavi{fakeKlavi: h.kl}
	h.useKlavi(pk)
	pk.sched = h.s
	c := localWeekly(t, h, nil) // original 5 Mar rejected; retries 6, 9, 10 Mar
	h.kl.listReasons = true     // the list tells the rejection's reason (see finding 6 when it does not)
	h.kl.getErr = func(string) error { return &klavi.APIError{StatusCode: 404, Endpoint: "get_payment"} }
	h.kl.findErr = func(string) error { return fmt.Errorf("find: %w", klavi.ErrOrderNotFound) }
	h.add(c)
	h.runUntil(at("2026-03-05", 7, 0))
	require.Equal(t, storage.AttemptStuck, h.attempt(c.ID, 0, 0).State)

	// The clock steps 15 days ahead; Klavi's time says 5 Mar. The list answers again.
	pk.mu.Lock()
	pk.offset = -15 * 24 * time.Hour
	pk.mu.Unlock()
	h.clock.Set(at("2026-03-20", 7, 0))
	h.kl.getErr, h.kl.findErr = nil, nil
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	require.True(t, res.Paused, "the scan sees the doubt")

	_, err = h.s.Reconcile(context.Background(), "")
	require.NoError(t, err)
	for n := 1; n <= 3; n++ {
		if a, ok := h.attemptOK(c.ID, 0, n); ok {
			assert.NotEqual(t, storage.AttemptDropped, a.State, "retry %d DROPPED while the clock is in doubt: %s", n, a.Reason)
		}
	}
	assert.Empty(t, h.eventsOf(EventRetryDropped))
}

// Hazard (lost cycle). The operator's Authorize (and AddConsent) bill "from today":
// on a clock 15 days ahead, the payer's first cycle would fall before BillFrom and
// never be billed. Both check the clock first and refuse while it is in doubt.
func TestHazard_AuthorizeWhileClockInDoubt(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	pk := &probingKlavi{fakeKlavi: h.kl}
	h.useKlavi(pk)
	pk.sched = h.s
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	c.Status = klavi.ConsentAwaitingAuthorization
	h.add(c)
	h.runUntil(at("2026-01-02", 8, 0))

	pk.mu.Lock()
	pk.offset = -15 * 24 * time.Hour
	pk.mu.Unlock()
	h.clock.Set(at("2026-01-17", 8, 0))
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	require.True(t, res.Paused)
	_, err = h.s.Authorize(c.ID, "operator") // the payer authorized on (real) 2 Jan
	if err != nil {
		return // refusing while in doubt is a fix
	}

	pk.mu.Lock()
	pk.offset = 0
	pk.mu.Unlock()
	h.clock.Set(at("2026-01-02", 8, 5))
	h.runUntil(at("2026-01-12", 0, 0))
	a, ok := h.attemptOK(c.ID, 0, 0)
	require.True(t, ok, "cycle 0 (due 10 Jan, authorized 2 Jan) never billed: BillFrom %s", mustConsent(t, h, c.ID).BillFrom)
	assert.Equal(t, storage.AttemptCompleted, a.State)
}

// Hazard (lost retries). Section 7's orders list gives each payment's status, not
// its statusReason. A STUCK payment (its GET answers 404) whose status is taken from
// the list as PAYMENT_REJECTED has no reason code; were an empty reason taken as not
// retryable, the local retries the preview shows would never be made.
func TestHazard_StuckRejectedFromListWithoutReason(t *testing.T) {
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	c := localWeekly(t, h, nil) // original 5 Mar rejected NOT_INFORMED (retryable); retries 6, 9, 10 Mar
	h.kl.getErr = func(string) error { return &klavi.APIError{StatusCode: 404, Endpoint: "get_payment"} }
	h.add(c)
	h.runUntil(at("2026-03-12", 0, 0))
	a := h.attempt(c.ID, 0, 0)
	require.Equal(t, storage.AttemptRejected, a.State, "status told by the orders list")
	_, planned := h.attemptOK(c.ID, 0, 1)
	assert.True(t, planned, "a rejection read from the orders list (no statusReason) plans no local retry; reason %q", a.Reason)
}

// Hazard (lost cycle). A consent stored awaiting authorization with no billFrom
// (`consent create`, or `consent add` of an awaiting consent) takes today's date as
// its billFrom, and its authorization keeps a billFrom later than its own today: on
// a clock 15 days ahead at the add, the payer's first cycle would never be billed.
// The add checks the clock first and refuses while it is in doubt.
func TestHazard_AddAwaitingWhileClockInDoubt(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	pk := &probingKlavi{fakeKlavi: h.kl}
	h.useKlavi(pk)
	pk.sched = h.s
	h.runUntil(at("2026-01-02", 8, 0))

	pk.mu.Lock()
	pk.offset = -15 * 24 * time.Hour
	pk.mu.Unlock()
	h.clock.Set(at("2026-01-17", 8, 0))
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	c.Status = klavi.ConsentAwaitingAuthorization
	_, err := h.s.AddCreatedConsent(c, "https://klavi.example/authorize/x", "operator")
	if err != nil {
		require.ErrorIs(t, err, ErrConflict)
		assert.Contains(t, err.Error(), "clock in doubt")
		return // refusing while in doubt is the fix
	}

	pk.mu.Lock()
	pk.offset = 0
	pk.mu.Unlock()
	h.clock.Set(at("2026-01-02", 8, 5))
	_, err = h.s.Authorize(c.ID, "operator") // the payer authorized on (real) 2 Jan
	require.NoError(t, err)
	h.runUntil(at("2026-01-12", 0, 0))
	_, ok := h.attemptOK(c.ID, 0, 0)
	assert.True(t, ok, "cycle 0 (due 10 Jan, authorized 2 Jan) never billed: BillFrom %s", mustConsent(t, h, c.ID).BillFrom)
}
