package cycle

import (
	"fmt"
	"strings"

	"github.com/klavi-billing/billingd/internal/enum"
)

// An Interval is the periodicity of a consent's billing cycles. The zero Interval is
// not valid.
type Interval uint8

// The five intervals of Pix Automático.
const (
	Weekly Interval = iota + 1
	Monthly
	Quarterly
	Semiannual
	Yearly
)

// Intervals lists every valid Interval in increasing period.
var Intervals = []Interval{Weekly, Monthly, Quarterly, Semiannual, Yearly}

var intervalNames = [...]string{"", "WEEKLY", "MONTHLY", "QUARTERLY", "SEMIANNUAL", "YEARLY"}

// Valid reports whether iv is one of the five intervals.
func (iv Interval) Valid() bool { return iv >= Weekly && iv <= Yearly }

// String returns the API name (UPPER_SNAKE_CASE), or "Interval(n)" for an invalid value.
func (iv Interval) String() string {
	if iv.Valid() {
		return intervalNames[iv]
	}
	return fmt.Sprintf("Interval(%d)", uint8(iv))
}

// Months returns the number of months in one period, or 0 for Weekly.
func (iv Interval) Months() int {
	switch iv {
	case Monthly:
		return 1
	case Quarterly:
		return 3
	case Semiannual:
		return 6
	case Yearly:
		return 12
	}
	return 0
}

// RetryWindowDays is how many days after the original settlement date a retry may
// still settle: 5 for Weekly, 7 for every other interval (inclusive).
func (iv Interval) RetryWindowDays() int {
	if iv == Weekly {
		return 5
	}
	return 7
}

// ParseInterval parses an interval name case-insensitively, treating '_', ' ' and
// '-' alike ("monthly", "Semi-Annual", "SEMIANNUAL").
func ParseInterval(s string) (Interval, error) {
	key := strings.ReplaceAll(enum.Normalize(s), "_", "")
	for _, iv := range Intervals {
		if key == iv.String() {
			return iv, nil
		}
	}
	return 0, fmt.Errorf("%w %q: want one of WEEKLY, MONTHLY, QUARTERLY, SEMIANNUAL, YEARLY", ErrInterval, s)
}

// MarshalText implements encoding.TextMarshaler.
func (iv Interval) MarshalText() ([]byte, error) {
	if !iv.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrInterval, uint8(iv))
	}
	return []byte(iv.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseInterval.
func (iv *Interval) UnmarshalText(b []byte) error {
	for _, known := range Intervals { // the stored spelling: read without a copy
		if string(b) == known.String() {
			*iv = known
			return nil
		}
	}
	v, err := ParseInterval(string(b))
	if err != nil {
		return err
	}
	*iv = v
	return nil
}
