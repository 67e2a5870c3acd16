package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// Reconciliation: an outcome billingd cannot know is looked up, never guessed.
//
// A create or retry whose answer did not plainly say "created" (a 409, a refusal of a
// re-send, a timeout, a dropped connection, a 5xx, an unreadable answer) is looked up
// in Klavi's list of the consent's payments (the management API's orders list, read to
// its end) by its clientRequestId. resolve turns what was sent, what Klavi answered and
// what the list said into what the attempt becomes; the shell below does the I/O.

// sendAnswer sorts what one send of an attempt got from Klavi.
type sendAnswer int

const (
	// answerCreated: a 2xx with a readable payment.
	answerCreated sendAnswer = iota
	// answerConflict: a 409. It proves nothing by itself: the seeds' only 409 example
	// is a permissions error, not a reused clientRequestId.
	answerConflict
	// answerRefused: a definitive 4xx, or a request that broke a rule and was not sent.
	answerRefused
	// answerUnknown: a transport error, a timeout, 408, 429 or 5xx, an unreadable 2xx,
	// or no send at all in this pass (a lookup-only pass).
	answerUnknown
)

func (a sendAnswer) String() string {
	return [...]string{"created", "409", "refused", "unknown"}[a]
}

// answerOf sorts a create's or retry's error.
func answerOf(err error) sendAnswer {
	var ae *klavi.APIError
	switch {
	case err == nil:
		return answerCreated
	case klavi.IsOutcomeUnknown(err):
		return answerUnknown
	case errors.As(err, &ae) && ae.StatusCode == 409, errors.Is(err, klavi.ErrDuplicateRequest):
		return answerConflict
	case errors.Is(err, klavi.ErrInvalidRequest), errors.Is(err, klavi.ErrRefused):
		return answerRefused
	}
	return answerUnknown
}

// lookupResult is what Klavi's orders list said of an attempt's clientRequestId.
type lookupResult int

const (
	lookupFound       lookupResult = iota // Klavi holds a payment for it
	lookupNotFound                        // the list, read to its end, has none
	lookupUnavailable                     // the list could not be read
)

func (l lookupResult) String() string {
	return [...]string{"found", "not_found", "unavailable"}[l]
}

// resolution is what an attempt whose send did not plainly succeed becomes.
type resolution int

const (
	// resAdopt: Klavi holds it: adopt its payment id and status and follow it as if
	// the create's answer had arrived (polled to a final state, retried per its plan).
	resAdopt resolution = iota
	// resFail: Klavi refused it and holds nothing for the key: FAILED.
	resFail
	// resResend: still unknown and the window is open: stay SUBMITTING and send again
	// later with the same clientRequestId (a re-send can never make a second payment).
	resResend
	// resConfirm: a re-send was refused and the list has no payment for the key, but an
	// earlier send's outcome was unknown and may still be in flight at Klavi: stay
	// SUBMITTING and look again later, without sending, before calling it failed.
	resConfirm
	// resLapsed: no payment ever reached Klavi and the window has closed: MISSED (an
	// original) or DROPPED (a local retry). Nothing is sent.
	resLapsed
	// resUnconfirmed: Klavi's list cannot be read and the window has closed:
	// UNCONFIRMED, looked up again every Config.ReconcileEvery until it answers.
	resUnconfirmed
)

func (r resolution) String() string {
	return [...]string{"adopted", "refused", "resent", "confirm", "lapsed", "unresolved"}[r]
}

// facts are the inputs of resolve.
type facts struct {
	// Answer is what this pass's send got (answerUnknown for a lookup-only pass).
	Answer sendAnswer
	// Lookup is what the orders list said.
	Lookup lookupResult
	// Sends counts the sends recorded so far, this one included. More than one means
	// an earlier send may have reached Klavi (a SUBMITTING record is written before
	// every send, so a crash after it counts too).
	Sends int
	// Confirming: an earlier pass already found nothing after a refusal or after the
	// window closed, and this pass is the second look.
	Confirming bool
	// WindowOpen: a send made now would still be accepted (today ≤ due − 2 for an
	// original, today ≤ date − 1 for a local retry).
	WindowOpen bool
}

// resolve decides what an attempt becomes. It is pure: every row of its table test
// is a transition.
func resolve(f facts) resolution {
	switch f.Lookup {
	case lookupFound:
		return resAdopt
	case lookupUnavailable:
		if f.Answer == answerRefused && f.Sends <= 1 {
			return resFail // the first and only send was refused: nothing can exist
		}
		if f.WindowOpen {
			return resResend
		}
		return resUnconfirmed
	}
	// Not found. The list proves absence only as of the read: a create still in
	// flight at Klavi (an earlier send, or a 409 meaning "this key is being used")
	// may appear later, so a not-found is trusted only on a second look
	// Config.ConfirmAfter later — except after a definitive refusal of the only send
	// there ever was (nothing can be in flight).
	switch f.Answer {
	case answerRefused:
		if f.Sends <= 1 || f.Confirming {
			return resFail
		}
		return resConfirm
	case answerConflict:
		if f.Confirming {
			return resFail
		}
		return resConfirm
	}
	if f.WindowOpen {
		return resResend
	}
	if f.Confirming {
		return resLapsed
	}
	return resConfirm
}

// lookup reads Klavi's orders list for a's clientRequestId.
func (s *Scheduler) lookup(ctx context.Context, consentID string, a *storage.Attempt) (*klavi.Order, lookupResult, error) {
	a.Lookups++
	o, err := s.klavi.FindOrder(ctx, consentID, a.ClientRequestID)
	switch {
	case err == nil && o != nil:
		return o, lookupFound, nil
	case errors.Is(err, klavi.ErrOrderNotFound):
		return nil, lookupNotFound, nil
	case err == nil:
		err = errors.New("find order: no order and no error")
	}
	return nil, lookupUnavailable, err
}

// maySend reports whether a may still be sent now: its window is open and its
// consent still billed (active for an original; retries also go on for an expired one).
func (s *Scheduler) maySend(rec *storage.ConsentRecord, a *storage.Attempt, now time.Time) bool {
	if !windowOpen(a, cycle.DateOf(now)) {
		return false
	}
	if a.Attempt == 0 {
		return rec.State == storage.ConsentActive
	}
	return retriesAllowed(rec)
}

// windowOpen reports whether a send of a made today would still be accepted.
func windowOpen(a *storage.Attempt, today cycle.Date) bool {
	if a.Attempt == 0 {
		return !today.After(a.Date.AddDays(-WindowClosesDays))
	}
	return !today.After(a.Date.AddDays(-1))
}

// settleUnknown looks up an attempt whose send (or earlier sends) did not plainly
// succeed, and records what resolve decides. sendErr is this pass's send error (nil
// for a lookup-only pass). It adds to ch, which the caller applies; it returns the
// resolution for the caller's bookkeeping.
func (s *Scheduler) settleUnknown(ctx context.Context, rec *storage.ConsentRecord, sched cycle.Schedule, a *storage.Attempt,
	ans sendAnswer, sendErr error, open bool, now time.Time, ch *storage.Change) (resolution, error) {
	c, prevReason := rec.Consent, a.Reason
	var (
		o    *klavi.Order
		lr   = lookupNotFound // a first send's refusal is definitive: nothing to look up
		lerr error
	)
	looked := ans != answerRefused || a.Sends > 1
	if looked {
		o, lr, lerr = s.lookup(ctx, c.ID, a)
		if lr == lookupFound && o.ID == "" {
			lr, lerr = lookupUnavailable, errors.New("orders list: the payment for this clientRequestId has no id")
		}
	}
	if ans == answerUnknown && sendErr == nil && a.Confirm == storage.ConfirmRefused {
		ans = answerRefused // a second look after a refusal: the refusal is the last answer
	}
	res := resolve(facts{Answer: ans, Lookup: lr, Sends: a.Sends, Confirming: a.Confirm != "", WindowOpen: open})
	// why goes to the log and the timeline; recWhy, with Klavi's own words, to the
	// attempt's record only (see klavi.Describe).
	why, recWhy := describe(ans, sendErr, lr, lerr, errText), describe(ans, sendErr, lr, lerr, recText)
	log := s.log.With("consent_id", c.ID, "cycle", a.Cycle, "attempt", a.Attempt,
		"client_request_id", a.ClientRequestID, "sends", a.Sends, "lookups", a.Lookups,
		"answer", ans.String(), "lookup", lr.String(), "resolution", res.String())
	a.Confirm = ""
	prev := a.State
	s.emitLookup(ch, now, c, a, lr, res)
	switch res {
	case resAdopt:
		s.adopt(rec, sched, a, o, now, ch)
		log.Info("payment found at Klavi by its clientRequestId; adopted", "payment_id", a.PaymentID, "status", string(a.Status))
	case resFail:
		detail, recDetail := errText(sendErr), recText(sendErr)
		if sendErr == nil && prevReason != "" {
			// A second look: the refusal was recorded by the first, Klavi's words
			// with it, which the timeline does not take.
			detail, recDetail = "the refusal of the last send, recorded by the attempt", prevReason
		}
		held := "which holds no payment for clientRequestId " + a.ClientRequestID // the orders list says so
		if !looked {
			held = "on the only send of clientRequestId " + a.ClientRequestID + ", so nothing was created" // not looked up
		}
		s.finish(a, storage.AttemptFailed, now, "refused by Klavi, "+held+": "+recDetail)
		log.Error("submission refused", "err", sendErr)
		s.emit(ch, EventFailed, now, c, a, "refused by Klavi, "+held+": "+detail)
		if err := s.afterFinal(rec, sched, a, now, ch); err != nil {
			return res, err
		}
	case resLapsed:
		st := storage.AttemptMissed
		if a.Attempt > 0 {
			st = storage.AttemptDropped
		}
		s.finish(a, st, now, fmt.Sprintf("Klavi holds no payment for clientRequestId %s after %d sends whose answers were lost, and its window has closed", a.ClientRequestID, a.Sends))
		log.Error("submission lapsed: it never reached Klavi and its window has closed")
		if st == storage.AttemptMissed {
			s.emit(ch, EventMissed, now, c, a, a.Reason)
		} else {
			s.emit(ch, EventRetryDropped, now, c, a, a.Reason)
		}
		if err := s.afterFinal(rec, sched, a, now, ch); err != nil {
			return res, err
		}
	case resResend, resConfirm:
		wait := backoff(a.Sends, s.cfg.ResendMin, s.cfg.ResendMax)
		if res == resConfirm {
			wait = max(wait, s.cfg.ConfirmAfter)
		}
		if ctx.Err() != nil {
			wait = 0 // shutting down: pick it up first thing on restart
		}
		at := now.Add(wait)
		a.State, a.UpdatedAt, a.DueAt = storage.AttemptSubmitting, now, at
		var what string
		switch {
		case res == resConfirm && (ans == answerRefused || ans == answerConflict):
			a.Confirm = storage.ConfirmRefused
			what = "a re-send was refused and Klavi's list has no payment for this key yet; looking again before calling it failed: "
		case res == resConfirm:
			a.Confirm = storage.ConfirmLost
			what = "the window has closed and Klavi's list has no payment for this key yet; looking again before calling it lapsed: "
		default:
			what = "outcome unknown, will re-send with the same key: "
		}
		a.Reason = what + recWhy
		ch.PutDue = append(ch.PutDue, storage.DueItem{At: at, Key: a.AttemptKey})
		if a.Attempt == 0 && rec.NextCycle == a.Cycle {
			rec.NextDue, rec.UpdatedAt = at, now
			ch.Cursor = rec
		}
		log.Warn("submission outcome unknown; will look again", "resend_at", at, "reason", why)
		s.emit(ch, EventResend, now, c, a, what+why)
	case resUnconfirmed:
		at := now.Add(s.cfg.ReconcileEvery)
		unconfirmed := func(why string) string {
			return fmt.Sprintf("outcome unknown after %d sends, its window has closed, and Klavi's orders list could not be read (%s); looked up again every %s",
				a.Sends, why, s.cfg.ReconcileEvery)
		}
		s.finish(a, storage.AttemptUnconfirmed, now, unconfirmed(recWhy))
		a.DueAt = at
		ch.PutDue = append(ch.PutDue, storage.DueItem{At: at, Key: a.AttemptKey})
		if prev != storage.AttemptUnconfirmed {
			log.Error("submission unconfirmed; will reconcile", "next_lookup", at)
			s.emit(ch, EventUnconfirmed, now, c, a, unconfirmed(why))
		} else {
			log.Warn("submission still unconfirmed; will reconcile", "next_lookup", at)
		}
		if a.Attempt == 0 && rec.NextCycle == a.Cycle && rec.State == storage.ConsentActive {
			s.advance(rec, sched, a.Cycle, now, ch)
		}
	}
	ch.Attempts = appendOnce(ch.Attempts, a)
	return res, nil
}

// adopt makes a the payment Klavi holds for its clientRequestId, and follows it: a
// poll at once tells its status (and a rejection plans the next retry).
func (s *Scheduler) adopt(rec *storage.ConsentRecord, sched cycle.Schedule, a *storage.Attempt, o *klavi.Order, now time.Time, ch *storage.Change) {
	prev := a.State
	a.State, a.PaymentID, a.Status, a.UpdatedAt, a.DueAt = storage.AttemptSubmitted, o.ID, o.Status, now, time.Time{}
	a.Reason, a.UnknownSince = "", time.Time{}
	if o.StatusReason != nil {
		a.Reason = string(o.StatusReason.Code)
	}
	if a.SubmittedAt.IsZero() {
		a.SubmittedAt = now
	}
	a.NextPoll = now
	ch.PutPoll = append(ch.PutPoll, storage.PollItem{At: now, Key: a.AttemptKey})
	kind := EventSubmitted
	if a.Attempt > 0 {
		kind = EventRetrySubmitted
	}
	if prev != storage.AttemptSubmitted && prev != storage.AttemptStuck {
		s.emit(ch, kind, now, rec.Consent, a, "adopted from Klavi's orders list")
	}
	if m := mismatch(a, o.Amount, o.Date, true); m != "" {
		s.noteMismatch(context.Background(), ch, now, rec.Consent, a, o.ID, m)
	}
	if a.Attempt == 0 && rec.NextCycle == a.Cycle && rec.State == storage.ConsentActive {
		s.advance(rec, sched, a.Cycle, now, ch)
	}
}

// afterFinal moves on after an attempt ended without a payment: an original's cursor
// advances; a local retry that Klavi provably did not create lets the next be planned.
func (s *Scheduler) afterFinal(rec *storage.ConsentRecord, sched cycle.Schedule, a *storage.Attempt, now time.Time, ch *storage.Change) error {
	if a.Attempt == 0 {
		if rec.NextCycle == a.Cycle && rec.State == storage.ConsentActive {
			s.advance(rec, sched, a.Cycle, now, ch)
		}
		return nil
	}
	ch.Attempts = appendOnce(ch.Attempts, a)
	if err := s.planRetry(rec, sched, a, now, ch); err != nil {
		return fmt.Errorf("plan the retry after %s: %w", a.State, err)
	}
	return nil
}

// reconcileDue is a lookup-only pass over an attempt found in the due index:
// UNCONFIRMED (reconciled every ReconcileEvery), SUBMITTING waiting for a second look
// (Confirm), or SUBMITTING past its window (one last lookup decides).
func (s *Scheduler) reconcileDue(ctx context.Context, rec *storage.ConsentRecord, a *storage.Attempt, it storage.DueItem, now time.Time) error {
	ch := &storage.Change{DelDue: []storage.DueItem{it}}
	if a.State == storage.AttemptUnconfirmed && a.Confirm == "" {
		a.Confirm = storage.ConfirmLost // its window is closed and it was looked up before
	}
	if _, err := s.settleUnknown(ctx, rec, s.cfg.Policy.Schedule(rec.Consent), a, answerUnknown, nil, s.maySend(rec, a, now), now, ch); err != nil {
		// The next retry could not be planned: nothing is recorded and the entry
		// stays, for the next scan to look up again (see settled).
		return err
	}
	return s.store.Apply(ctx, ch)
}

// Reconcile looks up, now, every UNCONFIRMED attempt (of one consent when consentID is
// set) in Klavi's orders list, and records what it finds: the forced pass of
// `billingd payments reconcile`, and the start-up pass that settles attempts stored
// UNCONFIRMED by earlier versions (which have no due entry). It returns how many
// attempts it looked up and how many it resolved.
func (s *Scheduler) Reconcile(ctx context.Context, consentID string) (ReconcileResult, error) {
	ctx, err := s.acting(ctx)
	if err != nil {
		return ReconcileResult{}, err
	}
	var res ReconcileResult
	if !s.checkClock(ctx) {
		res.Paused = true // a found rejection plans retries from "today": not while in doubt
		return res, nil
	}
	var atts []*storage.Attempt
	if consentID != "" {
		all, err := s.store.Attempts(ctx, consentID)
		if err != nil {
			return res, fmt.Errorf("reconcile: %w", err)
		}
		for _, a := range all {
			if a.State == storage.AttemptUnconfirmed || a.State == storage.AttemptStuck {
				atts = append(atts, a)
			}
		}
	} else {
		for _, st := range []storage.AttemptState{storage.AttemptUnconfirmed, storage.AttemptStuck} {
			list, err := s.store.Attention(ctx, st, math.MaxInt32)
			if err != nil {
				return res, fmt.Errorf("reconcile: %w", err)
			}
			atts = append(atts, list...)
		}
	}
	for _, a := range atts {
		if ctx.Err() != nil {
			break
		}
		res.Looked++
		st, err := s.reconcileOne(ctx, a.AttemptKey)
		if err != nil {
			res.Errors++
			s.log.Warn("reconcile", "consent_id", a.ConsentID, "cycle", a.Cycle, "attempt", a.Attempt, "err", err)
			continue
		}
		if st != storage.AttemptUnconfirmed && st != storage.AttemptStuck {
			res.Resolved++
		}
	}
	return res, nil
}

// ReconcileResult counts what one Reconcile pass did.
type ReconcileResult struct {
	Looked   int `json:"looked"`   // attempts looked up
	Resolved int `json:"resolved"` // no longer UNCONFIRMED or STUCK
	Errors   int `json:"errors"`   // store errors
	// Paused: the clock is in doubt (ClockState); nothing was looked up.
	Paused bool `json:"paused,omitempty"`
}

// reconcileOne looks one attempt up under its consent's lock and returns its new state.
func (s *Scheduler) reconcileOne(ctx context.Context, k storage.AttemptKey) (storage.AttemptState, error) {
	defer s.locks.lock(k.ConsentID)()
	a, err := s.store.GetAttempt(ctx, k)
	if err != nil {
		return "", err
	}
	rec, err := s.store.GetConsent(ctx, k.ConsentID)
	if err != nil {
		return a.State, err
	}
	now := s.clock.Now()
	ch := &storage.Change{}
	if !a.DueAt.IsZero() {
		ch.DelDue = []storage.DueItem{{At: a.DueAt, Key: k}}
	}
	switch a.State {
	case storage.AttemptUnconfirmed:
		if a.Confirm == "" {
			a.Confirm = storage.ConfirmLost
		}
		if _, err := s.settleUnknown(ctx, rec, s.cfg.Policy.Schedule(rec.Consent), a, answerUnknown, nil, false, now, ch); err != nil {
			return a.State, err
		}
	case storage.AttemptStuck:
		if !a.NextPoll.IsZero() {
			ch.DelPoll = []storage.PollItem{{At: a.NextPoll, Key: k}}
		}
		if err := s.lookupStuck(ctx, rec, a, now, ch); err != nil {
			return a.State, err
		}
	default:
		return a.State, nil
	}
	return a.State, s.store.Apply(ctx, ch)
}

// lookupStuck looks up a submitted payment whose status Klavi has not told for longer
// than Config.StuckAfter. Found with a status billingd knows: adopted (a different id
// replaces the stored one). Otherwise it is STUCK: an attention item, still polled.
func (s *Scheduler) lookupStuck(ctx context.Context, rec *storage.ConsentRecord, a *storage.Attempt, now time.Time, ch *storage.Change) error {
	c := rec.Consent
	o, lr, lerr := s.lookup(ctx, c.ID, a)
	switch {
	case lr == lookupFound && o.ID != "" && o.ID != a.PaymentID && o.Status.Valid():
		// Klavi holds the payment under another id: follow that one.
		s.emitLookup(ch, now, c, a, lr, resAdopt)
		s.log.Info("stuck payment found at Klavi under another id; adopted", "consent_id", c.ID, "cycle", a.Cycle,
			"attempt", a.Attempt, "payment_id", o.ID, "stored_payment_id", a.PaymentID, "status", string(o.Status))
		s.adopt(rec, s.cfg.Policy.Schedule(c), a, o, now, ch)
		ch.Attempts = appendOnce(ch.Attempts, a)
		return nil
	case lr == lookupFound && o.ID == a.PaymentID && o.Status.Valid():
		// The list tells the status the poll cannot: record it. A payment not yet
		// final stays polled, and is looked up again at each poll while its GET fails.
		s.emitLookup(ch, now, c, a, lr, resAdopt)
		if a.State == storage.AttemptStuck {
			a.State = storage.AttemptSubmitted
		}
		a.UpdatedAt = now
		ch.Attempts = appendOnce(ch.Attempts, a)
		if err := s.applyStatus(rec, a, o.Status, o.StatusReason, true, now, ch); err != nil {
			return err
		}
		// The list stands in for the status poll here, and is held to what the poll
		// is held to (handlePoll): the amount.
		if m := mismatch(a, o.Amount, o.Date, false); m != "" {
			var into *storage.Change
			if a.State.Final() {
				into = ch
			}
			s.noteMismatch(ctx, into, now, c, a, a.PaymentID, m)
		}
		return nil
	}
	s.emitLookup(ch, now, c, a, lr, resUnconfirmed)
	stuck := func(text func(error) string) string {
		return fmt.Sprintf("Klavi has not told payment %s's status since %s (404 or an unknown status), and its orders list %s",
			a.PaymentID, a.UnknownSince.UTC().Format(time.RFC3339), map[lookupResult]string{
				lookupFound: "shows it with status " + statusOf(o), lookupNotFound: "has no payment for clientRequestId " + a.ClientRequestID,
				lookupUnavailable: "could not be read: " + text(lerr)}[lr])
	}
	reason := stuck(errText) // the log's and the timeline's; the record has Klavi's words
	first := a.State != storage.AttemptStuck
	a.State, a.Reason, a.UpdatedAt = storage.AttemptStuck, stuck(recText), now
	a.NextPoll = now.Add(s.cfg.PollMax)
	ch.PutPoll = append(ch.PutPoll, storage.PollItem{At: a.NextPoll, Key: a.AttemptKey})
	ch.Attempts = appendOnce(ch.Attempts, a)
	if first {
		s.log.Error("payment stuck", "consent_id", c.ID, "cycle", a.Cycle, "attempt", a.Attempt, "payment_id", a.PaymentID, "reason", reason)
		s.emit(ch, EventStuck, now, c, a, reason)
	}
	return nil
}

func statusOf(o *klavi.Order) string {
	if o == nil || o.Status == "" {
		return "(none)"
	}
	return string(o.Status)
}

func appendOnce(list []*storage.Attempt, a *storage.Attempt) []*storage.Attempt {
	for _, x := range list {
		if x == a {
			return list
		}
	}
	return append(list, a)
}

// errText is err's text, for a log line and the timeline: no Klavi words in it.
func errText(err error) string {
	if err == nil {
		return "no answer"
	}
	return err.Error()
}

// recText is err's text with Klavi's words (klavi.Describe), masked, for an
// attempt's record, which an operator reads; never for a log line.
func recText(err error) string {
	if err == nil {
		return "no answer"
	}
	return klavi.Describe(err)
}

// describe says in one line what the send and the lookup got, each error as text
// gives it (errText or recText).
func describe(ans sendAnswer, sendErr error, lr lookupResult, lerr error, text func(error) string) string {
	s := "lookup " + lr.String()
	if lerr != nil {
		s += " (" + text(lerr) + ")"
	}
	if sendErr != nil {
		return "send: " + text(sendErr) + "; " + s
	}
	if ans == answerUnknown {
		return "no send in this pass; " + s
	}
	return s
}

// emitLookup reports one lookup and its resolution (metrics count them by outcome).
func (s *Scheduler) emitLookup(ch *storage.Change, now time.Time, c *consent.Consent, a *storage.Attempt, lr lookupResult, res resolution) {
	s.emit(ch, EventLookup, now, c, a, lr.String()+":"+res.String())
}
