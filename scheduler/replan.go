package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/klavi-billing/billingd/storage"
)

// ReplanResult counts what Replan moved.
type ReplanResult struct {
	Consents int `json:"consents"` // active consents read
	Moved    int `json:"moved"`    // queued submissions moved to the current settings' instant
}

// Replan moves every queued submission (an active consent's next cycle not yet
// attempted) to the instant the current settings give it (billing.lead_days,
// submit_time), so that the daemon and the preview agree after a configuration
// change: a cycle queued by `consent import` under lead 3 is submitted on D−4 once the
// daemon runs with lead 4. A move to an instant already past is due at once (the
// scan then submits it, or records it MISSED if its window closed). A Scheduler runs
// it once: a started one (Start) beside its scans, which do not wait for it; one
// driven by Scan alone at its first scan, before deciding (replanFirst).
func (s *Scheduler) Replan(ctx context.Context) (ReplanResult, error) {
	var res ReplanResult
	after := ""
	for ctx.Err() == nil {
		recs, err := s.store.ListConsentTerms(ctx, after, s.cfg.Batch, storage.ConsentActive)
		if err != nil {
			return res, fmt.Errorf("replan: %w", err)
		}
		if len(recs) == 0 {
			break
		}
		after = recs[len(recs)-1].ID()
		// The walk reads every active consent: on bolt, pages spread over the whole
		// file in a store of long history. Give them back page by page.
		s.store.ReleaseMapped()
		for _, r := range recs {
			res.Consents++
			if !s.replanNeeded(r) {
				continue // the common case: read in the page, nothing to lock or write
			}
			moved, err := s.replanOne(r.ID())
			if err != nil {
				return res, fmt.Errorf("replan %s: %w", r.ID(), err)
			}
			if moved {
				res.Moved++
			}
		}
	}
	if res.Moved > 0 {
		s.log.Info("queued submissions re-planned from the current settings", "consents", res.Consents, "moved", res.Moved,
			"lead_days", s.cfg.Policy.LeadDays, "submit_time", fmt.Sprintf("%02d:%02d", s.cfg.SubmitHour, s.cfg.SubmitMinute))
	}
	return res, nil
}

// replanNeeded reports, from a record read without its lock, whether its queued
// submission's instant differs from the current settings' (replanOne then decides
// under the lock).
func (s *Scheduler) replanNeeded(rec *storage.ConsentRecord) bool {
	if rec.State != storage.ConsentActive || rec.NextDue.IsZero() {
		return false
	}
	sched := s.cfg.Policy.Schedule(rec.Consent)
	if !sched.Exists(rec.NextCycle) {
		return false
	}
	return !s.submitAt(sched.Due(rec.NextCycle).AddDays(-s.cfg.Policy.LeadDays)).Equal(rec.NextDue)
}

func (s *Scheduler) replanOne(id string) (bool, error) {
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(context.Background(), id)
	if err != nil {
		return false, err
	}
	if rec.State != storage.ConsentActive || rec.NextDue.IsZero() {
		return false, nil
	}
	key := storage.AttemptKey{ConsentID: id, Cycle: rec.NextCycle}
	if _, err := s.store.GetAttempt(context.Background(), key); err == nil {
		return false, nil // in flight or decided: not a queued submission
	} else if !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	sched := s.cfg.Policy.Schedule(rec.Consent)
	if !sched.Exists(rec.NextCycle) {
		return false, nil // the next scan stops it
	}
	at := s.submitAt(sched.Due(rec.NextCycle).AddDays(-s.cfg.Policy.LeadDays))
	if at.Equal(rec.NextDue) {
		return false, nil
	}
	old := rec.NextDue
	rec.NextDue, rec.UpdatedAt = at, s.clock.Now()
	return true, s.store.Apply(context.Background(), &storage.Change{Cursor: rec,
		DelDue: []storage.DueItem{{At: old, Key: key}}, PutDue: []storage.DueItem{{At: at, Key: key}}})
}

// replanFirst makes the scans of a Scheduler re-plan the queue until one re-plan has
// gone through: a store error leaves it for the next scan. It returns how many
// queued submissions it moved.
func (s *Scheduler) replanFirst(ctx context.Context) (moved int) {
	s.replanMu.Lock()
	defer s.replanMu.Unlock()
	if s.replanned.Load() {
		return 0
	}
	start := time.Now()
	res, err := s.Replan(ctx)
	if err != nil {
		s.log.Error("re-plan queued submissions; the next scan tries again", "err", err)
		return res.Moved
	}
	s.replanned.Store(ctx.Err() == nil) // a re-plan cut short by shutdown is not done
	s.log.Debug("re-plan", "consents", res.Consents, "moved", res.Moved, "took", time.Since(start).String())
	return res.Moved
}

// replanAside is the re-plan of a started Scheduler: it starts replanFirst on a job
// of the runner, beside the scans, unless a re-plan has gone through or one is under
// way, and reports true. A scan does not wait for it: the re-plan reads every active
// consent (two etcd reads each: seconds at a few thousand consents), and a new
// leader's catch-up scan would send nothing until it is done. Deciding before the
// re-plan is safe: an original whose instant under the current settings is still
// ahead is moved there, not sent (handleOriginal); one the re-plan moves to an
// instant already past is sent by the scan the job runs once it is done.
//
// It reports false when the Scheduler is not started (Scan called directly: the
// tests, the simulations): the caller then re-plans before deciding (replanFirst).
func (s *Scheduler) replanAside() bool {
	if s.replanned.Load() {
		return true
	}
	// Under cronMu, so that the job is counted in r.jobs before Close can wait for
	// them (Close takes cronMu first).
	s.cronMu.Lock()
	defer s.cronMu.Unlock()
	r := s.running
	if r == nil {
		return false
	}
	if r.replanning.CompareAndSwap(false, true) {
		r.jobs.Add(1)
		go r.replan()
	}
	return true
}
