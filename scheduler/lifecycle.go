package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// Consent lifecycle from Klavi (klavi-api.md sections 6 and 7): a consent awaiting
// authorization is followed with get-consent until the payer authorizes it (billing
// starts by itself), rejects it or lets it expire; an active consent is read again
// every Config.RefreshEvery, and before a submission when its last read is older, so
// that a revocation made at the bank stops billing before the next charge. On a
// revocation, payments already scheduled for later dates are canceled at Klavi.

// stateFor maps a Klavi consent status to the state billingd starts a consent in.
func stateFor(s klavi.ConsentStatus) storage.ConsentState {
	switch s {
	case klavi.ConsentAuthorized:
		return storage.ConsentActive
	case klavi.ConsentRevoked:
		return storage.ConsentRevoked
	case klavi.ConsentRejected:
		return storage.ConsentRejected
	case klavi.ConsentExpired, klavi.ConsentPeriodExpired:
		return storage.ConsentExpired
	}
	return storage.ConsentAwaiting
}

// consentChange is what Klavi's status of a consent means for billingd's record.
type consentChange int

const (
	consentUnchanged consentChange = iota
	consentAuthorized
	consentStopped
)

// judgeConsent decides what Klavi's status st means for a consent in state cur. It
// is pure. It returns the state to stop in when the change is consentStopped.
func judgeConsent(cur storage.ConsentState, st klavi.ConsentStatus) (consentChange, storage.ConsentState) {
	next := stateFor(st)
	switch {
	case !st.Valid():
		return consentUnchanged, cur // a status billingd does not know changes nothing
	case cur == storage.ConsentAwaiting && next == storage.ConsentActive:
		return consentAuthorized, next
	case cur == storage.ConsentAwaiting && (next == storage.ConsentRejected || next == storage.ConsentExpired || next == storage.ConsentRevoked):
		return consentStopped, next
	case cur == storage.ConsentActive && (next == storage.ConsentRevoked || next == storage.ConsentRejected || next == storage.ConsentExpired):
		return consentStopped, next
	}
	return consentUnchanged, cur
}

// RefreshResult counts what one Refresh pass did.
type RefreshResult struct {
	Read       int `json:"read"`       // consents read at Klavi
	Authorized int `json:"authorized"` // awaiting consents the payer authorized
	Stopped    int `json:"stopped"`    // consents revoked, rejected or expired at Klavi
	Errors     int `json:"errors"`     // Klavi or store errors (tried again next pass)
}

// Refresh reads Klavi's view of every consent awaiting authorization, and of every
// active consent last read more than Config.RefreshEvery ago, and acts on it.
func (s *Scheduler) Refresh(ctx context.Context) (RefreshResult, error) {
	ctx, err := s.acting(ctx)
	if err != nil {
		return RefreshResult{}, err
	}
	var res RefreshResult
	if !s.checkClock(ctx) {
		return res, nil // an authorization is billed from "today": not while in doubt
	}
	now := s.clock.Now()
	// The sweeps read consents page by page, and a page filtered by state walks every
	// cursor until it fills: a sweep is skipped when no consent can need it (no
	// consent awaiting authorization), and active consents, refreshed every
	// RefreshEvery, are swept at most every RefreshEvery/24 rather than at every run.
	counts, err := s.store.Counts(ctx)
	if err != nil {
		return res, fmt.Errorf("refresh consents: %w", err)
	}
	var states []storage.ConsentState
	if counts[storage.ConsentAwaiting] > 0 {
		states = append(states, storage.ConsentAwaiting)
	}
	s.refreshMu.Lock()
	sweepActive := counts[storage.ConsentActive] > 0 && (s.lastActiveSweep.IsZero() ||
		now.Sub(s.lastActiveSweep) >= s.cfg.RefreshEvery/24 || now.Before(s.lastActiveSweep))
	if sweepActive {
		s.lastActiveSweep = now
		states = append(states, storage.ConsentActive)
	}
	s.refreshMu.Unlock()
	for _, st := range states {
		after := ""
		for ctx.Err() == nil {
			recs, err := s.store.ListConsents(ctx, after, s.cfg.Batch, st)
			if err != nil {
				return res, fmt.Errorf("refresh consents: %w", err)
			}
			if len(recs) == 0 {
				break
			}
			after = recs[len(recs)-1].ID()
			var todo []string
			for _, r := range recs {
				if st == storage.ConsentAwaiting || now.Sub(r.RefreshedAt) >= s.cfg.RefreshEvery {
					todo = append(todo, r.ID())
				}
			}
			results := make([]consentChange, len(todo))
			errs := make([]error, len(todo))
			s.each(ctx, len(todo), func(i int) {
				results[i], errs[i] = s.refreshOne(ctx, todo[i])
			})
			for i := range todo {
				res.Read++
				switch {
				case errs[i] != nil:
					res.Errors++
				case results[i] == consentAuthorized:
					res.Authorized++
				case results[i] == consentStopped:
					res.Stopped++
				}
			}
		}
	}
	return res, nil
}

// RefreshConsent reads one consent at Klavi now, whatever its last read, and records
// what its status means (POST /v1/scheduler/refresh?consent=ID): an operator who
// learns of a revocation at the bank need not wait for the daily read.
func (s *Scheduler) RefreshConsent(ctx context.Context, id string) (RefreshResult, error) {
	ctx, err := s.acting(ctx)
	if err != nil {
		return RefreshResult{}, err
	}
	var res RefreshResult
	if !s.checkClock(ctx) {
		return res, fmt.Errorf("%w: clock in doubt: %s", ErrConflict, s.ClockState().Reason)
	}
	if _, err := s.store.GetConsent(ctx, id); err != nil {
		return res, err
	}
	change, err := s.refreshOne(ctx, id)
	res.Read = 1
	switch {
	case err != nil:
		return res, err
	case change == consentAuthorized:
		res.Authorized = 1
	case change == consentStopped:
		res.Stopped = 1
	}
	return res, nil
}

// refreshOne reads one consent at Klavi and records what its status means.
func (s *Scheduler) refreshOne(ctx context.Context, id string) (consentChange, error) {
	kc, err := s.klavi.GetConsent(ctx, id)
	if err != nil {
		s.log.Warn("get consent", "consent_id", id, "err", err)
		return consentUnchanged, err
	}
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(ctx, id)
	if err != nil {
		return consentUnchanged, err
	}
	return s.applyConsentStatus(ctx, rec, kc.Status, s.clock.Now())
}

// applyConsentStatus records Klavi's status of a consent (the caller holds its lock).
func (s *Scheduler) applyConsentStatus(ctx context.Context, rec *storage.ConsentRecord, st klavi.ConsentStatus, now time.Time) (consentChange, error) {
	change, next := judgeConsent(rec.State, st)
	rec.RefreshedAt, rec.UpdatedAt = now, now
	ch := &storage.Change{Cursor: rec}
	switch change {
	case consentAuthorized: // as Authorize: billed from today or its billFrom
		if today := cycle.DateOf(now); rec.BillFrom.Before(today) {
			rec.BillFrom = today
		}
		rec.Consent.Status = klavi.ConsentAuthorized
		rec.State, rec.StateReason, rec.RedirectURL = storage.ConsentActive, "", ""
		ch.Consent = rec
		s.scheduleFirst(rec, now, ch)
		record(ch, EventAuthorized, now, rec.ID(), storage.ActorBillingd, "Klavi reports the consent "+string(st)+"; "+authorizedReason(rec))
		s.log.Info("consent authorized at Klavi", "consent_id", rec.ID(), "next_cycle", rec.NextCycle)
	case consentStopped:
		rec.Consent.Status = st
		s.stop(rec, next, fmt.Sprintf("Klavi reports the consent %s", st), now, ch)
	}
	if change == consentStopped && next == storage.ConsentRevoked {
		if err := s.pollNow(rec, now, ch); err != nil {
			return consentUnchanged, err
		}
	}
	if err := s.store.Apply(ctx, ch); err != nil {
		return consentUnchanged, err
	}
	return change, nil
}

// freshBeforeSubmit reads the consent at Klavi before a submission when its last read
// is older than Config.RefreshEvery. It reports false when Klavi says billing must
// stop (the record is then stopped). A failed read does not hold the submission back:
// the last known status stands, and the error is logged.
func (s *Scheduler) freshBeforeSubmit(ctx context.Context, rec *storage.ConsentRecord, now time.Time) (bool, error) {
	if !s.cfg.RefreshBeforeSubmit || now.Sub(rec.RefreshedAt) < s.cfg.RefreshEvery {
		return true, nil
	}
	kc, err := s.klavi.GetConsent(ctx, rec.ID())
	if err != nil {
		s.log.Warn("get consent before submission; submitting on the last known status", "consent_id", rec.ID(), "err", err)
		return true, nil
	}
	change, err := s.applyConsentStatus(ctx, rec, kc.Status, now)
	if err != nil {
		return false, err
	}
	return change != consentStopped, nil
}

// pollNow moves the next status poll of every payment of a revoked consent that is
// not final to now: the poll cancels at Klavi those scheduled for a later date
// (handlePoll), with the clock checked, and tries again at every poll until Klavi
// takes the cancellation or the date comes. It adds to ch.
func (s *Scheduler) pollNow(rec *storage.ConsentRecord, now time.Time, ch *storage.Change) error {
	by, err := s.cancellerFor(rec)
	if err != nil {
		return err
	}
	if by == nil {
		s.log.Error("a revoked consent's scheduled payments cannot be canceled: set klavi.canceller (or give the consent's creditorAccount a holder); they are followed to their end",
			"consent_id", rec.ID())
		return nil
	}
	atts, err := s.store.Attempts(context.Background(), rec.ID())
	if err != nil {
		return err
	}
	for _, a := range atts {
		if (a.State != storage.AttemptSubmitted && a.State != storage.AttemptStuck) || a.PaymentID == "" {
			continue
		}
		if !a.NextPoll.IsZero() {
			ch.DelPoll = append(ch.DelPoll, storage.PollItem{At: a.NextPoll, Key: a.AttemptKey})
		}
		a.NextPoll = now
		ch.PutPoll = append(ch.PutPoll, storage.PollItem{At: now, Key: a.AttemptKey})
		ch.Attempts = appendOnce(ch.Attempts, a)
	}
	return nil
}

// Errors of CancelPayment.
var (
	// ErrNoCanceller: no document to cancel in the name of (config klavi.canceller,
	// or the consent's creditorAccount holder).
	ErrNoCanceller = errors.New("no canceller document: set klavi.canceller or give the consent's creditorAccount a holder")
)

// CancelPayment cancels, at Klavi, a payment of a consent scheduled for a later date
// (`billingd payments cancel`). The attempt ends REJECTED with status CANCELED; the
// timeline records actor as who canceled it.
func (s *Scheduler) CancelPayment(ctx context.Context, consentID, paymentID, actor string) (*storage.Attempt, error) {
	ctx, err := s.acting(ctx)
	if err != nil {
		return nil, err
	}
	defer s.locks.lock(consentID)()
	rec, err := s.store.GetConsent(ctx, consentID)
	if err != nil {
		return nil, err
	}
	atts, err := s.store.Attempts(ctx, consentID)
	if err != nil {
		return nil, err
	}
	for _, a := range atts {
		if a.PaymentID != paymentID {
			continue
		}
		if a.State.Final() {
			return nil, fmt.Errorf("%w: payment %s is already %s", ErrConflict, paymentID, a.State)
		}
		ch := &storage.Change{}
		if err := s.cancelInto(ctx, rec, a, s.clock.Now(), actorOr(actor), ch); err != nil {
			return nil, err
		}
		if err := s.store.Apply(ctx, ch); err != nil {
			return nil, err
		}
		return a, nil
	}
	return nil, fmt.Errorf("payment %s of consent %s: %w", paymentID, consentID, storage.ErrNotFound)
}

// cancelInto cancels a's payment at Klavi and, when Klavi takes it, records the
// attempt REJECTED with status CANCELED into ch (its poll entry removed).
func (s *Scheduler) cancelInto(ctx context.Context, rec *storage.ConsentRecord, a *storage.Attempt, now time.Time, actor string, ch *storage.Change) error {
	by, err := s.cancellerFor(rec)
	if err != nil {
		return err
	}
	if by == nil {
		return ErrNoCanceller
	}
	ctx, err = s.acting(ctx)
	if err != nil {
		return err
	}
	_, err = s.klavi.CancelPayment(ctx, rec.ID(), a.PaymentID, &klavi.CancelPaymentRequest{CancelledBy: by.Identifier, IdentifierType: by.IdentifierType})
	if err != nil {
		// An error says nothing sure: an earlier attempt's answer may have been lost
		// after Klavi canceled it (a retry then meets "already canceled"). Look.
		if p, gerr := s.klavi.GetPayment(ctx, rec.ID(), a.PaymentID); gerr != nil || p.Status != klavi.PaymentCanceled {
			return fmt.Errorf("cancel payment %s: %w", a.PaymentID, err)
		}
	}
	if !a.NextPoll.IsZero() {
		ch.DelPoll = append(ch.DelPoll, storage.PollItem{At: a.NextPoll, Key: a.AttemptKey})
	}
	ch.PutPoll = slices.DeleteFunc(ch.PutPoll, func(p storage.PollItem) bool { return p.Key == a.AttemptKey })
	a.Status = klavi.PaymentCanceled
	s.finish(a, storage.AttemptRejected, now, "canceled at Klavi")
	ch.Attempts = appendOnce(ch.Attempts, a)
	s.emitAs(ch, actor, EventCanceled, now, rec.Consent, a, a.Reason)
	s.log.Info("payment canceled", "consent_id", rec.ID(), "cycle", a.Cycle, "attempt", a.Attempt, "payment_id", a.PaymentID)
	return nil
}

// cancellerFor is who cancels rec's payments: Config.Canceller, else the consent's
// creditorAccount holder; nil when neither is known. A record read through its
// terms (storage: GetConsentAttempt) has no accounts: the consent is read whole.
func (s *Scheduler) cancellerFor(rec *storage.ConsentRecord) (*klavi.Person, error) {
	if by := s.cfg.Canceller; by != nil && by.Identifier != "" {
		return by, nil
	}
	c := rec.Consent
	if rec.Partial() {
		whole, err := s.store.GetConsent(context.Background(), rec.ID())
		if err != nil {
			return nil, err
		}
		c = whole.Consent
	}
	return creditorHolder(c), nil
}

// creditorHolder is the receiver's holder of a consent, who may cancel its payments.
func creditorHolder(c *consent.Consent) *klavi.Person {
	if c.CreditorAccount != nil && c.CreditorAccount.Holder != nil && c.CreditorAccount.Holder.Identifier != "" {
		return c.CreditorAccount.Holder
	}
	return nil
}
