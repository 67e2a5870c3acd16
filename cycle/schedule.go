package cycle

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/internal/enum"
)

// A DueAdjust says how a cycle's due date follows from its start date.
type DueAdjust uint8

const (
	// AdjustNone: the due date is the cycle's start date. Pix Automático settles on
	// any day, weekends and holidays included, so this is the default.
	AdjustNone DueAdjust = iota
	// AdjustNextBusinessDay: a start date on a weekend or holiday moves the due date to
	// the next business day of the Schedule's Calendar.
	AdjustNextBusinessDay
)

// String returns the config spelling: "none" or "next_business_day".
func (a DueAdjust) String() string {
	switch a {
	case AdjustNone:
		return "none"
	case AdjustNextBusinessDay:
		return "next_business_day"
	}
	return fmt.Sprintf("DueAdjust(%d)", uint8(a))
}

// ParseDueAdjust parses "none" or "next_business_day" (case-insensitive; '-', ' ' and
// '_' alike). The empty string is AdjustNone.
func ParseDueAdjust(s string) (DueAdjust, error) {
	switch strings.ToLower(enum.Normalize(s)) {
	case "", "none":
		return AdjustNone, nil
	case "next_business_day":
		return AdjustNextBusinessDay, nil
	}
	return 0, fmt.Errorf("invalid due date adjustment %q: want none or next_business_day", s)
}

// MarshalText implements encoding.TextMarshaler.
func (a DueAdjust) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDueAdjust.
func (a *DueAdjust) UnmarshalText(b []byte) error {
	v, err := ParseDueAdjust(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

var defaultCalendar = NewCalendar()

// A Schedule is the cycle plan of one consent: cycles of Interval anchored on
// Reference, due dates adjusted per Adjust, and nothing due after Expiry.
//
// Cycle k starts at Reference + k·period, always computed from Reference, never from
// the previous cycle, so cycles never drift: a day missing from the target month
// clamps to that month's last day and later cycles return to the reference day
// (31 Oct → 31/10, 30/11, 31/12, 31/01, 28/02, 31/03 …). Each cycle ends the day
// before the next one starts, so cycles are contiguous and never overlap.
type Schedule struct {
	Reference Date
	Interval  Interval
	Adjust    DueAdjust
	// Calendar decides business days for AdjustNextBusinessDay; nil means the national
	// holidays only.
	Calendar *Calendar
	// Expiry is the last date a payment may be dated (the Brasília date of the
	// consent's expirationDateTime); the zero Date means the consent never expires.
	Expiry Date
}

// A Cycle is one billing period of a Schedule.
type Cycle struct {
	Index int  // 0 for the cycle that starts on the reference date
	Start Date // first day of the cycle
	End   Date // last day: the day before the next cycle starts
	Due   Date // the date the payment is dated (settles)
}

// Validate reports a schedule that cannot produce cycles.
func (s Schedule) Validate() error {
	var errs []error
	if s.Reference.IsZero() {
		errs = append(errs, errors.New("reference date is missing"))
	}
	if !s.Interval.Valid() {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInterval, s.Interval))
	}
	if s.Adjust > AdjustNextBusinessDay {
		errs = append(errs, fmt.Errorf("invalid due date adjustment %s", s.Adjust))
	}
	if !s.Expiry.IsZero() && !s.Reference.IsZero() && s.Expiry.Before(s.due(s.Reference)) {
		errs = append(errs, fmt.Errorf("expiry %s is before the first due date %s", s.Expiry, s.due(s.Reference)))
	}
	return errors.Join(errs...)
}

// Start returns the start date of cycle k (k ≥ 0), or the zero Date when k is
// negative or the date would fall after MaxYear.
func (s Schedule) Start(k int) Date {
	if m := s.Interval.Months(); m > 0 {
		y, mo, dd := s.Reference.Civil()
		return monthStart(y, int(mo), dd, k, m)
	}
	return s.weekStart(k)
}

// monthStart is the start of cycle k of a months-long interval anchored on y-mo-dd.
func monthStart(y, mo, dd, k, months int) Date {
	if k < 0 || k > (MaxYear-y+1)*12/months {
		return Date{}
	}
	total := y*12 + mo - 1 + k*months
	ny, nm := total/12, time.Month(total%12+1)
	if ny > MaxYear {
		return Date{}
	}
	if dim := DaysIn(ny, nm); dd > dim {
		dd = dim
	}
	return fromCivil(ny, int(nm), dd)
}

func (s Schedule) weekStart(k int) Date {
	if k < 0 || k > int(maxRata-s.Reference.rd)/7 {
		return Date{}
	}
	return s.Reference.AddDays(7 * k)
}

func (s Schedule) due(start Date) Date {
	if s.Adjust == AdjustNextBusinessDay && !start.IsZero() {
		c := s.Calendar
		if c == nil {
			c = defaultCalendar
		}
		return c.NextBusinessDay(start)
	}
	return start
}

// Due returns the due date of cycle k (zero when Start(k) is).
func (s Schedule) Due(k int) Date { return s.due(s.Start(k)) }

// Cycle returns cycle k. Its fields are zero Dates when k is out of range.
func (s Schedule) Cycle(k int) Cycle {
	var start, next Date
	if m := s.Interval.Months(); m > 0 {
		y, mo, dd := s.Reference.Civil()
		start, next = monthStart(y, int(mo), dd, k, m), monthStart(y, int(mo), dd, k+1, m)
	} else {
		start, next = s.weekStart(k), s.weekStart(k+1)
	}
	c := Cycle{Index: k, Start: start, Due: s.due(start)}
	if !next.IsZero() {
		c.End = next.AddDays(-1)
	}
	return c
}

// Exists reports whether cycle k is billable: k ≥ 0, within MaxYear, and its due
// date not after Expiry.
func (s Schedule) Exists(k int) bool {
	d := s.Due(k)
	return !d.IsZero() && (s.Expiry.IsZero() || !d.After(s.Expiry))
}

// Index returns the index of the cycle that contains d, and false when d is before
// the reference date.
func (s Schedule) Index(d Date) (int, bool) {
	if d.Before(s.Reference) || d.IsZero() {
		return 0, false
	}
	var k int
	if m := s.Interval.Months(); m > 0 {
		ry, rm, _ := s.Reference.Civil()
		dy, dm, _ := d.Civil()
		k = ((dy-ry)*12 + int(dm) - int(rm)) / m
	} else {
		k = d.DaysSince(s.Reference) / 7
	}
	// The month estimate can be one cycle high (a clamped start) and never low by
	// more than one; settle it exactly.
	for k > 0 && s.Start(k).After(d) {
		k--
	}
	for n := s.Start(k + 1); !n.IsZero() && !n.After(d); n = s.Start(k + 1) {
		k++
	}
	return k, true
}

// FirstDueOnOrAfter returns the smallest cycle index whose due date is on or after d.
// It does not look at Expiry: callers check Exists.
func (s Schedule) FirstDueOnOrAfter(d Date) int {
	k, ok := s.Index(d)
	if !ok {
		return 0
	}
	if k > 0 {
		k-- // an adjusted due date may fall in the following cycle's days
	}
	for {
		due := s.Due(k)
		if due.IsZero() || !due.Before(d) {
			return k
		}
		k++
	}
}
