package klavi

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// ErrAmount is wrapped by every amount parsing error.
var ErrAmount = errors.New("invalid amount")

// MaxCents is the largest amount the API accepts: 16 integer digits and 2 decimals.
const MaxCents Cents = 9999999999999999_99

// Cents is an amount of money in centavos (1/100 BRL). Money is an integer in
// billingd; it becomes the API's string form ("1234.56") only on the wire, through
// MarshalJSON and UnmarshalJSON. The zero value is R$ 0.00.
type Cents int64

// ParseAmount parses the API's amount form, the seeds' pattern ^\d{1,16}\.\d{2}$
// ("1333.04", "0.99"). Leading zeros are part of that pattern and are accepted
// ("00.00" is 0, "0099.90" is 9990). Anything else (a sign, a comma, one decimal, no
// decimals, spaces) is an error wrapping ErrAmount.
//
// Round trip: for every s ParseAmount accepts, c.String() is s with the leading
// zeros of its integer part dropped (one kept before the dot), and
// ParseAmount(c.String()) == c; for every c in 0..MaxCents, ParseAmount(c.String())
// returns c.
func ParseAmount(s string) (Cents, error) {
	n := len(s)
	if n < 4 || n > 19 || s[n-3] != '.' {
		return 0, fmt.Errorf("%w %q: want digits, a dot and two decimals, like \"99.90\"", ErrAmount, truncate(s, 40))
	}
	var v int64
	for i := 0; i < n; i++ {
		if i == n-3 {
			continue
		}
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w %q: want digits, a dot and two decimals, like \"99.90\"", ErrAmount, truncate(s, 40))
		}
		v = v*10 + int64(c-'0')
	}
	return Cents(v), nil
}

// parseNumber reads a JSON number literal ("3109.55", "3109.5", "3109", "3.10955e3")
// exactly, by its digits, never through a float. The value must be a whole number
// of centavos: digits past the second decimal must be zeros ("1.230" is 123, "1.234"
// is an error). The exponent form is accepted and read just as exactly. A negative
// number, or one above MaxCents, is an error wrapping ErrAmount.
func parseNumber(s string) (Cents, error) {
	bad := func(why string) (Cents, error) {
		return 0, fmt.Errorf("%w %s: %s", ErrAmount, truncate(s, 40), why)
	}
	i, n := 0, len(s)
	if i < n && s[i] == '-' {
		return bad("money is never negative")
	}
	digits := func() string {
		j := i
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return s[j:i]
	}
	intPart := digits()
	if intPart == "" || (len(intPart) > 1 && intPart[0] == '0') {
		return bad("not a JSON number")
	}
	var frac string
	if i < n && s[i] == '.' {
		i++
		if frac = digits(); frac == "" {
			return bad("not a JSON number")
		}
	}
	exp := 0
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < n && (s[i] == '+' || s[i] == '-') {
			neg = s[i] == '-'
			i++
		}
		e := digits()
		if e == "" {
			return bad("not a JSON number")
		}
		for _, c := range []byte(e) {
			if exp = exp*10 + int(c-'0'); exp > 1000 {
				exp = 1000 // any exponent this large is out of range or too precise
			}
		}
		if neg {
			exp = -exp
		}
	}
	if i != n {
		return bad("not a JSON number")
	}
	// The value is mant × 10^(exp − len(frac)); in centavos, × 10^(shift).
	mant := strings.TrimLeft(intPart+frac, "0")
	if mant == "" {
		return 0, nil
	}
	shift := exp - len(frac) + 2
	switch {
	case shift < 0:
		if -shift > len(mant) || strings.Trim(mant[len(mant)+shift:], "0") != "" {
			return bad("finer than a centavo")
		}
		mant = mant[:len(mant)+shift]
	case shift > 0:
		if len(mant)+shift > 18 {
			return bad("more than the largest amount")
		}
		mant += strings.Repeat("0", shift)
	}
	if len(mant) > 18 {
		return bad("more than the largest amount")
	}
	v, err := strconv.ParseInt(mant, 10, 64)
	if err != nil || Cents(v) > MaxCents {
		return bad("more than the largest amount")
	}
	return Cents(v), nil
}

// String formats c as the API does: "1234.56", "0.05", and "-1.50" for a negative
// value (which the API never accepts; Validate methods reject it).
func (c Cents) String() string {
	var b [24]byte
	return string(c.appendText(b[:0]))
}

// appendText appends String's form of c to b.
func (c Cents) appendText(b []byte) []byte {
	u := uint64(c)
	if c < 0 {
		b = append(b, '-')
		u = -u // the magnitude, also of the least int64
	}
	b = strconv.AppendUint(b, u/100, 10)
	return append(b, '.', byte('0'+u%100/10), byte('0'+u%10))
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
	b, err := c.AppendJSON(make([]byte, 0, 24))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// AppendJSON appends MarshalJSON's bytes (the amount string, quoted: "99.90") to b,
// for an encoder that writes into its own buffer. An amount out of range (negative,
// or above MaxCents) appends nothing and fails with MarshalJSON's ErrAmount.
func (c Cents) AppendJSON(b []byte) ([]byte, error) {
	if c < 0 || c > MaxCents {
		return b, fmt.Errorf("%w: %s is out of range", ErrAmount, c)
	}
	b = append(b, '"')
	return append(c.appendText(b), '"'), nil
}

// MarshalJSONTo writes MarshalJSON's bytes into enc without an allocation of its
// own: the method encoding/json/v2 (go-json-experiment/json, which encodes
// billingd's records and requests) prefers to MarshalJSON.
func (c Cents) MarshalJSONTo(enc *jsontext.Encoder) error {
	var buf [26]byte
	b, err := c.AppendJSON(buf[:0])
	if err != nil {
		return err
	}
	return enc.WriteValue(b)
}

// UnmarshalJSON decodes the API's amount string with ParseAmount's rules. A JSON
// number is refused here: this is the form billingd's own inputs (consent files, the
// admin API) must use. Klavi's answers are read with ParseAnswerAmount instead,
// which also takes the number form the seeds document for answers.
func (c *Cents) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("%w %s: must be a string like \"99.90\"", ErrAmount, truncate(string(b), 40))
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

// ParseAnswerAmount reads an amount exactly from a JSON value of a Klavi answer, in
// either form the seeds document:
//   - a JSON string in the API's form, with ParseAmount's rules ("1333.04", leading
//     zeros as the seeds' pattern allows), as every seed example shows;
//   - a JSON number, as seed 002's response schema types amount: 3109.55, 3109.5
//     and 3109 are read from their digits, never through a float; digits past the
//     second decimal are accepted only when they are zeros (3109.550), and the
//     exponent form (3.10955e3, 1e3) is read just as exactly.
//
// Anything else (null included: callers treat null as absent before calling) is an
// error wrapping ErrAmount. Amounts are always sent in the string form.
func ParseAnswerAmount(b []byte) (Cents, error) {
	if len(b) > 0 && b[0] == '"' {
		var c Cents
		err := c.UnmarshalJSON(b)
		return c, err
	}
	return parseNumber(string(b))
}
