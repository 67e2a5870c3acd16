package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// Sentinel errors of the operator calls. Callers branch with errors.Is.
var (
	// ErrUnknownEndpoint: no endpoint of that name is configured.
	ErrUnknownEndpoint = errors.New("no such webhook endpoint")
	// ErrInvalid: the request cannot be done as asked (a cursor ahead of the
	// endpoint, an item that is not dead-lettered).
	ErrInvalid = errors.New("invalid webhook request")
	// ErrRunning: Start was called on a running dispatcher.
	ErrRunning = errors.New("webhook dispatcher already running")
)

// Delivery outcomes, the label of billingd_webhook_deliveries_total.
const (
	OutcomeDelivered = "delivered" // a 2xx answer
	OutcomeFailed    = "failed"    // anything else; the event is retried
	OutcomeDead      = "dead"      // failed past MaxAge: dead-lettered
)

// Defaults of Config's zero fields.
const (
	DefaultMaxAge     = 72 * time.Hour
	DefaultBackoffMin = 10 * time.Second
	DefaultBackoffMax = time.Hour
	DefaultTimeout    = 10 * time.Second
	DefaultWorkers    = 8
	DefaultInterval   = time.Second
	DefaultBatch      = 256
)

// NameRE is what an endpoint's name must match (it is a metric label and a key).
var NameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// An Endpoint is a merchant's receiver.
type Endpoint struct {
	Name   string
	URL    string
	Secret string
	// Events are the event kinds it receives; empty: all of them.
	Events []string
}

// wants reports whether the endpoint receives events of kind.
func (e *Endpoint) wants(kind string) bool {
	return len(e.Events) == 0 || slices.Contains(e.Events, kind)
}

// Config tunes a Dispatcher; zero durations and counts take the defaults.
type Config struct {
	Endpoints []Endpoint
	// MaxAge is how long an event is retried before it is dead-lettered.
	MaxAge time.Duration
	// BackoffMin and BackoffMax bound the wait between two tries of an event.
	BackoffMin, BackoffMax time.Duration
	// Timeout bounds one delivery (connect, send, answer).
	Timeout time.Duration
	// Workers is how many deliveries to one endpoint may be in flight at once
	// (each to a different consent: one consent's events go one at a time).
	Workers int
	// Interval is how often the running dispatcher publishes and delivers.
	Interval time.Duration
	// Batch is how many feed events one pass reads.
	Batch int
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MaxAge, DefaultMaxAge)
	def(&c.BackoffMin, DefaultBackoffMin)
	def(&c.BackoffMax, DefaultBackoffMax)
	def(&c.Timeout, DefaultTimeout)
	def(&c.Interval, DefaultInterval)
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Batch <= 0 {
		c.Batch = DefaultBatch
	}
	return c
}

// Validate names the first thing of c that cannot work.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for i, e := range c.Endpoints {
		if !NameRE.MatchString(e.Name) {
			return fmt.Errorf("endpoint %d: name %q: want %s", i, e.Name, NameRE)
		}
		if seen[e.Name] {
			return fmt.Errorf("endpoint %d: name %q is used twice", i, e.Name)
		}
		seen[e.Name] = true
		if u, err := url.Parse(e.URL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("endpoint %s: url %q: want an absolute http(s) URL", e.Name, redact.URL(e.URL))
		}
		if len(e.Secret) < 16 {
			return fmt.Errorf("endpoint %s: secret: want at least 16 characters", e.Name)
		}
	}
	return nil
}

// Hooks tell an observer (metrics) what the dispatcher did. Nil hooks are skipped.
type Hooks struct {
	// OnDelivery hears every delivery: the endpoint, the outcome (OutcomeDelivered,
	// OutcomeFailed, OutcomeDead) and how long the request took.
	OnDelivery func(endpoint, outcome string, took time.Duration)
}

// Store is what the dispatcher reads and writes (storage.Store has it all).
type Store interface {
	Engine() kv.Engine
	Publish(ctx context.Context, fence kv.Fence, limit int) (int, error)
	Feed(ctx context.Context, after uint64, limit int) ([]storage.FeedEvent, error)
	FeedAt(ctx context.Context, positions []uint64) ([]storage.FeedEvent, error)
	FeedPosition(ctx context.Context, id string) (uint64, error)
	FeedStatus(ctx context.Context) (storage.FeedStatus, error)
	ApplyWebhook(ctx context.Context, ch *storage.WebhookChange) error
	WebhookCursor(ctx context.Context, ep string) (uint64, bool, error)
	StartWebhook(ctx context.Context, fence kv.Fence, ep string) (uint64, error)
	WebhookBacklog(ctx context.Context, ep, consentID string) (*storage.WebhookBacklog, error)
	WebhookBacklogs(ctx context.Context, ep string) ([]*storage.WebhookBacklog, error)
	WebhookDue(ctx context.Context, ep string, now time.Time, limit int) ([]*storage.WebhookBacklog, error)
	WebhookDeadLetters(ctx context.Context, after string, limit int) ([]*storage.WebhookBacklog, string, error)
}

var _ Store = (storage.Store)(nil)

// Dispatcher publishes the store's outbox into the feed and delivers the feed to
// the configured endpoints. Build it with New; Start runs it (on the leader only,
// with the leadership's fence), Close stops it. The operator calls (Status, Replay,
// Resolve, DeadLetters, Events) work on every replica, running or not.
type Dispatcher struct {
	cfg    Config
	store  Store
	clock  clock.Clock
	log    *slog.Logger
	client *http.Client
	hooks  Hooks
	randN  func(n int64) int64
	eps    map[string]*Endpoint

	mu      sync.Mutex
	fence   kv.Fence
	cancel  context.CancelFunc
	done    chan struct{}
	running bool
}

// An Option sets an optional dependency of the Dispatcher.
type Option func(*Dispatcher)

// WithClock sets the clock of signatures, retries and ages (nil: the real clock).
func WithClock(c clock.Clock) Option { return func(d *Dispatcher) { d.clock = clock.Or(c) } }

// WithLogger sets the logger (nil: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(d *Dispatcher) {
		if l != nil {
			d.log = l
		}
	}
}

// WithHTTPClient sets the client of deliveries (nil: one with Config.Timeout that
// follows no redirect).
func WithHTTPClient(c *http.Client) Option {
	return func(d *Dispatcher) {
		if c != nil {
			d.client = c
		}
	}
}

// WithHooks sets the observer's hooks.
func WithHooks(h Hooks) Option { return func(d *Dispatcher) { d.hooks = h } }

// WithRand sets the jitter's source: a number in [0, n) (nil: math/rand/v2).
func WithRand(fn func(n int64) int64) Option {
	return func(d *Dispatcher) {
		if fn != nil {
			d.randN = fn
		}
	}
}

// New returns a dispatcher of cfg over store. It fails when cfg does not validate.
func New(cfg Config, store Store, opts ...Option) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	cfg = cfg.withDefaults()
	d := &Dispatcher{cfg: cfg, store: store, clock: clock.Real{}, log: slog.Default(), randN: rand.Int64N, eps: map[string]*Endpoint{}}
	for i := range cfg.Endpoints {
		d.eps[cfg.Endpoints[i].Name] = &cfg.Endpoints[i]
	}
	d.client = &http.Client{
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, o := range opts {
		o(d)
	}
	return d, nil
}

// Endpoints returns the configured endpoints' names, in config order.
func (d *Dispatcher) Endpoints() []string {
	out := make([]string, len(d.cfg.Endpoints))
	for i, e := range d.cfg.Endpoints {
		out[i] = e.Name
	}
	return out
}

// Start runs the dispatcher until ctx ends or Close: every Interval it publishes
// the outbox and delivers, its writes fenced by fence (the leadership's; zero for
// one process). ErrRunning when it already runs.
func (d *Dispatcher) Start(ctx context.Context, fence kv.Fence) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running {
		return ErrRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	d.fence, d.cancel, d.done, d.running = fence, cancel, make(chan struct{}), true
	go func(done chan struct{}) {
		defer close(done)
		t := time.NewTicker(d.cfg.Interval)
		defer t.Stop()
		for {
			if err := d.Tick(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("webhooks: pass failed", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}(d.done)
	d.log.Info("webhooks: dispatcher started", "endpoints", len(d.cfg.Endpoints), "fence_rev", fence.Rev)
	return nil
}

// Close stops a running dispatcher and waits for it (deliveries in flight are
// abandoned when ctx ends first: they are delivered again later, same id). It
// does nothing on one that does not run.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	cancel, done, running := d.cancel, d.done, d.running
	d.running = false
	d.mu.Unlock()
	if !running {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("webhooks: close: %w", ctx.Err())
	}
}

func (d *Dispatcher) currentFence() kv.Fence {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fence
}

// batch is how many events one pass handles: within the engine's operation limit
// (each may park a backlog: three operations, and the cursor one).
func (d *Dispatcher) batch() int {
	n := d.cfg.Batch
	if m := d.store.Engine().MaxOps(); m > 0 {
		n = min(n, max((m-1)/4, 1))
	}
	return n
}

// Tick is one pass: it publishes the outbox, then, for every endpoint at once,
// delivers new feed events and retries the backlogs that are due. The running
// dispatcher calls it every Interval; tests call it with a fake clock.
func (d *Dispatcher) Tick(ctx context.Context) error {
	fence := d.currentFence()
	// An endpoint seen for the first time starts at the feed's head, before the
	// outbox is published: the events waiting there are its first.
	for _, ep := range d.cfg.Endpoints {
		if _, ok, err := d.store.WebhookCursor(ctx, ep.Name); err != nil {
			return err
		} else if !ok {
			cur, err := d.store.StartWebhook(ctx, fence, ep.Name)
			if err != nil {
				return err
			}
			d.log.Info("webhooks: new endpoint starts at the feed's head", "endpoint", ep.Name, "position", cur)
		}
	}
	for range 100 {
		n, err := d.store.Publish(ctx, fence, 1000)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for i := range d.cfg.Endpoints {
		ep := &d.cfg.Endpoints[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.endpointPass(ctx, fence, ep); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("endpoint %s: %w", ep.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (d *Dispatcher) endpointPass(ctx context.Context, fence kv.Fence, ep *Endpoint) error {
	for range 50 {
		more, err := d.scan(ctx, fence, ep)
		if err != nil {
			return err
		}
		if !more || ctx.Err() != nil {
			break
		}
	}
	return d.retryDue(ctx, fence, ep)
}

// scan delivers the feed events after the endpoint's cursor, one batch: each
// consent's events in order, consents in parallel. A consent that has a backlog
// gets its new events parked behind it; a delivery that fails starts a backlog.
// The cursor moves past the batch in the transaction that writes the backlogs.
// It reports whether a full batch was read (more may follow).
func (d *Dispatcher) scan(ctx context.Context, fence kv.Fence, ep *Endpoint) (bool, error) {
	cur, ok, err := d.store.WebhookCursor(ctx, ep.Name)
	if err != nil || !ok {
		return false, err
	}
	batch := d.batch()
	evs, err := d.store.Feed(ctx, cur, batch)
	if err != nil || len(evs) == 0 {
		return false, err
	}
	backlogs, err := d.store.WebhookBacklogs(ctx, ep.Name)
	if err != nil {
		return false, err
	}
	parked := make(map[string]*storage.WebhookBacklog, len(backlogs))
	for _, b := range backlogs {
		parked[b.ConsentID] = b
	}
	var (
		order  []string
		groups = map[string][]storage.FeedEvent{}
	)
	for _, fe := range evs {
		if !ep.wants(fe.Event.Kind) {
			continue
		}
		id := fe.Event.ConsentID
		if _, ok := groups[id]; !ok {
			order = append(order, id)
		}
		groups[id] = append(groups[id], fe)
	}
	var (
		mu   sync.Mutex
		puts []*storage.WebhookBacklog
		wg   sync.WaitGroup
		sem  = make(chan struct{}, d.cfg.Workers)
	)
	for _, id := range order {
		list := groups[id]
		if b := parked[id]; b != nil {
			last := uint64(0)
			if n := len(b.Parked); n > 0 {
				last = b.Parked[n-1]
			}
			for _, fe := range list {
				if fe.Pos > last {
					b.Parked = append(b.Parked, fe.Pos)
				}
			}
			if len(b.Parked) > 0 && b.Since.IsZero() {
				b.Since = list[0].Event.At
			}
			puts = append(puts, b)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			for i, fe := range list {
				if err := d.deliver(ctx, ep, fe); err != nil {
					now := d.clock.Now()
					b := &storage.WebhookBacklog{Endpoint: ep.Name, ConsentID: id, Since: fe.Event.At,
						Attempts: 1, FirstFailure: now, NextTry: now.Add(d.backoff(1)), LastError: err.Error()}
					for _, p := range list[i:] {
						b.Parked = append(b.Parked, p.Pos)
					}
					d.log.Info("webhooks: delivery failed; the consent's events wait", "endpoint", ep.Name, "consent_id", id,
						"event_id", fe.ID, "position", fe.Pos, "waiting", len(b.Parked), "retry_at", b.NextTry, "err", err)
					mu.Lock()
					puts = append(puts, b)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return false, err // the batch is delivered again by the next pass
	}
	err = d.store.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: ep.Name, MoveCursor: true, From: cur, To: evs[len(evs)-1].Pos, Put: puts, Fence: fence})
	if err != nil {
		return false, err
	}
	return len(evs) == batch, nil
}

// retryDue tries again the backlogs whose time has come, each consent's waiting
// events in order until one fails.
func (d *Dispatcher) retryDue(ctx context.Context, fence kv.Fence, ep *Endpoint) error {
	due, err := d.store.WebhookDue(ctx, ep.Name, d.clock.Now(), d.batch())
	if err != nil || len(due) == 0 {
		return err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, d.cfg.Workers)
	)
	for _, b := range due {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := d.retry(ctx, fence, ep, b); err != nil && !errors.Is(err, storage.ErrConflict) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (d *Dispatcher) retry(ctx context.Context, fence kv.Fence, ep *Endpoint, b *storage.WebhookBacklog) error {
	evs, err := d.store.FeedAt(ctx, b.Parked)
	if err != nil {
		return err
	}
	i := 0
	var failed error
	for ; i < len(evs); i++ {
		if failed = d.deliver(ctx, ep, evs[i]); failed != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return nil // stopping: delivered events are delivered again later
	}
	ch := &storage.WebhookChange{Endpoint: ep.Name, Fence: fence}
	if i == len(evs) {
		ch.Del = []*storage.WebhookBacklog{b}
		d.log.Info("webhooks: consent caught up", "endpoint", ep.Name, "consent_id", b.ConsentID, "delivered", i)
		return d.store.ApplyWebhook(ctx, ch)
	}
	now := d.clock.Now()
	if i > 0 { // a new first event: its own failures count from now
		b.Attempts, b.FirstFailure = 0, now
	}
	b.Parked, b.Since = b.Parked[i:], evs[i].Event.At
	b.Attempts++
	if b.FirstFailure.IsZero() {
		b.FirstFailure = now
	}
	b.LastError = failed.Error()
	if now.Sub(b.FirstFailure) >= d.cfg.MaxAge {
		b.Dead = true
		d.observe(ep.Name, OutcomeDead, 0)
		d.log.Warn("webhooks: event dead-lettered: it failed for longer than max_age; the consent's events wait for an operator",
			"endpoint", ep.Name, "consent_id", b.ConsentID, "event_id", evs[i].ID, "position", evs[i].Pos,
			"attempts", b.Attempts, "failing_since", b.FirstFailure, "waiting", len(b.Parked), "err", failed)
	} else {
		b.NextTry = now.Add(d.backoff(b.Attempts))
	}
	ch.Put = []*storage.WebhookBacklog{b}
	return d.store.ApplyWebhook(ctx, ch)
}

// backoff is the wait after the n-th failure of an event: exponential from
// BackoffMin, capped at BackoffMax, with full jitter above BackoffMin (a wait drawn
// uniformly between BackoffMin and the exponential bound), so that consents that
// failed together do not retry together.
func (d *Dispatcher) backoff(n int) time.Duration {
	lo, hi := d.cfg.BackoffMin, d.cfg.BackoffMax
	bound := lo
	for i := 1; i < n && bound < hi; i++ {
		bound *= 2
	}
	bound = min(bound, hi)
	if bound <= lo {
		return lo
	}
	return lo + time.Duration(d.randN(int64(bound-lo)+1))
}

func (d *Dispatcher) observe(ep, outcome string, took time.Duration) {
	if d.hooks.OnDelivery != nil {
		d.hooks.OnDelivery(ep, outcome, took)
	}
}

// deliver POSTs one event to an endpoint, signed; nil for a 2xx answer.
func (d *Dispatcher) deliver(ctx context.Context, ep *Endpoint, fe storage.FeedEvent) error {
	body, err := json.Marshal(PayloadOf(fe))
	if err != nil {
		return fmt.Errorf("encode event %s: %w", fe.ID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", unwrapURL(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "billingd-webhooks")
	req.Header.Set(EventIDHeader, fe.ID)
	req.Header.Set(SignatureHeader, Sign(ep.Secret, d.clock.Now(), body))
	start := time.Now()
	resp, err := d.client.Do(req)
	took := time.Since(start)
	if err != nil {
		d.observe(ep.Name, OutcomeFailed, took)
		return fmt.Errorf("post: %w", unwrapURL(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		d.observe(ep.Name, OutcomeFailed, took)
		// The status code and its standard text only: the reason phrase and the body
		// are the endpoint's own words, never logged.
		return fmt.Errorf("answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	d.observe(ep.Name, OutcomeDelivered, took)
	return nil
}

// unwrapURL drops url.Error's method and URL (the URL may carry a token in its
// query) from an error for logs and the backlog.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// A Payload is the JSON body of a delivery and an item of GET /v1/events. It
// carries ids, amounts, dates and states only: no names, tax ids or accounts.
type Payload struct {
	// ID is the event's unique id (storage.EventID): the receiver's dedupe key.
	ID string `json:"id"`
	// Type is the event's kind (submitted, completed, rejected, missed, …).
	Type string `json:"type"`
	// Position is the event's place in the feed (GET /v1/events?after=).
	Position  uint64 `json:"position"`
	ConsentID string `json:"consentId"`
	// Seq is the event's number in its consent's timeline: 1, 2, 3, … in order.
	Seq             uint64              `json:"seq"`
	Cycle           *int                `json:"cycle,omitempty"`
	Attempt         *int                `json:"attempt,omitempty"`
	PaymentID       string              `json:"paymentId,omitempty"`
	ClientRequestID string              `json:"clientRequestId,omitempty"`
	Status          klavi.PaymentStatus `json:"status,omitempty"`
	// Amount is in reais with centavos, as a string ("12.34").
	Amount *klavi.Cents `json:"amount,omitempty"`
	// Date is the payment's date (Brasília).
	Date cycle.Date `json:"date,omitzero"`
	// At is when billingd recorded the event (RFC 3339, Brasília offset).
	At time.Time `json:"at"`
	// Actor is "billingd" for billingd's own work, "operator" for an operator's.
	Actor string `json:"actor"`
	// Reason is billingd's reason (a Klavi reason code, a rule); an operator's
	// free-text reasons and notes are not sent.
	Reason string `json:"reason,omitempty"`
}

// PayloadOf returns the payload of a feed event.
func PayloadOf(fe storage.FeedEvent) Payload {
	e := fe.Event
	p := Payload{ID: fe.ID, Type: e.Kind, Position: fe.Pos, ConsentID: e.ConsentID, Seq: e.Seq, Cycle: e.Cycle, Attempt: e.Attempt,
		PaymentID: e.PaymentID, ClientRequestID: e.ClientRequestID, Status: e.Status, Amount: e.Amount, Date: e.Date,
		At: e.At.In(cycle.Brasilia), Actor: "operator"}
	if e.Actor == storage.ActorBillingd || e.Actor == "" {
		p.Actor, p.Reason = storage.ActorBillingd, e.Reason
	}
	return p
}
