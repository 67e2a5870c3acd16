package klavi

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
)

func TestParseAnswerDate(t *testing.T) {
	tests := []struct {
		name, in string
		want     cycle.Date
		err      bool
	}{
		// seed 004 response schema, date: ^(\d{4})-(1[0-2]|0?[1-9])-(3[01]|[12][0-9]|0?[1-9])$
		{"padded, seed 004 example", "2023-01-23", cycle.MustDate(2023, 1, 23), false},
		{"month not padded", "2023-1-23", cycle.MustDate(2023, 1, 23), false},
		{"month and day not padded", "2023-1-3", cycle.MustDate(2023, 1, 3), false},
		{"absent", "", cycle.Date{}, false},
		{"no such day", "2023-02-30", cycle.Date{}, true},
		{"month 13", "2023-13-01", cycle.Date{}, true},
		{"two-digit year", "23-01-23", cycle.Date{}, true},
		{"date-time", "2023-01-23T00:00:00Z", cycle.Date{}, true},
		{"slashes", "2023/01/23", cycle.Date{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAnswerDate(tt.in)
			if tt.err {
				require.ErrorIs(t, err, cycle.ErrDate)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseAnswerTime(t *testing.T) {
	at := func(ns int) time.Time { return time.Date(2023, 1, 23, 10, 0, 0, ns, time.UTC) }
	tests := []struct {
		name, in string
		want     time.Time
		err      bool
	}{
		// seed 004 schema: YYYY-MM-DDThh:mm:ssZ; its own example: "2023-01-23T14:17:06.45Z".
		{"strict form", "2023-01-23T10:00:00Z", at(0), false},
		{"seed 004 example with a fraction", "2023-01-23T14:17:06.45Z", time.Date(2023, 1, 23, 14, 17, 6, 450_000_000, time.UTC), false},
		{"milliseconds", "2023-01-23T10:00:00.123Z", at(123_000_000), false},
		{"microseconds and a zero offset", "2023-01-23T10:00:00.123456+00:00", at(123_456_000), false},
		{"nanoseconds", "2023-01-23T10:00:00.123456789Z", at(123_456_789), false},
		{"no zone reads as UTC", "2023-01-23T10:00:00", at(0), false},
		{"Brasília offset", "2023-01-23T07:00:00-03:00", at(0), false},
		{"offset without a colon", "2023-01-23T07:00:00-0300", at(0), false},
		{"lower-case t and z", "2023-01-23t10:00:00z", at(0), false},
		{"space separator", "2023-01-23 10:00:00Z", at(0), false},
		{"date not padded (seed 004 pattern)", "2023-1-23T10:00:00Z", at(0), false},
		{"absent", "", time.Time{}, false},
		{"no seconds", "2023-01-23T10:00Z", time.Time{}, true},
		{"hour 24", "2023-01-23T24:00:00Z", time.Time{}, true},
		{"leap second", "2023-01-23T23:59:60Z", time.Time{}, true},
		{"ten fraction digits", "2023-01-23T10:00:00.1234567890Z", time.Time{}, true},
		{"no such day", "2023-02-29T10:00:00Z", time.Time{}, true},
		{"date only", "2023-01-23", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAnswerTime(tt.in)
			if tt.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.True(t, tt.want.Equal(got), "got %v", got)
			assert.Equal(t, time.UTC, got.Location())
		})
	}
}

func TestDateTime_StaysStrict(t *testing.T) {
	// Requests send only YYYY-MM-DDThh:mm:ssZ (seed 003 expirationDateTime).
	_, err := ParseDateTime("2023-01-23T10:00:00.123Z")
	require.Error(t, err)
	b, err := json.Marshal(DateTime{time.Date(2023, 1, 23, 7, 0, 0, 5, time.FixedZone("", -3*3600))})
	require.NoError(t, err)
	assert.Equal(t, `"2023-01-23T10:00:00Z"`, string(b))
}

func TestPayment_DecodeSeed004(t *testing.T) {
	for _, name := range []string{"seed004_payment.json", "seed004_payment_as_printed.json"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + name)
			require.NoError(t, err)
			var p Payment
			require.NoError(t, decode(data, &p))

			assert.Equal(t, "fcb72e3a-b346-4f71-b044-971dc23232c9", p.ID)
			assert.Equal(t, "0b59d801-08e0-4e84-9ecd-569f34e32279", p.AppID)
			assert.Equal(t, "fcb72e3a-b346-4f71-b044-dsndsnmnkdsmk", p.ClientRequestID)
			assert.Equal(t, "c8f0bf49-4744-4933-8960-7add6e590841", p.InstitutionID)
			assert.Equal(t, "yyt72e3a-b846-i771-b044-971dc232ujd8", p.ConsentID)
			require.NotNil(t, p.Customer)
			assert.Equal(t, Customer{IdentifierType: CPF, Identifier: "76109277673", Name: "joão silva", Phone: "12345", Email: "123@123.com"}, *p.Customer)
			assert.Equal(t, cycle.MustDate(2023, 1, 23), p.Date)
			assert.Contains(t, []string{"E9040088820210128000800123873170", "e9040088820210128000800123873170"}, p.EndToEndID)
			assert.Equal(t, "cxf0bf49-4744-4933-8960-7add6e5908cc", p.TransactionIdentification)
			assert.Equal(t, "76109277673", p.LoggedUserCPF)
			assert.Equal(t, "5300108", p.IBGETownCode)
			assert.Equal(t, Cents(133304), p.Amount)
			assert.Equal(t, "BRL", p.Currency)
			assert.Equal(t, "//close", p.RedirectURL)
			assert.Equal(t, "any description", p.RemittanceInformation)
			require.NotNil(t, p.DebtorAccount)
			assert.Equal(t, Account{ISPB: "00000000", Issuer: "0001", Number: "324223", AccountType: CACC}, *p.DebtorAccount)
			require.NotNil(t, p.CreditorAccount)
			assert.Equal(t, Account{ISPB: "00000000", Issuer: "0001", Number: "324223", AccountType: CACC,
				Holder: &Person{IdentifierType: CPF, Identifier: "76109277673", Name: "john doe"}}, *p.CreditorAccount)
			assert.JSONEq(t, `{"key":"value"}`, string(p.ExternalInfo))
			require.NotNil(t, p.Cancellation)
			assert.Equal(t, "INSTITUTION", p.Cancellation.CancelledFrom)
			assert.True(t, time.Date(2021, 5, 21, 8, 30, 0, 0, time.UTC).Equal(p.Cancellation.CancelledAt))
			assert.Equal(t, &Person{IdentifierType: CPF, Identifier: "11111111111"}, p.Cancellation.CancelledBy)
			assert.Equal(t, PaymentCanceled, p.Status)
			assert.True(t, p.Status.Final())
			require.NotNil(t, p.StatusReason)
			assert.Equal(t, ReasonNaoInformado, p.StatusReason.Code)
			assert.Equal(t, ReasonNotInformed, p.StatusReason.Code.Canonical())
			assert.Equal(t, "erro não informado na iniciadora ou detentora de conta.", p.StatusReason.Message)
			created := time.Date(2023, 1, 23, 14, 17, 6, 450_000_000, time.UTC)
			assert.True(t, created.Equal(p.CreateAt), "%v", p.CreateAt)
			assert.True(t, created.Equal(p.StatusUpdateAt))
			assert.Equal(t, "AUTOMATIC_PIX", p.PaymentMethod)
			assert.Equal(t, &PaymentMethodInfo{FirstPayment: true}, p.PaymentMethodConfig)
		})
	}
}

func TestPayment_DecodeTolerant(t *testing.T) {
	tests := []struct {
		name, body string
		check      func(t *testing.T, p Payment)
	}{
		{"seed 002 response schema: amount typed number", `{"id":"p","status":"PAYMENT_PENDING","amount":3109.55}`,
			func(t *testing.T, p Payment) { assert.Equal(t, Cents(310955), p.Amount) }},
		{"seed 002 response schema: number with one decimal", `{"id":"p","status":"PAYMENT_PENDING","amount":3109.5}`,
			func(t *testing.T, p Payment) { assert.Equal(t, Cents(310950), p.Amount) }},
		{"seed 002 example: amount as a string", `{"id":"p","status":"PAYMENT_PENDING","amount":"3109.55"}`,
			func(t *testing.T, p Payment) { assert.Equal(t, Cents(310955), p.Amount) }},
		{"seed 004 pattern: leading zeros", `{"id":"p","status":"PAYMENT_PENDING","amount":"03109.55"}`,
			func(t *testing.T, p Payment) { assert.Equal(t, Cents(310955), p.Amount) }},
		{"amount null is absent", `{"id":"p","status":"PAYMENT_PENDING","amount":null}`,
			func(t *testing.T, p Payment) { assert.Equal(t, Cents(0), p.Amount) }},
		{"seed 004 date pattern: month not padded", `{"id":"p","status":"PAYMENT_PENDING","date":"2023-1-23"}`,
			func(t *testing.T, p Payment) { assert.Equal(t, cycle.MustDate(2023, 1, 23), p.Date) }},
		{"seed 004 example: fractional createAt", `{"id":"p","status":"X","createAt":"2023-01-23T10:00:00.123456+00:00","statusUpdateAt":"2023-01-23T10:00:00"}`,
			func(t *testing.T, p Payment) {
				assert.True(t, time.Date(2023, 1, 23, 10, 0, 0, 123456000, time.UTC).Equal(p.CreateAt))
				assert.True(t, time.Date(2023, 1, 23, 10, 0, 0, 0, time.UTC).Equal(p.StatusUpdateAt))
			}},
		{"seed 004 statusReason example: Portuguese with diacritics", `{"id":"p","status":"payment rejected","statusReason":{"code":"não informado"}}`,
			func(t *testing.T, p Payment) {
				assert.Equal(t, ReasonNaoInformado, p.StatusReason.Code)
				assert.Equal(t, ReasonNotInformed, p.StatusReason.Code.Canonical())
			}},
		{"repeated separators", `{"id":"p","status":"PAYMENT__COMPLETED"}`,
			func(t *testing.T, p Payment) { assert.Equal(t, PaymentCompleted, p.Status) }},
		{"repeated spaces", `{"id":"p","status":"payment  completed"}`,
			func(t *testing.T, p Payment) { assert.Equal(t, PaymentCompleted, p.Status) }},
		{"lower snake", `{"id":"p","status":"payment_completed"}`,
			func(t *testing.T, p Payment) { assert.Equal(t, PaymentCompleted, p.Status) }},
		{"hyphenated Portuguese", `{"id":"p","status":"X","statusReason":{"code":"Nao-Informado"}}`,
			func(t *testing.T, p Payment) { assert.Equal(t, ReasonNaoInformado, p.StatusReason.Code) }},
		{"unknown values kept opaque", `{"id":"p","status":"payment on hold","statusReason":{"code":"saldo insuficiente"}}`,
			func(t *testing.T, p Payment) {
				assert.Equal(t, PaymentStatus("PAYMENT_ON_HOLD"), p.Status)
				assert.False(t, p.Status.Valid())
				assert.Equal(t, ReasonCode("SALDO_INSUFICIENTE"), p.StatusReason.Code)
			}},
		{"seed 004 'mask this field': masked values are opaque", `{"id":"p","status":"X","customer":{"identifierType":"CPF","identifier":"***.092.776-**","email":"j***@***.com","phone":"*****"},"loggedUserCpf":"***.092.776-**","debtorAccount":{"ispb":"00000000","issuer":"****","number":"****23","accountType":"CACC"}}`,
			func(t *testing.T, p Payment) {
				assert.Equal(t, "***.092.776-**", p.Customer.Identifier)
				assert.Equal(t, "***.092.776-**", p.LoggedUserCPF)
				assert.Equal(t, "****23", p.DebtorAccount.Number)
			}},
		{"seed 004 externalInfo: values of any JSON type", `{"id":"p","status":"X","externalInfo":{"n":12.50,"b":true,"o":{"x":[1]},"s":"v","z":null}}`,
			func(t *testing.T, p Payment) {
				var m map[string]any
				require.NoError(t, json.Unmarshal(p.ExternalInfo, &m))
				assert.Len(t, m, 5)
				assert.Contains(t, string(p.ExternalInfo), "12.50", "kept exactly as sent")
			}},
		{"externalInfo not an object", `{"id":"p","status":"X","externalInfo":"free text"}`,
			func(t *testing.T, p Payment) { assert.Equal(t, `"free text"`, string(p.ExternalInfo)) }},
		{"seed 004 cancelledFrom: HOLDER, INITIATOR or the example's INSTITUTION", `{"id":"p","status":"canceled","cancellation":{"cancelledFrom":"holder","cancelledAt":"2021-05-21T08:30:00.5Z","cancelledBy":{"identifier":"***","identifierType":"cnpj"}}}`,
			func(t *testing.T, p Payment) {
				assert.Equal(t, "HOLDER", p.Cancellation.CancelledFrom)
				assert.Equal(t, CNPJ, p.Cancellation.CancelledBy.IdentifierType)
				assert.Equal(t, 500*time.Millisecond, time.Duration(p.Cancellation.CancelledAt.Nanosecond()))
			}},
		{"nulls everywhere", `{"id":"p","status":"X","date":null,"createAt":null,"cancellation":null,"paymentMethod":null,"currency":null,"externalInfo":null}`,
			func(t *testing.T, p Payment) { assert.True(t, p.Date.IsZero()) }},
		{"unknown fields ignored", `{"id":"p","status":"X","brandNew":{"a":[1,2]}}`,
			func(t *testing.T, p Payment) { assert.Equal(t, "p", p.ID) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Payment
			require.NoError(t, decode([]byte(tt.body), &p))
			tt.check(t, p)
		})
	}
}

func TestPayment_DecodeRefusesUndocumented(t *testing.T) {
	for name, body := range map[string]string{
		"amount finer than a centavo": `{"id":"p","amount":1.234}`,
		"negative amount":             `{"id":"p","amount":-1}`,
		"date that does not exist":    `{"id":"p","date":"2023-02-30"}`,
		"date-time without seconds":   `{"id":"p","createAt":"2023-01-23T10:00Z"}`,
		"not JSON":                    `{"id":`,
	} {
		t.Run(name, func(t *testing.T) {
			var p Payment
			require.ErrorIs(t, decode([]byte(body), &p), ErrMalformedResponse)
		})
	}
}

func TestConsent_DecodeTolerant(t *testing.T) {
	body := `{"id":"06c26b65-497d-431e-8b50-c86ece05114a","clientRequestId":"c1","status":"consent authorized",
		"statusReason":{"code":"não informado","message":"m"},
		"expirationDateTime":"2027-01-01T00:00:00.000Z","createAt":"2026-1-5T10:00:00","statusUpdateAt":"2026-01-05T10:00:00-03:00",
		"externalInfo":{"plan":3},
		"paymentMethodConfig":{"contractId":"C1","fixedAmount":99.9,"maximumVariableAmount":null,"currency":"brl","interval":"monthly",
			"referenceStartDate":"2026-2-5","isRetryAccepted":true,"contractDebtor":{"identifierType":"cpf","identifier":"***","name":"x"},
			"firstPayment":{"date":"2026-1-5","amount":"10.00","currency":"BRL"}}}`
	var c Consent
	require.NoError(t, decode([]byte(body), &c))
	assert.Equal(t, ConsentAuthorized, c.Status)
	assert.Equal(t, ReasonNotInformed, c.StatusReason.Code.Canonical())
	assert.True(t, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Equal(c.ExpirationDateTime))
	assert.True(t, time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC).Equal(c.CreateAt))
	assert.True(t, time.Date(2026, 1, 5, 13, 0, 0, 0, time.UTC).Equal(c.StatusUpdateAt))
	pmc := c.PaymentMethodConfig
	require.NotNil(t, pmc)
	require.NotNil(t, pmc.FixedAmount)
	assert.Equal(t, Cents(9990), *pmc.FixedAmount)
	assert.Nil(t, pmc.MaximumVariableAmount)
	assert.Equal(t, "BRL", pmc.Currency)
	assert.Equal(t, cycle.Monthly, pmc.Interval)
	assert.Equal(t, cycle.MustDate(2026, 2, 5), pmc.ReferenceStartDate)
	assert.Equal(t, CPF, pmc.ContractDebtor.IdentifierType)
	require.NotNil(t, pmc.FirstPayment)
	assert.Equal(t, cycle.MustDate(2026, 1, 5), pmc.FirstPayment.Date)
	assert.Equal(t, Cents(1000), pmc.FirstPayment.Amount)

	var u Consent
	require.NoError(t, decode([]byte(`{"id":"x","status":"NEW_STATE","paymentMethodConfig":{"interval":"FORTNIGHTLY"}}`), &u))
	assert.False(t, u.Status.Valid(), "kept, not refused")
	assert.False(t, u.PaymentMethodConfig.Interval.Valid(), "an unknown interval is the zero Interval")
	b, err := json.Marshal(u)
	require.NoError(t, err, "a consent answer with an unknown interval still encodes")
	assert.NotContains(t, string(b), "interval")
}

// FuzzDecodePayment: arbitrary bytes never panic the decoding of a Payment, an Order
// or a Consent, and any amount decoded re-encodes to the string form, which decodes
// back to the same Cents.
func FuzzDecodePayment(f *testing.F) {
	if b, err := os.ReadFile("testdata/seed004_payment.json"); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		`{"id":"p","amount":3109.55,"date":"2023-1-23","createAt":"2023-01-23T10:00:00.123+00:00"}`,
		`{"amount":1e3}`, `{"amount":"00.00"}`, `{"amount":-0}`, `[]`, `null`, `{"cancellation":{"cancelledAt":"2021-05-21T08:30:00Z"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Payment
		if json.Unmarshal(b, &p) == nil {
			roundTrip(t, p.Amount)
		}
		var o Order
		if json.Unmarshal(b, &o) == nil {
			roundTrip(t, o.Amount)
		}
		var c Consent
		_ = json.Unmarshal(b, &c)
	})
}

func roundTrip(t *testing.T, c Cents) {
	t.Helper()
	require.GreaterOrEqual(t, c, Cents(0))
	require.LessOrEqual(t, c, MaxCents)
	enc, err := json.Marshal(c)
	require.NoError(t, err)
	require.Equal(t, byte('"'), enc[0], "sent as a string")
	var back Cents
	require.NoError(t, json.Unmarshal(enc, &back))
	require.Equal(t, c, back)
}

// plainString, the decoder's shortcut for plain strings, reads exactly what
// json.Unmarshal reads, and declines whatever it cannot read the same way.
func FuzzPlainString(f *testing.F) {
	for _, s := range []string{`"2026-03-05"`, `"PAYMENT_COMPLETED"`, `"não"`, `"a\"b"`, `"a\\u0041"`, "\"a\xffb\"", `"`, `""`, `null`, `12`, "\"tab\there\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, ok := plainString(b)
		if !ok {
			return
		}
		var want string
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("plainString read %q from %q, which json.Unmarshal refuses: %v", s, b, err)
		}
		if s != want {
			t.Fatalf("plainString(%q) = %q, json.Unmarshal reads %q", b, s, want)
		}
	})
}
