package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
	"github.com/klavi-billing/billingd/storage"
)

// handleDue acts on one due entry. It returns an error only when the store failed;
// the entry then stays and the next scan tries again.
//
// With out nil, a request it decides to send is sent at once (SUBMITTING written,
// sent, the answer written). Otherwise the request is left in *out, its consent's
// lock held (out's unlock), for the scan's pipeline to record, send and answer
// (submit.go); nothing about it is written yet.
func (s *Scheduler) handleDue(ctx context.Context, it storage.DueItem, now time.Time, out **submission) error {
	unlock := s.locks.lock(it.Key.ConsentID)
	rec, att, err := s.store.GetConsentAttempt(ctx, it.Key)
	return s.handleRead(ctx, it, lockedRead{unlock: unlock, rec: rec, att: att, err: err}, now, out)
}

// lockedRead is a due entry's consent lock, taken, and the entry's records as read
// under it (GetConsentAttempt's answer).
type lockedRead struct {
	unlock func()
	rec    *storage.ConsentRecord
	att    *storage.Attempt
	err    error
	// alone: not locked nor read here (its lock was busy, the read failed, its
	// decision may wait for Klavi, or the group was one entry); handleDue locks and
	// reads it when it is decided.
	alone bool
}

// maxGroup bounds how many due entries one decider reads in one transaction
// (readGroup).
const maxGroup = 8

// readGroup takes the consent locks of items (entries of distinct consents, as a
// pass hands them out) and reads their records in one transaction
// (GetConsentAttempts), into out (cleared; returned, one per item, in order). The
// first lock is waited for; each other is taken only if nobody holds or awaits it,
// so a decider never waits for a lock while it holds another. An item whose lock
// was not free, an item whose decision may wait for Klavi (mayLookUp), and every
// item when the read failed as a whole, is alone (nil unlock): it is left to
// handleDue, which waits for its lock and reads it alone, after the others.
func (s *Scheduler) readGroup(ctx context.Context, items []storage.Entry, out []lockedRead) []lockedRead {
	out = out[:0]
	defer func() {
		if p := recover(); p != nil { // a bug: let go of the locks taken, then panic on
			releaseReads(out)
			panic(p)
		}
	}()
	if len(items) < 2 {
		for range items {
			out = append(out, lockedRead{alone: true})
		}
		return out
	}
	keys := make([]storage.AttemptKey, 0, len(items))
	for i, it := range items {
		var r lockedRead
		if i == 0 {
			r.unlock = s.locks.lock(it.Key.ConsentID)
		} else {
			r.unlock, _ = s.locks.tryLock(it.Key.ConsentID)
		}
		if r.unlock != nil {
			keys = append(keys, it.Key)
		} else {
			r.alone = true
		}
		out = append(out, r)
	}
	got, err := s.store.GetConsentAttempts(ctx, keys, nil)
	if err != nil || len(got) != len(keys) {
		for i := range out {
			if out[i].unlock != nil {
				out[i].unlock()
				out[i].unlock = nil
			}
			out[i].alone = true
		}
		return out
	}
	j := 0
	for i := range out {
		if out[i].unlock != nil {
			out[i].rec, out[i].att, out[i].err = got[j].Record, got[j].Attempt, got[j].Err
			j++
			if mayLookUp(out[i].att) {
				// Its decision may wait for Klavi (a lookup, up to the client's
				// timeout and retries): not while this decider holds the group's
				// other consents, whose polls and operators' actions would wait too.
				out[i].unlock()
				out[i] = lockedRead{alone: true}
			}
		}
	}
	return out
}

// mayLookUp reports whether deciding a due entry whose attempt is att may call
// Klavi before it returns: an attempt whose outcome is unknown (SUBMITTING,
// UNCONFIRMED) is looked up (reconcileDue) instead of, or before, being sent. A new
// original or retry (att nil, PLANNED) is decided without a call; its request is
// sent by the pipeline.
func mayLookUp(att *storage.Attempt) bool {
	return att != nil && (att.State == storage.AttemptSubmitting || att.State == storage.AttemptUnconfirmed)
}

// decideEntry decides due entry it of a group read by readGroup: on r, or, alone,
// with handleDue; on the clock's reading now.
func (s *Scheduler) decideEntry(ctx context.Context, it storage.DueItem, r lockedRead, out **submission) error {
	if r.alone {
		return s.handleDue(ctx, it, s.clock.Now(), out)
	}
	return s.handleRead(ctx, it, r, s.clock.Now(), out)
}

// handleRead is handleDue once the entry's lock is held and its records read (r):
// it decides, and lets the lock go unless *out holds the request to send.
func (s *Scheduler) handleRead(ctx context.Context, it storage.DueItem, r lockedRead, now time.Time, out **submission) error {
	defer func() {
		// A bug, recovered above (cron): the consent must not stay locked for the
		// life of the process, nor a submission be left that no lock goes with.
		if p := recover(); p != nil {
			r.unlock()
			if out != nil {
				*out = nil
			}
			panic(p)
		}
	}()
	err := s.decideDue(ctx, it, r.rec, r.att, r.err, now, out)
	if out != nil && *out != nil {
		(*out).release = r.unlock
		return err
	}
	r.unlock()
	return err
}

// decideDue is handleDue under the consent's lock, on its records as read there
// (rerr: the read's error).
func (s *Scheduler) decideDue(ctx context.Context, it storage.DueItem, rec *storage.ConsentRecord, att *storage.Attempt, rerr error, now time.Time, out **submission) error {
	if errors.Is(rerr, storage.ErrNotFound) {
		s.log.Warn("due entry without a consent removed", "consent_id", it.Key.ConsentID, "cycle", it.Key.Cycle)
		return s.store.Apply(ctx, &storage.Change{DelDue: []storage.DueItem{it}})
	}
	if rerr != nil {
		return rerr
	}
	if has(bugMissedOnDoubt) && s.ClockState().Doubt && (it.Key.Attempt != 0 || att != nil) {
		return nil
	}
	if it.Key.Attempt == 0 {
		return s.handleOriginal(ctx, rec, att, it, now, out)
	}
	return s.handleRetry(ctx, rec, att, it, now, out)
}

// handleOriginal decides and acts on cycle k's original payment.
func (s *Scheduler) handleOriginal(ctx context.Context, rec *storage.ConsentRecord, att *storage.Attempt, it storage.DueItem, now time.Time, out **submission) error {
	c, k, today := rec.Consent, it.Key.Cycle, cycle.DateOf(now)
	pol := s.cfg.Policy
	sched := pol.Schedule(c)

	if att != nil && att.State == storage.AttemptUnconfirmed {
		return s.reconcileDue(ctx, rec, att, it, now) // looked up again every ReconcileEvery
	}
	if att != nil && att.State != storage.AttemptSubmitting {
		// Already decided (a repeated entry): make sure the cursor moved on.
		ch := &storage.Change{DelDue: []storage.DueItem{it}}
		if rec.NextCycle == k && rec.State == storage.ConsentActive {
			s.advance(rec, sched, k, now, ch)
		}
		return s.store.Apply(ctx, ch)
	}
	if rec.State != storage.ConsentActive {
		if att != nil { // in flight when the consent stopped: never re-sent, looked up
			return s.reconcileDue(ctx, rec, att, it, now)
		}
		return s.store.Apply(ctx, &storage.Change{DelDue: []storage.DueItem{it}})
	}
	if att == nil && k != rec.NextCycle {
		s.log.Warn("stale due entry removed", "consent_id", c.ID, "cycle", k, "next_cycle", rec.NextCycle)
		return s.store.Apply(ctx, &storage.Change{DelDue: []storage.DueItem{it}})
	}
	if !sched.Exists(k) {
		ch := &storage.Change{DelDue: []storage.DueItem{it}}
		s.stop(rec, storage.ConsentExpired, fmt.Sprintf("no cycle is due on or before the expiry date %s", sched.Expiry), now, ch)
		return s.store.Apply(ctx, ch)
	}

	var amount *klavi.Cents
	if _, fixed := c.FixedAmount(); !fixed {
		a, ok, err := s.store.Amount(ctx, c.ID, k)
		if err != nil {
			return err
		}
		if ok {
			amount = &a
		}
	}
	plan := pol.Plan(c, sched, k, today, amount)
	if has(bugMissedOnDoubt) && s.ClockState().Doubt && plan.State != StateMissed {
		return nil
	}

	if att != nil { // SUBMITTING: a crash or an unknown outcome
		if att.Confirm != "" || !windowOpen(att, today) {
			// A second look, or the window (of the date that was sent) has closed:
			// one lookup decides, nothing is sent.
			return s.reconcileDue(ctx, rec, att, it, now)
		}
		return s.send(ctx, rec, sched, att, it, now, out) // the same key again
	}

	newAttempt := func(state storage.AttemptState, reason string) *storage.Attempt {
		a := &storage.Attempt{
			AttemptKey:      it.Key,
			State:           state,
			ClientRequestID: consent.ClientRequestID(c.ID, k, 0),
			Date:            plan.Due,
			Mode:            pol.RetryModeOf(c),
			Reason:          reason,
			CreatedAt:       now,
			UpdatedAt:       now,
		}
		if plan.Amount != nil {
			a.Amount = *plan.Amount
		}
		return a
	}
	switch {
	case plan.State == StateMissed:
		a := newAttempt(storage.AttemptMissed, fmt.Sprintf(
			"the submission window for due date %s closed on %s before billingd could submit", plan.Due, plan.Deadline))
		ch := &storage.Change{Attempts: []*storage.Attempt{a}, DelDue: dueEntries(rec, it)}
		s.advance(rec, sched, k, now, ch)
		s.log.Error("cycle missed", "consent_id", c.ID, "cycle", k, "due", plan.Due.String(), "deadline", plan.Deadline.String())
		s.emit(ch, EventMissed, now, c, a, a.Reason)
		return s.store.Apply(ctx, ch)
	case plan.State == StatePlanned && (plan.SubmitOn.After(today) || s.early(plan.SubmitOn, it, now)):
		// Early: queued under other settings (lead days, submit time) that the re-plan
		// has not caught up with yet (a started scheduler's scans do not wait for it,
		// replanAside). Move the entry to the current settings' instant.
		at := s.submitAt(plan.SubmitOn)
		rec.NextDue, rec.UpdatedAt = at, now
		return s.store.Apply(ctx, &storage.Change{Cursor: rec, DelDue: []storage.DueItem{it}, PutDue: []storage.DueItem{{At: at, Key: it.Key}}})
	case plan.Amount == nil:
		a := newAttempt(storage.AttemptSkipped, fmt.Sprintf(
			"variable consent: no amount was set for cycle %d (due %s) by its submission day", k, plan.Due))
		ch := &storage.Change{Attempts: []*storage.Attempt{a}, DelDue: dueEntries(rec, it)}
		s.advance(rec, sched, k, now, ch)
		s.log.Warn("cycle skipped", "consent_id", c.ID, "cycle", k, "reason", a.Reason)
		s.emit(ch, EventSkipped, now, c, a, a.Reason)
		return s.store.Apply(ctx, ch)
	}
	if ok, err := s.freshBeforeSubmit(ctx, rec, now); err != nil || !ok {
		return err // stopped at Klavi (revoked, rejected, expired): nothing is sent
	}
	a := newAttempt(storage.AttemptSubmitting, "")
	if a.Mode == consent.Attach && len(plan.Retries) > 0 {
		// Only the planned days travel: a day the plan dropped (past the window, on
		// the next cycle, after expiry) is never sent, and in attach mode the
		// strategy is the sending. Dropped days are always the last ones, so Klavi
		// derives the same dates from the kept prefix.
		st := retry.Strategy{SkipWeekend: c.Strategy().SkipWeekend}
		for _, r := range plan.Retries {
			st.Days = append(st.Days, r.Day)
		}
		a.Strategy = &st
		a.LastRetryDate = plan.Retries[len(plan.Retries)-1].Date
		a.PlannedRetries = len(plan.Retries)
	}
	return s.send(ctx, rec, sched, a, it, now, out)
}

// send records the attempt as SUBMITTING (durably), sends it, and records the answer.
// The order is the exactly-once protocol: if the process dies after the first write,
// the attempt is found SUBMITTING and sent again with the same clientRequestId, and
// Klavi refuses a second payment for it (409 → UNCONFIRMED, never a new key).
//
// With out not nil, the attempt is only made ready and left in *out: the scan's
// pipeline writes it SUBMITTING with the rest of its chunk, then calls exchange.
func (s *Scheduler) send(ctx context.Context, rec *storage.ConsentRecord, sched cycle.Schedule, a *storage.Attempt, it storage.DueItem, now time.Time, out **submission) error {
	c := rec.Consent
	a.State, a.Sends, a.UpdatedAt = storage.AttemptSubmitting, a.Sends+1, now
	if has(bugNewKeyOnResend) && a.Sends > 1 {
		a.ClientRequestID = fmt.Sprintf("%s-%d", consent.ClientRequestID(c.ID, a.Cycle, a.Attempt), a.Sends)
	}
	sub := &submission{rec: rec, sched: sched, a: a, it: it}
	if out != nil {
		*out = sub
		return nil
	}
	if !has(bugPostBeforeDurable) {
		if err := s.store.Apply(ctx, sub.submitting()); err != nil {
			return err
		}
	}
	ch, err := s.exchange(ctx, sub, now)
	if ch != nil {
		// The answer is recorded even if ctx is canceled meanwhile (shutdown): a known
		// outcome must not be lost. A deposed leader's record is refused by its fence,
		// and the next leader looks the outcome up.
		if aerr := s.store.Apply(context.WithoutCancel(ctx), ch); aerr != nil {
			return aerr
		}
	}
	return err
}

// exchange sends sub's request, whose SUBMITTING record is durable, and returns the
// change that records the answer; err, when not nil, is to be reported once ch is
// written. ch is nil when nothing was sent (the term ended): the attempt stays
// SUBMITTING and its due entry stays, for the leader to send again with the same key.
func (s *Scheduler) exchange(ctx context.Context, sub *submission, now time.Time) (*storage.Change, error) {
	rec, sched, a, it := sub.rec, sub.sched, sub.a, sub.it
	c := rec.Consent
	// The last look before an act that cannot be taken back: a replica paused past
	// its lease between the fenced write and here sends nothing. The attempt stays
	// SUBMITTING, and the leader re-sends it with the same clientRequestId.
	ctx, aerr := s.acting(ctx)
	if aerr != nil {
		return nil, aerr
	}
	if a.Sends == 1 && !now.Before(sendBefore(a)) {
		return s.lapse(sub, now)
	}
	var (
		p   *klavi.Payment
		err error
	)
	// No attempt of this call, not even the client's own retry after a timeout, goes
	// out once the window has closed (after midnight, on D−1): the outcome is then
	// looked up like any other unknown one.
	ctx = klavi.WithSendBefore(ctx, sendBefore(a))
	if a.Attempt == 0 {
		p, err = s.klavi.CreatePayment(ctx, c.ID, &klavi.CreatePaymentRequest{
			ClientRequestID:       a.ClientRequestID,
			Date:                  a.Date,
			Amount:                a.Amount,
			Currency:              klavi.Currency,
			RemittanceInformation: c.Billing.RemittanceInformation,
			AutoRetryStrategy:     a.Strategy,
		})
	} else {
		p, err = s.klavi.RetryPayment(ctx, c.ID, a.OriginalPaymentID, &klavi.RetryPaymentRequest{
			ClientRequestID: a.ClientRequestID,
			Date:            a.Date,
		})
	}
	if has(bugConflictIsCreated) && answerOf(err) == answerConflict {
		p, err = &klavi.Payment{ID: a.ClientRequestID, Status: klavi.PaymentPending}, nil
	}
	if a.Sends == 1 && errors.Is(err, klavi.ErrWindowClosed) && !klavi.IsOutcomeUnknown(err) {
		// The client sent nothing, the window having closed on its way out (a rate
		// limit wait, a token renewal), and this was the attempt's first send:
		// nothing was ever sent with its key.
		return s.lapse(sub, s.clock.Now())
	}
	sub.one[0] = a
	sub.ans = storage.Change{Attempts: sub.one[:], DelDue: appendDueEntries(sub.due[:0], rec, it)}
	ch := &sub.ans
	if ans := answerOf(err); ans != answerCreated {
		// Anything but a plain "created" is looked up in Klavi's orders list by the
		// clientRequestId, never guessed (reconcile.go).
		_, serr := s.settleUnknown(ctx, rec, sched, a, ans, err, s.maySend(rec, a, now), now, ch)
		return settled(ch, serr)
	}
	if p.ID == "" {
		// A 2xx without an id: the payment exists; its id is in the orders list.
		_, serr := s.settleUnknown(ctx, rec, sched, a, answerUnknown, errors.New("created, but the answer has no payment id"), s.maySend(rec, a, now), now, ch)
		return settled(ch, serr)
	}
	a.State, a.PaymentID, a.Status, a.SubmittedAt, a.Confirm, a.DueAt = storage.AttemptSubmitted, p.ID, p.Status, now, "", time.Time{}
	a.Reason = ""
	if p.StatusReason != nil {
		a.Reason = string(p.StatusReason.Code)
	}
	a.NextPoll = s.nextPoll(a, now)
	sub.poll[0] = storage.PollItem{At: a.NextPoll, Key: a.AttemptKey}
	ch.PutPoll = sub.poll[:]
	if m := mismatch(a, p.Amount, p.Date, true); m != "" {
		s.noteMismatch(ctx, ch, now, c, a, p.ID, m)
	}
	kind := EventSubmitted
	if a.Attempt > 0 {
		kind = EventRetrySubmitted
	}
	if s.log.Enabled(ctx, slog.LevelInfo) {
		s.log.LogAttrs(ctx, slog.LevelInfo, "payment submitted", slog.String("consent_id", c.ID), slog.Int("cycle", a.Cycle),
			slog.Int("attempt", a.Attempt), slog.String("client_request_id", a.ClientRequestID), slog.String("payment_id", a.PaymentID),
			slog.String("date", a.Date.String()), slog.String("amount", a.Amount.String()))
	}
	s.emit(ch, kind, now, c, a, "")
	if a.Attempt == 0 && rec.NextCycle == a.Cycle && rec.State == storage.ConsentActive {
		s.advance(rec, sched, a.Cycle, now, ch)
	}
	return ch, nil
}

// settled returns what exchange returns after settleUnknown: the change, or, when
// settleUnknown failed (the next retry could not be planned: a store read failed),
// nothing to record and the error. The attempt then stays SUBMITTING with its due
// entry, and the next scan looks it up and decides again; recording the change
// would drop the entry with no next retry planned.
func settled(ch *storage.Change, err error) (*storage.Change, error) {
	if err != nil {
		return nil, err
	}
	return ch, nil
}

// lapse records a first send whose window closed between its decision and its
// turn to go (a chunk decided just before midnight): nothing was ever sent with its
// key, so it ends as the decision would have ended had it been made now, MISSED (an
// original) or DROPPED (a local retry, whose next one is then planned).
func (s *Scheduler) lapse(sub *submission, now time.Time) (*storage.Change, error) {
	rec, a, c := sub.rec, sub.a, sub.rec.Consent
	ch := &storage.Change{Attempts: []*storage.Attempt{a}, DelDue: dueEntries(rec, sub.it)}
	if a.Attempt == 0 {
		s.finish(a, storage.AttemptMissed, now, fmt.Sprintf(
			"the submission window for due date %s closed on %s before billingd could submit", a.Date, a.Date.AddDays(-WindowClosesDays)))
		s.log.Error("cycle missed", "consent_id", c.ID, "cycle", a.Cycle, "due", a.Date.String(), "deadline", a.Date.AddDays(-WindowClosesDays).String())
		s.emit(ch, EventMissed, now, c, a, a.Reason)
	} else {
		s.finish(a, storage.AttemptDropped, now, fmt.Sprintf("its request day %s has passed", a.Date.AddDays(-1)))
		s.emit(ch, EventRetryDropped, now, c, a, a.Reason)
	}
	if err := s.afterFinal(rec, sub.sched, a, now, ch); err != nil {
		// The next retry could not be planned (a store read failed): nothing is
		// recorded, the attempt stays SUBMITTING with its due entry, and the next
		// scan looks it up and decides again, rather than drop it with no next retry.
		return nil, err
	}
	return ch, nil
}

// early reports whether an original due entry it, read due on its submit day, was
// queued before the instant the current settings give that day (submitAt). An entry
// at that instant or later is not early, even when now reads a little before it: the
// pass read the entry due at its own reading of the clock, and a decision whose clock
// stepped back since (within the tolerance) must not leave it a scan, which at the
// last submit instant of a window (lead 2, a submit time near midnight) would record
// the cycle MISSED.
func (s *Scheduler) early(submitOn cycle.Date, it storage.DueItem, now time.Time) bool {
	at := s.submitAt(submitOn)
	return at.After(now) && at.After(it.At)
}

// dueEntries is what a decision on due entry it removes from the index: it and,
// for the original of the consent's next cycle, the entry its cursor points at when
// that is another one. The re-plan runs beside the scans (replanAside) and may move
// an entry after a scan read it; the decision then removes the moved entry too, so
// that no copy is left for a later scan to decide again (an attempt whose outcome is
// unknown would be sent again at once, not after its wait).
func dueEntries(rec *storage.ConsentRecord, it storage.DueItem) []storage.DueItem {
	return appendDueEntries(nil, rec, it)
}

// appendDueEntries appends dueEntries' entries to out.
func appendDueEntries(out []storage.DueItem, rec *storage.ConsentRecord, it storage.DueItem) []storage.DueItem {
	out = append(out, it)
	if it.Key.Attempt == 0 && rec.NextCycle == it.Key.Cycle && !rec.NextDue.IsZero() && !rec.NextDue.Equal(it.At) {
		out = append(out, storage.DueItem{At: rec.NextDue, Key: it.Key})
	}
	return out
}

// sendBefore is the first instant a's request may no longer be sent: the Brasília
// midnight after the last day windowOpen allows.
func sendBefore(a *storage.Attempt) time.Time {
	if a.Attempt == 0 {
		return a.Date.AddDays(-WindowClosesDays+1).At(0, 0)
	}
	return a.Date.At(0, 0)
}

// finish moves an attempt to a final state.
func (s *Scheduler) finish(a *storage.Attempt, st storage.AttemptState, now time.Time, reason string) {
	a.State, a.Reason, a.UpdatedAt, a.DueAt, a.NextPoll = st, reason, now, time.Time{}, time.Time{}
}

// advance moves the consent's cursor past cycle k and schedules the next cycle, or
// stops billing when there is none. It adds to ch.
func (s *Scheduler) advance(rec *storage.ConsentRecord, sched cycle.Schedule, k int, now time.Time, ch *storage.Change) {
	rec.NextCycle, rec.UpdatedAt, rec.NextDue = k+1, now, time.Time{}
	ch.Cursor = rec
	if !sched.Exists(k + 1) {
		s.stop(rec, storage.ConsentExpired, fmt.Sprintf("cycle %d was the last one due on or before the expiry date %s", k, sched.Expiry), now, ch)
		return
	}
	at := s.submitAt(sched.Due(k + 1).AddDays(-s.cfg.Policy.LeadDays))
	rec.NextDue = at
	ch.PutDue = append(ch.PutDue, storage.DueItem{At: at, Key: storage.AttemptKey{ConsentID: rec.Consent.ID, Cycle: k + 1}})
}

// stop ends billing of a consent, keeping its history. It adds to ch. The next
// cycle's due entry goes, unless that cycle is SUBMITTING with its outcome unknown:
// its entry stays, and the next scan records it UNCONFIRMED rather than forget it.
func (s *Scheduler) stop(rec *storage.ConsentRecord, st storage.ConsentState, reason string, now time.Time, ch *storage.Change) {
	s.stopAs(storage.ActorBillingd, EventConsentStopped, rec, st, reason, reason, now, ch)
}

// stopAs is stop in the name of actor, recorded in the timeline as kind. reason is
// stored; logReason is what the log line says of it: reason itself when billingd
// wrote it, redact.Text of an operator's free text (it may name the payer).
func (s *Scheduler) stopAs(actor string, kind EventKind, rec *storage.ConsentRecord, st storage.ConsentState, reason, logReason string, now time.Time, ch *storage.Change) {
	if !rec.NextDue.IsZero() {
		key := storage.AttemptKey{ConsentID: rec.Consent.ID, Cycle: rec.NextCycle}
		a, err := s.store.GetAttempt(context.Background(), key)
		if errors.Is(err, storage.ErrNotFound) || err == nil && a.State != storage.AttemptSubmitting {
			ch.DelDue = append(ch.DelDue, storage.DueItem{At: rec.NextDue, Key: key})
		} // a store error keeps the entry: the scan that meets it decides again
	}
	rec.State, rec.StateReason, rec.NextDue, rec.UpdatedAt = st, reason, time.Time{}, now
	ch.Consent = rec
	s.log.Info("consent billing stopped", "consent_id", rec.Consent.ID, "state", string(st), "reason", logReason)
	s.emitAs(ch, actor, kind, now, rec.Consent, nil, reason)
}

// handleRetry acts on a local retry (attempt ≥ 1): planned, or in flight.
func (s *Scheduler) handleRetry(ctx context.Context, rec *storage.ConsentRecord, att *storage.Attempt, it storage.DueItem, now time.Time, out **submission) error {
	c, today := rec.Consent, cycle.DateOf(now)
	sched := s.cfg.Policy.Schedule(c)
	ch := &storage.Change{DelDue: []storage.DueItem{it}}
	switch {
	case att != nil && att.State == storage.AttemptUnconfirmed:
		return s.reconcileDue(ctx, rec, att, it, now) // looked up again every ReconcileEvery
	case att == nil || att.State.Final() || att.State == storage.AttemptSubmitted || att.State == storage.AttemptStuck:
		return s.store.Apply(ctx, ch) // a repeated entry
	case att.State == storage.AttemptSubmitting && (att.Confirm != "" || !s.maySend(rec, att, now)):
		// A second look, its request day has passed, or the consent stopped: one
		// lookup decides, nothing is sent.
		return s.reconcileDue(ctx, rec, att, it, now)
	case !retriesAllowed(rec):
		reason := fmt.Sprintf("consent is %s", rec.State)
		s.finish(att, storage.AttemptDropped, now, reason)
		ch.Attempts = []*storage.Attempt{att}
		s.emit(ch, EventRetryDropped, now, c, att, reason)
		return s.store.Apply(ctx, ch)
	case today.After(att.Date.AddDays(-1)): // its request day has passed
		s.finish(att, storage.AttemptDropped, now, fmt.Sprintf("its request day %s has passed", att.Date.AddDays(-1)))
		ch.Attempts = []*storage.Attempt{att}
		s.emit(ch, EventRetryDropped, now, c, att, att.Reason)
		if err := s.planRetry(rec, sched, att, now, ch); err != nil {
			return err
		}
		return s.store.Apply(ctx, ch)
	}
	return s.send(ctx, rec, sched, att, it, now, out)
}

// retriesAllowed reports whether a consent's rejected payments may still be retried:
// an active consent, or one whose last cycle has been submitted (expired: the retry
// plan itself stops at the expiry date). Not a revoked or rejected one.
func retriesAllowed(rec *storage.ConsentRecord) bool {
	return rec.State == storage.ConsentActive || rec.State == storage.ConsentExpired
}
