package consent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
)

func TestDecode_Examples(t *testing.T) {
	files, err := filepath.Glob("../examples/consents/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			c, err := Decode(data)
			require.NoError(t, err)
			assert.Equal(t, klavi.ConsentAuthorized, c.Status)
			assert.True(t, c.Interval().Valid())
			require.NoError(t, c.Schedule(cycle.AdjustNone, nil).Validate())
		})
	}
}

func TestDecode_EveryProblemWithItsPath(t *testing.T) {
	data, err := os.ReadFile("testdata/broken.json")
	require.NoError(t, err)
	_, err = Decode(data)
	require.Error(t, err)
	var l problem.List
	require.True(t, errors.As(err, &l))
	byPath := map[string]string{}
	for _, p := range l {
		byPath[p.Path] += p.Message + " | "
	}
	want := map[string]string{
		"id":                                            "not a valid consent id",
		"status":                                        "not a Klavi consent status",
		"clientRequestId":                               "is required",
		"creditorAccount.ispb":                          "must be 8 digits",
		"creditorAccount.number":                        "must be 1 to 20 digits",
		"creditorAccount.accountType":                   "must be one of CACC, SVGS, TRAN",
		"creditorAccount.holder.identifier":             "must be 11 digits for a CPF",
		"creditorAccount.holder.name":                   "is required",
		"expirationDateTime":                            "want YYYY-MM-DDThh:mm:ssZ",
		"clientMetadata.platform":                       "must be BROWSER or APP",
		"clientMetadata.osVersion":                      "is required",
		"paymentMethodConfig.contractId":                "must be 1 to 35 letters or digits",
		"paymentMethodConfig.fixedAmount":               "invalid amount \"99.9\"",
		"paymentMethodConfig.currency":                  "only BRL",
		"paymentMethodConfig.interval":                  "invalid interval \"DAILY\"",
		"paymentMethodConfig.referenceStartDate":        "invalid date \"2025-02-30\"",
		"paymentMethodConfig.contractDebtor.identifier": "must be 14 characters for a CNPJ",
		"paymentMethodConfig.isRetryAccepted":           "must be true or false, got a string",
		"billing.retryMode":                             "invalid retry mode \"sometimes\"",
		"billing.dueDateAdjust":                         "invalid due date adjustment \"whenever\"",
		"billing.colour":                                "unknown field",
		"extra":                                         "unknown field",
		"billing.autoRetryStrategy.days":                "isRetryAccepted",
		"billing.autoRetryStrategy.days[0]":             "0 is not ≥ 1",
		"billing.autoRetryStrategy.days[1]":             "9 is past the 7-day retry window",
	}
	for path, msg := range want {
		assert.Contains(t, byPath[path], msg, "path %s (all: %v)", path, l)
	}
	// A field that failed to decode is not also reported as missing.
	assert.NotContains(t, byPath["paymentMethodConfig.interval"], "is required")
	assert.NotContains(t, byPath["paymentMethodConfig.referenceStartDate"], "is required")
	// Personal data is never echoed.
	assert.NotContains(t, err.Error(), "1122233300018")
	assert.NotContains(t, err.Error(), "12-34")
}

func TestDecode_Rules(t *testing.T) {
	base, err := os.ReadFile("../examples/consents/monthly-31st.json")
	require.NoError(t, err)
	tests := []struct {
		name, from, to, path, msg string
	}{
		{"fixed and variable", `"fixedAmount": "99.90",`, `"fixedAmount": "99.90", "maximumVariableAmount": "100.00",`, "paymentMethodConfig.fixedAmount", "excludes"},
		{"zero amount", `"fixedAmount": "99.90"`, `"fixedAmount": "0.00"`, "paymentMethodConfig.fixedAmount", "more than 0.00"},
		{"amount as number", `"fixedAmount": "99.90"`, `"fixedAmount": 99.90`, "paymentMethodConfig.fixedAmount", "must be a string"},
		{"expiry before reference", `"redirectUrl"`, `"expirationDateTime": "2025-10-30T12:00:00Z", "redirectUrl"`, "expirationDateTime", "before paymentMethodConfig.referenceStartDate"},
		{"retries not accepted", `"isRetryAccepted": true`, `"isRetryAccepted": false`, "billing.autoRetryStrategy.days", "isRetryAccepted"},
		{"missing interval", `"interval": "MONTHLY",`, ``, "paymentMethodConfig.interval", "is required"},
		{"lower-case enums", `"interval": "MONTHLY"`, `"interval": "monthly"`, "", ""},
		{"long remittance", `"remittanceInformation": "Plano Premium"`, `"remittanceInformation": "` + strings.Repeat("x", 141) + `"`, "billing.remittanceInformation", "limit is 140"},
		{"bad redirect", `"https://merchant.example.com/pix/return"`, `"merchant.example.com"`, "redirectUrl", "absolute URI"},
		{"not json", `{`, `{{`, "", "not valid JSON at line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := strings.Replace(string(base), tt.from, tt.to, 1)
			require.NotEqual(t, string(base), data)
			_, err := Decode([]byte(data))
			if tt.msg == "" {
				require.NoError(t, err)
				return
			}
			var l problem.List
			require.True(t, errors.As(err, &l), "%v", err)
			found := false
			for _, p := range l {
				if p.Path == tt.path && strings.Contains(p.Message, tt.msg) {
					found = true
				}
			}
			assert.True(t, found, "want %s: %s in %v", tt.path, tt.msg, l)
		})
	}
}

func TestClientRequestID(t *testing.T) {
	id := ClientRequestID("urn:klavi:consent-monthly-31st-0001", 12, 0)
	assert.Equal(t, id, ClientRequestID("urn:klavi:consent-monthly-31st-0001", 12, 0), "derived, never random")
	assert.NotEqual(t, id, ClientRequestID("urn:klavi:consent-monthly-31st-0001", 12, 1))
	assert.NotEqual(t, id, ClientRequestID("urn:klavi:consent-monthly-31st-0002", 12, 0))
	assert.Regexp(t, regexp.MustCompile(`^billingd-[0-9a-f]{16}-12-0$`), id)
	long := ClientRequestID(strings.Repeat("x", 256), 999999, 3)
	assert.LessOrEqual(t, len(long), 40)
	// Keys already stored and already sent must never change: these are the values
	// the first implementation (fmt.Sprintf of Hash) gave.
	assert.Equal(t, "billingd-88d4a59b13b8ce9a-12-0", id)
	assert.Equal(t, "billingd-1ff30242f9f3364b--3-65535", ClientRequestID("urn:x", -3, 65535))
	for k := -2; k < 300; k += 7 {
		for a := range 3 {
			id := fmt.Sprintf("urn:c-%d", k*a)
			assert.Equal(t, fmt.Sprintf("billingd-%s-%d-%d", Hash(id), k, a), ClientRequestID(id, k, a))
		}
	}
}

func TestCheckVariableAmount(t *testing.T) {
	data, err := os.ReadFile("../examples/consents/variable-amount.json")
	require.NoError(t, err)
	c, err := Decode(data)
	require.NoError(t, err)
	assert.NoError(t, c.CheckVariableAmount(10_00))
	assert.NoError(t, c.CheckVariableAmount(500_00))
	assert.ErrorContains(t, c.CheckVariableAmount(500_01), "above the consent's maximumVariableAmount 500.00")
	assert.ErrorContains(t, c.CheckVariableAmount(9_99), "below the consent's minimumVariableAmount 10.00")
	assert.ErrorContains(t, c.CheckVariableAmount(0), "more than 0.00")
	_, fixed := c.FixedAmount()
	assert.False(t, fixed)
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("../examples/consents/*.json")
	for _, p := range append(files, "testdata/broken.json") {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			var l problem.List
			require.True(t, errors.As(err, &l))
			require.NotEmpty(t, l)
			return
		}
		// Whatever decodes is billable: its schedule is valid and cycle 0 exists.
		s := c.Schedule(cycle.AdjustNone, nil)
		require.NoError(t, s.Validate())
		require.True(t, s.Exists(0))
		if st := c.Strategy(); st != nil {
			require.NoError(t, st.Validate(c.Interval(), true))
		}
	})
}

func TestDecodeMany(t *testing.T) {
	good, err := os.ReadFile("../examples/consents/monthly-31st.json")
	require.NoError(t, err)
	c, err := Decode(good)
	require.NoError(t, err)
	other := strings.Replace(string(good), c.ID, "urn:test:other", 1)
	tests := []struct {
		name    string
		data    string
		wantIDs []string
		want    []string // problems, as "path: message" prefixes
	}{
		{name: "one object", data: string(good), wantIDs: []string{c.ID}},
		{name: "an array", data: " [" + string(good) + "," + other + "]", wantIDs: []string{c.ID, "urn:test:other"}},
		{name: "an empty array", data: "[]"},
		{name: "not an array", data: "[1,", want: []string{"not a JSON array of consents: "}},
		{name: "a bad object in an array", data: "[" + string(good) + `,{"id":"x"}]`, want: []string{"[1].status: is required"}},
		{name: "an id twice", data: "[" + string(good) + "," + string(good) + "]", want: []string{"[1].id: " + c.ID + " appears twice"}},
		{name: "a bad single object", data: `{"id":"x"}`, want: []string{"status: is required"}},
		// A member name twice in one object: encoding/json alone would bill the last.
		{name: "fixedAmount twice", data: strings.Replace(string(good), `"fixedAmount": "99.90"`, `"fixedAmount": "99.90", "fixedAmount": "1.00"`, 1),
			want: []string{`paymentMethodConfig.fixedAmount: duplicate member name "fixedAmount"`}},
		{name: "id twice", data: strings.Replace(string(good), `"id": "`+c.ID+`"`, `"id": "`+c.ID+`", "id": "urn:test:other"`, 1),
			want: []string{`id: duplicate member name "id"`}},
		{name: "a name twice deep in an array element", data: "[" + other + "," + strings.Replace(string(good), `"days": [1, 3, 5]`, `"days": [1, 3, 5], "days": [1]`, 1) + "]",
			want: []string{`[1].billing.autoRetryStrategy.days: duplicate member name "days"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := DecodeMany([]byte(tt.data))
			if len(tt.want) > 0 {
				require.Error(t, err)
				assert.Nil(t, cs)
				var l problem.List
				require.True(t, errors.As(err, &l), "a problem.List")
				for _, w := range tt.want {
					assert.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			var ids []string
			for _, c := range cs {
				ids = append(ids, c.ID)
			}
			assert.Equal(t, tt.wantIDs, ids)
		})
	}
}
