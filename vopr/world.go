package vopr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/kv/mem"
)

// clockTolerance is the scheduler's ClockTolerance in every world. Clock steps
// leave billingd's clock either well within it (≤ 0.8×) or well beyond it (≥ 1.2×),
// so whether a decision was allowed is never a matter of a second.
const clockTolerance = 5 * time.Minute

// tail is how long a world runs after its last disturbance (no faults, no crashes,
// no clock steps, no operator): long enough for every cycle to end.
const tail = 30 * 24 * time.Hour

// Options tune Run.
type Options struct {
	// Days overrides the simulated length (default: drawn from the seed, 45..400).
	Days int
	// TraceLines bounds the trace kept in Result.Trace (default 0: all of it).
	TraceLines int
}

// Result is one world's run.
type Result struct {
	Seed uint64
	// Days is the simulated length, the quiet tail included.
	Days int
	// Violation is the first invariant that failed, nil when none did.
	Violation *Violation
	// Trace is what happened, one line per event (the same seed gives the same bytes).
	Trace []byte
	// Counts of what the world did.
	Consents, Posts, Crashes, Faults, ClockSteps, Operator, Passes int
}

// A Violation is an invariant that did not hold.
type Violation struct {
	Invariant string
	Message   string
	At        time.Time // the world's (Klavi's) time
}

func (v *Violation) Error() string {
	return fmt.Sprintf("%s: %s (at %s)", v.Invariant, v.Message, v.At.UTC().Format(time.RFC3339))
}

// stop aborts a run (a violation was recorded); crashed ends billingd's process.
type (
	stop    struct{}
	crashed struct{ where string }
)

// event is something the world does at an instant, outside billingd.
type event struct {
	at   time.Time
	name string
	do   func()
}

type world struct {
	ctx  context.Context
	seed uint64
	r    *rand.Rand
	opts Options

	clk    *clock.Fake   // Klavi's time: the true time of the world
	offset time.Duration // billingd's clock minus the true time
	start  time.Time
	end    time.Time // the last disturbance; the tail follows
	stopAt time.Time
	quiet  bool

	sb          *sandbox.Server
	klaviDownTo time.Time
	eng         *mem.Engine
	reader      *storage.DB // reads committed state, never crashes
	cfg         scheduler.Config
	log         *slog.Logger

	consents    []*consent.Consent
	byID        map[string]*consent.Consent
	scheds      map[string]cycle.Schedule
	preview     map[string]scheduler.Preview
	initialNext map[string]int

	rates        faultRates
	crashPerW    float64
	klaviTimeout time.Duration
	maxCrashes   int
	booting      bool
	events       []event

	// billingd's process: replaced at every crash.
	db  *storage.DB
	sch *scheduler.Scheduler

	// What the invariants remember.
	sent        map[string]klavi.CreatePaymentRequest // clientRequestId → what it first carried
	firstPost   map[string]time.Time                  // clientRequestId → billingd's clock at its first send
	disturbed   time.Time                             // the first global disturbance (zero: none)
	consentDist map[string]time.Time                  // the first disturbance of one consent
	cycleDist   map[storage.AttemptKey]bool           // cycles an operator changed
	amountsSet  map[storage.AttemptKey]klavi.Cents    // amounts the operator set and billingd accepted

	trace     bytes.Buffer
	violation *Violation
	res       Result
}

// Run builds the world of seed and runs it to its end or its first violation.
func Run(ctx context.Context, seed uint64, opts Options) (res *Result) {
	w := newWorld(ctx, seed, opts)
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(stop); !ok {
				w.violation = &Violation{Invariant: "noPanic", Message: fmt.Sprintf("billingd panicked: %v", r), At: w.now()}
				w.tracef("PANIC %v", r)
			}
		}
		res = w.result()
	}()
	w.setup()
	w.loop()
	w.finalChecks()
	return w.result()
}

func (w *world) result() *Result {
	res := w.res
	res.Seed = w.seed
	res.Violation = w.violation
	res.Days = int(w.now().Sub(w.start).Hours() / 24)
	res.Trace = w.trace.Bytes()
	if n := w.opts.TraceLines; n > 0 {
		res.Trace = lastLines(res.Trace, n)
	}
	return &res
}

func lastLines(b []byte, n int) []byte {
	if n <= 0 {
		return b[len(b):]
	}
	i := len(b)
	if i > 0 && b[i-1] == '\n' {
		i--
	}
	for ; n > 0; n-- {
		j := bytes.LastIndexByte(b[:i], '\n')
		if j < 0 {
			return b
		}
		i = j
	}
	return b[i+1:]
}

func newWorld(ctx context.Context, seed uint64, opts Options) *world {
	w := &world{
		ctx: ctx, seed: seed, opts: opts,
		r:           rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		log:         slog.New(slog.DiscardHandler),
		byID:        map[string]*consent.Consent{},
		scheds:      map[string]cycle.Schedule{},
		preview:     map[string]scheduler.Preview{},
		initialNext: map[string]int{},
		sent:        map[string]klavi.CreatePaymentRequest{},
		firstPost:   map[string]time.Time{},
		consentDist: map[string]time.Time{},
		cycleDist:   map[storage.AttemptKey]bool{},
		amountsSet:  map[storage.AttemptKey]klavi.Cents{},
	}
	return w
}

// now is the true time (Klavi's); local is billingd's clock.
func (w *world) now() time.Time   { return w.clk.Now() }
func (w *world) local() time.Time { return w.clk.Now().Add(w.offset) }

// localClock is billingd's clock: the world's time off by the current offset.
type localClock struct{ w *world }

func (c localClock) Now() time.Time { return c.w.local() }

func (w *world) advance(d time.Duration) {
	if d > 0 {
		w.clk.Advance(d)
	}
}

func (w *world) tracef(format string, args ...any) {
	fmt.Fprintf(&w.trace, "%s %s\n", w.now().UTC().Format("2006-01-02T15:04:05Z"), fmt.Sprintf(format, args...))
}

// fail records a violation and ends the run.
func (w *world) fail(invariant, format string, args ...any) {
	if w.violation == nil {
		w.violation = &Violation{Invariant: invariant, Message: fmt.Sprintf(format, args...), At: w.now()}
		w.tracef("VIOLATION %s: %s", invariant, w.violation.Message)
	}
	panic(stop{})
}

// disturb notes that something outside the plan happened, to one consent or ("")
// to all: cycles that end after it are not held to the preview.
func (w *world) disturb(consentID, why string) {
	now := w.now()
	if consentID == "" {
		if w.disturbed.IsZero() {
			w.disturbed = now
		}
		return
	}
	if _, ok := w.consentDist[consentID]; !ok {
		w.consentDist[consentID] = now
	}
}

// setup draws the world and boots billingd.
func (w *world) setup() {
	r := w.r
	from := cycle.MustDate(between(r, 2024, 2031), time.Month(between(r, 1, 12)), between(r, 1, 28))
	if chance(r, 0.25) { // start near a month end
		from = cycle.MustDate(from.Year(), from.Month(), 1).AddMonthsClamped(1).AddDays(-between(r, 1, 3))
	}
	days := w.opts.Days
	if days <= 0 {
		days = pick(r, 45, 90, 180, 365, between(r, 45, 400))
	}
	w.start = from.At(between(r, 0, 23), between(r, 0, 59))
	w.clk = clock.NewFake(w.start)
	w.end = w.start.Add(time.Duration(days) * 24 * time.Hour)
	w.stopAt = w.end.Add(tail)

	w.cfg = genPolicy(r)
	n := pick(r, 1, 2, 3, 4, 6)
	for i := range n {
		c := genConsent(r, i, from, days)
		w.consents = append(w.consents, c)
		w.byID[c.ID] = c
		w.scheds[c.ID] = w.cfg.Policy.Schedule(c)
	}
	w.res.Consents = n

	calm := chance(r, 0.3)
	if !calm {
		x := func(hi float64) float64 { return pick(r, 0, 0, hi/4, hi/2, hi) }
		w.rates = faultRates{
			dropSend: x(0.05), dropReply: x(0.05), err5xx: x(0.08), err429: x(0.05), timeout: x(0.03),
			duplicate: x(0.03), sandboxCrash: x(0.005), crash: x(0.02),
			latency: pick(r, 0, 50*time.Millisecond, 2*time.Second), slow: x(0.05),
		}
		w.crashPerW = pick(r, 0, 0.002, 0.01, 0.03)
	}
	w.klaviTimeout = pick(r, 5*time.Second, 30*time.Second)
	w.maxCrashes = between(r, 3, 40)

	opts := sandbox.Options{
		Clock: w.clk, AccessKey: "vopr", SecretKey: "vopr", Logger: w.log, Seed: r.Uint64(),
		Scenario:   genScenario(r, w.consents),
		IDs:        pick(r, sandbox.IDsUUID, sandbox.IDsURN),
		Amounts:    pick(r, sandbox.AmountsString, sandbox.AmountsNumber),
		StatusCase: pick(r, sandbox.StatusUpper, sandbox.StatusLower, sandbox.StatusSpaced),
		Duplicate:  pick(r, sandbox.Duplicate409, sandbox.DuplicateExisting),
		CheckOrder: pick(r, sandbox.CheckKeyFirst, sandbox.CheckRulesFirst),
		TokenTTL:   pick(r, time.Hour, 24*time.Hour),
	}
	if !calm && chance(r, 0.3) {
		opts.ConflictPermissions = pick(r, 0.01, 0.05)
	}
	w.sb = sandbox.New(opts)
	w.tracef("world seed=%d from=%s days=%d consents=%d lead=%d submit=%02d:%02d mode=%s faults=%+v crash/write=%v sandbox=%s/%s/%s",
		w.seed, from, days, n, w.cfg.Policy.LeadDays, w.cfg.SubmitHour, w.cfg.SubmitMinute, w.cfg.Policy.RetryMode,
		w.rates, w.crashPerW, opts.Duplicate, opts.CheckOrder, opts.IDs)

	w.eng = mem.New(storage.Buckets)
	w.booting = true
	w.boot()
	reader, err := storage.New(w.ctx, w.eng, storage.Options{ReadOnly: true, Logger: w.log})
	if err != nil {
		panic(err)
	}
	w.reader = reader
	for _, c := range w.consents {
		if err := w.sb.AddConsent(&c.CreatedConsent); err != nil {
			panic(fmt.Sprintf("vopr: seed the sandbox with %s: %v", c.ID, err))
		}
		if _, err := w.sch.AddConsent(c, from, "vopr"); err != nil {
			panic(fmt.Sprintf("vopr: add %s: %v", c.ID, err))
		}
		rec, err := w.reader.GetConsent(w.ctx, c.ID)
		if err != nil {
			panic(err)
		}
		w.initialNext[c.ID] = rec.NextCycle
		w.tracef("consent %s %s ref=%s expiry=%s fixed=%v retry=%v strategy=%v mode=%s next=%d",
			c.ID, c.Interval(), c.PaymentMethodConfig.ReferenceStartDate, w.scheds[c.ID].Expiry, fixedOf(c),
			c.RetryAccepted(), c.Billing.AutoRetryStrategy, w.cfg.Policy.RetryModeOf(c), rec.NextCycle)
		if _, fixed := c.FixedAmount(); !fixed { // the operator sets most amounts ahead
			s := w.scheds[c.ID]
			for k := rec.NextCycle; s.Exists(k) && s.Due(k).Before(from.AddDays(days+40)); k++ {
				if chance(r, 0.85) {
					a := validAmount(r, c)
					if err := w.sch.SetAmount(c.ID, k, a, "vopr"); err == nil {
						w.amountsSet[storage.AttemptKey{ConsentID: c.ID, Cycle: k}] = a
					}
				}
			}
		}
		w.preview[c.ID] = w.cfg.Policy.Preview(c, from, days/7+10, func(k int) *klavi.Cents {
			if a, ok := w.amountsSet[storage.AttemptKey{ConsentID: c.ID, Cycle: k}]; ok {
				return &a
			}
			return nil
		})
	}
	w.booting = false
	if !calm {
		w.planEvents(days)
	}
}

func fixedOf(c *consent.Consent) string {
	if a, ok := c.FixedAmount(); ok {
		return a.String()
	}
	return "variable"
}

// validAmount draws an amount within c's limits.
func validAmount(r *rand.Rand, c *consent.Consent) klavi.Cents {
	pmc := c.PaymentMethodConfig
	lo, hi := klavi.Cents(1), klavi.Cents(300_000)
	if pmc.MinimumVariableAmount != nil {
		lo = *pmc.MinimumVariableAmount
	}
	if pmc.MaximumVariableAmount != nil {
		hi = *pmc.MaximumVariableAmount
	}
	if hi < lo {
		return lo
	}
	return lo + klavi.Cents(r.Int64N(int64(hi-lo)+1))
}

// boot starts billingd's process over the committed state.
func (w *world) boot() {
	fe := &faultEngine{Engine: w.eng, w: w}
	db, err := storage.New(w.ctx, fe, storage.Options{Logger: w.log})
	if err != nil {
		panic(fmt.Sprintf("vopr: open the store: %v", err))
	}
	var sch *scheduler.Scheduler
	kc, err := klavi.New(klavi.Config{
		BaseURL: "http://klavi.vopr", AccessKey: "vopr", SecretKey: "vopr",
		Timeout: w.klaviTimeout, MaxAttempts: pick(w.r, 1, 2, 4), BackoffMin: time.Second, BackoffMax: 30 * time.Second,
		RateLimit: 1e9, RateBurst: 1 << 20, TokenRefreshBefore: time.Minute,
	},
		klavi.WithHTTPClient(&http.Client{Transport: network{w}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}),
		klavi.WithClock(localClock{w}), klavi.WithLogger(w.log),
		klavi.WithBackoff(func(n int) time.Duration { return time.Duration(1<<min(n, 5)) * time.Second }),
		klavi.WithSleep(func(ctx context.Context, d time.Duration) error { w.advance(d); return ctx.Err() }),
		klavi.WithHooks(klavi.Hooks{OnServerTime: func(server, local time.Time) {
			if sch != nil {
				sch.ObserveKlaviTime(server, local)
			}
		}}))
	if err != nil {
		panic(err)
	}
	sch, err = scheduler.New(w.cfg, db, kc, scheduler.WithClock(localClock{w}), scheduler.WithLogger(w.log), scheduler.WithObserver(w.onEvent))
	if err != nil {
		panic(err)
	}
	w.db, w.sch = db, sch
}

// guard runs one step of billingd's; a crash in it restarts the process.
func (w *world) guard(name string, fn func() error) {
	defer func() {
		if r := recover(); r != nil {
			c, ok := r.(crashed)
			if !ok {
				panic(r)
			}
			w.res.Crashes++
			w.disturb("", "crash")
			w.tracef("CRASH %s during %s; restart", c.where, name)
			w.boot()
		}
	}()
	if err := fn(); err != nil {
		w.tracef("%s: %v", name, err)
	}
}

// crash ends billingd's process (a panic the guard recovers).
func (w *world) crash(where string) { panic(crashed{where: where}) }

// crashNow draws whether billingd dies at this store write.
func (w *world) crashNow() bool {
	return !w.booting && !w.quiet && w.res.Crashes < w.maxCrashes && w.crashPerW > 0 && chance(w.r, w.crashPerW)
}

// drawFault draws what the wire does to the next request.
func (w *world) drawFault(payment bool) fault {
	if w.quiet || w.booting {
		return faultNone
	}
	fr := w.rates
	u := w.r.Float64()
	for _, x := range []struct {
		f fault
		p float64
	}{
		{faultDropSend, fr.dropSend}, {faultDropReply, fr.dropReply}, {fault5xx, fr.err5xx}, {fault429, fr.err429},
		{faultTimeout, fr.timeout}, {faultDuplicate, fr.duplicate}, {faultSandbox, fr.sandboxCrash},
	} {
		if u < x.p {
			w.res.Faults++
			return x.f
		}
		u -= x.p
	}
	if payment && w.res.Crashes < w.maxCrashes && chance(w.r, fr.crash) {
		w.res.Faults++
		return pick(w.r, faultCrashSend, faultCrashWait)
	}
	return faultNone
}

// latency draws how long a request takes.
func (w *world) latency() time.Duration {
	if w.quiet || w.booting || w.rates.latency == 0 {
		return 0
	}
	d := time.Duration(w.r.Int64N(int64(w.rates.latency)))
	if w.rates.slow > 0 && chance(w.r, w.rates.slow) {
		d += time.Duration(w.r.Int64N(int64(time.Minute)))
	}
	return d
}

func (w *world) klaviDown() bool { return w.now().Before(w.klaviDownTo) }

// sandboxCrash takes Klavi down for a while; it keeps what it committed.
func (w *world) sandboxCrash() {
	d := time.Duration(between(w.r, 1, 120)) * time.Minute
	w.klaviDownTo = w.now().Add(d)
	w.tracef("KLAVI CRASH down for %s", d)
}

// faultEngine ends billingd's process at a chosen store write: before it, in the
// middle of it (the engine's atomic commit makes that "nothing written"), or after
// it is durable.
type faultEngine struct {
	kv.Engine
	w *world
}

var errTorn = errors.New("vopr: the process died inside this write")

func (f *faultEngine) Update(ctx context.Context, wr kv.Write, fn func(kv.Tx) error) error {
	w := f.w
	if !w.crashNow() {
		return f.Engine.Update(ctx, wr, fn)
	}
	switch w.r.IntN(3) {
	case 0:
		w.crash("before a store write")
	case 1:
		_ = f.Engine.Update(ctx, wr, func(tx kv.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return errTorn
		})
		w.crash("inside a store write (not committed)")
	}
	if err := f.Engine.Update(ctx, wr, fn); err != nil {
		return err
	}
	w.crash("after a store write was durable")
	return nil
}

// Close leaves the engine open: it outlives the process.
func (f *faultEngine) Close() error { return nil }

// loop runs the world to its end: billingd's passes at the instants its indexes ask
// for, the world's events between them.
func (w *world) loop() {
	var lastRefresh time.Time
	for w.ctx.Err() == nil {
		now := w.now()
		if !now.Before(w.stopAt) {
			// A last pass at the final instant: work due then (a poll at the very
			// instant Klavi settles) is billingd's to do before the world is judged.
			w.guard("scan", func() error { _, err := w.sch.Scan(w.ctx); return err })
			w.guard("poll", func() error { _, err := w.sch.Poll(w.ctx); return err })
			return
		}
		if !w.quiet && !now.Before(w.end) {
			w.quiet = true
			if w.offset != 0 {
				w.offset = 0
				w.tracef("clock fixed for the tail")
			}
			w.tracef("quiet tail")
		}
		for len(w.events) > 0 && !w.events[0].at.After(now) {
			ev := w.events[0]
			w.events = w.events[1:]
			w.guard(ev.name, func() error { ev.do(); return nil })
		}
		w.res.Passes++
		w.guard("scan", func() error { _, err := w.sch.Scan(w.ctx); return err })
		w.guard("poll", func() error { _, err := w.sch.Poll(w.ctx); return err })
		if now.Sub(lastRefresh) >= w.cfg.RefreshEvery {
			lastRefresh = now
			w.guard("refresh", func() error { _, err := w.sch.Refresh(w.ctx); return err })
		}
		w.clk.Set(w.next())
	}
}

// next is the next instant anything happens.
func (w *world) next() time.Time {
	now := w.now()
	next := now.Add(6 * time.Hour)
	if w.sch.ClockState().Doubt {
		next = now.Add(30 * time.Minute)
	}
	if len(w.events) > 0 && w.events[0].at.Before(next) {
		next = w.events[0].at
	}
	if t, err := w.reader.NextWork(w.ctx, w.local()); err == nil && !t.IsZero() {
		if t = t.Add(-w.offset); t.Before(next) {
			next = t
		}
	}
	if w.stopAt.Before(next) {
		next = w.stopAt
	}
	if !next.After(now) {
		next = now.Add(time.Second)
	}
	return next
}

// planEvents draws the world's events: clock steps and operator actions.
func (w *world) planEvents(days int) {
	r := w.r
	at := func() time.Time {
		return w.start.Add(time.Duration(r.Int64N(int64(time.Duration(days) * 24 * time.Hour))))
	}
	for range between(r, 0, days/60+1) {
		t := at()
		var off time.Duration
		if chance(r, 0.4) {
			off = time.Duration(r.Int64N(int64(clockTolerance*8/5))) - clockTolerance*4/5 // within ±0.8 tolerance
		} else {
			off = clockTolerance*6/5 + time.Duration(r.Int64N(int64(pick(r, time.Hour, 24*time.Hour, 5*24*time.Hour))))
			if chance(r, 0.5) {
				off = -off
			}
		}
		off = off.Round(time.Second)
		back := t.Add(time.Duration(between(r, 10, 3*24*60)) * time.Minute)
		w.events = append(w.events,
			event{at: t, name: "clock step", do: func() { w.step(off) }},
			event{at: back, name: "clock fixed", do: func() { w.step(0) }})
	}
	for range between(r, 0, days/45+1) {
		c := pick(r, w.consents...)
		t := at()
		switch x := r.IntN(10); {
		case x < 5:
			w.events = append(w.events, event{at: t, name: "set amount", do: func() { w.opSetAmount(c) }})
		case x < 8:
			w.events = append(w.events, event{at: t, name: "resolve", do: w.opResolve})
		case x < 9:
			w.events = append(w.events, event{at: t, name: "revoke at the bank", do: func() { w.opBankRevoke(c) }})
		default:
			w.events = append(w.events, event{at: t, name: "revoke", do: func() { w.opRevoke(c) }})
		}
	}
	sort.SliceStable(w.events, func(i, j int) bool { return w.events[i].at.Before(w.events[j].at) })
}

// step sets billingd's clock off the true time by off.
func (w *world) step(off time.Duration) {
	if off == w.offset {
		return
	}
	w.res.ClockSteps++
	w.disturb("", "clock step")
	w.tracef("clock step %s -> %s", w.offset, off)
	w.offset = off
}

func (w *world) opSetAmount(c *consent.Consent) {
	if _, fixed := c.FixedAmount(); fixed {
		return
	}
	rec, err := w.reader.GetConsent(w.ctx, c.ID)
	if err != nil {
		return
	}
	k := rec.NextCycle + between(w.r, 0, 2)
	a := validAmount(w.r, c)
	tooMuch := false
	if hi := c.PaymentMethodConfig.MaximumVariableAmount; hi != nil && chance(w.r, 0.25) {
		a, tooMuch = *hi+klavi.Cents(between(w.r, 1, 1000)), true
	}
	w.res.Operator++
	key := storage.AttemptKey{ConsentID: c.ID, Cycle: k}
	w.cycleDist[key] = true
	err = w.sch.SetAmount(c.ID, k, a, "vopr")
	w.tracef("op set amount %s cycle %d = %s: %v", c.ID, k, a, errOrOK(err))
	if err == nil {
		if tooMuch {
			w.fail("amountWithinCap", "billingd accepted %s for cycle %d of %s, above its maximumVariableAmount %s",
				a, k, c.ID, *c.PaymentMethodConfig.MaximumVariableAmount)
		}
		w.amountsSet[key] = a
	}
}

func (w *world) opResolve() {
	for _, st := range []storage.AttemptState{storage.AttemptMissed, storage.AttemptFailed, storage.AttemptSkipped, storage.AttemptUnconfirmed, storage.AttemptStuck} {
		atts, err := w.reader.Attention(w.ctx, st, 1)
		if err != nil || len(atts) == 0 {
			continue
		}
		w.res.Operator++
		_, err = w.sch.Resolve(atts[0].AttemptKey, "looked at it", "vopr")
		w.tracef("op resolve %s (%s): %v", atts[0].AttemptKey, st, errOrOK(err))
		return
	}
}

func (w *world) opBankRevoke(c *consent.Consent) {
	w.res.Operator++
	w.disturb(c.ID, "revoked at the bank")
	err := w.sb.RevokeConsent(c.ID, klavi.ReasonRevokedUser)
	w.tracef("bank revokes %s: %v", c.ID, errOrOK(err))
}

func (w *world) opRevoke(c *consent.Consent) {
	w.res.Operator++
	w.disturb(c.ID, "revoked by the merchant")
	_ = w.sb.RevokeConsent(c.ID, klavi.ReasonRevokedMerchant)
	_, err := w.sch.Revoke(c.ID, "vopr: the merchant ends the contract", "vopr")
	w.tracef("op revoke %s: %v", c.ID, errOrOK(err))
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// Tail returns the last n lines of a trace.
func Tail(trace []byte, n int) []byte { return lastLines(trace, n) }
