package console

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/examples"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
)

const (
	adminToken    = "admin-token-0123456789"
	readOnlyToken = "readonly-token-0123456789"
	monthlyID     = "urn:klavi:consent-monthly-31st-0001"
	weeklyID      = "urn:klavi:consent-weekly-0002"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type env struct {
	t   *testing.T
	srv *httptest.Server
	db  *bolt.Store
	sch *scheduler.Scheduler
	clk *clock.Fake
}

// newEnv serves the console over a real store and scheduler (no Klavi client: the
// console never calls Klavi) with two consents: the monthly example billed from 1
// Dec 2025, whose 31 Dec cycle's window closed on 29 Dec (MISSED at the scan of 2
// Jan 10:00, an open attention item), and the weekly example.
func newEnv(t *testing.T, tls bool) *env {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "b.db"), bolt.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	clk := clock.NewFake(cycle.MustDate(2026, 1, 2).At(10, 0))
	sch, err := scheduler.New(scheduler.Config{Policy: scheduler.Policy{LeadDays: 3, RetryMode: consent.Attach}, SubmitHour: 9}, db, nil, scheduler.WithClock(clk), scheduler.WithLogger(quiet))
	require.NoError(t, err)
	add := func(name string, from cycle.Date) {
		data, err := examples.Consents.ReadFile("consents/" + name)
		require.NoError(t, err)
		c, err := consent.Decode(data)
		require.NoError(t, err)
		_, err = sch.AddConsent(c, from, "alice")
		require.NoError(t, err)
	}
	add("monthly-31st.json", cycle.MustDate(2025, 12, 1))
	_, err = sch.Scan(context.Background())
	require.NoError(t, err)
	add("weekly-retries.json", cycle.Date{}) // after the scan: nothing is sent (no Klavi here)
	ui := New(adminToken, db, sch, WithReadOnlyToken(readOnlyToken), WithClock(clk), WithLogger(quiet), WithStatus(func() Status {
		return Status{Role: " (leader, fence 7)", Clock: scheduler.ClockState{HighWater: clk.Now()}}
	}))
	h := ui.Handler()
	require.NotNil(t, h)
	mux := http.NewServeMux()
	mux.Handle(Prefix, h)
	srv := httptest.NewUnstartedServer(mux)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, db: db, sch: sch, clk: clk}
}

// browser is a client with a cookie jar that does not follow redirects.
type browser struct {
	e *env
	c *http.Client
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := *e.srv.Client() // a copy: each browser has its own jar
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{e: e, c: &c}
}

type answer struct {
	code int
	hdr  http.Header
	body string
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) answer {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	require.NoError(b.e.t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	require.NoError(b.e.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(raw)}
}

func (b *browser) get(path string) answer { return b.do("GET", path, nil) }

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(body)
	require.NotNil(t, m, "no csrf field in %s", body)
	return m[1]
}

// login opens a session with token and returns the CSRF token of its forms.
func (b *browser) login(token string) string {
	t := b.e.t
	t.Helper()
	a := b.get("/ui/login")
	require.Equal(t, http.StatusOK, a.code)
	a = b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, a.body)}, "token": {token}, "next": {"/ui/attention"}})
	require.Equal(t, http.StatusSeeOther, a.code, a.body)
	require.Equal(t, "/ui/attention", a.hdr.Get("Location"))
	a = b.get("/ui/")
	require.Equal(t, http.StatusOK, a.code)
	return csrfOf(t, a.body)
}

func resolveForm(csrf, note string) url.Values {
	return url.Values{"csrf": {csrf}, "consent": {monthlyID}, "cycle": {"2"}, "attempt": {"0"}, "note": {note}}
}

func (e *env) open() bool {
	e.t.Helper()
	a, err := e.db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: monthlyID, Cycle: 2})
	require.NoError(e.t, err)
	return a.Open()
}

// pages are every page of the console.
var pages = []string{"/ui/", "/ui/upcoming", "/ui/attention", "/ui/consents", "/ui/consents/" + url.PathEscape(monthlyID),
	"/ui/payments", "/ui/payments.csv", "/ui/report", "/ui/report?month=2025-12", "/ui/nowhere"}

func TestConsole_Security(t *testing.T) {
	e := newEnv(t, false)

	t.Run("no page without a session", func(t *testing.T) {
		b := e.browser()
		for _, p := range pages {
			a := b.get(p)
			assert.Equal(t, http.StatusSeeOther, a.code, p)
			assert.True(t, strings.HasPrefix(a.hdr.Get("Location"), "/ui/login"), p)
			assert.NotContains(t, a.body, "urn:klavi", p)
			assert.Equal(t, csp, a.hdr.Get("Content-Security-Policy"), p)
		}
	})
	t.Run("no action without a session", func(t *testing.T) {
		b := e.browser()
		for _, p := range []string{"/ui/attention/resolve", "/ui/logout"} {
			a := b.do("POST", p, resolveForm("x", "n"))
			assert.Equal(t, http.StatusUnauthorized, a.code, p)
		}
		assert.True(t, e.open())
	})
	t.Run("wrong token", func(t *testing.T) {
		b := e.browser()
		a := b.get("/ui/login")
		a = b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, a.body)}, "token": {"wrong-token-0123456789"}})
		assert.Equal(t, http.StatusUnauthorized, a.code)
		assert.Contains(t, a.body, "Wrong token")
		assert.Equal(t, http.StatusSeeOther, b.get("/ui/").code, "no session")
	})
	t.Run("login without its CSRF token", func(t *testing.T) {
		b := e.browser()
		b.get("/ui/login")
		a := b.do("POST", "/ui/login", url.Values{"token": {adminToken}})
		assert.Equal(t, http.StatusForbidden, a.code)
		a = b.do("POST", "/ui/login", url.Values{"token": {adminToken}, "csrf": {"forged"}})
		assert.Equal(t, http.StatusForbidden, a.code)
		assert.Equal(t, http.StatusSeeOther, b.get("/ui/").code, "no session")
	})
	t.Run("cross-site login refused", func(t *testing.T) {
		b := e.browser()
		a := b.get("/ui/login")
		a = b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, a.body)}, "token": {adminToken}}, "Sec-Fetch-Site", "cross-site")
		assert.Equal(t, http.StatusForbidden, a.code)
	})
	t.Run("admin posts without CSRF are refused", func(t *testing.T) {
		b := e.browser()
		csrf := b.login(adminToken)
		for name, form := range map[string]url.Values{
			"no token":    resolveForm("", "called the payer"),
			"wrong token": resolveForm("AAAA"+csrf[4:], "called the payer"),
			"other token": resolveForm(e.browser().login(adminToken), "called the payer"),
		} {
			a := b.do("POST", "/ui/attention/resolve", form)
			assert.Equal(t, http.StatusForbidden, a.code, name)
			assert.Contains(t, a.body, "CSRF", name)
		}
		a := b.do("POST", "/ui/attention/resolve", resolveForm(csrf, "called the payer"), "Sec-Fetch-Site", "cross-site")
		assert.Equal(t, http.StatusForbidden, a.code, "cross-site")
		a = b.do("POST", "/ui/attention/resolve", resolveForm(csrf, "called the payer"), "Origin", "https://evil.example")
		assert.Equal(t, http.StatusForbidden, a.code, "foreign origin")
		assert.True(t, e.open(), "nothing resolved")
	})
	t.Run("a link cannot put words on a page", func(t *testing.T) {
		b := e.browser()
		b.login(adminToken)
		for _, q := range []string{"?done=Your+account+is+locked,+call+0800", "?resolved=" + url.QueryEscape(monthlyID+"/2/0"), "?resolved=Call+us/1/0"} {
			a := b.get("/ui/attention" + q)
			require.Equal(t, http.StatusOK, a.code, q)
			assert.NotContains(t, a.body, `class="flash"`, "%s: no note for an item that is not resolved", q)
		}
	})
	t.Run("read-only sees every page and cannot act", func(t *testing.T) {
		b := e.browser()
		csrf := b.login(readOnlyToken)
		for _, p := range pages[:len(pages)-1] {
			a := b.get(p)
			assert.Equal(t, http.StatusOK, a.code, p)
		}
		a := b.get("/ui/attention")
		assert.Contains(t, a.body, "read-only")
		assert.NotContains(t, a.body, `action="/ui/attention/resolve"`, "no resolve form")
		a = b.do("POST", "/ui/attention/resolve", resolveForm(csrf, "read-only tries"))
		assert.Equal(t, http.StatusForbidden, a.code)
		assert.Contains(t, a.body, "read-only")
		assert.True(t, e.open(), "nothing resolved")
		assert.Equal(t, http.StatusSeeOther, b.do("POST", "/ui/logout", url.Values{"csrf": {csrf}}).code, "it may log out")
		assert.Equal(t, http.StatusSeeOther, b.get("/ui/").code)
	})
	t.Run("tampered and expired sessions", func(t *testing.T) {
		b := e.browser()
		b.login(adminToken)
		u, _ := url.Parse(e.srv.URL + "/ui/")
		ck := b.c.Jar.Cookies(u)[0]
		payload, mac, _ := strings.Cut(ck.Value, ".")
		forged := b64.EncodeToString([]byte(`{"r":"admin","iat":1767358800,"exp":9999999999,"n":"x"}`))
		for _, v := range []string{forged + "." + mac, payload + ".AAAA", payload, ""} {
			b.c.Jar.SetCookies(u, []*http.Cookie{{Name: SessionCookie, Value: v, Path: "/ui/"}})
			assert.Equal(t, http.StatusSeeOther, b.get("/ui/").code, v)
		}
		b.c.Jar.SetCookies(u, []*http.Cookie{{Name: SessionCookie, Value: ck.Value, Path: "/ui/"}})
		assert.Equal(t, http.StatusOK, b.get("/ui/").code)
		now := e.clk.Now()
		e.clk.Advance(IdleTimeout + time.Minute)
		assert.Equal(t, http.StatusSeeOther, b.get("/ui/").code, "idle past the timeout")
		e.clk.Set(now)
	})
	t.Run("login goes back only to console pages", func(t *testing.T) {
		for next, want := range map[string]string{"//evil.example/": "/ui/", "https://evil.example/ui/": "/ui/", "/ui/report?month=2025-12": "/ui/report?month=2025-12", `/ui/\evil`: "/ui/"} {
			b := e.browser()
			a := b.get("/ui/login")
			a = b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, a.body)}, "token": {adminToken}, "next": {next}})
			assert.Equal(t, want, a.hdr.Get("Location"), next)
		}
	})
	t.Run("admin resolves with a note; the timeline names the console", func(t *testing.T) {
		b := e.browser()
		csrf := b.login(adminToken)
		a := b.do("POST", "/ui/attention/resolve", resolveForm(csrf, "   "))
		assert.Equal(t, http.StatusBadRequest, a.code, "a note is required")
		a = b.do("POST", "/ui/attention/resolve", resolveForm(csrf, "payer paid by TED; checked"), "Sec-Fetch-Site", "same-origin", "Origin", e.srv.URL)
		require.Equal(t, http.StatusSeeOther, a.code, a.body)
		assert.False(t, e.open())
		a = b.get("/ui/consents/" + url.PathEscape(monthlyID))
		assert.Contains(t, a.body, "console:admin")
		assert.Contains(t, a.body, "payer paid by TED; checked")
		a = b.do("POST", "/ui/attention/resolve", resolveForm(csrf, "again"))
		assert.Equal(t, http.StatusConflict, a.code, "no longer open")
	})
	t.Run("every answer has the CSP", func(t *testing.T) {
		b := e.browser()
		for _, p := range []string{"/ui/login", "/ui/static/console.css", "/ui/static/console.js", "/ui/static/nothing", "/ui/"} {
			a := b.get(p)
			assert.Equal(t, csp, a.hdr.Get("Content-Security-Policy"), p)
			assert.Equal(t, "nosniff", a.hdr.Get("X-Content-Type-Options"), p)
			assert.Equal(t, "DENY", a.hdr.Get("X-Frame-Options"), p)
		}
		b.login(adminToken)
		for _, p := range pages {
			a := b.get(p)
			assert.Equal(t, csp, a.hdr.Get("Content-Security-Policy"), p)
			assert.NotRegexp(t, `<script>|<script [^>]*>[^<]|<style|style="| on[a-z]+="`, a.body, "no inline script or style: %s", p)
		}
	})
	t.Run("off without an admin token", func(t *testing.T) {
		assert.Nil(t, New("", nil, nil).Handler())
	})
}

func sessionCookie(t *testing.T, hdr http.Header) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", SessionCookie, hdr)
	return nil
}

func TestConsole_CookieFlags(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tls], func(t *testing.T) {
			e := newEnv(t, tls)
			b := e.browser()
			a := b.get("/ui/login")
			a = b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, a.body)}, "token": {adminToken}})
			require.Equal(t, http.StatusSeeOther, a.code)
			ck := sessionCookie(t, a.hdr)
			assert.True(t, ck.HttpOnly)
			assert.Equal(t, http.SameSiteStrictMode, ck.SameSite)
			assert.Equal(t, "/ui/", ck.Path)
			assert.Equal(t, tls, ck.Secure, "Secure exactly when served over TLS")
			assert.Equal(t, int(IdleTimeout/time.Second), ck.MaxAge)
		})
	}
}

func TestConsole_Pages(t *testing.T) {
	e := newEnv(t, false)
	b := e.browser()
	b.login(adminToken)

	t.Run("overview", func(t *testing.T) {
		a := b.get("/ui/")
		require.Equal(t, http.StatusOK, a.code)
		for _, want := range []string{"To submit Fri 2026-01-02", "To submit Sat 2026-01-03", "Open attention items",
			`href="/ui/attention?state=MISSED">MISSED</a><span class="num"><span class="badge bad">1</span>`,
			"leader, fence 7", "trusted", "2026-01-02 10:00 BRT"} {
			assert.Contains(t, a.body, want)
		}
	})
	t.Run("upcoming", func(t *testing.T) {
		a := b.get("/ui/upcoming?from=2026-01-02&to=2026-01-31")
		require.Equal(t, http.StatusOK, a.code)
		assert.Contains(t, a.body, "Fri 2026-01-02")
		assert.Contains(t, a.body, "R$ 25,00")
		assert.Contains(t, a.body, "R$ 99,90")
		assert.Contains(t, a.body, "09:00 BRT")
		assert.Equal(t, http.StatusBadRequest, b.get("/ui/upcoming?from=2026-01-02&to=2026-12-31").code)
		assert.Equal(t, http.StatusBadRequest, b.get("/ui/upcoming?from=tomorrow").code)
	})
	t.Run("attention", func(t *testing.T) {
		a := b.get("/ui/attention")
		require.Equal(t, http.StatusOK, a.code)
		assert.Contains(t, a.body, `id="item-`+monthlyID+`-2-0"`)
		assert.Contains(t, a.body, "Wed 2025-12-31")
		assert.Contains(t, a.body, `action="/ui/attention/resolve"`)
		assert.Contains(t, b.get("/ui/attention?state=STUCK").body, "No open item in STUCK")
		assert.Equal(t, http.StatusBadRequest, b.get("/ui/attention?state=BOGUS").code)
	})
	t.Run("consents and search", func(t *testing.T) {
		a := b.get("/ui/consents")
		require.Equal(t, http.StatusOK, a.code)
		assert.Contains(t, a.body, monthlyID)
		assert.Contains(t, a.body, weeklyID)
		for q, want := range map[string]string{monthlyID: monthlyID, "PREMIUM0001": monthlyID, "aulas0002": weeklyID} {
			a = b.get("/ui/consents?q=" + url.QueryEscape(q))
			assert.Equal(t, http.StatusSeeOther, a.code, q)
			assert.Equal(t, "/ui/consents/"+url.PathEscape(want), a.hdr.Get("Location"), q)
		}
		a = b.get("/ui/consents?q=nothing-like-it")
		assert.Equal(t, http.StatusOK, a.code)
		assert.Contains(t, a.body, "No consent matches")
	})
	t.Run("search by payment id", func(t *testing.T) {
		atts, err := e.db.Attempts(context.Background(), monthlyID)
		require.NoError(t, err)
		require.NotEmpty(t, atts)
		a := b.get("/ui/consents?q=" + url.QueryEscape(atts[0].ClientRequestID))
		assert.Equal(t, "/ui/consents/"+url.PathEscape(monthlyID), a.hdr.Get("Location"))
	})
	t.Run("consent page masks personal data", func(t *testing.T) {
		a := b.get("/ui/consents/" + url.PathEscape(monthlyID))
		require.Equal(t, http.StatusOK, a.code)
		a.body = html.UnescapeString(a.body)
		for _, want := range []string{"PREMIUM0001", "CPF *********25, M**** d* S****", "CNPJ ************81, A******* E****** L***",
			"account ********90", "R$ 99,90", "days +1, +3, +5, skipping weekends", `id="plan"`, "Sat 2026-01-31", "missed", "alice", "added"} {
			assert.Contains(t, a.body, want)
		}
		for _, never := range []string{"52998224725", "Maria", "Silva", "11222333000181", "1234567890", "Academia"} {
			assert.NotContains(t, a.body, never)
		}
		assert.Equal(t, http.StatusNotFound, b.get("/ui/consents/urn:klavi:none").code)
	})
	t.Run("payments and CSV", func(t *testing.T) {
		a := b.get("/ui/payments?from=2025-12-01&to=2025-12-31")
		require.Equal(t, http.StatusOK, a.code)
		assert.Contains(t, a.body, "MISSED")
		assert.Contains(t, a.body, `href="/ui/payments.csv?from=2025-12-01&amp;to=2025-12-31"`)
		a = b.get("/ui/payments.csv?from=2025-12-01&to=2025-12-31")
		require.Equal(t, http.StatusOK, a.code)
		assert.Equal(t, "text/csv; charset=utf-8", a.hdr.Get("Content-Type"))
		assert.Contains(t, a.hdr.Get("Content-Disposition"), "billingd-payments-2025-12-01-2025-12-31.csv")
		lines := strings.Split(strings.TrimSpace(a.body), "\n")
		require.Len(t, lines, 2)
		assert.True(t, strings.HasPrefix(lines[0], "consentId,cycle,attempt,state,date,amount"))
		assert.True(t, strings.HasPrefix(lines[1], monthlyID+",2,0,MISSED,2025-12-31,99.90,"), lines[1])
		assert.Equal(t, http.StatusBadRequest, b.get("/ui/payments?state=NOPE").code)
		assert.Equal(t, http.StatusBadRequest, b.get("/ui/payments?from=2025-01-01&to=2026-12-31").code)
	})
	t.Run("report", func(t *testing.T) {
		a := b.get("/ui/report?month=2025-12")
		require.Equal(t, http.StatusOK, a.code)
		assert.Contains(t, a.body, "Report 2025-12")
		assert.Contains(t, a.body, "monthly")
		assert.Contains(t, a.body, `href="/ui/report?month=2025-11"`)
		assert.Contains(t, a.body, `href="/ui/report?month=2026-01"`)
		assert.Equal(t, http.StatusBadRequest, b.get("/ui/report?month=2025-13").code)
	})
}
