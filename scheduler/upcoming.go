package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// DefaultAmountWarningDays is Config.AmountWarningDays when unset.
const DefaultAmountWarningDays = 2

// MaxUpcomingDays bounds the range of Upcoming (inclusive days).
const MaxUpcomingDays = 92

// ChargeKind says what a charge in the upcoming list is.
type ChargeKind string

// Charge kinds.
const (
	ChargeOriginal ChargeKind = "original" // a cycle's payment
	ChargeRetry    ChargeKind = "retry"    // a planned local retry (a PLANNED attempt)
	ChargeResend   ChargeKind = "resend"   // a submission whose outcome is unknown, sent again with the same key
)

// A Charge is one payment request billingd will send: the JSON of an item of
// GET /v1/upcoming.
type Charge struct {
	ConsentID string     `json:"consentId"`
	Cycle     int        `json:"cycle"`
	Attempt   int        `json:"attempt"`
	Kind      ChargeKind `json:"kind"`
	// SubmitAt is when the request goes out (Brasília, RFC 3339 with offset); an
	// overdue one goes at the next scan and shows the instant it was computed for.
	SubmitAt time.Time `json:"submitAt"`
	// DueDate is the payment's date: the cycle's due date, or the retry's date.
	DueDate cycle.Date `json:"dueDate"`
	// Amount in centavos ("12.34" in JSON); nil for a variable cycle with no amount
	// set yet (it will be SKIPPED unless one is set before SubmitAt).
	Amount   *klavi.Cents      `json:"amount"`
	Interval cycle.Interval    `json:"interval"`
	Mode     consent.RetryMode `json:"mode"`
}

// UpcomingOf lists the charges of one consent whose request instant is in [start,
// end], from what is stored: its cursor (the next cycle's queued instant, then every
// following cycle on its submit day, planned with Policy.Plan), its attempts
// (PLANNED local retries and SUBMITTING re-sends at their DueAt) and the amounts set
// for its variable cycles. now is the instant of the reading: an overdue entry is
// acted on at the next scan, seen from now. It is pure.
//
// A cycle whose window will have closed when it is acted on is not a charge (it will
// be MISSED), nor is a cycle already decided; retries of cycles that have not been
// rejected yet are not listed (they may never be sent).
func (p Policy) UpcomingOf(rec *storage.ConsentRecord, atts []*storage.Attempt, amounts map[int]klavi.Cents,
	submitAt func(cycle.Date) time.Time, now, start, end time.Time) []Charge {
	c := rec.Consent
	sched := p.Schedule(c)
	mode := p.RetryModeOf(c)
	byKey := map[storage.AttemptKey]*storage.Attempt{}
	var out []Charge
	add := func(k, n int, kind ChargeKind, at time.Time, due cycle.Date, amount *klavi.Cents) {
		if at.Before(start) || at.After(end) {
			return
		}
		out = append(out, Charge{ConsentID: c.ID, Cycle: k, Attempt: n, Kind: kind, SubmitAt: at.In(cycle.Brasilia),
			DueDate: due, Amount: amount, Interval: sched.Interval, Mode: mode})
	}
	for _, a := range atts {
		byKey[a.AttemptKey] = a
		if a.DueAt.IsZero() {
			continue
		}
		at := later(a.DueAt, now)
		amt := a.Amount
		switch {
		case a.State == storage.AttemptPlanned && retriesAllowed(rec) && !cycle.DateOf(at).After(a.Date.AddDays(-1)):
			add(a.Cycle, a.Attempt, ChargeRetry, at, a.Date, &amt)
		case a.State == storage.AttemptSubmitting && a.Confirm == "" && windowOpen(a, cycle.DateOf(at)) &&
			(a.Attempt > 0 && retriesAllowed(rec) || a.Attempt == 0 && rec.State == storage.ConsentActive):
			add(a.Cycle, a.Attempt, ChargeResend, at, a.Date, &amt)
		}
	}
	if rec.State != storage.ConsentActive || rec.NextDue.IsZero() {
		return out
	}
	amountOf := func(k int, today cycle.Date) (CyclePlan, *klavi.Cents) {
		var set *klavi.Cents
		if a, ok := amounts[k]; ok {
			set = &a
		}
		pl := p.Plan(c, sched, k, today, set)
		return pl, pl.Amount
	}
	for k := rec.NextCycle; sched.Exists(k); k++ {
		var at time.Time
		if k == rec.NextCycle {
			if byKey[storage.AttemptKey{ConsentID: c.ID, Cycle: k}] != nil {
				continue // in flight (a re-send, listed above) or decided
			}
			at = later(rec.NextDue, now)
			if pl, _ := amountOf(k, cycle.DateOf(at)); pl.State == StatePlanned && submitAt(pl.SubmitOn).After(at) {
				// Queued early (lead days or submit time changed): the scan moves it to the
				// current settings' instant (handleOriginal), on its submit day too.
				at = submitAt(pl.SubmitOn)
			}
		} else {
			at = submitAt(sched.Due(k).AddDays(-p.LeadDays))
		}
		if at.After(end) {
			break
		}
		pl, amt := amountOf(k, cycle.DateOf(at))
		if pl.State == StateMissed {
			continue
		}
		add(k, 0, ChargeOriginal, at, pl.Due, amt)
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// A DayTotal sums the charges whose request goes out on one Brasília day.
type DayTotal struct {
	Date  cycle.Date `json:"date"`
	Count int        `json:"count"`
	// Amount sums the known amounts (centavos; "12.34" in JSON); NoAmount counts the
	// charges with none set yet.
	Amount   klavi.Cents `json:"amount"`
	NoAmount int         `json:"noAmount"`
}

// Total sums a list of charges.
type Total struct {
	Count    int         `json:"count"`
	Amount   klavi.Cents `json:"amount"`
	NoAmount int         `json:"noAmount"`
}

// Upcoming is the JSON of GET /v1/upcoming: every charge whose request goes out on a
// Brasília day in [From, To], sorted by SubmitAt, with totals per day (of SubmitAt)
// and overall.
type Upcoming struct {
	From  cycle.Date `json:"from"`
	To    cycle.Date `json:"to"`
	Items []Charge   `json:"items"`
	Days  []DayTotal `json:"days"`
	Total Total      `json:"total"`
}

// ErrRange: a date range that is empty or longer than allowed.
var ErrRange = errors.New("bad date range")

// Upcoming lists every charge whose request goes out on a Brasília day in [from, to]
// (at most MaxUpcomingDays days): each active consent's next cycles, planned local
// retries and re-sends, as UpcomingOf works them out from the store. It reads the due
// index up to the end of to, then each consent found there (its record, attempts
// and amounts): a consent whose next entry is after to has nothing in the range.
func (s *Scheduler) Upcoming(from, to cycle.Date) (*Upcoming, error) {
	if to.Before(from) || to.DaysSince(from) >= MaxUpcomingDays {
		return nil, fmt.Errorf("%w: %s..%s: want from ≤ to, at most %d days", ErrRange, from, to, MaxUpcomingDays)
	}
	now := s.clock.Now()
	start, end := from.At(0, 0), to.AddDays(1).At(0, 0).Add(-time.Nanosecond)
	entries, err := s.store.DueUntil(context.Background(), end)
	if err != nil {
		return nil, fmt.Errorf("upcoming: %w", err)
	}
	seen := map[string]bool{}
	up := &Upcoming{From: from, To: to, Items: []Charge{}, Days: []DayTotal{}}
	for _, e := range entries {
		id := e.Key.ConsentID
		if seen[id] || !e.Kind.Charges() && e.Kind != storage.DueUnknown {
			continue
		}
		seen[id] = true
		rec, err := s.store.GetConsent(context.Background(), id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("upcoming: %w", err)
		}
		atts, err := s.store.Attempts(context.Background(), id)
		if err != nil {
			return nil, fmt.Errorf("upcoming: %w", err)
		}
		var amounts map[int]klavi.Cents
		if _, fixed := rec.Consent.FixedAmount(); !fixed {
			if amounts, err = s.store.Amounts(context.Background(), id); err != nil {
				return nil, fmt.Errorf("upcoming: %w", err)
			}
		}
		up.Items = append(up.Items, s.cfg.Policy.UpcomingOf(rec, atts, amounts, s.submitAt, now, start, end)...)
	}
	SortCharges(up.Items)
	up.Days, up.Total = TotalCharges(up.Items)
	return up, nil
}

// SortCharges sorts charges by request instant, then consent, cycle and attempt.
func SortCharges(cs []Charge) {
	slices.SortFunc(cs, func(a, b Charge) int {
		if c := a.SubmitAt.Compare(b.SubmitAt); c != 0 {
			return c
		}
		if c := strings.Compare(a.ConsentID, b.ConsentID); c != 0 {
			return c
		}
		if a.Cycle != b.Cycle {
			return a.Cycle - b.Cycle
		}
		return a.Attempt - b.Attempt
	})
}

// TotalCharges sums sorted charges per Brasília day of their request and overall.
func TotalCharges(cs []Charge) ([]DayTotal, Total) {
	days := []DayTotal{}
	var t Total
	for _, c := range cs {
		d := cycle.DateOf(c.SubmitAt)
		if len(days) == 0 || days[len(days)-1].Date != d {
			days = append(days, DayTotal{Date: d})
		}
		day := &days[len(days)-1]
		day.Count++
		t.Count++
		if c.Amount != nil {
			day.Amount += *c.Amount
			t.Amount += *c.Amount
		} else {
			day.NoAmount++
			t.NoAmount++
		}
	}
	return days, t
}

// A MissingAmount is a warning before harm: a variable cycle with no amount set whose
// submission is at most Config.AmountWarningDays away (or overdue). Left so, it will
// be SKIPPED.
type MissingAmount struct {
	ConsentID       string
	Cycle           int
	DueDate         cycle.Date
	SubmitAt        time.Time
	ClientRequestID string
	// Since is when the warning began: SubmitAt minus the warning days.
	Since time.Time
}

// AmountWarningDays returns Config.AmountWarningDays.
func (s *Scheduler) AmountWarningDays() int { return s.cfg.AmountWarningDays }

// MissingAmounts lists the variable cycles with no amount set whose submission
// instant is within Config.AmountWarningDays of now, in instant order. It reads the
// due index up to that horizon (each entry carries whether its amount is known) and
// the consent of each cycle found.
func (s *Scheduler) MissingAmounts() ([]MissingAmount, error) {
	now := s.clock.Now()
	warn := time.Duration(s.cfg.AmountWarningDays) * 24 * time.Hour
	entries, err := s.store.DueUntil(context.Background(), now.Add(warn))
	if err != nil {
		return nil, fmt.Errorf("missing amounts: %w", err)
	}
	out := []MissingAmount{}
	for _, e := range entries {
		if e.Kind != storage.DueOriginal || e.HasAmount {
			continue
		}
		rec, err := s.store.GetConsent(context.Background(), e.Key.ConsentID)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("missing amounts: %w", err)
		}
		if rec.State != storage.ConsentActive {
			continue
		}
		out = append(out, MissingAmount{
			ConsentID: e.Key.ConsentID, Cycle: e.Key.Cycle,
			DueDate:         s.cfg.Policy.Schedule(rec.Consent).Due(e.Key.Cycle),
			SubmitAt:        e.At.In(cycle.Brasilia),
			ClientRequestID: consent.ClientRequestID(e.Key.ConsentID, e.Key.Cycle, 0),
			Since:           e.At.Add(-warn).In(cycle.Brasilia),
		})
	}
	return out, nil
}
