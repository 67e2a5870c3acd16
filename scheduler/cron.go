package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage/kv"
)

// runner is a started scheduler: cron and the contexts of its jobs.
type runner struct {
	cron    *cron.Cron
	jobs    sync.WaitGroup     // every scan and poll run, cron's and the catch-up ones
	stopNew context.CancelFunc // no new entries are started once called
	abandon context.CancelFunc // in-flight Klavi calls are canceled once called

	// replan runs the re-plan (replanFirst), then a scan when it moved a queued
	// submission; counted in jobs by its caller (replanAside). replanning is set
	// while one is under way.
	replan     func()
	replanning atomic.Bool
}

// cronParser reads standard 5-field specs (minute hour day-of-month month
// day-of-week) and descriptors (@every 1m, @hourly).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// yearProbe is the instant ParseSchedule looks for a schedule's next run from: the
// year after it holds no 29 February, so a spec that fires only on that day is
// refused whatever the date (it would wait up to 8 years), and a valid config stays
// valid from one day to the next.
var yearProbe = time.Date(2025, 3, 1, 0, 0, 0, 0, cycle.Brasilia)

// ParseSchedule parses a cron spec as Start reads it: in Brasília time
// (America/Sao_Paulo), which Start states with its own CRON_TZ= prefix, so a spec
// that names a time zone (CRON_TZ=, TZ=) is refused rather than read as a sixth
// field. A spec that does not fire within a year (robfig/cron's Next finds no
// time for 30 February) is refused too: a scan that never runs bills nobody. The
// error completes a sentence that starts with the spec ("%q %v").
func ParseSchedule(spec string) (cron.Schedule, error) {
	for _, prefix := range []string{"CRON_TZ=", "TZ="} {
		if strings.HasPrefix(strings.TrimSpace(spec), prefix) {
			return nil, fmt.Errorf("names a time zone (%s): billingd reads every schedule in Brasília time (America/Sao_Paulo); drop the prefix and write the times in Brasília time", prefix)
		}
	}
	if d, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every "); ok {
		// robfig/cron runs an interval under a second every second: 0s or -5m is
		// a mistake, not a request for a scan every second.
		if every, err := time.ParseDuration(strings.TrimSpace(d)); err == nil && every <= 0 {
			return nil, fmt.Errorf("is an interval of %s: want one above 0", every)
		}
	}
	sched, err := cronParser.Parse("CRON_TZ=" + cycle.Brasilia.String() + " " + spec)
	if err != nil {
		return nil, fmt.Errorf("is not a cron schedule: %w", err)
	}
	if next := sched.Next(yearProbe); next.IsZero() || next.After(yearProbe.AddDate(1, 0, 0)) {
		return nil, errors.New("does not fire within a year (a date that does not exist, or 29 February only)")
	}
	return sched, nil
}

// cronLogger adapts slog to cron's logger, quietly: only errors are worth a line.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(string, ...any) {}
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("cron: "+msg, append(kv, "err", err)...)
}

// Start runs the due scan and the status poll on their cron schedules, evaluated in
// America/Sao_Paulo, each with SkipIfStillRunning (a slow scan is never run twice at
// once), plus one scan and one poll right away to catch up after downtime. Hooks, when
// not nil, are called after every scan and poll with their duration (metrics). The
// first re-plan of the Scheduler (Replan) runs beside the scans, not before them
// (replanAside): a new leader's catch-up scan sends what is due without waiting for a
// read of every active consent.
//
// ctx is the term the scheduler runs in: when it ends (a replica lost its
// leadership), no new entry is started and in-flight Klavi calls are canceled at
// once; Close then waits for the runs to return. fence is that term's fencing
// token, carried by every write the scheduler makes until Close (zero: none, one
// process on a bolt file).
func (s *Scheduler) Start(ctx context.Context, fence kv.Fence, scanSpec, pollSpec string, hooks Hooks) error {
	s.cronMu.Lock()
	defer s.cronMu.Unlock()
	if s.running != nil {
		return errors.New("scheduler: already started")
	}
	stop, stopNew := context.WithCancel(ctx)
	req, abandon := context.WithCancel(ctx)
	if !fence.IsZero() {
		s.fence.Store(&fence)
		req = klavi.WithHeader(req, klavi.FenceHeader, strconv.FormatInt(fence.Rev, 10))
	}
	logger := cronLogger{s.log}
	c := cron.New(
		cron.WithChain(cron.Recover(logger)),
		cron.WithLogger(logger),
	)
	scan := func() {
		start := time.Now()
		res, err := s.scan(stop, req)
		if err != nil {
			s.log.Error("due scan failed", "err", err)
		}
		if hooks.AfterScan != nil {
			hooks.AfterScan(time.Since(start), res, err)
		}
	}
	poll := func() {
		start := time.Now()
		res, err := s.poll(stop, req)
		if err != nil {
			s.log.Error("status poll failed", "err", err)
		}
		if hooks.AfterPoll != nil {
			hooks.AfterPoll(time.Since(start), res, err)
		}
	}
	r := &runner{cron: c, stopNew: stopNew, abandon: abandon}
	// Every run is counted in r.jobs so Stop can wait for it. Cron's own runs are
	// counted from inside (cron.Stop waits for them first); the catch-up runs are
	// counted before their goroutine starts.
	guarded := func(inner cron.Job) func() {
		return func() {
			defer r.jobs.Done()
			if stop.Err() == nil {
				inner.Run()
			}
		}
	}
	skip := cron.NewChain(cron.SkipIfStillRunning(logger))
	scanRun, pollRun := guarded(skip.Then(cron.FuncJob(scan))), guarded(skip.Then(cron.FuncJob(poll)))
	scanJob := cron.FuncJob(func() { r.jobs.Add(1); scanRun() })
	pollJob := cron.FuncJob(func() { r.jobs.Add(1); pollRun() })
	add := func(what, spec string, job cron.Job) error {
		sched, err := ParseSchedule(spec)
		if err != nil {
			stopNew()
			abandon()
			return fmt.Errorf("scheduler: %s schedule %q %w", what, spec, err)
		}
		c.Schedule(sched, job)
		return nil
	}
	if err := add("scan", scanSpec, scanJob); err != nil {
		return err
	}
	if err := add("poll", pollSpec, pollJob); err != nil {
		return err
	}
	// The consent refresh (get consent at Klavi) on its own schedule; and, once at
	// start, a reconciliation of attempts left UNCONFIRMED or STUCK (also by earlier
	// versions, which left them with no due entry).
	refresh := func() {
		res, err := s.Refresh(req)
		if err != nil {
			s.log.Error("consent refresh failed", "err", err)
		} else if res.Authorized+res.Stopped+res.Errors > 0 {
			s.log.Info("consents refreshed", "read", res.Read, "authorized", res.Authorized, "stopped", res.Stopped, "errors", res.Errors)
		}
	}
	refreshRun := guarded(skip.Then(cron.FuncJob(refresh)))
	if spec := s.cfg.RefreshSchedule; spec != "off" {
		if err := add("refresh", spec, cron.FuncJob(func() { r.jobs.Add(1); refreshRun() })); err != nil {
			return err
		}
	}
	reconcileRun := guarded(cron.FuncJob(func() {
		for {
			res, err := s.Reconcile(req, "")
			switch {
			case err != nil:
				s.log.Error("start-up reconciliation failed", "err", err)
			case res.Paused: // the clock is in doubt: wait for it, a minute at a time
				t := time.NewTimer(time.Minute)
				select {
				case <-stop.Done():
					t.Stop()
					return
				case <-t.C:
				}
				continue
			case res.Looked > 0:
				s.log.Info("start-up reconciliation", "looked", res.Looked, "resolved", res.Resolved, "errors", res.Errors)
			}
			return
		}
	}))
	// The re-plan, started by the first scan (replanAside). A submission it moved to
	// an instant already past is due now, and a scan that read the index before the
	// move may have ended without it: a scan of its own follows (after any scan
	// running then: one due scan at a time), rather than the next tick.
	r.replan = guarded(cron.FuncJob(func() {
		defer r.replanning.Store(false)
		if s.replanFirst(stop) > 0 && stop.Err() == nil {
			scan()
		}
	}))
	s.running = r
	c.Start()
	// Catch up at once rather than at the first tick; the same wrapped jobs, so a
	// tick that comes while these run is skipped, not doubled.
	r.jobs.Add(3)
	go scanRun()
	go pollRun()
	go reconcileRun()
	return nil
}

// Hooks observe the daemon's scans and polls.
type Hooks struct {
	AfterScan func(d time.Duration, res ScanResult, err error)
	AfterPoll func(d time.Duration, res PollResult, err error)
}

// Close stops the cron schedules and waits for running scans and polls: they start no
// new entry, and submissions already in flight finish. If ctx ends first, in-flight
// Klavi calls are canceled; their attempts stay SUBMITTING and are re-sent with the
// same key after restart. Close returns ctx's error in that case. Once it returns,
// the scheduler's writes carry no fence; it may be started again (a new term).
func (s *Scheduler) Close(ctx context.Context) error {
	s.cronMu.Lock()
	r := s.running
	s.running = nil
	s.cronMu.Unlock()
	if r == nil {
		return nil
	}
	defer s.fence.Store(nil)
	r.stopNew()
	<-r.cron.Stop().Done() // no new ticks
	done := make(chan struct{})
	go func() { r.jobs.Wait(); close(done) }()
	select {
	case <-done:
		r.abandon()
		return nil
	case <-ctx.Done():
		r.abandon()
		<-done
		return ctx.Err()
	}
}
