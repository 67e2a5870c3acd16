package simulation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/fastforward"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
)

// Options describe a simulation.
type Options struct {
	Consents []*consent.Consent
	// From is the first simulated day; Days how many days run.
	From cycle.Date
	Days int
	// Scheduler is the scheduler's config (policy, submit time, polling).
	Scheduler scheduler.Config
	// Scenario decides payment outcomes at the sandbox (nil: every payment completes).
	Scenario *sandbox.Scenario
	// Faults to inject at the sandbox.
	Faults sandbox.Faults
	// Amounts sets the amounts of variable cycles, as an operator would, when the
	// consent is added: consent id → cycle → amount.
	Amounts map[string]map[int]klavi.Cents
	// OnEvent, when set, receives each event as it happens.
	OnEvent func(Event)
	// Dir holds the temporary database (default: a new temporary directory, removed
	// at the end).
	Dir string
	// DB, when set, is the database file the run writes and leaves behind (Dir is
	// then unused): a store as the daemon would have left it at the run's end, for
	// the operator commands to read (through `billingd run --read-only`). It is
	// marked as a simulation's (storage.ErrSimulated): `billingd run` refuses to bill
	// on it. It is synced to disk at the end.
	DB string
	// Log receives the daemon's logs (nil: discarded).
	Log *slog.Logger
}

// Event is one line of the timeline (the JSON of `billingd simulate --format json`).
type Event struct {
	Day             cycle.Date          `json:"day"`
	Event           string              `json:"event"`
	ConsentID       string              `json:"consentId"`
	Cycle           int                 `json:"cycle"`
	Attempt         int                 `json:"attempt"`
	Date            cycle.Date          `json:"date"`
	Amount          *klavi.Cents        `json:"amount"`
	ClientRequestID string              `json:"clientRequestId"`
	Status          klavi.PaymentStatus `json:"status"`
	Reason          string              `json:"reason"`
	// At is the simulated instant (Brasília; RFC 3339 with the offset in JSON);
	// Interval the consent's.
	At       time.Time      `json:"at"`
	Interval cycle.Interval `json:"interval"`
	// Mode says more for the text timeline.
	Mode consent.RetryMode `json:"-"`
}

// OutcomeOf is the ledger outcome (GET /v1/report) an event of kind event counts in:
// a month's report holds, per interval and outcome, the count and sum of the run's
// events whose payment date (Event.Date) falls in that month. A retry_dropped event
// counts in none (ok false): a dropped retry has no payment, and the ledger counts
// payments (scheduler.OutcomesOf).
func OutcomeOf(event string) (scheduler.Outcome, bool) {
	o, ok := eventOutcome[event]
	return o, ok
}

var eventOutcome = map[string]scheduler.Outcome{
	"submitted": scheduler.OutcomeSubmitted, "retry_submitted": scheduler.OutcomeRetried, "completed": scheduler.OutcomeCompleted,
	"rejected": scheduler.OutcomeRejected, "missed": scheduler.OutcomeMissed, "skipped": scheduler.OutcomeSkipped,
	"failed": scheduler.OutcomeFailed, "unconfirmed": scheduler.OutcomeUnconfirmed,
}

// timelineKinds are the scheduler events the timeline shows.
var timelineKinds = map[scheduler.EventKind]bool{
	scheduler.EventSubmitted: true, scheduler.EventRetrySubmitted: true, scheduler.EventCompleted: true,
	scheduler.EventRejected: true, scheduler.EventMissed: true, scheduler.EventSkipped: true,
	scheduler.EventUnconfirmed: true, scheduler.EventFailed: true,
	// A local retry that will never be sent (DESIGN.md, Retries: a planned date whose
	// request day has passed is dropped and reported): shown, not left silent.
	scheduler.EventRetryDropped: true,
}

// Summary counts what happened to one consent.
type Summary struct {
	ConsentID    string
	Interval     cycle.Interval
	Mode         consent.RetryMode
	Submitted    int
	Completed    int
	Rejected     int
	Retries      int // local retries sent by billingd
	Dropped      int // local retries recorded DROPPED, never sent (retry_dropped events)
	KlaviRetries int // retries run by Klavi (attach mode), from the sandbox's ledger
	Missed       int
	Skipped      int
	Unconfirmed  int
	Failed       int
	Billed       klavi.Cents // completed amount
	State        storage.ConsentState
}

// Result is the outcome of a simulation.
type Result struct {
	Events    []Event
	Summaries []*Summary
	Ledger    []sandbox.LedgerEntry
	// Payments counts the original payments at the sandbox; Duplicates the
	// (consent, cycle) pairs holding more than one.
	Payments   int
	Duplicates int
	Stats      sandbox.Stats
	Elapsed    time.Duration
	From, To   cycle.Date
}

// Run runs a simulation to its end.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if len(opts.Consents) == 0 {
		return nil, errors.New("simulation: no consents")
	}
	if opts.Days < 1 {
		return nil, fmt.Errorf("simulation: %d days: want at least 1", opts.Days)
	}
	started := time.Now()
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	path := opts.DB
	if path == "" {
		dir := opts.Dir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "billingd-simulate-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		path = filepath.Join(dir, "billingd.db")
	}
	clk := clock.NewFake(opts.From.At(0, 0))
	var sch *scheduler.Scheduler // read by the Klavi time hook once built
	end := opts.From.AddDays(opts.Days).At(0, 0)

	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: "simulate", SecretKey: "simulate", Scenario: opts.Scenario, Faults: opts.Faults, Logger: log})
	srv := httptest.NewServer(sb)
	defer srv.Close()
	defer sb.Close()
	kc, err := klavi.New(klavi.Config{
		BaseURL: srv.URL, AccessKey: "simulate", SecretKey: "simulate",
		Timeout: time.Second, MaxAttempts: 4, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond,
		RateLimit: 1e6, RateBurst: 1000, TokenRefreshBefore: time.Minute,
	}, klavi.WithClock(clk), klavi.WithLogger(log),
		klavi.WithSleep(func(ctx context.Context, _ time.Duration) error { return ctx.Err() }),
		klavi.WithHooks(klavi.Hooks{OnServerTime: func(server, local time.Time) {
			if s := sch; s != nil {
				s.ObserveKlaviTime(server, local) // the sandbox runs on the same virtual clock
			}
		}}))
	if err != nil {
		return nil, err
	}
	// Marked as a simulation's: billingd run refuses to bill on it (storage.ErrSimulated).
	db, err := bolt.Open(path, bolt.Options{NoSync: true, MaxBatchDelay: 10 * time.Microsecond, Logger: log, Simulated: true})
	if err != nil {
		return nil, err
	}
	closed := false
	defer func() {
		if !closed {
			_ = db.Close()
		}
	}()

	res := &Result{From: opts.From, To: opts.From.AddDays(opts.Days - 1)}
	sums := map[string]*Summary{}
	cfg := opts.Scheduler
	cfg.Workers = 1
	sch, err = scheduler.New(cfg, db, kc, scheduler.WithClock(clk), scheduler.WithLogger(log), scheduler.WithObserver(func(e scheduler.Event) {
		count(sums[e.ConsentID], e)
		if !timelineKinds[e.Kind] {
			return
		}
		ev := Event{
			Day: cycle.DateOf(e.At), Event: string(e.Kind), ConsentID: e.ConsentID, Cycle: e.Cycle, Attempt: e.Attempt,
			Date: e.Date, ClientRequestID: e.ClientRequestID, Status: e.Status, Reason: e.Reason,
			At: e.At.In(cycle.Brasilia), Mode: e.Mode, Interval: e.Interval,
		}
		if e.Kind != scheduler.EventSkipped {
			a := e.Amount
			ev.Amount = &a
		}
		res.Events = append(res.Events, ev)
		if opts.OnEvent != nil {
			opts.OnEvent(ev)
		}
	}))
	if err != nil {
		return nil, err
	}
	pol := sch.Policy()
	for _, c := range opts.Consents {
		if err := sb.AddConsent(&c.CreatedConsent); err != nil {
			return nil, fmt.Errorf("seed sandbox with %s: %w", c.ID, err)
		}
		if _, err := sch.AddConsent(c, opts.From, "simulation"); err != nil {
			return nil, fmt.Errorf("add %s: %w", c.ID, err)
		}
		for k, a := range opts.Amounts[c.ID] {
			if err := sch.SetAmount(c.ID, k, a, "simulation"); err != nil {
				return nil, fmt.Errorf("amount of %s cycle %d: %w", c.ID, k, err)
			}
		}
		sums[c.ID] = &Summary{ConsentID: c.ID, Interval: c.Interval(), Mode: pol.RetryModeOf(c)}
		res.Summaries = append(res.Summaries, sums[c.ID])
	}

	if err := runner(clk, sch, db).Before(ctx, end); err != nil {
		return nil, err
	}

	res.Ledger = sb.Ledger()
	res.Stats = sb.Stats()
	perCycle := map[[2]any]int{}
	for _, l := range res.Ledger {
		if l.Kind == sandbox.KindOriginal {
			res.Payments++
			if perCycle[[2]any{l.ConsentID, l.Cycle}]++; perCycle[[2]any{l.ConsentID, l.Cycle}] == 2 {
				res.Duplicates++
			}
		}
		if l.Kind == sandbox.KindAutoRetry && sums[l.ConsentID] != nil {
			sums[l.ConsentID].KlaviRetries++
		}
	}
	for _, s := range res.Summaries {
		rec, err := db.GetConsent(ctx, s.ConsentID)
		if err != nil {
			return nil, err
		}
		s.State = rec.State
	}
	if opts.DB != "" { // kept: closed and on disk before Run returns
		closed = true
		if err := db.Close(); err != nil {
			return nil, err
		}
		if err := syncFile(path); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(res.Events, func(i, j int) bool { return res.Events[i].At.Before(res.Events[j].At) })
	res.Elapsed = time.Since(started)
	return res, nil
}

// runner drives s on clk from one piece of work in db to the next.
func runner(clk *clock.Fake, s *scheduler.Scheduler, db storage.Store) fastforward.Runner {
	return fastforward.Runner{
		Clock:    clk,
		Scan:     func(ctx context.Context) error { _, err := s.Scan(ctx); return err },
		Poll:     func(ctx context.Context) error { _, err := s.Poll(ctx); return err },
		NextWork: db.NextWork,
		Pending: func(ctx context.Context, now time.Time) (bool, error) {
			due, err := db.DueBefore(ctx, now, 1)
			return len(due) > 0, err
		},
	}
}

// syncFile flushes a file written without fsync to disk.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

func count(s *Summary, e scheduler.Event) {
	if s == nil {
		return
	}
	switch e.Kind {
	case scheduler.EventSubmitted:
		s.Submitted++
	case scheduler.EventRetrySubmitted:
		s.Retries++
	case scheduler.EventRetryDropped:
		s.Dropped++
	case scheduler.EventCompleted:
		s.Completed++
		s.Billed += e.Amount
	case scheduler.EventRejected:
		s.Rejected++
	case scheduler.EventMissed:
		s.Missed++
	case scheduler.EventSkipped:
		s.Skipped++
	case scheduler.EventUnconfirmed:
		s.Unconfirmed++
	case scheduler.EventFailed:
		s.Failed++
	}
}
