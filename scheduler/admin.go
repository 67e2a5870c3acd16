package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/redact"
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
	// ErrClockBehind: the clock reads earlier than the latest instant the store holds
	// (the clock stepped back, or the store was written on a clock ahead): an
	// operation that takes its instant or "today" from it refuses and writes nothing.
	ErrClockBehind = errors.New("clock is behind the store's latest instant")
)

// consentLocks serialize everything done to one consent (a due entry, a poll, an
// operator's change), so that no two writers of a consent record race. One lock per
// consent id, held by nobody else: the due scan keeps a consent's lock from the
// decision to send until the answer is recorded, across its pipeline's stages, and
// a lock shared with another consent would stall (or, within one chunk, deadlock)
// that other consent. Entries exist only while held or awaited.
type consentLocks struct {
	mu    sync.Mutex
	locks map[string]*consentLock
}

type consentLock struct {
	sync.Mutex
	refs int // holders and waiters; the entry goes when it drops to 0
}

func newConsentLocks() *consentLocks { return &consentLocks{locks: map[string]*consentLock{}} }

// lock takes id's lock and returns its release, to be called exactly once.
func (l *consentLocks) lock(id string) func() {
	l.mu.Lock()
	m := l.locks[id]
	if m == nil {
		m = &consentLock{}
		l.locks[id] = m
	}
	m.refs++
	l.mu.Unlock()
	m.Lock()
	return l.release(id, m)
}

// release returns the release of id's lock m, held: unlocked, and its entry gone
// once nobody holds or awaits it.
func (l *consentLocks) release(id string, m *consentLock) func() {
	return func() {
		m.Unlock()
		l.mu.Lock()
		if m.refs--; m.refs == 0 {
			delete(l.locks, id)
		}
		l.mu.Unlock()
	}
}

// tryLock takes id's lock if nobody holds or awaits it, and returns its release
// (to be called exactly once) and true; nil and false otherwise.
func (l *consentLocks) tryLock(id string) (func(), bool) {
	l.mu.Lock()
	if l.locks[id] != nil {
		l.mu.Unlock()
		return nil, false
	}
	m := &consentLock{refs: 1}
	l.locks[id] = m
	m.Lock() // nobody else has it: it was not in the map
	l.mu.Unlock()
	return l.release(id, m), true
}

// ActorOperator is the actor of an operator's action when no name is given.
const ActorOperator = "operator"

func actorOr(actor string) string {
	if actor == "" {
		return ActorOperator
	}
	return actor
}

// AddConsent stores a new consent. An authorized consent is scheduled from its first
// cycle due on or after billFrom; cycles due before billFrom are not billingd's to
// bill. Other statuses are stored as they are (awaiting authorization, or history).
// A zero billFrom is today, for an authorized consent or one awaiting authorization
// only once the clock is trusted (TrustClock; ErrConflict otherwise). It fails with
// storage.ErrExists for a known id. actor names who asked ("" is ActorOperator), for
// the consent's timeline.
func (s *Scheduler) AddConsent(c *consent.Consent, billFrom cycle.Date, actor string) (*storage.ConsentRecord, error) {
	return s.addConsent(c, billFrom, "", actor)
}

// AddCreatedConsent stores a consent just created at Klavi, with the URL where the
// payer authorizes it, in the same write. Its billFrom is today, so it fails as
// AddConsent does while the clock is in doubt: call TrustClock before creating the
// consent at Klavi.
func (s *Scheduler) AddCreatedConsent(c *consent.Consent, redirectURL, actor string) (*storage.ConsentRecord, error) {
	return s.addConsent(c, cycle.Date{}, redirectURL, actor)
}

// addedReason says in the timeline what state a consent was stored in.
func addedReason(rec *storage.ConsentRecord) string {
	if rec.State == storage.ConsentActive {
		return fmt.Sprintf("stored active; billed from cycle %d", rec.NextCycle)
	}
	if rec.StateReason != "" {
		return fmt.Sprintf("stored %s: %s", rec.State, rec.StateReason)
	}
	return fmt.Sprintf("stored %s", rec.State)
}

func (s *Scheduler) addConsent(c *consent.Consent, billFrom cycle.Date, redirectURL, actor string) (*storage.ConsentRecord, error) {
	if l := c.Validate(); len(l) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, l)
	}
	// "Billed from today" needs a today billingd can trust: for an authorized consent,
	// and for one awaiting authorization too, whose authorization keeps a billFrom
	// later than its own today.
	if st := stateFor(c.Status); billFrom.IsZero() && (st == storage.ConsentActive || st == storage.ConsentAwaiting) {
		if err := s.TrustClock(); err != nil {
			return nil, err
		}
	}
	defer s.locks.lock(c.ID)()
	now := s.clock.Now()
	if billFrom.IsZero() {
		billFrom = cycle.DateOf(now)
	}
	rec := &storage.ConsentRecord{Consent: c, State: stateFor(c.Status), AddedAt: now, UpdatedAt: now, BillFrom: billFrom, RedirectURL: redirectURL}
	ch := &storage.Change{Consent: rec, NewConsent: true}
	if rec.State == storage.ConsentActive {
		s.scheduleFirst(rec, now, ch)
	}
	record(ch, EventAdded, now, c.ID, actorOr(actor), addedReason(rec))
	if err := s.store.Apply(context.Background(), ch); err != nil {
		return nil, err
	}
	s.log.Info("consent added", append([]any{"consent_id", c.ID, "state", string(rec.State)}, s.nextAttrs(rec)...)...)
	return rec, nil
}

// AddConsents stores many new consents (first installs), each with an "added" event
// by ActorOperator, in as few transactions as the store allows (one on bolt; chunks
// within etcd's operation limit). Consents already stored are skipped and counted,
// not changed. On an error, added counts the consents stored before it.
//
// It runs with no Klavi to check the clock against (`billingd consent import`, while
// the daemon is stopped), so the clock's instant (and, for a zero billFrom, its
// today) is taken as it is, under the daemon's own rule: a clock more than
// Config.ClockTolerance behind the latest instant the store holds is refused
// (ErrClockBehind; nothing is written), and the instant of the write becomes the
// latest instant, so that a daemon started later on a clock behind it finds its clock
// in doubt instead of billing from a today that was ahead.
func (s *Scheduler) AddConsents(ctx context.Context, cs []*consent.Consent, billFrom cycle.Date) (added, skipped int, err error) {
	now := s.clock.Now().Round(0)
	if s.cfg.ClockTolerance >= 0 {
		hw, err := s.store.HighWater(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("read the latest instant acted on: %w", err)
		}
		if steppedBack(now, hw, s.cfg.ClockTolerance) {
			return 0, 0, fmt.Errorf("%w: it reads %s, %s before the latest instant the store holds (%s; tolerance %s); nothing was stored",
				ErrClockBehind, now.UTC().Format(time.RFC3339), hw.Sub(now).Round(time.Second), hw.UTC().Format(time.RFC3339), s.cfg.ClockTolerance)
		}
	}
	if billFrom.IsZero() {
		billFrom = cycle.DateOf(now)
	}
	chs := make([]*storage.Change, 0, len(cs))
	for _, c := range cs {
		if _, err := s.store.GetConsent(ctx, c.ID); err == nil {
			skipped++
			continue
		} else if !errors.Is(err, storage.ErrNotFound) {
			return added, skipped, err
		}
		rec := &storage.ConsentRecord{Consent: c, State: stateFor(c.Status), AddedAt: now, UpdatedAt: now, BillFrom: billFrom}
		ch := &storage.Change{Consent: rec, NewConsent: true}
		if rec.State == storage.ConsentActive {
			s.scheduleFirst(rec, now, ch)
		}
		record(ch, EventAdded, now, c.ID, ActorOperator, addedReason(rec))
		chs = append(chs, ch)
	}
	if len(chs) > 0 {
		chs[0].HighWater = now // with the first write: no consent is stored without it
	}
	added, err = s.store.ApplyAll(ctx, chs)
	return added, skipped, err
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
// it) and schedules it from today or its billFrom, whichever is later. actor names
// who asked, for the timeline.
//
// Klavi's word decides, not the caller's: the consent is read at Klavi first (GET
// consent, klavi-api.md section 7), and unless Klavi reports it
// CONSENT_AUTHORIZED nothing changes and the error (ErrConflict) names the status
// Klavi gave. A consent Klavi stopped (revoked, rejected, expired) is stopped here
// too, as the refresh job would. A read that fails is the error: the status is not
// guessed. ErrNotFound for an id billingd does not hold; ErrConflict for a consent
// not awaiting authorization.
func (s *Scheduler) Authorize(id, actor string) (*storage.ConsentRecord, error) {
	ctx := context.Background()
	rec, err := s.store.GetConsent(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec.State != storage.ConsentAwaiting {
		return nil, fmt.Errorf("%w: consent %s is %s, not awaiting authorization", ErrConflict, id, rec.State)
	}
	if err := s.TrustClock(); err != nil { // once, not on every retry: it asks Klavi
		return nil, err
	}
	kc, err := s.klavi.GetConsent(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read consent %s at Klavi to confirm its authorization: %w", id, err)
	}
	if kc.Status != klavi.ConsentAuthorized {
		if change, _ := judgeConsent(storage.ConsentAwaiting, kc.Status); change == consentStopped {
			// Stopped with the status Klavi just gave, as the refresh job would.
			if err := s.applyStatusOf(ctx, id, kc.Status); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: Klavi reports consent %s %s: it is stopped, never billed", ErrConflict, id, kc.Status)
		}
		return nil, fmt.Errorf("%w: Klavi reports consent %s %s, not %s: nothing changed (billing starts when Klavi reports it authorized; the refresh job reads it)",
			ErrConflict, id, kc.Status, klavi.ConsentAuthorized)
	}
	return retryConflict(func() (*storage.ConsentRecord, error) { return s.authorize(id, actor) })
}

// applyStatusOf records Klavi's status st of consent id under its lock
// (applyConsentStatus).
func (s *Scheduler) applyStatusOf(ctx context.Context, id string, st klavi.ConsentStatus) error {
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(ctx, id)
	if err != nil {
		return err
	}
	_, err = s.applyConsentStatus(ctx, rec, st, s.clock.Now())
	return err
}

func (s *Scheduler) authorize(id, actor string) (*storage.ConsentRecord, error) {
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(context.Background(), id)
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
	record(ch, EventAuthorized, now, id, actorOr(actor), authorizedReason(rec))
	if err := s.store.Apply(context.Background(), ch); err != nil {
		return nil, err
	}
	s.log.Info("consent authorized", append([]any{"consent_id", id}, s.nextAttrs(rec)...)...)
	return rec, nil
}

// nextAttrs are the log attributes of a consent's next submission: its cycle, the
// instant its request goes out and the cycle's due date; none when nothing is
// scheduled.
func (s *Scheduler) nextAttrs(rec *storage.ConsentRecord) []any {
	if rec.NextDue.IsZero() {
		return nil
	}
	return []any{"next_cycle", rec.NextCycle, "next_submit_at", rec.NextDue, "next_due_date", s.cfg.Policy.Schedule(rec.Consent).Due(rec.NextCycle).String()}
}

// authorizedReason says in the timeline what an authorization started.
func authorizedReason(rec *storage.ConsentRecord) string {
	if rec.State != storage.ConsentActive {
		return rec.StateReason
	}
	return fmt.Sprintf("billed from cycle %d", rec.NextCycle)
}

// Revoke stops billing a consent for good, keeping its history, and records who
// (actor) and why (reason) in its timeline. Payments submitted for later dates are
// canceled at Klavi by the next poll, which tries again until Klavi takes it; planned
// local retries are dropped.
func (s *Scheduler) Revoke(id, reason, actor string) (*storage.ConsentRecord, error) {
	return retryConflict(func() (*storage.ConsentRecord, error) { return s.revoke(id, reason, actor) })
}

func (s *Scheduler) revoke(id, reason, actor string) (*storage.ConsentRecord, error) {
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(context.Background(), id)
	if err != nil {
		return nil, err
	}
	if rec.State != storage.ConsentActive && rec.State != storage.ConsentAwaiting {
		return nil, fmt.Errorf("%w: consent %s is already %s", ErrConflict, id, rec.State)
	}
	// The operator's reason is free text: the timeline keeps it, the log only its
	// length.
	logReason := redact.Text(reason)
	if reason == "" {
		reason = "revoked by the operator"
		logReason = reason
	}
	now := s.clock.Now()
	ch := &storage.Change{}
	rec.Consent.Status = klavi.ConsentRevoked
	s.stopAs(actorOr(actor), EventRevoked, rec, storage.ConsentRevoked, reason, logReason, now, ch)
	// Payments already scheduled for later dates would still settle: the next poll
	// cancels them at Klavi (with the clock checked), as for a revocation made at the
	// bank, and tries again until Klavi takes it.
	if err := s.pollNow(rec, now, ch); err != nil {
		return nil, err
	}
	if err := s.store.Apply(context.Background(), ch); err != nil {
		return nil, err
	}
	return rec, nil
}

// SetAmount sets the amount (centavos) of cycle k of a variable consent, recorded in
// its timeline as amount_set by actor. The cycle must exist and not be decided yet,
// and the amount must fit the consent's limits.
func (s *Scheduler) SetAmount(id string, k int, a klavi.Cents, actor string) error {
	defer s.locks.lock(id)()
	rec, err := s.store.GetConsent(context.Background(), id)
	if err != nil {
		return err
	}
	c := rec.Consent
	if err := c.CheckVariableAmount(a); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	sched := s.cfg.Policy.Schedule(c)
	if !sched.Exists(k) {
		if sched.Expiry.IsZero() {
			return fmt.Errorf("%w: consent %s has no cycle %d", ErrInvalid, id, k)
		}
		return fmt.Errorf("%w: consent %s has no cycle %d (it expires on %s)", ErrInvalid, id, k, sched.Expiry)
	}
	if k < rec.NextCycle {
		return fmt.Errorf("%w: cycle %d of consent %s is already decided (the next cycle to bill is %d)", ErrConflict, k, id, rec.NextCycle)
	}
	if a, err := s.store.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: id, Cycle: k}); err == nil {
		return fmt.Errorf("%w: cycle %d of consent %s was already sent with %s (%s)", ErrConflict, k, id, a.Amount, a.State)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if rec.State != storage.ConsentActive && rec.State != storage.ConsentAwaiting {
		return fmt.Errorf("%w: consent %s is %s", ErrConflict, id, rec.State)
	}
	now := s.clock.Now()
	e := storage.ConsentEvent(string(EventAmountSet), now, id, actorOr(actor), "")
	e.Cycle, e.Date, e.Amount = &k, sched.Due(k), &a
	return s.store.Apply(context.Background(), &storage.Change{Amounts: []storage.CycleAmount{{ConsentID: id, Cycle: k, Amount: a}}, Events: []storage.Event{e}})
}

// Errors of Resolve.
var (
	// ErrNotOpen: the attempt is not an open attention item (not in an attention
	// state, or already resolved).
	ErrNotOpen = errors.New("not an open attention item")
)

// Resolve closes the open attention item of attempt k: the attempt keeps its state,
// leaves the attention index, and records who (actor), when and why (note) in the
// attempt and as a "resolved" event. It fails with storage.ErrNotFound for an unknown
// attempt, ErrNotOpen (wrapped in ErrConflict) when it is not open, ErrInvalid for an
// empty note.
func (s *Scheduler) Resolve(k storage.AttemptKey, note, actor string) (*storage.Attempt, error) {
	return retryConflict(func() (*storage.Attempt, error) { return s.resolve(k, note, actor) })
}

func (s *Scheduler) resolve(k storage.AttemptKey, note, actor string) (*storage.Attempt, error) {
	if note == "" {
		return nil, fmt.Errorf("%w: a note is required", ErrInvalid)
	}
	defer s.locks.lock(k.ConsentID)()
	a, err := s.store.GetAttempt(context.Background(), k)
	if err != nil {
		return nil, err
	}
	if !a.Open() {
		why := fmt.Sprintf("its state %s needs no attention", a.State)
		if a.Resolved != nil && a.Resolved.State == a.State {
			why = fmt.Sprintf("it was resolved by %s at %s", a.Resolved.By, a.Resolved.At.Format(time.RFC3339))
		}
		return nil, fmt.Errorf("%w: %w: attempt %s: %s", ErrConflict, ErrNotOpen, k, why)
	}
	since, _, err := s.store.AttentionSince(context.Background(), k, a.State)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	a.Resolved = &storage.Resolution{At: now, By: actorOr(actor), Note: note, State: a.State, Since: since}
	e := storage.AttemptEvent(string(EventResolved), now, a, actorOr(actor), note)
	if err := s.store.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}, Events: []storage.Event{e}}); err != nil {
		return nil, err
	}
	s.log.Info("attention item resolved", "consent_id", k.ConsentID, "cycle", k.Cycle, "attempt", k.Attempt, "state", string(a.State))
	return a, nil
}

// TrustClock checks the clock (Klavi's time, the latest instant acted on) before an
// operator action that bills "from today"; in doubt it fails with ErrConflict.
func (s *Scheduler) TrustClock() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if !s.checkClock(ctx) {
		return fmt.Errorf("%w: clock in doubt: %s; try again when it agrees with Klavi's", ErrConflict, s.ClockState().Reason)
	}
	return nil
}

// retryConflict runs an operator's change again (up to 3 times) when the store
// refused it because a record moved on since it was read (storage.ErrConflict: the
// scheduler, maybe on another replica, wrote it meanwhile). Each run reads afresh
// and checks its conditions again, so the change is never made on stale data.
func retryConflict[T any](fn func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		v, err := fn()
		if i == 2 || !errors.Is(err, storage.ErrConflict) {
			return v, err
		}
	}
}
