package klavi

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"

	jsonx "github.com/go-json-experiment/json/v1"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAmount(t *testing.T) {
	good := map[string]Cents{"0.00": 0, "0.99": 99, "1333.04": 133304, "99.90": 9990, "9999999999999999.99": MaxCents}
	for s, want := range good {
		got, err := ParseAmount(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got, s)
		assert.Equal(t, s, got.String())
	}
	for _, s := range []string{"", "1", "1.0", "1.000", ".99", "-1.00", "+1.00", "1,00", " 1.00", "1.00 ", "10000000000000000.00", "1e3.00", "1.0a"} {
		_, err := ParseAmount(s)
		assert.ErrorIs(t, err, ErrAmount, s)
	}
}

func TestCents_Format(t *testing.T) {
	assert.Equal(t, "0.05", Cents(5).String())
	assert.Equal(t, "-1.50", Cents(-150).String())
	assert.Equal(t, "-92233720368547758.08", Cents(math.MinInt64).String())
	assert.Equal(t, "92233720368547758.07", Cents(math.MaxInt64).String())
	for _, v := range []int64{0, 1, 9, 10, 99, 100, 101, 999, 1000, 123456, -1, -9, -10, -99, -100, -12345} {
		ref := fmt.Sprintf("%d.%02d", v/100, v%100)
		if v < 0 {
			ref = fmt.Sprintf("-%d.%02d", -v/100, -v%100)
		}
		assert.Equal(t, ref, Cents(v).String(), "%d", v)
	}
	assert.Equal(t, "R$ 1.234,56", Cents(123456).BRL())
	assert.Equal(t, "R$ 0,99", Cents(99).BRL())
	assert.Equal(t, "R$ 1.000.000,00", Cents(100000000).BRL())
}

func TestParseAnswerAmount(t *testing.T) {
	tests := []struct {
		name, in string
		want     Cents
		err      string // "" means no error
	}{
		// seed 002 example and every request schema: amount is a string ^\d{1,16}\.\d{2}$.
		{"string", `"3109.55"`, 310955, ""},
		{"string, seed 004 example", `"1333.04"`, 133304, ""},
		{"string with leading zeros (the seed pattern allows them)", `"0099.90"`, 9990, ""},
		{"string 00.00", `"00.00"`, 0, ""},
		{"string, largest", `"9999999999999999.99"`, MaxCents, ""},
		{"string with one decimal is not the documented form", `"1333.4"`, 0, "want digits, a dot and two decimals"},
		{"string without decimals", `"1333"`, 0, "want digits"},
		{"string with a comma", `"1333,04"`, 0, "want digits"},
		// seed 002 response schema: amount typed number.
		{"number", `3109.55`, 310955, ""},
		{"number with one decimal", `3109.5`, 310950, ""},
		{"number without decimals", `3109`, 310900, ""},
		{"number zero", `0`, 0, ""},
		{"number with zero decimals past the second", `3109.550`, 310955, ""},
		{"number finer than a centavo", `3109.555`, 0, "finer than a centavo"},
		{"number 0.001", `0.001`, 0, "finer than a centavo"},
		{"exponent", `1e3`, 100000, ""},
		{"exponent with decimals", `3.10955e3`, 310955, ""},
		{"negative exponent", `310955E-2`, 310955, ""},
		{"exponent finer than a centavo", `1e-3`, 0, "finer than a centavo"},
		{"zero with a huge exponent", `0e999999999`, 0, ""},
		{"huge exponent", `1e999999999`, 0, "largest amount"},
		{"number, largest", `9999999999999999.99`, MaxCents, ""},
		{"number above the largest", `10000000000000000`, 0, "largest amount"},
		{"negative number", `-1.00`, 0, "never negative"},
		{"float-unfriendly number read exactly", `0.29`, 29, ""},
		{"null is not an amount", `null`, 0, "not a JSON number"},
		{"bool", `true`, 0, "not a JSON number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAnswerAmount([]byte(tt.in))
			if tt.err != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrAmount)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestCents_UnmarshalJSON(t *testing.T) {
	var v struct {
		A Cents `json:"a"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"a":"1333.04"}`), &v))
	assert.Equal(t, Cents(133304), v.A)
	require.NoError(t, json.Unmarshal([]byte(`{"a":"00.00"}`), &v), "leading zeros: the seeds' pattern allows them")
	assert.Equal(t, Cents(0), v.A)
	assert.Error(t, json.Unmarshal([]byte(`{"a":1333.04}`), &v), "billingd's own inputs (consent files, admin API) take the string form only")
	assert.Error(t, json.Unmarshal([]byte(`{"a":"1333.4"}`), &v))
}

func TestCents_MarshalJSON(t *testing.T) {
	b, err := json.Marshal(struct {
		A Cents `json:"a"`
	}{9990})
	require.NoError(t, err)
	assert.JSONEq(t, `{"a":"99.90"}`, string(b), "always sent as the string form")
	_, err = json.Marshal(Cents(-1))
	assert.Error(t, err)
	_, err = json.Marshal(MaxCents + 1)
	assert.Error(t, err)
	// go-json-experiment's encoder takes MarshalJSONTo: the same bytes and refusals
	// as MarshalJSON, in and out of a struct.
	for _, c := range []Cents{0, 5, 99, 100, 9990, 123456, MaxCents, -1, MaxCents + 1} {
		want, werr := c.MarshalJSON()
		got, gerr := jsonx.Marshal(c)
		if werr != nil {
			assert.Error(t, gerr, "%d", c)
			assert.ErrorIs(t, gerr, ErrAmount, "%d", c)
			continue
		}
		require.NoError(t, gerr, "%d", c)
		assert.Equal(t, string(want), string(got), "%d", c)
		got, err = jsonx.Marshal(struct {
			A Cents  `json:"a"`
			B *Cents `json:"b"`
		}{c, &c})
		require.NoError(t, err)
		assert.Equal(t, `{"a":`+string(want)+`,"b":`+string(want)+`}`, string(got))
	}
}

// FuzzParseAmount checks the round trip stated on ParseAmount: an accepted s
// formats back to s without the leading zeros of its integer part, and that form
// parses to the same value.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"99.90", "0.00", "00.00", "0099.90", "1.0", "9999999999999999.99", "0000000000000000.01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseAmount(s)
		if err != nil {
			return
		}
		require.GreaterOrEqual(t, c, Cents(0))
		require.LessOrEqual(t, c, MaxCents)
		canon := strings.TrimLeft(s[:len(s)-3], "0")
		if canon == "" {
			canon = "0"
		}
		require.Equal(t, canon+s[len(s)-3:], c.String())
		back, err := ParseAmount(c.String())
		require.NoError(t, err)
		require.Equal(t, c, back)
	})
}

// FuzzParseAnswerAmount: ParseAnswerAmount gives exactly the value of the JSON value
// it is handed, checked against math/big: a JSON string as ParseAmount reads it, a
// JSON number accepted exactly when it is a whole number of centavos in 0..MaxCents
// (never negative, not even -0), anything else refused; and every amount accepted
// re-encodes to the string form and decodes back to the same value.
func FuzzParseAnswerAmount(f *testing.F) {
	for _, s := range []string{`"3109.55"`, `3109.55`, `3109.5`, `1e3`, `3.10955e3`, `0.001`, `-1`, `"00.00"`, `null`, `310955E-2`, `9999999999999999.99`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseAnswerAmount([]byte(in))
		if want, ok := exactAnswerAmount(in); ok {
			if want < 0 {
				require.Error(t, err, "%s", in)
			} else {
				require.NoError(t, err, "%s", in)
				require.Equal(t, want, c, "%s", in)
			}
		}
		if err != nil {
			require.ErrorIs(t, err, ErrAmount)
			return
		}
		require.GreaterOrEqual(t, c, Cents(0))
		require.LessOrEqual(t, c, MaxCents)
		b, err := json.Marshal(c)
		require.NoError(t, err)
		var back Cents
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, c, back)
	})
}

// exactAnswerAmount is the fuzz oracle: what ParseAnswerAmount must give for in, as
// encoding/json would hand it over (one JSON value, no surrounding space), or -1 for
// an error; ok is false for inputs it does not judge (not JSON, or an exponent too
// large to evaluate with math/big).
func exactAnswerAmount(in string) (Cents, bool) {
	if in == "" || strings.TrimSpace(in) != in || !json.Valid([]byte(in)) {
		return 0, false
	}
	switch c := in[0]; {
	case c == '"':
		var s string
		if json.Unmarshal([]byte(in), &s) != nil {
			return 0, false
		}
		v, err := ParseAmount(s)
		if err != nil {
			return -1, true
		}
		return v, true
	case c == '-':
		return -1, true
	case c < '0' || c > '9':
		return -1, true // null, true, false, an object or an array
	}
	if i := strings.IndexAny(in, "eE"); i >= 0 && len(strings.TrimLeft(in[i+1:], "+-0")) > 3 {
		return 0, false
	}
	r, ok := new(big.Rat).SetString(in)
	if !ok {
		return 0, false
	}
	r.Mul(r, big.NewRat(100, 1))
	if !r.IsInt() || r.Num().Cmp(big.NewInt(int64(MaxCents))) > 0 {
		return -1, true
	}
	return Cents(r.Num().Int64()), true
}
