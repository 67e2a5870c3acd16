package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/storage"
)

// A clock billingd can doubt (DESIGN.md, Time). Before it writes MISSED, sends a date
// or decides a window closed, the scheduler needs its clock to agree with two
// witnesses: the latest instant it acted on (kept in the store: the clock must not go
// back past it), and Klavi's time (the Date header of its answers). While either
// disagrees by more than Config.ClockTolerance, scans and polls make no decision; they
// resume by themselves when the clocks agree again. A forward jump past the latest
// instant is taken as real downtime (today's catch-up follows) only once Klavi's time,
// read after it, confirms it. AddConsents (`billingd consent import`, run while the
// daemon is stopped, with no Klavi to ask) keeps the same rule and moves the same
// instant: a daemon started later on a clock behind an import doubts its clock.

// ClockState is what the scheduler thinks of its clock.
type ClockState struct {
	// Doubt: decisions are paused; Reason says why.
	Doubt  bool   `json:"doubt"`
	Reason string `json:"reason,omitempty"`
	// KlaviSkew is the local clock minus Klavi's at the last answer with a Date
	// header (positive: the local clock is ahead); KlaviSeen is when (local clock).
	KlaviSkew time.Duration `json:"klaviSkewNanos"`
	KlaviSeen time.Time     `json:"klaviSeen,omitzero"`
	// HighWater is the latest instant the scheduler acted on.
	HighWater time.Time `json:"highWater,omitzero"`
}

// clockWitness holds the last reading of Klavi's time.
type clockWitness struct {
	mu    sync.Mutex
	skew  time.Duration
	seen  time.Time // local time of the reading; zero: none yet
	state ClockState
}

// ObserveKlaviTime records Klavi's time (an answer's Date header) against the local
// clock's reading at the exchange. Wire it to klavi.Hooks.OnServerTime.
func (s *Scheduler) ObserveKlaviTime(server, local time.Time) {
	s.witness.mu.Lock()
	// The wall readings are compared (Round(0) drops Go's monotonic reading, which
	// would hide a step of the wall clock); local keeps it for stepSince.
	s.witness.skew, s.witness.seen = local.Round(0).Sub(server.Round(0)), local
	s.witness.mu.Unlock()
}

// stepSince is how much more the wall clock moved than the monotonic clock between
// then and now (both readings of the same process): a step of the wall clock (NTP,
// an operator, a restored VM). Zero when either reading has no monotonic part (a
// fake clock, a reading from another process).
func stepSince(then, now time.Time) time.Duration {
	if then.IsZero() {
		return 0
	}
	return now.Round(0).Sub(then.Round(0)) - now.Sub(then)
}

// stillTrusted is the cheap check each due or poll entry makes before it is
// decided: the clock has not stepped since the pass checked it, and no Klavi answer
// read since disagrees with it.
func (s *Scheduler) stillTrusted(passStart time.Time) bool {
	if s.cfg.ClockTolerance < 0 {
		return true
	}
	now, tol := s.clock.Now(), s.cfg.ClockTolerance
	if d := stepSince(passStart, now); d > tol || d < -tol {
		s.doubtNow(now, fmt.Sprintf("the wall clock stepped %s during a pass", d.Round(time.Second)))
		return false
	}
	s.witness.mu.Lock()
	skew, seen := s.witness.skew, s.witness.seen
	s.witness.mu.Unlock()
	if !seen.IsZero() && !seen.Before(passStart) && (skew > tol || skew < -tol) {
		s.doubtNow(now, fmt.Sprintf("a Klavi answer during a pass shows the clock %s off Klavi's", skew.Round(time.Second)))
		return false
	}
	return true
}

// doubtNow records a doubt found during a pass (the next checkClock re-judges).
func (s *Scheduler) doubtNow(now time.Time, reason string) {
	s.witness.mu.Lock()
	was := s.witness.state.Doubt
	s.witness.state.Doubt, s.witness.state.Reason = true, reason
	s.witness.mu.Unlock()
	if !was {
		s.log.Error("clock in doubt: no submission, no MISSED, no FAILED until it agrees again", "reason", reason)
		s.observe(Event{Kind: EventClockDoubt, At: now, Reason: reason})
	}
}

// ClockState returns the verdict of the last check (readiness, metrics, admin).
func (s *Scheduler) ClockState() ClockState {
	s.witness.mu.Lock()
	defer s.witness.mu.Unlock()
	return s.witness.state
}

// steppedBack reports whether now reads more than tol before highWater, the latest
// instant acted on (zero: none). The daemon decides nothing while it does
// (judgeClock); a command that writes to the store with this host's clock refuses
// (AddConsents): the one rule for every writer of the store.
func steppedBack(now, highWater time.Time, tol time.Duration) bool {
	return !highWater.IsZero() && now.Before(highWater.Add(-tol))
}

// judgeClock decides whether now can be trusted. highWater is the latest instant the
// scheduler acted on (zero: never); skew is local minus Klavi's time, read at seen
// (zero: never read). It is pure: every row of its table test is a case.
func judgeClock(now, highWater time.Time, skew time.Duration, seen time.Time, tol time.Duration) (bool, string) {
	switch {
	case steppedBack(now, highWater, tol):
		return true, fmt.Sprintf("the clock reads %s, %s before the latest instant billingd acted on (%s): it stepped back",
			now.UTC().Format(time.RFC3339), highWater.Sub(now).Round(time.Second), highWater.UTC().Format(time.RFC3339))
	case !seen.IsZero() && (skew > tol || skew < -tol):
		dir := "ahead of"
		if skew < 0 {
			dir, skew = "behind", -skew
		}
		return true, fmt.Sprintf("the clock is %s %s Klavi's (its Date header; tolerance %s)", skew.Round(time.Second), dir, tol)
	case !highWater.IsZero() && now.After(highWater.Add(tol)) && (seen.IsZero() || now.Sub(seen) > tol):
		return true, fmt.Sprintf("the clock reads %s ahead of the latest instant billingd acted on; waiting for Klavi's time, read since, to confirm it",
			now.Sub(highWater).Round(time.Second))
	case seen.IsZero():
		return true, "Klavi's time has not been read yet, so the clock cannot be checked"
	}
	return false, ""
}

// checkClock reads Klavi's time when the last reading is old or predates a possible
// jump (a probe request), judges the clock, records the verdict, and, when the clock
// is trusted, moves the stored latest instant to now. It reports whether decisions
// may be made.
func (s *Scheduler) checkClock(ctx context.Context) bool {
	ok, _ := s.checkClockAt(ctx)
	return ok
}

// checkClockAt is checkClock that also returns the clock reading it judged (with its
// monotonic part), for a pass to measure later steps against.
func (s *Scheduler) checkClockAt(ctx context.Context) (ok bool, judged time.Time) {
	if s.cfg.ClockTolerance < 0 {
		return true, s.clock.Now() // the check is off
	}
	nowM := s.clock.Now() // with the monotonic reading, for stepSince
	now := nowM.Round(0)
	hw, err := s.store.HighWater(ctx)
	if err != nil {
		s.setClockState(ClockState{Doubt: true, Reason: "read the latest instant acted on: " + err.Error()})
		return false, nowM
	}
	s.witness.mu.Lock()
	seen := s.witness.seen
	s.witness.mu.Unlock()
	stepped := func(seen time.Time) bool {
		d := stepSince(seen, nowM)
		return d > s.cfg.ClockTolerance || d < -s.cfg.ClockTolerance
	}
	stale := seen.IsZero() || now.Before(seen.Round(0)) || now.Sub(seen.Round(0)) > s.cfg.ClockProbeEvery ||
		!hw.IsZero() && now.Sub(hw) > s.cfg.ClockTolerance || // moved ahead since the last decision
		stepped(seen) || // the wall clock stepped since Klavi's time was read
		s.ClockState().Doubt // in doubt: read Klavi's time at every pass, to resume at once
	var probeErr error
	if p, ok := s.klavi.(prober); ok && stale {
		if probeErr = p.Probe(ctx); probeErr != nil {
			s.log.Debug("klavi time probe", "err", probeErr)
		}
	}
	// One judgment at a time (the probe above runs outside it, so a slow Klavi holds
	// no other pass up): the scan, the poll and the refresh would otherwise read the
	// same old latest instant and each write it.
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	if hw, err = s.store.HighWater(ctx); err != nil {
		s.setClockState(ClockState{Doubt: true, Reason: "read the latest instant acted on: " + err.Error()})
		return false, nowM
	}
	s.witness.mu.Lock()
	skew, seen := s.witness.skew, s.witness.seen
	s.witness.mu.Unlock()
	if _, ok := s.klavi.(prober); !ok && seen.IsZero() {
		seen = now // a Klavi without a probe (tests' fakes): only the stored instant is a witness
	}
	doubt, reason := judgeClock(now, hw, skew, seen.Round(0), s.cfg.ClockTolerance)
	if !doubt && stepped(seen) {
		doubt, reason = true, fmt.Sprintf("the wall clock stepped %s since Klavi's time was last read, and Klavi's time could not be read since",
			stepSince(seen, nowM).Round(time.Second))
	}
	if doubt && probeErr != nil && (seen.IsZero() || now.Sub(seen.Round(0)) > s.cfg.ClockTolerance || stepped(seen)) {
		// The clock may be right: Klavi did not answer. Say so, so that nobody
		// chases NTP when the network is the problem.
		reason += fmt.Sprintf(" (Klavi did not answer: %v)", probeErr)
	}
	st := ClockState{Doubt: doubt, Reason: reason, KlaviSkew: skew, KlaviSeen: seen, HighWater: hw}
	prev := s.ClockState()
	s.setClockState(st)
	switch {
	case doubt && !prev.Doubt:
		s.log.Error("clock in doubt: no submission, no MISSED, no FAILED until it agrees again", "reason", reason)
		s.observe(Event{Kind: EventClockDoubt, At: now, Reason: reason})
	case !doubt && prev.Doubt:
		s.log.Warn("clock trusted again: decisions resume", "klavi_skew", skew)
		s.observe(Event{Kind: EventClockTrusted, At: now})
	}
	if doubt {
		return false, nowM
	}
	if now.After(hw) {
		if err := s.store.Apply(ctx, &storage.Change{HighWater: now}); err != nil {
			s.log.Warn("store the latest instant acted on", "err", err)
		}
	}
	return true, nowM
}

func (s *Scheduler) setClockState(st ClockState) {
	s.witness.mu.Lock()
	s.witness.state = st
	s.witness.mu.Unlock()
}

// prober is a Klavi that can be asked for its time (*klavi.Client.Probe).
type prober interface {
	Probe(ctx context.Context) error
}
