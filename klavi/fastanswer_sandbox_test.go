package klavi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// Every payment answer the sandbox writes, in each reading it can write (ids,
// amounts, status spellings), pending and settled, is read by the one-pass reader
// (the daemon's hot path would otherwise fall back to the library unnoticed) and
// read as the library reads it.
func TestFastPayment_ReadsTheSandboxAnswers(t *testing.T) {
	for _, ids := range []string{sandbox.IDsUUID, sandbox.IDsURN} {
		for _, amounts := range []string{sandbox.AmountsString, sandbox.AmountsNumber} {
			for _, status := range []string{sandbox.StatusUpper, sandbox.StatusLower, sandbox.StatusSpaced} {
				t.Run(ids+"/"+amounts+"/"+status, func(t *testing.T) {
					clk := clock.NewFake(cycle.MustDate(2026, 2, 25).At(10, 0))
					sb := sandbox.New(sandbox.Options{Clock: clk, IDs: ids, Amounts: amounts, StatusCase: status})
					const id = "urn:test:consent-1"
					require.NoError(t, sb.AddConsent(sandbox.SampleConsent(id, cycle.Monthly, cycle.MustDate(2026, 2, 5), 99_90)))
					call := func(method, path, body string, want int) []byte {
						t.Helper()
						req := httptest.NewRequest(method, path, strings.NewReader(body))
						if !strings.HasSuffix(path, "/auth") {
							req.Header.Set("Authorization", "Bearer "+token(t, sb))
						}
						rec := httptest.NewRecorder()
						sb.ServeHTTP(rec, req)
						require.Equal(t, want, rec.Code, rec.Body.String())
						return rec.Body.Bytes()
					}
					base := "/payment/customer/v1/automatic/consents/" + id + "/payments"
					created := call(http.MethodPost, base, `{"clientRequestId":"c-1","date":"2026-03-05","amount":"99.90","currency":"BRL"}`, http.StatusCreated)
					var p struct{ ID string }
					require.NoError(t, json.Unmarshal(created, &p))
					clk.Advance(10 * 24 * time.Hour) // past its date: settled
					settled := call(http.MethodGet, base+"/"+p.ID, "", http.StatusOK)
					for name, b := range map[string][]byte{"the create answer": created, "the settled payment": settled} {
						fast, read, lib, err := klavi.FastAndLibrary(b)
						require.NoError(t, err, "%s: %s", name, b)
						require.True(t, read, "%s read in one pass: %s", name, b)
						assert.Equal(t, lib, fast, "%s: %s", name, b)
					}
					fast, _, _, _ := klavi.FastAndLibrary(settled)
					assert.Equal(t, klavi.PaymentCompleted, fast.Status, "%s", settled)
					assert.Equal(t, klavi.Cents(99_90), fast.Amount)
				})
			}
		}
	}
}

// token is an access token of sb's.
func token(t *testing.T, sb *sandbox.Server) string {
	t.Helper()
	rec := httptest.NewRecorder()
	sb.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/payment/customer/v1/auth", strings.NewReader(`{"accessKey":"a","secretKey":"b"}`)))
	var tok struct{ AccessToken string }
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &tok), rec.Body.String())
	require.NotEmpty(t, tok.AccessToken, rec.Body.String())
	return tok.AccessToken
}
