package klavi

import (
	"encoding/json"
	"testing"

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
	assert.Equal(t, "R$ 1.234,56", Cents(123456).BRL())
	assert.Equal(t, "R$ 0,99", Cents(99).BRL())
	assert.Equal(t, "R$ 1.000.000,00", Cents(100000000).BRL())
}

func TestCents_JSON(t *testing.T) {
	b, err := json.Marshal(struct {
		A Cents `json:"a"`
	}{9990})
	require.NoError(t, err)
	assert.JSONEq(t, `{"a":"99.90"}`, string(b))
	var v struct {
		A Cents `json:"a"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"a":"1333.04"}`), &v))
	assert.Equal(t, Cents(133304), v.A)
	assert.Error(t, json.Unmarshal([]byte(`{"a":1333.04}`), &v), "a float is never money")
	assert.Error(t, json.Unmarshal([]byte(`{"a":"1333.4"}`), &v))
	_, err = json.Marshal(Cents(-1))
	assert.Error(t, err)
}

func FuzzParseAmount(f *testing.F) {
	f.Add("99.90")
	f.Add("0.00")
	f.Add("1.0")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseAmount(s)
		if err != nil {
			return
		}
		require.Equal(t, s, c.String())
		require.GreaterOrEqual(t, c, Cents(0))
		require.LessOrEqual(t, c, MaxCents)
	})
}
