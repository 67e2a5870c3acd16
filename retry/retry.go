package retry

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/klavi-billing/billingd/cycle"
)

// MaxRetries is the most retries a strategy may hold.
const MaxRetries = 3

// ErrStrategy is wrapped by every error Validate returns.
var ErrStrategy = errors.New("invalid retry strategy")

// A Strategy is Klavi's autoRetryStrategy: retry days counted from the original
// settlement date, and whether weekend days move to the next weekday.
type Strategy struct {
	Days        []int `json:"days"`
	SkipWeekend bool  `json:"skipWeekend"`
}

// IsZero reports whether s has no retry days.
func (s Strategy) IsZero() bool { return len(s.Days) == 0 }

// String formats s as "[1,2,3] skipWeekend".
func (s Strategy) String() string {
	parts := make([]string, len(s.Days))
	for i, d := range s.Days {
		parts[i] = strconv.Itoa(d)
	}
	out := "[" + strings.Join(parts, ",") + "]"
	if s.SkipWeekend {
		out += " skipWeekend"
	}
	return out
}

// A Violation is one broken rule of a Strategy; Field is "days" or "days[i]".
type Violation struct {
	Field   string
	Message string
}

// Describe is s as people read it: "days +1, +3, skipping weekends".
func (s Strategy) Describe() string {
	ds := make([]string, len(s.Days))
	for i, d := range s.Days {
		ds[i] = "+" + strconv.Itoa(d)
	}
	out := "days " + strings.Join(ds, ", ")
	if s.SkipWeekend {
		out += ", skipping weekends"
	}
	return out
}

// Violations lists every rule s breaks for a consent of interval iv that does or does
// not accept retries. An empty result means the strategy is valid.
func (s Strategy) Violations(iv cycle.Interval, retryAccepted bool) []Violation {
	var vs []Violation
	add := func(field, format string, args ...any) {
		vs = append(vs, Violation{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !retryAccepted {
		add("days", "a retry strategy needs a consent with isRetryAccepted: true")
	}
	switch n := len(s.Days); {
	case n == 0:
		add("days", "must hold 1 to %d values, got none", MaxRetries)
	case n > MaxRetries:
		add("days", "must hold 1 to %d values, got %d", MaxRetries, n)
	}
	window := iv.RetryWindowDays()
	for i, d := range s.Days {
		field := fmt.Sprintf("days[%d]", i)
		if d < 1 {
			add(field, "%d is not ≥ 1", d)
		}
		if iv.Valid() && d > window {
			add(field, "%d is past the %d-day retry window of a %s consent", d, window, iv)
		}
		if i > 0 && d <= s.Days[i-1] {
			add(field, "%d does not follow %d: days must be strictly increasing", d, s.Days[i-1])
		}
	}
	return vs
}

// Validate returns an error wrapping ErrStrategy that names every violation, or nil.
func (s Strategy) Validate(iv cycle.Interval, retryAccepted bool) error {
	vs := s.Violations(iv, retryAccepted)
	if len(vs) == 0 {
		return nil
	}
	msgs := make([]string, len(vs))
	for i, v := range vs {
		msgs[i] = v.Field + ": " + v.Message
	}
	return fmt.Errorf("%w: %s", ErrStrategy, strings.Join(msgs, "; "))
}

// Limits bound where a retry may be dated.
type Limits struct {
	// Interval sets the retry window: Interval.RetryWindowDays after settlement.
	Interval cycle.Interval
	// NextCycleStart: a retry on or after it is dropped (zero: no bound).
	NextCycleStart cycle.Date
	// Expiry: a retry after the consent's last payable date is dropped (zero: none).
	Expiry cycle.Date
}

// A Retry is one planned retry: the strategy day it came from and its date.
type Retry struct {
	Day  int        `json:"day"`
	Date cycle.Date `json:"date"`
}

// A Dropped retry could not be planned; Reason says why.
type Dropped struct {
	Day    int        `json:"day"`
	Date   cycle.Date `json:"date"`
	Reason string     `json:"reason"`
}

// Drop reasons, stable strings for logs, metrics and tests.
const (
	ReasonPastWindow    = "past the retry window"
	ReasonNextCycle     = "on or after the next cycle's start"
	ReasonExpired       = "after the consent's expiry"
	ReasonInvalidDay    = "not a valid retry day"
	ReasonRequestPassed = "its request day has passed"
)

// Plan returns the retry dates of strategy s for a payment settling on settle, and
// the days it had to drop with the reason. Days are taken in order; a day that is
// not ≥ 1 and greater than the day before it is dropped as invalid. With SkipWeekend a weekend date moves to the next weekday no
// earlier retry holds; without it dates are kept as they fall.
func Plan(settle cycle.Date, s Strategy, lim Limits) (planned []Retry, dropped []Dropped) {
	window := lim.Interval.RetryWindowDays()
	last := settle.AddDays(window)
	taken := make([]cycle.Date, 0, len(s.Days))
	held := func(x cycle.Date) bool {
		for _, t := range taken {
			if t == x {
				return true
			}
		}
		return false
	}
	prev := 0
	for _, day := range s.Days {
		if day <= prev || day > 366 {
			dropped = append(dropped, Dropped{Day: day, Reason: ReasonInvalidDay})
			continue
		}
		prev = day
		dt := settle.AddDays(day)
		for held(dt) || s.SkipWeekend && dt.IsWeekend() {
			dt = dt.AddDays(1)
		}
		switch {
		case dt.After(last):
			dropped = append(dropped, Dropped{Day: day, Date: dt, Reason: fmt.Sprintf("%s (%d days after %s ends on %s)", ReasonPastWindow, window, settle, last)})
		case !lim.NextCycleStart.IsZero() && !dt.Before(lim.NextCycleStart):
			dropped = append(dropped, Dropped{Day: day, Date: dt, Reason: fmt.Sprintf("%s (%s)", ReasonNextCycle, lim.NextCycleStart)})
		case !lim.Expiry.IsZero() && dt.After(lim.Expiry):
			dropped = append(dropped, Dropped{Day: day, Date: dt, Reason: fmt.Sprintf("%s (%s)", ReasonExpired, lim.Expiry)})
		default:
			planned = append(planned, Retry{Day: day, Date: dt})
			taken = append(taken, dt)
		}
	}
	return planned, dropped
}
