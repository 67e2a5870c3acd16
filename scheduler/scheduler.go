package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// Store is what the scheduler needs of storage. *storage.DB implements it.
type Store interface {
	GetConsent(ctx context.Context, id string) (*storage.ConsentRecord, error)
	GetAttempt(ctx context.Context, k storage.AttemptKey) (*storage.Attempt, error)
	GetConsentAttempt(ctx context.Context, k storage.AttemptKey) (*storage.ConsentRecord, *storage.Attempt, error)
	GetConsentAttempts(ctx context.Context, keys []storage.AttemptKey, out []storage.ConsentAttempt) ([]storage.ConsentAttempt, error)
	ReleaseMapped()
	Amount(ctx context.Context, id string, k int) (klavi.Cents, bool, error)
	DueBefore(ctx context.Context, t time.Time, limit int) ([]storage.DueItem, error)
	PollBefore(ctx context.Context, t time.Time, limit int) ([]storage.PollItem, error)
	Apply(ctx context.Context, ch *storage.Change) error
	ApplyAll(ctx context.Context, chs []*storage.Change) (applied int, err error)
	SetAmount(ctx context.Context, id string, k int, c klavi.Cents) error
	Attempts(ctx context.Context, consentID string) ([]*storage.Attempt, error)
	Attention(ctx context.Context, s storage.AttemptState, limit int) ([]*storage.Attempt, error)
	ListConsents(ctx context.Context, after string, limit int, state storage.ConsentState) ([]*storage.ConsentRecord, error)
	ListConsentTerms(ctx context.Context, after string, limit int, state storage.ConsentState) ([]*storage.ConsentRecord, error)
	Counts(ctx context.Context) (map[storage.ConsentState]int, error)
	HighWater(ctx context.Context) (time.Time, error)
	DueUntil(ctx context.Context, until time.Time) ([]storage.DueEntry, error)
	AttentionSince(ctx context.Context, k storage.AttemptKey, st storage.AttemptState) (time.Time, bool, error)
	EachAttemptBetween(ctx context.Context, from, to cycle.Date, fn func(*storage.Attempt) error) error
	Amounts(ctx context.Context, id string) (map[int]klavi.Cents, error)
}

var _ Store = (*storage.DB)(nil)

// Klavi is what the scheduler needs of the Klavi client. *klavi.Client implements it.
type Klavi interface {
	CreatePayment(ctx context.Context, consentID string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error)
	RetryPayment(ctx context.Context, consentID, paymentID string, req *klavi.RetryPaymentRequest) (*klavi.Payment, error)
	GetPayment(ctx context.Context, consentID, paymentID string) (*klavi.Payment, error)
	// FindOrder reads the consent's orders list (management API) to its end for a
	// clientRequestId; klavi.ErrOrderNotFound when it has none.
	FindOrder(ctx context.Context, consentID, clientRequestID string) (*klavi.Order, error)
	GetConsent(ctx context.Context, consentID string) (*klavi.Consent, error)
	CancelPayment(ctx context.Context, consentID, paymentID string, r *klavi.CancelPaymentRequest) (*klavi.Payment, error)
}

// Config holds the scheduler's settings.
type Config struct {
	Policy Policy
	// SubmitHour and SubmitMinute: the Brasília time of day a submit day's work is due.
	SubmitHour, SubmitMinute int
	// Workers bounds concurrent Klavi calls of one poll, and of each stage of a due
	// scan: the entries being decided, and the requests being sent (default 16).
	Workers int
	// PollMin and PollMax bound the interval between status polls of one payment
	// (defaults 5m and 6h). The interval grows with the time since the payment was
	// submitted, or since its date began.
	PollMin, PollMax time.Duration
	// ResendMin and ResendMax bound the wait before a submission whose outcome is
	// unknown is sent again with the same key (defaults 1m and 30m).
	ResendMin, ResendMax time.Duration
	// RetryableReasons: rejections after which local retries are made
	// (default klavi.DefaultRetryableReasons).
	RetryableReasons []klavi.ReasonCode
	// Batch is how many index entries one scan or poll pass reads at a time; in a due
	// scan, also the most SUBMITTING attempts committed in one transaction (default
	// DefaultBatch). The queues between a due scan's stages hold Workers submissions,
	// the decisions' up to 4 × Workers and the answers' a record batch.
	Batch int
	// RecordBatch bounds how many answers of a due scan are recorded in one
	// transaction (default DefaultRecordBatch): the answers that arrived while the
	// previous transaction committed, up to this many.
	RecordBatch int
	// RecordWindow is how long, at most, the recorder waits for more answers to
	// commit with the first one while sends are still in flight (wall time, not the
	// scheduler's clock: it batches writes, it plans nothing). Default
	// DefaultRecordWindow; negative: commit what has arrived at once. Each answer's
	// consent stays locked until its answer is committed, so this is also the longest
	// an answer waits for its group.
	RecordWindow time.Duration
	// ReconcileEvery is how often an UNCONFIRMED attempt is looked up again in Klavi's
	// orders list (default 1h).
	ReconcileEvery time.Duration
	// RefreshEvery is how often an active consent is read again at Klavi (get
	// consent), so that a revocation made at the bank stops billing (default 24h).
	RefreshEvery time.Duration
	// RefreshBeforeSubmit reads a consent at Klavi before submitting its cycle when
	// its last read is older than RefreshEvery.
	RefreshBeforeSubmit bool
	// RefreshSchedule is the cron spec of the consent refresh (default "@every 5m":
	// consents awaiting authorization are read every pass, active ones every
	// RefreshEvery); "off" disables it.
	RefreshSchedule string
	// Canceller is the document payments are canceled in the name of (cancel payment's
	// cancelledBy); nil: the consent's creditorAccount holder.
	Canceller *klavi.Person
	// ConfirmAfter is how long after a "not found" in Klavi's orders list the list is
	// read again before the not-found is trusted (a FAILED, MISSED or DROPPED that
	// lets a retry under a new key follow): longer than a create can stay in flight
	// at Klavi (client timeout × attempts) plus the list's own lag (default 10m).
	ConfirmAfter time.Duration
	// ClockTolerance is how far the clock may be from Klavi's (and behind the latest
	// instant acted on) before decisions pause (default 5m; negative: no check).
	ClockTolerance time.Duration
	// ClockProbeEvery: Klavi's time is read with a probe request when the last
	// reading is older than this (default 10m).
	ClockProbeEvery time.Duration
	// StuckAfter is how long a submitted payment's status poll may answer 404 or a
	// status billingd does not know before it is looked up and, if still unknown,
	// becomes a STUCK attention item (default 24h).
	StuckAfter time.Duration
	// AmountWarningDays: a variable cycle with no amount set this many days before its
	// submission instant is an AMOUNT_MISSING attention item (MissingAmounts), ahead
	// of being SKIPPED (default 2).
	AmountWarningDays int
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.PollMin <= 0 {
		c.PollMin = 5 * time.Minute
	}
	if c.PollMax < c.PollMin {
		c.PollMax = max(6*time.Hour, c.PollMin)
	}
	if c.ResendMin <= 0 {
		c.ResendMin = time.Minute
	}
	if c.ResendMax < c.ResendMin {
		c.ResendMax = max(30*time.Minute, c.ResendMin)
	}
	if c.RetryableReasons == nil {
		c.RetryableReasons = klavi.DefaultRetryableReasons
	}
	if c.Batch <= 0 {
		c.Batch = DefaultBatch
	}
	if c.RecordBatch <= 0 {
		c.RecordBatch = DefaultRecordBatch
	}
	if c.RecordWindow == 0 {
		c.RecordWindow = DefaultRecordWindow
	}
	if c.ReconcileEvery <= 0 {
		c.ReconcileEvery = time.Hour
	}
	if c.RefreshEvery <= 0 {
		c.RefreshEvery = 24 * time.Hour
	}
	if c.RefreshSchedule == "" {
		c.RefreshSchedule = "@every 5m"
	}
	if c.ConfirmAfter <= 0 {
		c.ConfirmAfter = 10 * time.Minute
	}
	if c.ClockTolerance == 0 {
		c.ClockTolerance = 5 * time.Minute
	}
	if c.ClockProbeEvery <= 0 {
		c.ClockProbeEvery = 10 * time.Minute
	}
	if c.StuckAfter <= 0 {
		c.StuckAfter = 24 * time.Hour
	}
	if c.AmountWarningDays <= 0 {
		c.AmountWarningDays = DefaultAmountWarningDays
	}
}

// Defaults of Config's batching (docs/BENCHMARKS.md, "After the due scan's
// pipeline"): on the 2-CPU machine a sweep of batch 256 to 4000 and record batch 64
// to 1024 stayed within the runs' noise, CPU being the limit. The record window
// ("Issue 13, third pass"): without one the recorder committed about 17 answers at a
// time; BenchmarkScanSubmit's CPU per submission (the sandbox in the process too),
// medians of three interleaved runs, was 174.8 µs at 2 ms, 169.6 at 4 ms, 165.7 at
// 8 ms and 164.3 at 16 ms (199-212 with none). Measured again on the code of
// "Issue 13, tenth pass", 16 interleaved pairs of 20,000: 50 ms against 8 ms, 1.6
// page writes a submission against 2.0, 77 submissions a write transaction against
// 58, CPU per submission -8 %, submissions/s +10 % (at that rate the record batch
// of 256 fills in about 46 ms, so a longer window changes little).
const (
	DefaultBatch        = 1000
	DefaultRecordBatch  = 256
	DefaultRecordWindow = 50 * time.Millisecond
)

// A Scheduler bills consents: the due scan submits what is due, the poll follows
// payments to their final status and plans local retries. Scan and Poll are plain
// functions of (clock, store, client): tests and `billingd simulate` call them
// directly on a virtual clock; Start drives them with cron in the daemon.
type Scheduler struct {
	cfg     Config
	store   Store
	klavi   Klavi
	clock   clock.Clock
	log     *slog.Logger
	observe func(Event)

	retryable map[klavi.ReasonCode]bool
	locks     *consentLocks
	witness   clockWitness
	replanMu  sync.Mutex  // serializes replanFirst
	scanMu    sync.Mutex  // serializes due scans (scanDue)
	replanned atomic.Bool // a re-plan has gone through (replanFirst)
	clockMu   sync.Mutex  // serializes checkClock

	refreshMu       sync.Mutex
	lastActiveSweep time.Time // when Refresh last swept the active consents

	cronMu  sync.Mutex
	running *runner

	// leadership is nil unless replicated (WithLeadership); fence is the fence of
	// the term Start runs in, nil outside one.
	leadership Leadership
	fence      *atomic.Pointer[kv.Fence]
}

// Option configures a Scheduler.
type Option func(*Scheduler)

// WithClock sets the clock (default: the system clock).
func WithClock(c clock.Clock) Option { return func(s *Scheduler) { s.clock = clock.Or(c) } }

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(s *Scheduler) {
		if l != nil {
			s.log = l
		}
	}
}

// WithObserver registers a function called for every Event, synchronously and possibly
// from several goroutines at once (metrics, the simulation's timeline).
func WithObserver(fn func(Event)) Option {
	return func(s *Scheduler) {
		prev := s.observe
		s.observe = func(e Event) { prev(e); fn(e) }
	}
}

// New returns a Scheduler. It starts nothing; call Scan and Poll, or Start.
func New(cfg Config, store Store, kc Klavi, opts ...Option) (*Scheduler, error) {
	cfg.defaults()
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	if cfg.SubmitHour < 0 || cfg.SubmitHour > 23 || cfg.SubmitMinute < 0 || cfg.SubmitMinute > 59 {
		return nil, fmt.Errorf("scheduler: submit time %02d:%02d is not a time of day", cfg.SubmitHour, cfg.SubmitMinute)
	}
	fence := new(atomic.Pointer[kv.Fence])
	s := &Scheduler{
		cfg: cfg, store: fencedStore{Store: store, fence: fence}, klavi: kc, fence: fence,
		clock: clock.Real{}, log: slog.Default(), observe: func(Event) {},
		retryable: map[klavi.ReasonCode]bool{},
		locks:     newConsentLocks(),
	}
	for _, r := range cfg.RetryableReasons {
		s.retryable[r] = true
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Policy returns the planning policy (shared with the preview).
func (s *Scheduler) Policy() Policy { return s.cfg.Policy }

// submitAt is the instant a submit day's work becomes due.
func (s *Scheduler) submitAt(d cycle.Date) time.Time {
	return d.At(s.cfg.SubmitHour, s.cfg.SubmitMinute)
}

// ScanResult counts what one scan did.
type ScanResult struct {
	Handled int `json:"handled"` // due entries acted on
	Errors  int `json:"errors"`  // entries left for the next scan because of a store error
	// Paused: the clock is in doubt (ClockState) and nothing was decided.
	Paused bool `json:"paused,omitempty"`
}

// Scan acts on every entry of the due index at or before now: it submits cycles on
// their submit day (or late, while the window is open), records missed and skipped
// cycles, sends planned local retries, and re-sends submissions whose outcome is
// unknown. At most Config.Workers Klavi calls run at once.
func (s *Scheduler) Scan(ctx context.Context) (ScanResult, error) {
	ctx, err := s.acting(ctx)
	if err != nil {
		return ScanResult{}, err
	}
	return s.scan(ctx, ctx)
}

// scan is Scan with two contexts: once stop is done no new entry is started; req
// is the context of Klavi calls, canceled only when in-flight calls must be abandoned.
func (s *Scheduler) scan(stop, ctx context.Context) (ScanResult, error) {
	if err := s.mayAct(); err != nil {
		return ScanResult{}, err
	}
	if !s.replanAside() {
		s.replanFirst(stop) // clock-free: it moves entries by the settings, not by now
	}
	ok, judged := s.checkClockAt(ctx)
	if !ok && !has(bugMissedOnDoubt) {
		return ScanResult{Paused: true}, nil
	}
	handled, failed, err := s.scanDue(stop, ctx, judged)
	if err != nil {
		err = fmt.Errorf("due scan: %w", err)
	}
	return ScanResult{Handled: handled, Errors: failed}, err
}

// PollResult counts what one poll did.
type PollResult struct {
	Polled int  `json:"polled"`
	Errors int  `json:"errors"`
	Paused bool `json:"paused,omitempty"` // the clock is in doubt: nothing was decided
}

// Poll fetches the status of every payment whose poll entry is at or before now.
func (s *Scheduler) Poll(ctx context.Context) (PollResult, error) {
	ctx, err := s.acting(ctx)
	if err != nil {
		return PollResult{}, err
	}
	return s.poll(ctx, ctx)
}

func (s *Scheduler) poll(stop, ctx context.Context) (PollResult, error) {
	if err := s.mayAct(); err != nil {
		return PollResult{}, err
	}
	ok, judged := s.checkClockAt(ctx)
	if !ok {
		return PollResult{Paused: true}, nil
	}
	polled, failed, err := s.drain(stop, judged, s.store.PollBefore, func(it storage.Entry, now time.Time) error {
		err := s.handlePoll(ctx, it, now)
		if err != nil {
			s.log.Warn("status poll failed", "consent_id", it.Key.ConsentID,
				"cycle", it.Key.Cycle, "attempt", it.Key.Attempt, "err", err)
		}
		return err
	})
	if err != nil {
		err = fmt.Errorf("status poll: %w", err)
	}
	return PollResult{Polled: polled, Errors: failed}, err
}

// drain handles every entry of a time index at or before the instant it starts, each
// once, reading Config.Batch entries at a time, with at most Config.Workers handlers
// at once. Each handler decides on the clock's reading when it runs, not when the
// drain started: a long pass that crosses midnight must not send on D−1 what it
// would have sent on D−2. An entry a handler leaves in place (a store error) is not
// retried in the same drain.
//
// judged is the clock reading checkClock judged (with its monotonic part): the pass
// reads the index up to it, and every entry re-checks the clock against it
// (stillTrusted), so a step after the check is seen before anything is decided.
func (s *Scheduler) drain(stop context.Context, judged time.Time, read func(context.Context, time.Time, int) ([]storage.Entry, error),
	handle func(storage.Entry, time.Time) error) (handled, failed int, err error) {
	passStart := judged
	if !s.stillTrusted(passStart) && !has(bugMissedOnDoubt) {
		return 0, 0, nil
	}
	now := passStart.Round(0)
	var (
		mu   sync.Mutex
		seen = map[storage.AttemptKey]bool{}
	)
	for stop.Err() == nil {
		items, err := read(stop, now, s.cfg.Batch)
		if err != nil {
			return handled, failed, err
		}
		var fresh []storage.Entry
		for _, it := range items {
			if !seen[it.Key] {
				seen[it.Key] = true
				fresh = append(fresh, it)
			}
		}
		if len(fresh) == 0 {
			break
		}
		s.each(stop, len(fresh), func(i int) {
			if !s.stillTrusted(passStart) && !has(bugMissedOnDoubt) {
				return // left for the next pass, which judges the clock again
			}
			err := handle(fresh[i], s.clock.Now())
			mu.Lock()
			defer mu.Unlock()
			handled++
			if err != nil {
				failed++
			}
		})
	}
	return handled, failed, nil
}

// each runs fn(0..n-1) on at most Config.Workers goroutines. It stops starting new
// calls once ctx is done; calls already started finish.
func (s *Scheduler) each(ctx context.Context, n int, fn func(i int)) {
	if n == 1 || s.cfg.Workers == 1 {
		for i := 0; i < n && ctx.Err() == nil; i++ {
			fn(i)
		}
		return
	}
	sem := make(chan struct{}, s.cfg.Workers)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				fn(i)
			}()
			continue
		}
		break
	}
	wg.Wait()
}

// backoff returns min·2^(n-1) capped at max, for n ≥ 1.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// nextPoll is when to fetch the status of a submitted payment next: after an interval
// as long as the time since it was submitted (or since its date began, once it has),
// within [PollMin, PollMax], and never later than the start of its date, when
// settlement can happen.
func (s *Scheduler) nextPoll(a *storage.Attempt, now time.Time) time.Time {
	dateStart := a.Date.At(0, 0)
	base := a.SubmittedAt
	if now.After(dateStart) && dateStart.After(base) {
		base = dateStart
	}
	wait := min(max(now.Sub(base), s.cfg.PollMin), s.cfg.PollMax)
	next := now.Add(wait)
	if now.Before(dateStart) && next.After(dateStart) {
		next = dateStart
	}
	return next
}

// emit tells the observer (metrics, the simulation) what the scheduler did, and adds
// the event to ch, the change that records it, so that the consent's timeline is
// written in the same transaction as the state change. Lookups are stored only when
// they adopt a payment (kind "adopted"): their other outcomes are the events that
// follow them.
func (s *Scheduler) emit(ch *storage.Change, kind EventKind, now time.Time, c *consent.Consent, a *storage.Attempt, reason string) {
	s.emitAs(ch, storage.ActorBillingd, kind, now, c, a, reason)
}

// emitAs is emit for an action done in the name of actor.
func (s *Scheduler) emitAs(ch *storage.Change, actor string, kind EventKind, now time.Time, c *consent.Consent, a *storage.Attempt, reason string) {
	e := Event{Kind: kind, At: now, ConsentID: c.ID, Interval: c.Interval(), Reason: reason}
	if a != nil {
		e.Cycle, e.Attempt, e.Date, e.Amount = a.Cycle, a.Attempt, a.Date, a.Amount
		e.ClientRequestID, e.Status, e.Mode, e.PaymentID = a.ClientRequestID, a.Status, a.Mode, a.PaymentID
		e.Retries = a.PlannedRetries
	}
	s.observe(e)
	if ch == nil {
		return
	}
	stored := string(kind)
	if kind == EventLookup {
		if reason != lookupFound.String()+":"+resAdopt.String() {
			return
		}
		stored = "adopted"
	}
	if a != nil {
		ch.Events = append(ch.Events, storage.AttemptEvent(stored, now, a, actor, reason))
	} else {
		ch.Events = append(ch.Events, storage.ConsentEvent(stored, now, c.ID, actor, reason))
	}
}

// record adds an operator's (or Klavi's) consent-wide event to ch, the change that
// records the action.
func record(ch *storage.Change, kind EventKind, now time.Time, id, actor, reason string) {
	ch.Events = append(ch.Events, storage.ConsentEvent(string(kind), now, id, actor, reason))
}
