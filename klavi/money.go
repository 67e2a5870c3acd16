package klavi

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrAmount is wrapped by every amount parsing error.
var ErrAmount = errors.New("invalid amount")

// MaxCents is the largest amount the API accepts: 16 integer digits and 2 decimals.
const MaxCents Cents = 9999999999999999_99

// Cents is an amount of money in centavos (1/100 BRL). Money is an integer in
// billingd; it becomes the API's string form ("1234.56") only on the wire, through
// MarshalJSON and UnmarshalJSON. The zero value is R$ 0.00.
type Cents int64

// ParseAmount parses the API's amount form: ^\d{1,16}\.\d{2}$ ("1333.04", "0.99").
// Anything else (a sign, a comma, one decimal, no decimals, spaces) is an error
// wrapping ErrAmount.
func ParseAmount(s string) (Cents, error) {
	n := len(s)
	if n < 4 || n > 19 || s[n-3] != '.' {
		return 0, fmt.Errorf("%w %q: want digits, a dot and two decimals, like \"99.90\"", ErrAmount, s)
	}
	var v int64
	for i := 0; i < n; i++ {
		if i == n-3 {
			continue
		}
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w %q: want digits, a dot and two decimals, like \"99.90\"", ErrAmount, s)
		}
		v = v*10 + int64(c-'0')
	}
	return Cents(v), nil
}

// String formats c as the API does: "1234.56", "0.05", and "-1.50" for a negative
// value (which the API never accepts; Validate methods reject it).
func (c Cents) String() string {
	v := int64(c)
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	cents := v % 100
	s := sign + strconv.FormatInt(v/100, 10) + "."
	if cents < 10 {
		s += "0"
	}
	return s + strconv.FormatInt(cents, 10)
}

// BRL formats c for people: "R$ 1.234,56".
func (c Cents) BRL() string {
	v := int64(c)
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	whole := strconv.FormatInt(v/100, 10)
	var grouped []byte
	for i := range len(whole) {
		if i > 0 && (len(whole)-i)%3 == 0 {
			grouped = append(grouped, '.')
		}
		grouped = append(grouped, whole[i])
	}
	return fmt.Sprintf("%sR$ %s,%02d", sign, grouped, v%100)
}

// MarshalJSON encodes c as the API's amount string.
func (c Cents) MarshalJSON() ([]byte, error) {
	if c < 0 || c > MaxCents {
		return nil, fmt.Errorf("%w: %s is out of range", ErrAmount, c)
	}
	return strconv.AppendQuote(nil, c.String()), nil
}

// UnmarshalJSON decodes the API's amount string with ParseAmount's rules. A JSON
// number is refused: money never travels as a float.
func (c *Cents) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("%w %s: must be a string like \"99.90\"", ErrAmount, b)
	}
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAmount, err)
	}
	v, err := ParseAmount(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}
