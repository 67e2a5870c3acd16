package cycle

import (
	"errors"
	"fmt"
	"time"
	_ "time/tzdata" // billing dates need America/Sao_Paulo even in a scratch container
)

// Brasilia is the America/Sao_Paulo location every billing date is reckoned in.
var Brasilia = mustLoad("America/Sao_Paulo")

func mustLoad(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(fmt.Sprintf("cycle: load %s: %v", name, err))
	}
	return loc
}

// Sentinel errors of this package.
var (
	// ErrDate reports a string that is not a valid YYYY-MM-DD calendar date.
	ErrDate = errors.New("invalid date")
	// ErrInterval reports an unknown interval name.
	ErrInterval = errors.New("invalid interval")
)

// MinYear and MaxYear bound the dates this package represents.
const (
	MinYear = 1
	MaxYear = 9999
)

// A Date is a civil calendar date (year, month, day) with no time of day and no
// location. Billing dates are always Brasília dates.
//
// The zero Date is not a valid date; it means "no date" (IsZero reports it).
// Dates compare with Before/After/Compare or with the ordinary == operator.
// Internally a Date is its Rata Die day number (0001-01-01 is day 1), which makes
// day arithmetic an integer addition.
type Date struct {
	rd int32
}

// rdUnixEpoch is the Rata Die number of 1970-01-01.
const rdUnixEpoch = 719163

// NewDate returns the date y-m-d. It reports false when the date does not exist
// (e.g. 2025-02-30) or lies outside MinYear..MaxYear.
func NewDate(y int, m time.Month, d int) (Date, bool) {
	if y < MinYear || y > MaxYear || m < time.January || m > time.December || d < 1 || d > DaysIn(y, m) {
		return Date{}, false
	}
	return fromCivil(y, int(m), d), true
}

// MustDate is NewDate for constants in code and tests; it panics on an invalid date.
func MustDate(y int, m time.Month, d int) Date {
	dt, ok := NewDate(y, m, d)
	if !ok {
		panic(fmt.Sprintf("cycle: invalid date %04d-%02d-%02d", y, m, d))
	}
	return dt
}

// fromCivil converts a valid civil date to its Date (H. Hinnant's days_from_civil).
func fromCivil(y, m, d int) Date {
	if m <= 2 {
		y--
	}
	era := y / 400 // y >= 0 here: MinYear is 1
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	days := era*146097 + doe - 719468 // days since 1970-01-01
	return Date{rd: int32(days + rdUnixEpoch)}
}

// Civil returns the year, month and day of d. The zero Date returns 0, 0, 0.
func (d Date) Civil() (year int, month time.Month, day int) {
	if d.rd == 0 {
		return 0, 0, 0
	}
	z := int(d.rd) - rdUnixEpoch + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	dd := doy - (153*mp+2)/5 + 1
	mm := mp + 3
	if mm > 12 {
		mm -= 12
	}
	if mm <= 2 {
		y++
	}
	return y, time.Month(mm), dd
}

// Year returns d's year.
func (d Date) Year() int { y, _, _ := d.Civil(); return y }

// Month returns d's month.
func (d Date) Month() time.Month { _, m, _ := d.Civil(); return m }

// Day returns d's day of the month.
func (d Date) Day() int { _, _, dd := d.Civil(); return dd }

// IsZero reports whether d is the zero Date ("no date").
func (d Date) IsZero() bool { return d.rd == 0 }

// Weekday returns the day of the week of d.
func (d Date) Weekday() time.Weekday {
	// Rata Die day 1 (0001-01-01) was a Monday.
	return time.Weekday(int(d.rd) % 7)
}

// IsWeekend reports whether d is a Saturday or a Sunday.
func (d Date) IsWeekend() bool {
	wd := d.Weekday()
	return wd == time.Saturday || wd == time.Sunday
}

// AddDays returns d moved by n days (n may be negative).
func (d Date) AddDays(n int) Date { return Date{rd: d.rd + int32(n)} }

// DaysSince returns the number of days from e to d (d - e).
func (d Date) DaysSince(e Date) int { return int(d.rd - e.rd) }

// Before reports whether d is strictly before e.
func (d Date) Before(e Date) bool { return d.rd < e.rd }

// After reports whether d is strictly after e.
func (d Date) After(e Date) bool { return d.rd > e.rd }

// Compare returns -1, 0 or +1 as d is before, equal to or after e.
func (d Date) Compare(e Date) int {
	switch {
	case d.rd < e.rd:
		return -1
	case d.rd > e.rd:
		return 1
	}
	return 0
}

// Min returns the earlier of d and e.
func Min(d, e Date) Date {
	if e.Before(d) {
		return e
	}
	return d
}

// DaysIn returns the number of days in month m of year y.
func DaysIn(y int, m time.Month) int {
	switch m {
	case time.February:
		if IsLeap(y) {
			return 29
		}
		return 28
	case time.April, time.June, time.September, time.November:
		return 30
	}
	return 31
}

// IsLeap reports whether y is a Gregorian leap year.
func IsLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// AddMonthsClamped returns the date n months after d, on d's day of the month, or on
// the month's last day when that day does not exist there (31 Jan + 1 month is
// 28 or 29 Feb). It is always computed from d, so repeated calls from one anchor
// never drift.
func (d Date) AddMonthsClamped(n int) Date {
	y, m, dd := d.Civil()
	total := (y*12 + int(m) - 1) + n
	ny, nm := total/12, time.Month(total%12+1)
	if dim := DaysIn(ny, nm); dd > dim {
		dd = dim
	}
	return fromCivil(ny, int(nm), dd)
}

// String formats d as YYYY-MM-DD; the zero Date formats as "".
func (d Date) String() string {
	var b [10]byte
	return string(d.appendTo(b[:0]))
}

// appendTo appends String's form of d to b.
func (d Date) appendTo(b []byte) []byte {
	if d.rd == 0 {
		return b
	}
	y, m, dd := d.Civil() // y in MinYear..MaxYear: four digits
	return append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(m)/10), byte('0'+int(m)%10), '-', byte('0'+dd/10), byte('0'+dd%10))
}

// ParseDate parses a strict YYYY-MM-DD date: four-digit year, two-digit month and
// day, and a day that exists in that month. "2025-02-30", "2025-2-3", "25-01-01"
// and "" are all errors wrapping ErrDate.
func ParseDate(s string) (Date, error) { return parseDate(s) }

// parseDate is ParseDate of a string or of bytes (UnmarshalText's, not copied
// unless they are an error's).
func parseDate[T string | []byte](s T) (Date, error) {
	if len(s) != 10 || s[4] != '-' || s[7] != '-' {
		return Date{}, fmt.Errorf("%w %q: want YYYY-MM-DD", ErrDate, string(s))
	}
	num := func(from, to int) (int, bool) {
		v := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	y, ok1 := num(0, 4)
	m, ok2 := num(5, 7)
	dd, ok3 := num(8, 10)
	if !ok1 || !ok2 || !ok3 {
		return Date{}, fmt.Errorf("%w %q: want YYYY-MM-DD", ErrDate, string(s))
	}
	dt, ok := NewDate(y, time.Month(m), dd)
	if !ok {
		return Date{}, fmt.Errorf("%w %q: no such day", ErrDate, string(s))
	}
	return dt, nil
}

// MarshalText implements encoding.TextMarshaler (JSON: "YYYY-MM-DD").
func (d Date) MarshalText() ([]byte, error) {
	return d.AppendText(nil)
}

// AppendText implements encoding.TextAppender: MarshalText's bytes appended to b,
// which an encoder that knows the interface (go-json-experiment/json, Klavi's
// requests) writes straight into its buffer. It never fails.
func (d Date) AppendText(b []byte) ([]byte, error) {
	return d.appendTo(b), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseDate's strict rules,
// except that the empty string decodes to the zero Date, so that a zero Date
// round-trips through JSON ("") and validation can report a missing date as missing.
func (d *Date) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Date{}
		return nil
	}
	dt, err := parseDate(b)
	if err != nil {
		return err
	}
	*d = dt
	return nil
}

// DateOf returns the Brasília calendar date of the instant t.
func DateOf(t time.Time) Date {
	y, m, dd := t.In(Brasilia).Date()
	dt, ok := NewDate(y, m, dd)
	if !ok {
		return Date{}
	}
	return dt
}

// At returns the instant at hh:mm on d in Brasília. On the few historical days that
// had no such wall-clock time (DST started at midnight until 2019, so 2018-11-04
// had no 00:00), it returns the first instant after the gap, which is still on d.
func (d Date) At(hour, minute int) time.Time {
	y, m, dd := d.Civil()
	t := time.Date(y, m, dd, hour, minute, 0, 0, Brasilia)
	if t.Hour() != hour || t.Minute() != minute {
		// In a gap time.Date keeps the earlier offset (landing before the gap, maybe
		// on the previous day); move forward by the size of the jump.
		_, before := t.Zone()
		_, after := t.Add(6 * time.Hour).Zone()
		if gap := after - before; gap > 0 {
			t = t.Add(time.Duration(gap) * time.Second)
		}
	}
	return t
}

// Rata returns d's Rata Die day number (0001-01-01 is 1; the zero Date is 0). It is
// stable and ordered, for compact storage keys.
func (d Date) Rata() int32 { return d.rd }

// FromRata is the inverse of Rata. It reports false for a number outside
// MinYear..MaxYear.
func FromRata(n int32) (Date, bool) {
	if n < 1 || n > maxRata {
		return Date{}, false
	}
	return Date{rd: n}, true
}

var maxRata = MustDate(MaxYear, time.December, 31).rd
