package klavi

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	json "github.com/go-json-experiment/json/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/retry"
)

// usualAnswers are payment answers as Klavi documents them and as the sandbox
// writes them: fastPayment must read each itself.
func usualAnswers(t testing.TB) map[string][]byte {
	seed, err := os.ReadFile("testdata/seed004_payment.json")
	require.NoError(t, err)
	var p Payment
	require.NoError(t, libraryPayment(seed, &p))
	compact, err := json.Marshal(p)
	require.NoError(t, err)
	return map[string][]byte{
		"seed 004's example, as printed":               seed,
		"seed 004's example, compact":                  compact,
		"a create answer":                              []byte(`{"id":"pay-000001","clientRequestId":"c-1-0-0","consentId":"urn:c:1","date":"2026-03-05","amount":"99.90","currency":"BRL","status":"PENDING","createAt":"2026-03-02T12:00:00Z","statusUpdateAt":"2026-03-02T12:00:00Z","paymentMethod":"AUTOMATIC_PIX","paymentMethodConfig":{"firstPayment":false,"originalPaymentId":""}}`),
		"an amount as a number, dates in other forms":  []byte(`{"id":"p","amount":3109.55,"date":"2023-1-23","createAt":"2023-01-23T10:00:00.123+00:00","status":"payment_completed"}`),
		"unknown fields of every kind":                 []byte(`{"id":"p","extra":{"a":[1,2.5e3,-0,{"b":null}],"c":true},"more":[],"x":false,"y":null,"status":"CANCELLED"}`),
		"a repeated name (seed 004 repeats consentId)": []byte(`{"consentId":"a","consentId":"b","customer":{"name":"x"},"customer":{"email":"y"}}`),
		"not ASCII":       []byte(`{"id":"p","remittanceInformation":"mensalidade de março — ç"}`),
		"an empty object": []byte(`{}`),
	}
}

func TestFastPayment_ReadsTheUsualAnswersAsTheLibraryDoes(t *testing.T) {
	for name, b := range usualAnswers(t) {
		t.Run(name, func(t *testing.T) {
			var fast, lib Payment
			require.True(t, fastPayment(b, &fast), "read in one pass")
			require.NoError(t, libraryPayment(b, &lib))
			assert.Equal(t, lib, fast)
			var via Payment
			require.NoError(t, decode(b, &via), "the client's decode")
			assert.Equal(t, lib, via)
		})
	}
}

func TestFastPayment_LeavesTheRestToTheLibrary(t *testing.T) {
	for name, b := range map[string]string{
		"an escape":                      `{"id":"a\u0041"}`,
		"an escape in a name":            `{"\u0069d":"a"}`,
		"a null":                         `{"id":null}`,
		"a null object":                  `{"customer":null}`,
		"a name in other letters":        `{"ID":"a"}`,
		"a nested name in other letters": `{"customer":{"Email":"a"}}`,
		"a number for a string":          `{"id":12}`,
		"a string for a boolean":         `{"paymentMethodConfig":{"firstPayment":"yes"}}`,
		"an amount the rules refuse":     `{"amount":"12,50"}`,
		"a date the rules refuse":        `{"date":"05/03/2026"}`,
		"bytes after the object":         `{"id":"a"} x`,
		"two objects":                    `{"id":"a"}{"id":"b"}`,
		"an array":                       `[]`,
		"null":                           `null`,
		"not UTF-8":                      "{\"id\":\"a\xffb\"}",
		"a control character":            "{\"id\":\"a\tb\"}",
		"an unterminated string":         `{"id":"a`,
		"a bad number":                   `{"x":01}`,
		"a bad literal":                  `{"x":tru}`,
		"a missing colon":                `{"id" "a"}`,
		"a trailing comma":               `{"id":"a",}`,
		"too deep":                       `{"x":` + deep(100) + `}`,
	} {
		t.Run(name, func(t *testing.T) {
			var fast Payment
			require.False(t, fastPayment([]byte(b), &fast))
			assert.True(t, reflect.ValueOf(fast).IsZero(), "left as it was")
			var lib, via Payment
			want := libraryPayment([]byte(b), &lib)
			got := via.UnmarshalJSON([]byte(b))
			assert.Equal(t, want, got)
			assert.Equal(t, lib, via)
		})
	}
	t.Run("a Payment already holding fields", func(t *testing.T) {
		p := Payment{ID: "kept", Status: PaymentPending}
		require.False(t, fastPayment([]byte(`{"amount":"1.00"}`), &p), "the library merges")
		require.NoError(t, p.UnmarshalJSON([]byte(`{"amount":"1.00"}`)))
		assert.Equal(t, Payment{ID: "kept", Status: PaymentPending, Amount: 100}, p)
	})
}

func deep(n int) string {
	s := "1"
	for range n {
		s = "[" + s + "]"
	}
	return s
}

// FuzzFastPayment: whatever fastPayment reads, the JSON library reads the same
// (Payment.UnmarshalJSON's rules), and where it declines, it leaves the Payment
// untouched.
func FuzzFastPayment(f *testing.F) {
	for _, b := range usualAnswers(f) {
		f.Add(b)
	}
	for _, s := range []string{`{"id":"a\u0041"}`, `{"ID":"a"}`, `{"id":null}`, `{"amount":1e3}`, `{"amount":-0}`,
		`{"cancellation":{"cancelledAt":"2021-05-21T08:30:00Z","cancelledFrom":"institution","cancelledBy":{"identifier":"1","identifierType":"cpf"}}}`,
		`{"debtorAccount":{"ispb":"1","accountType":"cacc","holder":{"name":"n"}},"externalInfo":{"k":[1,"v"]}}`,
		`{"statusReason":{"code":"nao_informado","message":"m"},"paymentMethodConfig":{"firstPayment":true}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Payment
		if !fastPayment(b, &fast) {
			if !reflect.ValueOf(fast).IsZero() {
				t.Fatalf("fastPayment declined %q but changed the Payment: %+v", b, fast)
			}
			return
		}
		var lib Payment
		if err := libraryPayment(b, &lib); err != nil {
			t.Fatalf("fastPayment read %q, which the library refuses: %v", b, err)
		}
		if !reflect.DeepEqual(lib, fast) {
			t.Fatalf("fastPayment read %q as\n%+v\nthe library as\n%+v", b, fast, lib)
		}
	})
}

// BenchmarkDecodeAnswer compares fastPayment with the JSON library (libraryPayment)
// on seed 004's example (1.8 KB, printed with indents) and on a create answer as
// the sandbox writes it (compact, 0.3 KB), for the figures in fastPayment's doc.
func BenchmarkDecodeAnswer(b *testing.B) {
	answers := usualAnswers(b)
	for _, name := range []string{"seed 004's example, as printed", "a create answer"} {
		raw := answers[name]
		for _, reader := range []struct {
			name string
			read func([]byte, *Payment) error
		}{
			{"fastPayment", func(b []byte, p *Payment) error {
				if !fastPayment(b, p) {
					return errors.New("declined")
				}
				return nil
			}},
			{"library", libraryPayment},
		} {
			b.Run(name+"/"+reader.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					var p Payment
					if err := reader.read(raw, &p); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestAppendCreatePayment(t *testing.T) {
	date := cycle.MustDate(2026, 3, 5)
	for name, r := range map[string]*CreatePaymentRequest{
		"an original":                 {ClientRequestID: "billingd-c-1-0-0", Date: date, Amount: 99_90, Currency: Currency},
		"with its remittance":         {ClientRequestID: "x", Date: date, Amount: 1, Currency: Currency, RemittanceInformation: "Mensalidade 03/2026", IBGETownCode: "5300108"},
		"with a retry strategy":       {ClientRequestID: "x", Date: date, Amount: 0, Currency: Currency, AutoRetryStrategy: &retry.Strategy{Days: []int{1, 3, 7}, SkipWeekend: true}},
		"with no retry days":          {ClientRequestID: "x", Date: date, Amount: 5, Currency: Currency, AutoRetryStrategy: &retry.Strategy{Days: []int{}}},
		"the largest amount":          {ClientRequestID: "x", Date: date, Amount: MaxCents, Currency: Currency},
		"an accent, a line separator": {ClientRequestID: "x", Date: date, Amount: 1, Currency: Currency, RemittanceInformation: "março\u2028"},
		"HTML characters, quotes":     {ClientRequestID: `a&b<"c">`, Date: date, Amount: 1, Currency: Currency, IBGETownCode: `\\`},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := appendCreatePayment(nil, r)
			require.True(t, ok, "written by hand")
			want, err := json.Marshal(r)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got))
		})
	}
	for name, r := range map[string]*CreatePaymentRequest{
		"no date":             {ClientRequestID: "x", Amount: 1, Currency: Currency},
		"an amount too large": {ClientRequestID: "x", Date: date, Amount: MaxCents + 1, Currency: Currency},
		"nil retry days":      {ClientRequestID: "x", Date: date, Amount: 1, Currency: Currency, AutoRetryStrategy: &retry.Strategy{}},
		"external info":       {ClientRequestID: "x", Date: date, Amount: 1, Currency: Currency, ExternalInfo: map[string]string{"k": "v"}},
		"a creditor account":  {ClientRequestID: "x", Date: date, Amount: 1, Currency: Currency, CreditorAccount: &Account{ISPB: "1"}},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok := appendCreatePayment(nil, r)
			assert.False(t, ok, "left to json.Marshal")
			assert.Nil(t, got)
		})
	}
}

// FuzzAppendCreatePayment: what appendCreatePayment writes is, byte for byte, what
// json.Marshal writes.
func FuzzAppendCreatePayment(f *testing.F) {
	f.Add("billingd-c-1-0-0", int64(9990), "BRL", "", "", 20640, false, 0, false)
	f.Add("x", int64(1), "BRL", "Mensalidade", "5300108", 20000, true, 3, true)
	f.Add("a<b", int64(-1), "R$", "ç", "", 0, true, 0, false)
	f.Fuzz(func(t *testing.T, crid string, amount int64, currency, remittance, ibge string, day int, withRetry bool, days int, skip bool) {
		r := &CreatePaymentRequest{ClientRequestID: crid, Date: cycle.MustDate(2000, 1, 1).AddDays(day % 40000), Amount: Cents(amount),
			Currency: currency, RemittanceInformation: remittance, IBGETownCode: ibge}
		if withRetry {
			r.AutoRetryStrategy = &retry.Strategy{SkipWeekend: skip}
			for i := range days % 8 {
				r.AutoRetryStrategy.Days = append(r.AutoRetryStrategy.Days, i*3-1)
			}
		}
		got, ok := appendCreatePayment(nil, r)
		if !ok {
			return
		}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("written by hand as %s, json.Marshal refuses: %v", got, err)
		}
		if string(got) != string(want) {
			t.Fatalf("written by hand as\n%s\njson.Marshal writes\n%s", got, want)
		}
	})
}

// The names fastPayment knows are the JSON names of the structs it reads: a field
// added to one of them and not to fastPayment would otherwise be skipped as
// unknown by the fast path while the library reads it.
func TestFastPayment_NamesAreTheStructs(t *testing.T) {
	tags := func(v any) []string {
		var names []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			names = append(names, name)
		}
		return names
	}
	for _, c := range []struct {
		names []string
		of    any
	}{
		{paymentNames, Payment{}}, {reasonNames, StatusReason{}}, {cancellationNames, Cancellation{}},
		{methodNames, PaymentMethodInfo{}}, {customerNames, Customer{}}, {accountNames, Account{}}, {personNames, Person{}},
	} {
		assert.ElementsMatch(t, tags(c.of), c.names, "%T", c.of)
	}
}

func TestFastPayment_NilPayment(t *testing.T) {
	assert.False(t, fastPayment([]byte(`{"id":"p"}`), nil))
	require.Error(t, decode([]byte(`{"id":"p"}`), (*Payment)(nil)), "the library's error, not a panic")
}
