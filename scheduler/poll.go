package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// handlePoll fetches one payment's status and acts on it.
func (s *Scheduler) handlePoll(ctx context.Context, it storage.PollItem, now time.Time) error {
	defer s.locks.lock(it.Key.ConsentID)()
	ch := &storage.Change{DelPoll: []storage.PollItem{it}}
	att, err := s.store.GetAttempt(ctx, it.Key)
	if errors.Is(err, storage.ErrNotFound) {
		return s.store.Apply(ctx, ch)
	}
	if err != nil {
		return err
	}
	if att.State != storage.AttemptSubmitted && att.State != storage.AttemptStuck || att.PaymentID == "" {
		return s.store.Apply(ctx, ch) // a stale entry
	}
	rec, err := s.store.GetConsent(ctx, it.Key.ConsentID)
	if err != nil {
		return err
	}
	c := rec.Consent
	ch.Attempts = []*storage.Attempt{att}
	att.Polls, att.UpdatedAt = att.Polls+1, now

	// A revoked consent's payment dated later is canceled at Klavi (whether the
	// revocation came from the bank or an operator, and for a payment found in the
	// orders list after it): tried at every poll until Klavi takes it or the date
	// comes, on a clock the poll has checked.
	by, err := s.cancellerFor(rec)
	if err != nil {
		return err
	}
	cancelLater := rec.State == storage.ConsentRevoked && att.Date.After(cycle.DateOf(now)) && by != nil
	if cancelLater {
		err := s.cancelInto(ctx, rec, att, now, storage.ActorBillingd, ch)
		if err == nil {
			return s.store.Apply(ctx, ch)
		}
		if errors.Is(err, ErrNotLeader) {
			return err // the term ended: the leader polls it
		}
		s.log.Error("cancel payment of a revoked consent; will try again at the next poll", "consent_id", c.ID,
			"cycle", att.Cycle, "attempt", att.Attempt, "payment_id", att.PaymentID, "err", err)
	}

	p, perr := s.klavi.GetPayment(ctx, c.ID, att.PaymentID)
	if perr != nil || !p.Status.Valid() {
		// No status billingd knows. A 404 or an unknown status that lasts past
		// StuckAfter is looked up in the orders list, and then STUCK if still unknown.
		unknown := perr == nil || notFound(perr)
		if unknown && att.UnknownSince.IsZero() {
			att.UnknownSince = now
		}
		if unknown && now.Sub(att.UnknownSince) >= s.cfg.StuckAfter {
			if err := s.lookupStuck(ctx, rec, att, now, ch); err != nil {
				return err
			}
			return s.store.Apply(ctx, ch)
		}
		att.NextPoll = s.nextPoll(att, now)
		ch.PutPoll = []storage.PollItem{{At: att.NextPoll, Key: att.AttemptKey}}
		if err := s.store.Apply(ctx, ch); err != nil {
			return err
		}
		if perr == nil {
			return fmt.Errorf("get payment %s: unknown status %q", att.PaymentID, p.Status)
		}
		return fmt.Errorf("get payment %s: %w", att.PaymentID, perr)
	}
	if att.State == storage.AttemptStuck {
		att.State = storage.AttemptSubmitted
		s.log.Info("stuck payment answers again", "consent_id", c.ID, "cycle", att.Cycle, "attempt", att.Attempt,
			"payment_id", att.PaymentID, "status", string(p.Status))
	}
	att.UnknownSince = time.Time{}
	if err := s.applyStatus(rec, att, p.Status, p.StatusReason, false, now, ch); err != nil {
		return err
	}
	if m := mismatch(att, p.Amount, p.Date, false); m != "" {
		// Every poll that sees it logs it and counts it; the timeline holds it once
		// more when the payment ends, with the amount it ended with.
		var into *storage.Change
		if att.State.Final() {
			into = ch
		}
		s.noteMismatch(ctx, into, now, c, att, att.PaymentID, m)
	}
	if cancelLater && !att.State.Final() {
		// The cancellation failed: look again soon rather than after the usual wait.
		soon := now.Add(s.cfg.PollMin)
		for i := range ch.PutPoll {
			if ch.PutPoll[i].Key == att.AttemptKey && ch.PutPoll[i].At.After(soon) {
				ch.PutPoll[i].At, att.NextPoll = soon, soon
			}
		}
	}
	return s.store.Apply(ctx, ch)
}

// applyStatus records a payment status Klavi told (by its status poll, or its orders
// list when the poll cannot: fromList): a settled or final payment ends the attempt
// (and a retryable rejection plans the next local retry); anything else is polled
// again. The orders list carries no reason code: a rejection it tells without one is
// followed by the local retries the plan holds (the reasons that would stop them, a
// revocation, also stop the consent through the consent refresh).
func (s *Scheduler) applyStatus(rec *storage.ConsentRecord, att *storage.Attempt, st klavi.PaymentStatus, sr *klavi.StatusReason, fromList bool, now time.Time, ch *storage.Change) error {
	c, today := rec.Consent, cycle.DateOf(now)
	att.Status = st
	var code klavi.ReasonCode
	if sr != nil {
		code = sr.Code
		att.Reason = string(code)
	}
	repoll := func() {
		att.NextPoll = s.nextPoll(att, now)
		ch.PutPoll = append(ch.PutPoll, storage.PollItem{At: att.NextPoll, Key: att.AttemptKey})
	}
	switch {
	case st == klavi.PaymentCompleted:
		s.finish(att, storage.AttemptCompleted, now, "")
		s.log.Info("payment completed", "consent_id", c.ID, "cycle", att.Cycle, "attempt", att.Attempt, "payment_id", att.PaymentID)
		s.emit(ch, EventCompleted, now, c, att, "")
	case st == klavi.PaymentRejected && !code.ConsentGone() && att.Strategy != nil && !today.After(att.LastRetryDate):
		// Attach mode: Klavi itself retries within the cycle, so a rejection may
		// still turn into a settled payment. Follow it until the last retry day. Not
		// a revocation (nothing is retried under a revoked consent), nor a canceled
		// or failed payment.
		repoll()
	case st.Final():
		reason := string(st)
		if code != "" {
			reason = string(code)
		}
		s.finish(att, storage.AttemptRejected, now, reason)
		s.log.Warn("payment rejected", "consent_id", c.ID, "cycle", att.Cycle, "attempt", att.Attempt,
			"payment_id", att.PaymentID, "status", string(st), "reason", string(code))
		s.emit(ch, EventRejected, now, c, att, reason)
		switch {
		case code.ConsentGone():
			if rec.State == storage.ConsentActive || rec.State == storage.ConsentExpired {
				rec.Consent.Status = klavi.ConsentRevoked
				s.stop(rec, storage.ConsentRevoked, fmt.Sprintf("payment %s was rejected with %s", att.PaymentID, code), now, ch)
			}
		case st == klavi.PaymentRejected && (s.retryable[code] || fromList && code == ""):
			if err := s.planRetry(rec, s.cfg.Policy.Schedule(c), att, now, ch); err != nil {
				return err
			}
		}
	default:
		repoll()
	}
	return nil
}

// endOf says how attempt a ended, for the reason of the retry planned after it
// (planRetry): a rejection seen by a poll or a lookup, a retry dropped because its
// request day had passed (handleRetry, lapse), or one Klavi refused (FAILED). The
// planning may happen days after a was sent, so the reason names what was seen that
// day, not always a rejection.
func endOf(a *storage.Attempt) string {
	which := "the payment"
	if a.Attempt > 0 {
		which = fmt.Sprintf("retry %d", a.Attempt)
	}
	switch a.State {
	case storage.AttemptRejected:
		return "the rejection of " + which + " was seen"
	case storage.AttemptDropped:
		return which + " was dropped"
	case storage.AttemptFailed:
		return which + " was refused by Klavi"
	}
	return fmt.Sprintf("%s ended %s", which, a.State)
}

// notFound reports a 404 answer.
func notFound(err error) bool {
	var ae *klavi.APIError
	return errors.As(err, &ae) && ae.StatusCode == 404
}

// planRetry schedules the local retry that follows attempt prev of its cycle: the next
// date of the cycle's retry plan (the one the preview shows) whose request day (the
// day before the date) has not passed. Dates whose request day has passed are
// recorded as dropped, their reason naming the day that was found and how prev ended
// (endOf): planRetry runs when a rejection is seen, but also when a retry is dropped
// or refused, possibly days later. Only local mode retries; attach leaves it to Klavi.
func (s *Scheduler) planRetry(rec *storage.ConsentRecord, sched cycle.Schedule, prev *storage.Attempt, now time.Time, ch *storage.Change) error {
	c := rec.Consent
	if !retriesAllowed(rec) || prev.Mode != consent.Local {
		return nil
	}
	today := cycle.DateOf(now)
	plan := s.cfg.Policy.Plan(c, sched, prev.Cycle, today, nil)
	orig := prev.OriginalPaymentID
	if prev.Attempt == 0 {
		orig = prev.PaymentID
	}
	for i := prev.Attempt; i < len(plan.Retries); i++ {
		r, n := plan.Retries[i], i+1
		key := storage.AttemptKey{ConsentID: c.ID, Cycle: prev.Cycle, Attempt: n}
		if _, err := s.store.GetAttempt(context.Background(), key); err == nil {
			return nil // already planned (a repeated poll)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		a := &storage.Attempt{
			AttemptKey:        key,
			ClientRequestID:   consent.ClientRequestID(c.ID, prev.Cycle, n),
			Date:              r.Date,
			Amount:            prev.Amount,
			Mode:              consent.Local,
			OriginalPaymentID: orig,
			CreatedAt:         now,
			UpdatedAt:         now,
		}
		if has(bugRetryPastWindow) {
			a.Date = prev.Date.AddDays(r.Day)
			r.Date = a.Date
		}
		ch.Attempts = append(ch.Attempts, a)
		if reqDay := r.Date.AddDays(-1); reqDay.Before(today) {
			s.finish(a, storage.AttemptDropped, now, fmt.Sprintf("its request day %s had passed on %s, when %s", reqDay, today, endOf(prev)))
			s.emit(ch, EventRetryDropped, now, c, a, a.Reason)
			continue
		}
		at := s.submitAt(r.Date.AddDays(-1))
		if at.Before(now) {
			at = now
		}
		a.State, a.DueAt = storage.AttemptPlanned, at
		ch.PutDue = append(ch.PutDue, storage.DueItem{At: at, Key: key})
		s.log.Info("local retry planned", "consent_id", c.ID, "cycle", prev.Cycle, "attempt", n, "date", r.Date.String(), "request_at", at)
		s.emit(ch, EventRetryPlanned, now, c, a, "")
		return nil
	}
	return nil
}
