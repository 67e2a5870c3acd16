package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// Outcome is a row of the month's ledger.
type Outcome string

// Ledger outcomes. An attempt counts in submitted or retried when Klavi accepted it
// (it has a payment id), and in one more outcome for its current state (a
// SUBMITTED attempt still waiting for settlement counts in submitted only).
const (
	OutcomeSubmitted   Outcome = "submitted"   // originals Klavi accepted
	OutcomeRetried     Outcome = "retried"     // local retries Klavi accepted
	OutcomeCompleted   Outcome = "completed"   // settled: money billed
	OutcomeRejected    Outcome = "rejected"    // rejected or canceled (final)
	OutcomeMissed      Outcome = "missed"      // the window closed before submission
	OutcomeSkipped     Outcome = "skipped"     // variable cycle with no amount set
	OutcomeFailed      Outcome = "failed"      // refused by Klavi; nothing created
	OutcomeUnconfirmed Outcome = "unconfirmed" // outcome unknown, Klavi cannot tell yet
	OutcomeStuck       Outcome = "stuck"       // status unknown at Klavi past StuckAfter
)

// Outcomes lists the ledger's outcomes in report order.
var Outcomes = []Outcome{OutcomeSubmitted, OutcomeRetried, OutcomeCompleted, OutcomeRejected,
	OutcomeMissed, OutcomeSkipped, OutcomeFailed, OutcomeUnconfirmed, OutcomeStuck}

// OutcomesOf returns the ledger outcomes attempt a counts in (none for a planned,
// dropped or in-flight attempt with no payment). It is pure.
func OutcomesOf(a *storage.Attempt) []Outcome {
	var out []Outcome
	if a.PaymentID != "" {
		if a.Attempt == 0 {
			out = append(out, OutcomeSubmitted)
		} else {
			out = append(out, OutcomeRetried)
		}
	}
	switch a.State {
	case storage.AttemptCompleted:
		out = append(out, OutcomeCompleted)
	case storage.AttemptRejected:
		out = append(out, OutcomeRejected)
	case storage.AttemptMissed:
		out = append(out, OutcomeMissed)
	case storage.AttemptSkipped:
		out = append(out, OutcomeSkipped)
	case storage.AttemptFailed:
		out = append(out, OutcomeFailed)
	case storage.AttemptUnconfirmed:
		out = append(out, OutcomeUnconfirmed)
	case storage.AttemptStuck:
		out = append(out, OutcomeStuck)
	}
	return out
}

// A LedgerRow counts the attempts of one interval with one outcome; Amount sums their
// amounts in centavos ("12.34" in JSON; a skipped cycle counts 0).
type LedgerRow struct {
	Interval cycle.Interval `json:"interval"`
	Outcome  Outcome        `json:"outcome"`
	Count    int            `json:"count"`
	Amount   klavi.Cents    `json:"amount"`
}

// A Sum is a count and an amount in centavos.
type Sum struct {
	Count  int         `json:"count"`
	Amount klavi.Cents `json:"amount"`
}

// A Ledger is the JSON of GET /v1/report: a month's attempts by interval and outcome,
// exact, from the store. An attempt belongs to the month of its Date: the payment's
// date at Klavi (an original's due date, a local retry's retry date), a Brasília
// civil date, not the day it was submitted.
type Ledger struct {
	Month string     `json:"month"` // YYYY-MM
	From  cycle.Date `json:"from"`  // the month's first day
	To    cycle.Date `json:"to"`    // its last day
	// Rows holds every interval with an attempt in the month, each with every
	// outcome (zero rows included), in interval then Outcomes order.
	Rows []LedgerRow `json:"rows"`
	// Totals sums the rows per outcome, every outcome present.
	Totals map[Outcome]Sum `json:"totals"`
}

// ParseMonth reads "YYYY-MM" and returns its first and last days.
func ParseMonth(s string) (from, to cycle.Date, err error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return from, to, fmt.Errorf("month %q: want YYYY-MM", s)
	}
	from = cycle.MustDate(t.Year(), t.Month(), 1)
	return from, from.AddMonthsClamped(1).AddDays(-1), nil
}

// LedgerOf sums attempts into a month's ledger. intervalOf gives an attempt's
// consent's interval. It is pure.
func LedgerOf(month string, from, to cycle.Date, atts []*storage.Attempt, intervalOf func(consentID string) cycle.Interval) *Ledger {
	l := &Ledger{Month: month, From: from, To: to, Rows: []LedgerRow{}, Totals: map[Outcome]Sum{}}
	for _, a := range atts {
		l.add(a, intervalOf(a.ConsentID))
	}
	l.finish()
	return l
}

func (l *Ledger) add(a *storage.Attempt, iv cycle.Interval) {
	for _, o := range OutcomesOf(a) {
		i := slices.IndexFunc(l.Rows, func(r LedgerRow) bool { return r.Interval == iv && r.Outcome == o })
		if i < 0 {
			l.Rows = append(l.Rows, LedgerRow{Interval: iv, Outcome: o})
			i = len(l.Rows) - 1
		}
		l.Rows[i].Count++
		l.Rows[i].Amount += a.Amount
	}
}

// finish adds the zero rows, sorts, and sums the totals.
func (l *Ledger) finish() {
	var ivs []cycle.Interval
	for _, r := range l.Rows {
		if !slices.Contains(ivs, r.Interval) {
			ivs = append(ivs, r.Interval)
		}
	}
	for _, iv := range ivs {
		for _, o := range Outcomes {
			if !slices.ContainsFunc(l.Rows, func(r LedgerRow) bool { return r.Interval == iv && r.Outcome == o }) {
				l.Rows = append(l.Rows, LedgerRow{Interval: iv, Outcome: o})
			}
		}
	}
	slices.SortFunc(l.Rows, func(a, b LedgerRow) int {
		if a.Interval != b.Interval {
			return int(a.Interval) - int(b.Interval)
		}
		return slices.Index(Outcomes, a.Outcome) - slices.Index(Outcomes, b.Outcome)
	})
	for _, o := range Outcomes {
		l.Totals[o] = Sum{}
	}
	for _, r := range l.Rows {
		t := l.Totals[r.Outcome]
		t.Count += r.Count
		t.Amount += r.Amount
		l.Totals[r.Outcome] = t
	}
}

// Report returns the ledger of month ("YYYY-MM"): every stored attempt whose Date
// falls in it, by its consent's interval and outcome. It walks the store's dates
// index for the month and reads each consent once.
func (s *Scheduler) Report(month string) (*Ledger, error) {
	from, to, err := ParseMonth(month)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	l := &Ledger{Month: month, From: from, To: to, Rows: []LedgerRow{}, Totals: map[Outcome]Sum{}}
	intervals := map[string]cycle.Interval{}
	var ferr error
	err = s.store.EachAttemptBetween(context.Background(), from, to, func(a *storage.Attempt) error {
		iv, ok := intervals[a.ConsentID]
		if !ok {
			rec, err := s.store.GetConsent(context.Background(), a.ConsentID)
			switch {
			case errors.Is(err, storage.ErrNotFound):
			case err != nil:
				ferr = err
				return err
			default:
				iv = rec.Consent.Interval()
			}
			intervals[a.ConsentID] = iv
		}
		l.add(a, iv)
		return nil
	})
	if err != nil {
		if ferr != nil {
			err = ferr
		}
		return nil, fmt.Errorf("report %s: %w", month, err)
	}
	l.finish()
	return l, nil
}
