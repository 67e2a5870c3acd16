package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/webhook"
)

const token = "test-token-0123456789"

type fakeKlavi struct {
	calls int
	err   error // CreateConsent's answer when set
}

func (f *fakeKlavi) CreateConsent(_ context.Context, req *klavi.CreateConsentRequest) (*klavi.Consent, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	return &klavi.Consent{ID: "urn:klavi:created-1", ClientRequestID: req.ClientRequestID, Status: klavi.ConsentAwaitingAuthorization,
		ConsentRedirectURL: "https://klavi.example/authorize/created-1"}, nil
}

// klaviConsents is the scheduler's Klavi as far as Authorize reads it: each
// consent's status at Klavi (absent: awaiting authorization).
type klaviConsents struct {
	scheduler.Klavi // nil: any other call panics
	mu              sync.Mutex
	status          map[string]klavi.ConsentStatus
}

func (k *klaviConsents) GetConsent(_ context.Context, id string) (*klavi.Consent, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st, ok := k.status[id]
	if !ok {
		st = klavi.ConsentAwaitingAuthorization
	}
	return &klavi.Consent{ID: id, Status: st}, nil
}

func (k *klaviConsents) set(id string, st klavi.ConsentStatus) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.status[id] = st
}

type env struct {
	t   *testing.T
	srv *httptest.Server
	db  *bolt.Store
	kl  *fakeKlavi
	kc  *klaviConsents
	sch *scheduler.Scheduler
	clk *clock.Fake
}

func newEnv(t *testing.T) *env {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "b.db"), bolt.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	clk := clock.NewFake(cycle.MustDate(2026, 1, 2).At(10, 0))
	kc := &klaviConsents{status: map[string]klavi.ConsentStatus{}}
	sch, err := scheduler.New(scheduler.Config{Policy: scheduler.Policy{LeadDays: 3, RetryMode: consent.Attach}, SubmitHour: 9}, db, kc, scheduler.WithClock(clk))
	require.NoError(t, err)
	kl := &fakeKlavi{}
	s := New(token, db, sch, WithKlavi(kl), WithClock(clk))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, db: db, kl: kl, kc: kc, sch: sch, clk: clk}
}

func (e *env) do(method, path, body string, hdr ...string) (int, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && raw[0] == '{' {
		require.NoError(e.t, json.Unmarshal(raw, &out), string(raw))
	}
	return resp.StatusCode, out
}

func example(t *testing.T, name string) string {
	data, err := os.ReadFile("../examples/consents/" + name)
	require.NoError(t, err)
	return string(data)
}

func TestAdmin_Auth(t *testing.T) {
	e := newEnv(t)
	for _, h := range []string{"", "Bearer wrong", "Basic " + token, "bearer " + token} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/consents", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "header %q", h)
		assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer")
	}
	assert.Nil(t, New("", nil, nil).Handler(), "no token: the API is off")
}

func TestAdmin_ConsentLifecycle(t *testing.T) {
	e := newEnv(t)
	code, body := e.do("POST", "/v1/consents", example(t, "monthly-31st.json"))
	require.Equal(t, http.StatusCreated, code, body)
	assert.Equal(t, "active", body["state"])

	code, body = e.do("POST", "/v1/consents", example(t, "monthly-31st.json"))
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, body["error"], "already exists")

	code, body = e.do("GET", "/v1/consents", "")
	require.Equal(t, http.StatusOK, code)
	list := body["consents"].([]any)
	require.Len(t, list, 1)
	first := list[0].(map[string]any)
	assert.Equal(t, "urn:klavi:consent-monthly-31st-0001", first["id"])
	assert.Equal(t, "99.90", first["amount"])
	assert.NotContains(t, first, "consent", "lists carry no personal data")

	id := "urn:klavi:consent-monthly-31st-0001"
	code, body = e.do("GET", "/v1/consents/"+id, "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, float64(3), body["nextCycle"], "31 Jan 2026 is the first cycle due from 2 Jan")

	code, body = e.do("GET", "/v1/consents/"+id+"/preview?from=2026-01-02&cycles=2", "")
	require.Equal(t, http.StatusOK, code)
	cycles := body["cycles"].([]any)
	require.Len(t, cycles, 2)
	assert.Equal(t, "2026-01-31", cycles[0].(map[string]any)["dueDate"])

	code, body = e.do("GET", "/v1/consents/"+id+"/attempts", "")
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, body["attempts"])

	code, body = e.do("POST", "/v1/consents/"+id+"/revoke", `{"reason":"plan cancelled"}`)
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "revoked", body["state"])
	code, _ = e.do("POST", "/v1/consents/"+id+"/revoke", ``)
	assert.Equal(t, http.StatusConflict, code)

	code, body = e.do("GET", "/v1/consents?state=revoked", "")
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, body["consents"], 1)
}

func TestAdmin_CreateAtKlaviAndAuthorize(t *testing.T) {
	e := newEnv(t)
	var file map[string]any
	require.NoError(t, json.Unmarshal([]byte(example(t, "weekly-retries.json")), &file))
	delete(file, "id")
	delete(file, "status")
	body, _ := json.Marshal(file)
	code, out := e.do("POST", "/v1/klavi/consents", string(body))
	require.Equal(t, http.StatusCreated, code, out)
	assert.Equal(t, "https://klavi.example/authorize/created-1", out["consentRedirectUrl"])
	assert.Equal(t, "CONSENT_AWAITING_AUTHORIZATION", out["status"])

	code, out = e.do("GET", "/v1/consents/urn:klavi:created-1", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "awaiting_authorization", out["state"])
	assert.Equal(t, "https://klavi.example/authorize/created-1", out["redirectUrl"])

	// Klavi's word decides: the payer has not authorized yet.
	code, out = e.do("POST", "/v1/consents/urn:klavi:created-1/authorize", "")
	require.Equal(t, http.StatusConflict, code, out)
	assert.Contains(t, out["error"], "Klavi reports consent urn:klavi:created-1 CONSENT_AWAITING_AUTHORIZATION")
	e.kc.set("urn:klavi:created-1", klavi.ConsentAuthorized)
	code, out = e.do("POST", "/v1/consents/urn:klavi:created-1/authorize", "")
	require.Equal(t, http.StatusOK, code, out)
	assert.Equal(t, "active", out["state"])
	code, _ = e.do("POST", "/v1/consents/urn:klavi:created-1/authorize", "")
	assert.Equal(t, http.StatusConflict, code)

	// An invalid request never reaches Klavi.
	code, out = e.do("POST", "/v1/klavi/consents", `{"clientRequestId": "x"}`)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.NotEmpty(t, out["problems"])
	assert.Equal(t, 1, e.kl.calls)

	// Klavi's refusals are the operator's to mend (4xx: the CLI exits 2); Klavi
	// unreachable is not (5xx: exit 1).
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("create consent: 409: %w", klavi.ErrDuplicateRequest), http.StatusConflict},
		{fmt.Errorf("create consent: 422: %w", klavi.ErrRefused), http.StatusUnprocessableEntity},
		{fmt.Errorf("create consent: 400: %w", klavi.ErrInvalidRequest), http.StatusUnprocessableEntity},
		{fmt.Errorf("create consent: %w", klavi.ErrUnavailable), http.StatusGatewayTimeout},
	} {
		e.kl.err = c.err
		code, out = e.do("POST", "/v1/klavi/consents", string(body))
		assert.Equal(t, c.code, code, "%v: %v", c.err, out)
		assert.Contains(t, out["error"], c.err.Error())
	}
}

// A consent created at Klavi is stored billed from today (once authorized): while
// the clock is in doubt it is not created at all, rather than created at Klavi and
// left unstored here.
func TestAdmin_CreateAtKlaviWhileClockInDoubt(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, e.db.Apply(context.Background(), &storage.Change{HighWater: e.clk.Now().Add(24 * time.Hour)}))
	var file map[string]any
	require.NoError(t, json.Unmarshal([]byte(example(t, "weekly-retries.json")), &file))
	delete(file, "id")
	delete(file, "status")
	body, _ := json.Marshal(file)
	code, out := e.do("POST", "/v1/klavi/consents", string(body))
	assert.Equal(t, http.StatusConflict, code, out)
	assert.Contains(t, out["error"], "clock in doubt")
	assert.Contains(t, out["error"], "stepped back")
	assert.Zero(t, e.kl.calls, "nothing created at Klavi")
}

func TestAdmin_VariableAmount(t *testing.T) {
	e := newEnv(t)
	code, _ := e.do("POST", "/v1/consents", example(t, "variable-amount.json"))
	require.Equal(t, http.StatusCreated, code)
	id := "urn:klavi:consent-variable-0004"
	code, out := e.do("PUT", "/v1/consents/"+id+"/cycles/1/amount", `{"amount":"123.45"}`)
	require.Equal(t, http.StatusOK, code, out)
	code, out = e.do("GET", "/v1/consents/"+id+"/preview?from=2026-01-02&cycles=2", "")
	require.Equal(t, http.StatusOK, code)
	cycles := out["cycles"].([]any)
	assert.Nil(t, cycles[0].(map[string]any)["amount"])
	assert.Equal(t, "123.45", cycles[1].(map[string]any)["amount"])

	tests := []struct {
		path, body string
		code       int
		msg        string
	}{
		{"/cycles/1/amount", `{"amount":"600.00"}`, 400, "above the consent's maximumVariableAmount"},
		{"/cycles/1/amount", `{"amount":123.45}`, 400, "invalid amount request"},
		{"/cycles/1/amount", `{}`, 400, "amount is required"},
		{"/cycles/x/amount", `{"amount":"1.00"}`, 400, "cycle"},
		{"/cycles/1/amount", `{"amount":"1.00","extra":1}`, 400, "invalid amount request"},
	}
	for _, tt := range tests {
		code, out := e.do("PUT", "/v1/consents/"+id+tt.path, tt.body)
		assert.Equal(t, tt.code, code, tt.body)
		assert.Contains(t, out["error"], tt.msg, tt.body)
	}
}

func TestAdmin_BadRequests(t *testing.T) {
	e := newEnv(t)
	broken, err := os.ReadFile("../consent/testdata/broken.json")
	require.NoError(t, err)
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		code                     int
		msg                      string
	}{
		{"invalid consent lists every problem", "POST", "/v1/consents", string(broken), nil, 400, "invalid consent: 27 problems"},
		{"not json", "POST", "/v1/consents", "{{", nil, 400, "invalid consent"},
		{"empty body", "POST", "/v1/consents", "", nil, 400, "invalid consent"},
		{"wrong content type", "POST", "/v1/consents", "{}", []string{"Content-Type", "text/plain"}, 415, "want application/json"},
		{"body too large", "POST", "/v1/consents", `{"x":"` + strings.Repeat("a", 2<<20) + `"}`, nil, 413, "larger than"},
		{"bad billFrom", "POST", "/v1/consents?billFrom=2026-02-30", "{}", nil, 400, "billFrom"},
		{"unknown consent", "GET", "/v1/consents/urn:x:nope", "", nil, 404, "not found"},
		{"unknown consent attempts", "GET", "/v1/consents/urn:x:nope/attempts", "", nil, 404, "not found"},
		{"bad limit", "GET", "/v1/consents?limit=0", "", nil, 400, "limit"},
		{"bad state", "GET", "/v1/consents?state=happy", "", nil, 400, "state"},
		{"bad attention state", "GET", "/v1/attempts?state=COMPLETED", "", nil, 400, "GET /v1/payments takes any attempt state"},
		{"bad payments state", "GET", "/v1/payments?state=BOGUS", "", nil, 400, `state "BOGUS": want one of [SUBMITTING SUBMITTED COMPLETED`},
		{"bad preview from", "GET", "/v1/consents/urn:x:nope/preview?from=tomorrow", "", nil, 400, "from"},
		{"unknown route", "GET", "/v1/nothing", "", nil, 404, "no route"},
		{"wrong method", "DELETE", "/v1/consents/urn:x:a", "", nil, 404, "no route"},
		{"revoke body not json", "POST", "/v1/consents/urn:x:a/revoke", "{", nil, 400, "invalid revoke"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := e.do(tt.method, tt.path, tt.body, tt.hdr...)
			assert.Equal(t, tt.code, code)
			assert.Contains(t, out["error"], tt.msg)
		})
	}
	// Nothing was stored by any of them.
	list, err := e.db.ListConsents(context.Background(), "", 10, "")
	require.NoError(t, err)
	assert.Empty(t, list)
}

func TestAdmin_NothingLostOnBadInput(t *testing.T) {
	e := newEnv(t)
	code, _ := e.do("POST", "/v1/consents", example(t, "monthly-31st.json"))
	require.Equal(t, http.StatusCreated, code)
	before, err := e.db.GetConsent(context.Background(), "urn:klavi:consent-monthly-31st-0001")
	require.NoError(t, err)
	// A second, broken copy of the same consent changes nothing.
	code, _ = e.do("POST", "/v1/consents", strings.Replace(example(t, "monthly-31st.json"), `"99.90"`, `"99.9"`, 1))
	require.Equal(t, http.StatusBadRequest, code)
	after, err := e.db.GetConsent(context.Background(), "urn:klavi:consent-monthly-31st-0001")
	require.NoError(t, err)
	assert.Equal(t, before, after)
}

// TestAdmin_DuplicateNames: a member name written twice in one object of a request
// body, at any depth, is a 400 whose problem names its path, on every endpoint that
// reads a body, and nothing changes (encoding/json alone would take the last value).
func TestAdmin_DuplicateNames(t *testing.T) {
	e := newEnv(t)
	d, err := webhook.New(webhook.Config{Endpoints: []webhook.Endpoint{{Name: "shop", URL: "http://127.0.0.1:1/hook", Secret: "whsec_0123456789abcdef"}}, MaxAge: time.Minute},
		e.db, webhook.WithClock(e.clk), webhook.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	srv := httptest.NewServer(New(token, e.db, e.sch, WithKlavi(e.kl), WithClock(e.clk), WithWebhooks(d)).Handler())
	t.Cleanup(srv.Close)
	e.srv = srv

	const variableID = "urn:klavi:consent-variable-0004"
	code, out := e.do("POST", "/v1/consents", example(t, "variable-amount.json"))
	require.Equal(t, http.StatusCreated, code, out)

	monthly := example(t, "monthly-31st.json")
	var file map[string]any
	require.NoError(t, json.Unmarshal([]byte(example(t, "weekly-retries.json")), &file))
	delete(file, "id")
	delete(file, "status")
	create, _ := json.MarshalIndent(file, "", "  ")
	twice := func(doc, member string) string {
		t.Helper()
		require.Contains(t, doc, member)
		return strings.Replace(doc, member, member+", "+member[:strings.Index(member, ":")]+`: "1.00"`, 1)
	}
	tests := []struct {
		name, method, path, body string
		problem                  string // path of the duplicate
	}{
		{"consent fixedAmount", "POST", "/v1/consents", twice(monthly, `"fixedAmount": "99.90"`), "paymentMethodConfig.fixedAmount"},
		{"consent id", "POST", "/v1/consents", strings.Replace(monthly, `"id": "urn:klavi:consent-monthly-31st-0001"`,
			`"id": "urn:klavi:consent-monthly-31st-0001", "id": "urn:klavi:consent-other-0009"`, 1), "id"},
		{"consent billing", "POST", "/v1/consents", strings.Replace(monthly, `"billing": {`, `"billing": {"retryMode": "off",`, 1), "billing.retryMode"},
		{"amount", "PUT", "/v1/consents/" + variableID + "/cycles/10/amount", `{"amount":"50.00","amount":"499.00"}`, "amount"},
		{"create at Klavi", "POST", "/v1/klavi/consents", twice(string(create), `"fixedAmount": "25.00"`), "paymentMethodConfig.fixedAmount"},
		{"revoke", "POST", "/v1/consents/" + variableID + "/revoke", `{"reason":"asked","reason":"fraud"}`, "reason"},
		{"resolve", "POST", "/v1/attention/resolve", `{"consentId":"` + variableID + `","cycle":1,"cycle":2,"attempt":0,"note":"paid"}`, "cycle"},
		{"webhook replay", "POST", "/v1/webhooks/shop/replay", `{"dead":true,"dead":false}`, "dead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := e.do(tt.method, tt.path, tt.body)
			require.Equal(t, http.StatusBadRequest, code, out)
			require.NotEmpty(t, out["problems"], out)
			first := out["problems"].([]any)[0].(map[string]any)
			assert.Equal(t, tt.problem, first["path"])
			name := tt.problem[strings.LastIndex(tt.problem, ".")+1:]
			assert.Contains(t, first["message"], `duplicate member name "`+name+`"`)
		})
	}

	// Nothing changed: one consent, still active, no amount for cycle 10, Klavi untouched.
	list, err := e.db.ListConsents(context.Background(), "", 10, "")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, variableID, list[0].Consent.ID)
	code, out = e.do("GET", "/v1/consents/"+variableID, "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "active", out["state"])
	code, out = e.do("GET", "/v1/consents/"+variableID+"/preview?from=2026-01-02&cycles=11", "")
	require.Equal(t, http.StatusOK, code, out)
	cycles := out["cycles"].([]any)
	require.Len(t, cycles, 11)
	assert.Nil(t, cycles[10].(map[string]any)["amount"])
	assert.Zero(t, e.kl.calls)
}

func TestAdmin_Backup(t *testing.T) {
	e := newEnv(t)
	code, _ := e.do("POST", "/v1/consents", example(t, "monthly-31st.json"))
	require.Equal(t, http.StatusCreated, code)
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/backup", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, resp.Body)
	require.NoError(t, err)
	p := filepath.Join(t.TempDir(), "copy.db")
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o600))
	cp, err := bolt.Open(p, bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer cp.Close()
	require.NoError(t, cp.Check(context.Background()))
	_, err = cp.GetConsent(context.Background(), "urn:klavi:consent-monthly-31st-0001")
	require.NoError(t, err)
}
