package scheduler

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// Errors of the operator operations. Callers branch with errors.Is.
var (
	// ErrConflict: the operation does not fit the consent's state (revoking a revoked
	// consent, setting the amount of a cycle already submitted).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the operation's input is wrong (an amount above the consent's limit).
	ErrInvalid = errors.New("invalid")
)

// consentLocks serialize everything done to one consent (a due entry, a poll, an
// operator's change), so that no two writers of a consent record race. Striped: ids
// hash onto a fixed set of mutexes.
type consentLocks struct {
	seed  maphash.Seed
	locks [1024]sync.Mutex
}

func newConsentLocks() *consentLocks { return &consentLocks{seed: maphash.MakeSeed()} }

func (l *consentLocks) lock(id string) func() {
	m := &l.locks[maphash.String(l.seed, id)%uint64(len(l.locks))]
	m.Lock()
	return m.Unlock
}

// AddConsent stores a new consent. An authorized consent is scheduled from its first
// cycle due on or after billFrom (zero: today); cycles due before billFrom are not
// billingd's to bill. Other statuses are stored as they are (awaiting authorization,
// or history). It fails with storage.ErrExists for a known id.
func (s *Scheduler) AddConsent(c *consent.Consent, billFrom cycle.Date) (*storage.ConsentRecord, error) {
	return s.addConsent(c, billFrom, "")
}

// AddCreatedConsent stores a consent just created at Klavi, with the URL where the
// payer authorizes it, in the same write.
func (s *Scheduler) AddCreatedConsent(c *consent.Consent, redirectURL string) (*storage.ConsentRecord, error) {
	return s.addConsent(c, cycle.Date{}, redirectURL)
}

func (s *Scheduler) addConsent(c *consent.Consent, billFrom cycle.Date, redirectURL string) (*storage.ConsentRecord, error) {
	if l := c.Validate(); len(l) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, l)
	}
	if billFrom.IsZero() && storage.StateFor(c.Status) == storage.ConsentActive {
		if err := s.trustClock(); err != nil {
			return nil, err // "billed from today" needs a today billingd can trust
		}
	}
	defer s.locks.lock(c.ID)()
	now := s.clock.Now()
	if billFrom.IsZero() {
		billFrom = cycle.DateOf(now)
	}
	rec := &storage.ConsentRecord{Consent: c, State: storage.StateFor(c.Status), AddedAt: now, UpdatedAt: now, BillFrom: billFrom, RedirectURL: redirectURL}
	ch := &storage.Change{Consent: rec, NewConsent: true}
	if rec.State == storage.ConsentActive {
		s.scheduleFirst(rec, now, ch)
	}
	if err := s.store.Apply(ch); err != nil {
		return nil, err
	}
	s.log.Info("consent added", "consent_id", c.ID, "state", string(rec.State), "next_cycle", rec.NextCycle, "next_due", rec.NextDue)
	return rec, nil
}

// AddConsents stores many new consents in one transaction (first installs). Consents
// already stored are skipped and counted, not changed.
func (s *Scheduler) AddConsents(cs []*consent.Consent, billFrom cycle.Date, applyAll func([]*storage.Change) error) (added, skipped int, err error) {
	now := s.clock.Now()
	if billFrom.IsZero() {
		billFrom = cycle.DateOf(now)
	}
	chs := make([]*storage.Change, 0, len(cs))
	for _, c := range cs {
		if _, err := s.store.GetConsent(c.ID); err == nil {
			skipped++
			continue
		} else if !errors.Is(err, storage.ErrNotFound) {
			return added, skipped, err
		}
		rec := &storage.ConsentRecord{Consent: c, State: storage.StateFor(c.Status), AddedAt: now, UpdatedAt: now, BillFrom: billFrom}
		ch := &storage.Change{Consent: rec, NewConsent: true}
		if rec.State == storage.ConsentActive {
			s.scheduleFirst(rec, now, ch)
		}
		chs = append(chs, ch)
	}
	if err := applyAll(chs); err != nil {
		return 0, skipped, err
	}
	return len(chs), skipped, nil
}

// scheduleFirst points an active consent at its first cycle due on or after BillFrom.
func (s *Scheduler) scheduleFirst(rec *storage.ConsentRecord, now time.Time, ch *storage.Change) {
	sched := s.cfg.Policy.Schedule(rec.Consent)
	k := sched.FirstDueOnOrAfter(rec.BillFrom)
	rec.NextCycle, rec.NextDue = k, time.Time{}
	ch.Consent = rec
	if !sched.Exists(k) {
		rec.State, rec.StateReason = storage.ConsentExpired, fmt.Sprintf("no cycle is due between %s and the expiry date %s", rec.BillFrom, sched.Expiry)
		return
	}
	at := s.submitAt(sched.Due(k).AddDays(-s.cfg.Policy.LeadDays))
	rec.NextDue = at
	ch.PutDue = append(ch.PutDue, storage.DueItem{At: at, Key: storage.AttemptKey{ConsentID: rec.Consent.ID, Cycle: k}})
}

// Authorize marks a consent awaiting authorization as authorized (the payer approved
// it) and schedules it from today or its billFrom, whichever is later.
func (s *Scheduler) Authorize(id string) (*storage.ConsentRecord, error) {
	if err := s.trustClock(); err != nil {
		return nil, err
	}
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(id)
	if err != nil {
		return nil, err
	}
	if rec.State != storage.ConsentAwaiting {
		return nil, fmt.Errorf("%w: consent %s is %s, not awaiting authorization", ErrConflict, id, rec.State)
	}
	now := s.clock.Now()
	if today := cycle.DateOf(now); rec.BillFrom.Before(today) {
		rec.BillFrom = today
	}
	rec.State, rec.StateReason, rec.UpdatedAt = storage.ConsentActive, "", now
	rec.Consent.Status = klavi.ConsentAuthorized
	rec.RedirectURL = ""
	ch := &storage.Change{Consent: rec}
	s.scheduleFirst(rec, now, ch)
	if err := s.store.Apply(ch); err != nil {
		return nil, err
	}
	s.log.Info("consent authorized", "consent_id", id, "next_cycle", rec.NextCycle, "next_due", rec.NextDue)
	return rec, nil
}

// Revoke stops billing a consent for good, keeping its history. A submission already
// in flight is followed to its end; planned local retries are dropped.
func (s *Scheduler) Revoke(id, reason string) (*storage.ConsentRecord, error) {
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(id)
	if err != nil {
		return nil, err
	}
	if rec.State != storage.ConsentActive && rec.State != storage.ConsentAwaiting {
		return nil, fmt.Errorf("%w: consent %s is already %s", ErrConflict, id, rec.State)
	}
	if reason == "" {
		reason = "revoked by the operator"
	}
	now := s.clock.Now()
	ch := &storage.Change{}
	rec.Consent.Status = klavi.ConsentRevoked
	s.stop(rec, storage.ConsentRevoked, reason, now, ch)
	if err := s.store.Apply(ch); err != nil {
		return nil, err
	}
	return rec, nil
}

// SetAmount sets the amount of cycle k of a variable consent. The cycle must exist and
// not be decided yet, and the amount must fit the consent's limits.
func (s *Scheduler) SetAmount(id string, k int, a klavi.Cents) error {
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(id)
	if err != nil {
		return err
	}
	c := rec.Consent
	if err := c.CheckVariableAmount(a); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	sched := s.cfg.Policy.Schedule(c)
	if !sched.Exists(k) {
		return fmt.Errorf("%w: consent %s has no cycle %d (it expires on %s)", ErrInvalid, id, k, sched.Expiry)
	}
	if k < rec.NextCycle {
		return fmt.Errorf("%w: cycle %d of consent %s is already decided (the next cycle to bill is %d)", ErrConflict, k, id, rec.NextCycle)
	}
	if a, err := s.store.GetAttempt(storage.AttemptKey{ConsentID: id, Cycle: k}); err == nil {
		return fmt.Errorf("%w: cycle %d of consent %s was already sent with %s (%s)", ErrConflict, k, id, a.Amount, a.State)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if rec.State != storage.ConsentActive && rec.State != storage.ConsentAwaiting {
		return fmt.Errorf("%w: consent %s is %s", ErrConflict, id, rec.State)
	}
	return s.store.SetAmount(id, k, a)
}

// trustClock checks the clock (Klavi's time, the latest instant acted on) before an
// operator action that bills "from today"; in doubt it fails with ErrConflict.
func (s *Scheduler) trustClock() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if !s.checkClock(ctx) {
		return fmt.Errorf("%w: clock in doubt: %s; try again when it agrees with Klavi's", ErrConflict, s.ClockState().Reason)
	}
	return nil
}
