package scheduler

import (
	"fmt"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
)

// Pix Automático's submission window: a recurring payment for date D is created
// between D−10 and D−2 (calendar days, Brasília).
const (
	WindowOpensDays  = 10
	WindowClosesDays = 2
)

// A Policy is the set of billing rules every consent shares unless its own billing
// settings override them. Plan is the one function that turns a consent and a day into
// a decision; the daemon's due scan and the preview both call it.
type Policy struct {
	// LeadDays: a cycle due on D is submitted on D − LeadDays (2..10).
	LeadDays int
	// RetryMode is the default for consents whose billing.retryMode is empty.
	RetryMode consent.RetryMode
	// DueAdjust is the default for consents whose billing.dueDateAdjust is empty.
	DueAdjust cycle.DueAdjust
	// Calendar decides business days; nil means national holidays only.
	Calendar *cycle.Calendar
}

// State says what happens to a cycle, seen from a given day.
type State string

// Cycle states of a plan.
const (
	// StatePlanned: the submit day is today or later.
	StatePlanned State = "planned"
	// StateLate: the submit day has passed but the window is still open
	// (today ≤ due − 2): it is submitted at once, and SubmitOn is today.
	StateLate State = "late"
	// StateMissed: the window has closed (today > due − 2): the cycle is recorded as
	// missed and never submitted.
	StateMissed State = "missed"
)

// A CyclePlan is everything billingd will do for one cycle, seen from one day.
type CyclePlan struct {
	Index    int        `json:"index"`
	Start    cycle.Date `json:"start"`
	End      cycle.Date `json:"end"`
	Due      cycle.Date `json:"dueDate"`
	SubmitOn cycle.Date `json:"submitOn"`
	// Deadline is the last day a submission is accepted (Due − 2).
	Deadline cycle.Date `json:"-"`
	State    State      `json:"state"`
	// Amount is the fixed amount, or the amount set for this cycle of a variable
	// consent; nil when none is known.
	Amount  *klavi.Cents    `json:"amount"`
	Retries []retry.Retry   `json:"retries"`
	Dropped []retry.Dropped `json:"droppedRetries"`
	// Stored and Reason are set by PreviewStored: the attempts billingd made for a
	// decided cycle, and why a cycle is not (or no longer) billed.
	Stored []StoredAttempt `json:"stored,omitempty"`
	Reason string          `json:"reason,omitempty"`
}

// Schedule returns the consent's cycle schedule under p's defaults.
func (p Policy) Schedule(c *consent.Consent) cycle.Schedule {
	return c.Schedule(p.DueAdjust, p.Calendar)
}

// RetryModeOf returns the consent's retry mode under p's default.
func (p Policy) RetryModeOf(c *consent.Consent) consent.RetryMode {
	return c.RetryModeOr(p.RetryMode)
}

// Plan returns cycle k of consent c as seen on day today. amount is the amount set for
// the cycle of a variable consent (nil when none is set; ignored for fixed consents).
func (p Policy) Plan(c *consent.Consent, s cycle.Schedule, k int, today cycle.Date, amount *klavi.Cents) CyclePlan {
	cy := s.Cycle(k)
	cp := CyclePlan{
		Index:    k,
		Start:    cy.Start,
		End:      cy.End,
		Due:      cy.Due,
		SubmitOn: cy.Due.AddDays(-p.LeadDays),
		Deadline: cy.Due.AddDays(-WindowClosesDays),
		Retries:  []retry.Retry{},
		Dropped:  []retry.Dropped{},
	}
	switch {
	case !cp.SubmitOn.Before(today):
		cp.State = StatePlanned
	case !today.After(cp.Deadline):
		cp.State, cp.SubmitOn = StateLate, today
	default:
		cp.State = StateMissed
	}
	if fixed, ok := c.FixedAmount(); ok {
		cp.Amount = &fixed
	} else if amount != nil {
		a := *amount
		cp.Amount = &a
	}
	if st := c.Strategy(); st != nil {
		cp.Retries, cp.Dropped = retry.Plan(cy.Due, *st, retry.Limits{
			Interval:       s.Interval,
			NextCycleStart: s.Start(k + 1),
			Expiry:         s.Expiry,
		})
		if cp.Retries == nil {
			cp.Retries = []retry.Retry{}
		}
		if cp.Dropped == nil {
			cp.Dropped = []retry.Dropped{}
		}
	}
	return cp
}

// A Preview is the plan of a consent's next cycles: the JSON contract of
// `billingd preview --format json`.
type Preview struct {
	ConsentID string            `json:"consentId"`
	Interval  cycle.Interval    `json:"interval"`
	RetryMode consent.RetryMode `json:"retryMode"`
	From      cycle.Date        `json:"-"`
	LeadDays  int               `json:"-"`
	Cycles    []CyclePlan       `json:"cycles"`
}

// Preview plans the next n cycles of c whose due date is on or after from, seen from
// the day from. Cycles past the consent's expiry do not exist and are not listed.
// amounts, when not nil, gives the amount set for a cycle of a variable consent.
func (p Policy) Preview(c *consent.Consent, from cycle.Date, n int, amounts func(k int) *klavi.Cents) Preview {
	s := p.Schedule(c)
	pv := Preview{
		ConsentID: c.ID,
		Interval:  s.Interval,
		RetryMode: p.RetryModeOf(c),
		From:      from,
		LeadDays:  p.LeadDays,
		Cycles:    []CyclePlan{},
	}
	for k := s.FirstDueOnOrAfter(from); len(pv.Cycles) < n && s.Exists(k); k++ {
		var amt *klavi.Cents
		if amounts != nil {
			amt = amounts(k)
		}
		cp := p.Plan(c, s, k, from, amt)
		if cp.State == StateMissed { // never sent, so never retried: show no retry dates
			cp.Retries, cp.Dropped = []retry.Retry{}, []retry.Dropped{}
		}
		pv.Cycles = append(pv.Cycles, cp)
	}
	return pv
}

// Validate reports a policy that cannot plan.
func (p Policy) Validate() error {
	if p.LeadDays < WindowClosesDays || p.LeadDays > WindowOpensDays {
		return fmt.Errorf("lead days %d is outside %d..%d", p.LeadDays, WindowClosesDays, WindowOpensDays)
	}
	if _, err := consent.ParseRetryMode(string(p.RetryMode)); err != nil {
		return err
	}
	return nil
}
