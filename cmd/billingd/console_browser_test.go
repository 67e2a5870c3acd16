//go:build browser

package main

// The web console in a real browser: headless Chromium (Debian's chromium package;
// $CHROMIUM overrides /usr/bin/chromium) driven by chromedp over a daemon that
// bills the example consents against the in-process sandbox. Run by `make browser`.
// Each page's screenshot is saved in the test's artifact directory (go test
// -artifacts), and in docs/console/ when BILLINGD_SCREENSHOTS=docs (`make screenshots`).

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/examples"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

const readOnlyTestToken = "readonly-token-0123456789abcdef"

// seedConsole adds the example consents, and variants of the weekly and monthly
// ones with other ids, debtors and amounts, to the sandbox and the daemon (through
// the admin API, as "maria"); then bills them over a week and a day.
func seedConsole(t *testing.T, de *daemonEnv) {
	t.Helper()
	names := []string{"weekly-retries.json", "monthly-31st.json", "next-business-day.json", "variable-amount.json",
		"expiring-quarterly.json", "yearly-leap-day.json"}
	var bodies [][]byte
	for _, n := range names {
		data, err := examples.Consents.ReadFile("consents/" + n)
		require.NoError(t, err)
		bodies = append(bodies, data)
	}
	debtors := []string{"Ana Souza", "Bruno Lima", "Carla Dias", "Diego Rocha", "Elisa Nunes", "Fábio Melo", "Gabriela Reis", "Heitor Alves"}
	for i, name := range debtors {
		src := bodies[i%2] // weekly, monthly
		var m map[string]any
		require.NoError(t, json.Unmarshal(src, &m))
		m["id"] = fmt.Sprintf("urn:klavi:consent-demo-%04d", i+1)
		m["clientRequestId"] = fmt.Sprintf("signup-demo-%04d", i+1)
		pm := m["paymentMethodConfig"].(map[string]any)
		pm["contractId"] = fmt.Sprintf("DEMO%04d", i+1)
		pm["fixedAmount"] = fmt.Sprintf("%d.%02d", 19+i*37, (i*13)%100)
		if fp, ok := pm["firstPayment"].(map[string]any); ok {
			fp["amount"] = pm["fixedAmount"]
		}
		pm["contractDebtor"].(map[string]any)["name"] = name
		pm["contractDebtor"].(map[string]any)["identifier"] = []string{"52998224725", "39053344705", "11144477735"}[i%3]
		b, err := json.Marshal(m)
		require.NoError(t, err)
		bodies = append(bodies, b)
	}
	for _, b := range bodies {
		c, err := consent.Decode(b)
		require.NoError(t, err)
		require.NoError(t, de.sb.AddConsent(&c.CreatedConsent))
		req, _ := http.NewRequest("POST", "http://"+de.d.Addr()+"/v1/consents", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("X-Billingd-Actor", "maria")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusCreated, resp.StatusCode, "%s: %s", c.ID, out)
	}
	for d := cycle.MustDate(2026, 1, 4); !d.After(cycle.MustDate(2026, 1, 12)); d = d.AddDays(1) {
		de.tick(d.At(9, 0))
		de.tick(d.At(18, 0))
	}
	de.tick(cycle.MustDate(2026, 1, 13).At(8, 0))
}

type consoleBrowser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dirs []string // where screenshots go
}

func (b *consoleBrowser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, steps...))
}

func (b *consoleBrowser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	require.NoError(b.t, err)
	return s
}

func (b *consoleBrowser) location() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Location())
	require.NoError(b.t, err)
	return s
}

// open navigates to path and waits for the page's main part.
func (b *consoleBrowser) open(path string) string {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS("main")))
	return b.text("main")
}

// shot saves a full-page PNG of the current page as name.png.
func (b *consoleBrowser) shot(name string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	require.NoError(b.t, err)
	img, err := png.Decode(bytes.NewReader(buf))
	require.NoError(b.t, err, "%s is a PNG", name)
	require.GreaterOrEqual(b.t, img.Bounds().Dx(), 1200, name)
	for _, dir := range b.dirs {
		require.NoError(b.t, os.MkdirAll(dir, 0o755))
		require.NoError(b.t, os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644))
	}
	b.t.Logf("screenshot %s.png: %dx%d, %d bytes", name, img.Bounds().Dx(), img.Bounds().Dy(), len(buf))
}

func (b *consoleBrowser) login(token string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+"/ui/attention"), chromedp.WaitVisible(chromedp.CSS("#token")))
	require.Contains(b.t, b.location(), "/ui/login?next=%2Fui%2Fattention", "no session: the login page")
	b.do(chromedp.SendKeys(chromedp.CSS("#token"), token), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("header nav")))
	require.True(b.t, strings.HasSuffix(b.location(), "/ui/attention"), "back where it was going: %s", b.location())
}

func (b *consoleBrowser) logout() {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(".who button")), chromedp.WaitVisible(chromedp.CSS("#token")))
}

func chromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

func TestBrowser_Console(t *testing.T) {
	start := time.Now()
	// Sun 4 Jan 2026: the weekly example's cycle 0 (due Mon 5 Jan) closed on Sat 3
	// Jan, so it is MISSED (an attention item); its cycle 1 (due Mon 12 Jan) is
	// rejected by the sandbox, so a local retry is planned.
	one := 1
	sc := &sandbox.Scenario{Rules: []sandbox.Rule{
		{ConsentID: "urn:klavi:consent-weekly-0002", Cycle: &one, Attempt: new(int), Outcome: sandbox.Rejected},
		{ConsentID: "urn:klavi:consent-demo-0003", Outcome: sandbox.Rejected},
	}}
	de := startTestDaemonWith(t, cycle.MustDate(2026, 1, 4).At(8, 0), sc, func(c *Config) { c.HTTP.ReadOnlyToken = readOnlyTestToken })
	seedConsole(t, de)
	t.Logf("daemon seeded in %s", time.Since(start).Round(time.Millisecond))

	if _, err := os.Stat(chromium()); err != nil {
		t.Fatalf("no Chromium at %s (apt-get install chromium, or set $CHROMIUM): %v", chromium(), err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium()), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1360, 900), chromedp.Flag("lang", "en-US"), chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-device-scale-factor", "1"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	// Start the browser and its tab, then follow the tab's console: CSP violations
	// and script errors show there, and none is allowed.
	require.NoError(t, chromedp.Do(ctx))
	var (
		mu       sync.Mutex
		problems []string
	)
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			// Answers of 401 and 403 are logged as failed loads: the test asks for
			// them. A refusal by the CSP, or a script error, is a failure.
			if msg := m.String(); m.IsException() || strings.Contains(msg, "Content Security Policy") || strings.Contains(msg, "Refused to") {
				mu.Lock()
				problems = append(problems, msg)
				mu.Unlock()
			}
		}
	}()

	b := &consoleBrowser{t: t, ctx: ctx, base: "http://" + de.d.Addr(), dirs: []string{t.ArtifactDir()}}
	if os.Getenv("BILLINGD_SCREENSHOTS") == "docs" {
		b.dirs = append(b.dirs, "../../docs/console")
	}
	browserStart := time.Now()

	t.Run("login page", func(t *testing.T) {
		b.t = t
		st := time.Now()
		b.do(chromedp.Navigate(b.base + "/ui/"))
		t.Logf("first navigation: %s", time.Since(st))
		b.do(chromedp.WaitVisible(chromedp.CSS("#token")))
		t.Logf("login form: %s", time.Since(st))
		assert.Contains(t, b.text("main"), "Log in to billingd")
		b.do(chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token-0123456789"), chromedp.Submit(chromedp.CSS("#token")),
			chromedp.WaitVisible(chromedp.CSS(".error")))
		assert.Contains(t, b.text(".error"), "Wrong token")
		b.shot("login")
	})
	t.Run("read-only session cannot act", func(t *testing.T) {
		b.t = t
		b.login(readOnlyTestToken)
		main := b.text("main")
		assert.Contains(t, main, "read-only session: resolving needs the admin token")
		assert.Contains(t, b.text(".who"), "read-only")
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("form.resolve").length`))
		require.NoError(t, err)
		assert.Zero(t, n, "no resolve form")
		// A hand-made post with the session's own CSRF token is refused too.
		code, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/ui/attention/resolve", {method: "POST",
			body: new URLSearchParams({csrf: document.querySelector("input[name=csrf]").value,
				consent: "urn:klavi:consent-weekly-0002", cycle: "0", attempt: "0", note: "read-only tries"})}).then(r => r.status)`,
			chromedp.EvalAwaitPromise))
		require.NoError(t, err)
		assert.Equal(t, http.StatusForbidden, code)
		b.logout()
	})
	t.Run("overview", func(t *testing.T) {
		b.t = t
		b.login(testToken)
		main := b.open("/ui/")
		for _, want := range []string{"TO SUBMIT TUE 2026-01-13", "TO SUBMIT WED 2026-01-14", "SUCCESS RATE · 2026-01",
			"OPEN ATTENTION ITEMS", "MISSED", "REPLICA AND CLOCK", "single process", "trusted", "R$ "} {
			assert.Contains(t, main, want)
		}
		b.shot("overview")
	})
	t.Run("upcoming", func(t *testing.T) {
		b.t = t
		main := b.open("/ui/upcoming?from=2026-01-13&to=2026-01-20")
		assert.Contains(t, main, "Tue 2026-01-13")
		assert.Contains(t, main, "retry")
		assert.Contains(t, main, "original")
		assert.Contains(t, main, "09:00 BRT")
		assert.Regexp(t, `R\$ \d{1,3}(\.\d{3})*,\d{2}`, main)
		b.shot("upcoming")
	})
	t.Run("consents and search", func(t *testing.T) {
		b.t = t
		main := b.open("/ui/consents")
		assert.Contains(t, main, "urn:klavi:consent-demo-0008")
		assert.Contains(t, main, "PREMIUM0001")
		b.shot("consents")
		b.do(chromedp.SendKeys(chromedp.CSS("input[name=q]"), "DEMO0003"), chromedp.Submit(chromedp.CSS("input[name=q]")),
			chromedp.WaitVisible(chromedp.CSS("#timeline")))
		assert.Contains(t, b.location(), "/ui/consents/urn:klavi:consent-demo-0003")
	})
	t.Run("attention: resolve with a note", func(t *testing.T) {
		b.t = t
		main := b.open("/ui/attention")
		assert.Contains(t, main, "urn:klavi:consent-weekly-0002")
		assert.Contains(t, main, "MISSED")
		b.shot("attention")
		row := `#item-urn\:klavi\:consent-weekly-0002-0-0`
		b.do(chromedp.SendKeys(chromedp.CSS(row+" input[name=note]"), "joined late; first week free (ticket 4711)"),
			chromedp.Click(chromedp.CSS(row+" button")), chromedp.WaitVisible(chromedp.CSS(".flash")))
		assert.Contains(t, b.text(".flash"), "Resolved urn:klavi:consent-weekly-0002/0/0 (MISSED)")
		assert.NotContains(t, b.text("main"), "joined late", "the item left the queue")
	})
	t.Run("consent: plan and timeline with the console's action", func(t *testing.T) {
		b.t = t
		main := b.open("/ui/consents/" + url.PathEscape("urn:klavi:consent-weekly-0002"))
		for _, want := range []string{"AULAS0002", "CPF *********05, J*** P******", "R$ 25,00", "Plan", "Timeline",
			"console:admin", "joined late; first week free (ticket 4711)", "maria", "REJECTED", "BRT"} {
			assert.Contains(t, main, want)
		}
		for _, never := range []string{"39053344705", "João", "Pereira", "11222333000181", "998877"} {
			assert.NotContains(t, main, never, "personal data is masked")
		}
		b.shot("consent")
	})
	t.Run("payments and CSV export", func(t *testing.T) {
		b.t = t
		main := b.open("/ui/payments?from=2026-01-01&to=2026-01-31")
		assert.Contains(t, main, "COMPLETED")
		assert.Contains(t, main, "REJECTED")
		b.shot("payments")
		dir := t.TempDir()
		progress := chromedp.Events(ctx, browser.DownloadProgress)
		b.do(chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: new(true)})
			return err
		}), chromedp.Click(chromedp.CSS("#csv")))
		var file string
		for ev, err := range progress {
			require.NoError(t, err)
			if ev.State == browser.DownloadProgressStateCompleted {
				file = filepath.Join(dir, ev.GUID)
				break
			}
			require.NotEqual(t, browser.DownloadProgressStateCanceled, ev.State)
		}
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		require.NoError(t, err)
		require.Greater(t, len(rows), 5)
		assert.Equal(t, []string{"consentId", "cycle", "attempt", "state", "date", "amount"}, rows[0][:6])
		states := map[string]int{}
		for _, r := range rows[1:] {
			states[r[3]]++
			assert.True(t, r[4] >= "2026-01-01" && r[4] <= "2026-01-31", "payment date %s in range", r[4])
		}
		assert.Positive(t, states["COMPLETED"])
		assert.Positive(t, states["REJECTED"])
		assert.NotContains(t, string(data), "39053344705", "no personal data in the export")
		require.NoError(t, os.WriteFile(filepath.Join(t.ArtifactDir(), "payments.csv"), data, 0o644))
	})
	t.Run("report", func(t *testing.T) {
		b.t = t
		main := b.open("/ui/report?month=2026-01")
		for _, want := range []string{"Report 2026-01", "completed", "rejected", "missed", "retried", "weekly"} {
			assert.Contains(t, main, want)
		}
		b.shot("report")
	})
	t.Run("no script error, no CSP violation", func(t *testing.T) {
		mu.Lock()
		defer mu.Unlock()
		assert.Empty(t, problems)
	})
	t.Logf("browser part took %s", time.Since(browserStart).Round(time.Millisecond))
}
