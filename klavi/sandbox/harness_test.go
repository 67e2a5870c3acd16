package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/retry"
)

// The harness's clock starts on Wed 2026-02-25 10:00 Brasília: payments may be dated
// 2026-02-27..2026-03-07.
var start = day("2026-02-25").At(10, 0)

func day(s string) cycle.Date {
	d, err := cycle.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

type harness struct {
	t   *testing.T
	clk *clock.Fake
	sb  *sandbox.Server
	ts  *httptest.Server
	kc  *klavi.Client
}

func noSleep(ctx context.Context, d time.Duration) error { return ctx.Err() }

// newHarness runs a sandbox on a loopback httptest.Server with a fake clock, and a
// client that sends each request once (so refusals come back as they are).
func newHarness(t *testing.T, opts sandbox.Options) *harness {
	t.Helper()
	clk := clock.NewFake(start)
	opts.Clock = clk
	opts.AccessKey, opts.SecretKey = "access-key-1", "secret-key-1"
	sb := sandbox.New(opts)
	ts := httptest.NewServer(sb)
	t.Cleanup(func() {
		sb.Close()
		ts.Close()
	})
	kc, err := klavi.New(klavi.Config{
		BaseURL: ts.URL, AccessKey: "access-key-1", SecretKey: "secret-key-1",
		Timeout: 10 * time.Second, MaxAttempts: 1, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond,
		RateLimit: 1e6, RateBurst: 1000, TokenRefreshBefore: time.Minute,
	}, klavi.WithClock(clk), klavi.WithSleep(noSleep))
	require.NoError(t, err)
	return &harness{t: t, clk: clk, sb: sb, ts: ts, kc: kc}
}

// seed adds a sample consent; fixed 0 makes it variable (max R$ 1.000,00).
func (h *harness) seed(id string, iv cycle.Interval, ref string, fixed klavi.Cents, edit ...func(*klavi.CreatedConsent)) {
	h.t.Helper()
	c := sandbox.SampleConsent(id, iv, day(ref), fixed)
	for _, e := range edit {
		e(c)
	}
	require.NoError(h.t, h.sb.AddConsent(c))
}

func (h *harness) pay(consentID, crid, date string, amount klavi.Cents, strategy *retry.Strategy) (*klavi.Payment, error) {
	return h.kc.CreatePayment(context.Background(), consentID, &klavi.CreatePaymentRequest{
		ClientRequestID: crid, Date: day(date), Amount: amount, Currency: klavi.Currency, AutoRetryStrategy: strategy,
	})
}

func (h *harness) mustPay(consentID, crid, date string, amount klavi.Cents, strategy *retry.Strategy) *klavi.Payment {
	h.t.Helper()
	p, err := h.pay(consentID, crid, date, amount, strategy)
	require.NoError(h.t, err)
	return p
}

func (h *harness) retry(consentID, paymentID, crid, date string) (*klavi.Payment, error) {
	return h.kc.RetryPayment(context.Background(), consentID, paymentID, &klavi.RetryPaymentRequest{ClientRequestID: crid, Date: day(date)})
}

func (h *harness) get(consentID, paymentID string) *klavi.Payment {
	h.t.Helper()
	p, err := h.kc.GetPayment(context.Background(), consentID, paymentID)
	require.NoError(h.t, err)
	return p
}

// setClock moves the clock to hh:mm Brasília on date.
func (h *harness) setClock(date string, hh, mm int) { h.clk.Set(day(date).At(hh, mm)) }

// raw sends a request with a valid token and returns the status and decoded body.
func (h *harness) raw(method, path, body string) (int, map[string]any) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.ts.URL+path, strings.NewReader(body))
	require.NoError(h.t, err)
	if strings.HasPrefix(path, "/payment/") && !strings.HasSuffix(path, "/auth") {
		req.Header.Set("Authorization", "Bearer "+h.token())
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	var out map[string]any
	if len(bytes.TrimSpace(data)) > 0 && data[0] == '{' {
		require.NoError(h.t, json.Unmarshal(data, &out), string(data))
	}
	return resp.StatusCode, out
}

func (h *harness) token() string {
	h.t.Helper()
	resp, err := http.Post(h.ts.URL+"/payment/customer/v1/auth", "application/json",
		strings.NewReader(`{"accessKey":"access-key-1","secretKey":"secret-key-1"}`))
	require.NoError(h.t, err)
	defer resp.Body.Close()
	var out struct{ AccessToken string }
	require.NoError(h.t, json.NewDecoder(resp.Body).Decode(&out))
	require.NotEmpty(h.t, out.AccessToken)
	return out.AccessToken
}

// requireRule asserts that err is Klavi's refusal with status and rule.
func requireRule(t *testing.T, err error, status int, rule string) {
	t.Helper()
	var ae *klavi.APIError
	require.True(t, errors.As(err, &ae), "want an APIError %d %s, got %v", status, rule, err)
	require.Equal(t, status, ae.StatusCode, "%v", err)
	require.True(t, strings.HasPrefix(ae.Message, rule+":"), "want rule %s, got %q", rule, ae.Message)
}

func (h *harness) ledger(kind sandbox.Kind) []sandbox.LedgerEntry {
	var out []sandbox.LedgerEntry
	for _, e := range h.sb.Ledger() {
		if kind == "" || e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func dates(es []sandbox.LedgerEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Date.String()
	}
	return out
}
