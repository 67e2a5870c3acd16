package sandbox_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// rawBox drives a sandbox with plain net/http and encoding/json, so the answers are
// seen exactly as written.
type rawBox struct {
	t   *testing.T
	clk *clock.Fake
	sb  *sandbox.Server
	ts  *httptest.Server
}

func newRaw(t *testing.T, opts sandbox.Options) *rawBox {
	t.Helper()
	clk := clock.NewFake(start)
	opts.Clock = clk
	sb, err := sandbox.Open(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(sb)
	t.Cleanup(func() {
		sb.Close()
		ts.Close()
	})
	return &rawBox{t: t, clk: clk, sb: sb, ts: ts}
}

// answer is one HTTP answer: status, headers, raw body and the body decoded into a
// map (nil when the body is not a JSON object).
type answer struct {
	code   int
	header http.Header
	raw    string
	body   map[string]any
}

func (b *rawBox) do(method, path, body string) answer {
	b.t.Helper()
	req, err := http.NewRequest(method, b.ts.URL+path, strings.NewReader(body))
	require.NoError(b.t, err)
	if strings.HasPrefix(path, "/payment/") && !strings.HasSuffix(path, "/auth") {
		req.Header.Set("Authorization", "Bearer "+b.token()) // a fresh one: tests move the clock by days
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	a := answer{code: resp.StatusCode, header: resp.Header, raw: strings.TrimSpace(string(data))}
	if strings.HasPrefix(a.raw, "{") {
		require.NoError(b.t, json.Unmarshal(data, &a.body), a.raw)
	}
	return a
}

func (b *rawBox) token() string {
	b.t.Helper()
	resp, err := http.Post(b.ts.URL+"/payment/customer/v1/auth", "application/json", strings.NewReader(`{"accessKey":"a","secretKey":"s"}`))
	require.NoError(b.t, err)
	defer resp.Body.Close()
	var out struct{ AccessToken string }
	require.NoError(b.t, json.NewDecoder(resp.Body).Decode(&out))
	require.NotEmpty(b.t, out.AccessToken)
	return out.AccessToken
}

// seed adds an authorized sample consent billing fixed centavos each month from ref.
func (b *rawBox) seed(id string, ref string, fixed klavi.Cents) {
	b.t.Helper()
	require.NoError(b.t, b.sb.AddConsent(sandbox.SampleConsent(id, cycle.Monthly, day(ref), fixed)))
}

const consentsPath = "/payment/customer/v1/automatic/consents"

func paymentsPath(consentID string) string { return consentsPath + "/" + consentID + "/payments" }

// pay posts a payment; amount is the API's amount string.
func (b *rawBox) pay(consentID, crid, date, amount string) answer {
	b.t.Helper()
	return b.do(http.MethodPost, paymentsPath(consentID),
		fmt.Sprintf(`{"clientRequestId":%q,"date":%q,"amount":%q,"currency":"BRL"}`, crid, date, amount))
}

func (b *rawBox) retry(consentID, paymentID, crid, date string) answer {
	b.t.Helper()
	return b.do(http.MethodPost, paymentsPath(consentID)+"/"+paymentID+"/retry", fmt.Sprintf(`{"clientRequestId":%q,"date":%q}`, crid, date))
}

// consentBody is a valid consent creation body with clientRequestId crid.
func consentBody(t *testing.T, crid string) string {
	t.Helper()
	r := sandbox.SampleConsent("urn:x:unused", cycle.Monthly, day("2026-02-05"), 9990).CreateConsentRequest
	r.ClientRequestID = crid
	data, err := json.Marshal(r)
	require.NoError(t, err)
	return string(data)
}

func str(v any) string { s, _ := v.(string); return s }
