package main

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
)

const testToken = "admin-token-0123456789abcdef"

// daemonEnv is a daemon started in-process against a sandbox, both on one fake clock.
type daemonEnv struct {
	t      *testing.T
	clock  *clock.Fake
	sb     *sandbox.Server
	d      *daemon
	cfg    Config
	getenv func(string) string
}

func startTestDaemon(t *testing.T, now time.Time) *daemonEnv {
	return startTestDaemonWith(t, now, nil, nil)
}

func startTestDaemonWith(t *testing.T, now time.Time, sc *sandbox.Scenario, mod func(*Config)) *daemonEnv {
	t.Helper()
	return startTestDaemonFlags(t, now, sc, mod, runFlags{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startTestDaemonLogged is startTestDaemonWith with the daemon logging to log.
func startTestDaemonLogged(t *testing.T, now time.Time, sc *sandbox.Scenario, mod func(*Config), log *slog.Logger) *daemonEnv {
	t.Helper()
	return startTestDaemonFlags(t, now, sc, mod, runFlags{}, log)
}

// startTestDaemonFlags is startTestDaemonWith, started with billingd run's flags rf
// and logging to log.
func startTestDaemonFlags(t *testing.T, now time.Time, sc *sandbox.Scenario, mod func(*Config), rf runFlags, log *slog.Logger) *daemonEnv {
	t.Helper()
	clk := clock.NewFake(now)
	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: "ak", SecretKey: "sk", Scenario: sc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.Storage.Path = filepath.Join(t.TempDir(), "billingd.db")
	cfg.Klavi.BaseURL, cfg.Klavi.AccessKey, cfg.Klavi.SecretKey = srv.URL, "ak", "sk"
	cfg.Klavi.BackoffMin, cfg.Klavi.BackoffMax = time.Millisecond, 5*time.Millisecond
	cfg.HTTP.Listen, cfg.HTTP.AdminToken = "127.0.0.1:0", testToken
	cfg.Scheduler.ScanSchedule, cfg.Scheduler.PollSchedule = "@every 1h", "@every 1h"
	cfg.Scheduler.ShutdownTimeout = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	require.NoError(t, cfg.Validate())
	d, err := startDaemon(cfg, rf, log, clk)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	de := &daemonEnv{t: t, clock: clk, sb: sb, d: d, cfg: cfg}
	de.getenv = func(k string) string {
		switch k {
		case "BILLINGD_ADDR":
			return "http://" + d.Addr()
		case "BILLINGD_ADMIN_TOKEN":
			return testToken
		case "BILLINGD_ACTOR":
			return "maria"
		}
		return ""
	}
	return de
}

func (de *daemonEnv) cli(args ...string) (int, string, string) {
	de.t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: de.getenv, clock: de.clock}
	code := Main(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func (de *daemonEnv) post(path string) {
	de.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+de.d.Addr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(de.t, err)
	resp.Body.Close()
	require.Equal(de.t, 200, resp.StatusCode)
}

// tick moves the clock and runs a scan and a poll through the admin API.
func (de *daemonEnv) tick(at time.Time) {
	de.clock.Set(at)
	de.post("/v1/scheduler/scan")
	de.post("/v1/scheduler/poll")
}

func TestDaemon_EndToEnd(t *testing.T) {
	de := startTestDaemon(t, cycle.MustDate(2026, 1, 1).At(8, 0))

	// Health and readiness.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + de.d.Addr() + p)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode, p)
	}

	// An operator adds a consent (the weekly example: Mondays from 5 Jan, local retries).
	file := "../../examples/consents/weekly-retries.json"
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	c, err := consent.Decode(data)
	require.NoError(t, err)
	require.NoError(t, de.sb.AddConsent(&c.CreatedConsent))
	code, stdout, stderr := de.cli("consent", "add", file)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "added urn:klavi:consent-weekly-0002: active, next cycle 0, submitted Fri 2026-01-02 09:00")

	de.tick(cycle.MustDate(2026, 1, 2).At(9, 0))
	de.tick(cycle.MustDate(2026, 1, 5).At(7, 0))
	code, stdout, stderr = de.cli("payments", "list", "--consent", c.ID)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "COMPLETED")
	assert.Contains(t, stdout, consent.ClientRequestID(c.ID, 0, 0))

	code, stdout, _ = de.cli("consent", "list")
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "urn:klavi:consent-weekly-0002  active")

	code, stdout, _ = de.cli("preview", "--consent", c.ID, "--cycles", "2")
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "Mon 2026-01-12")

	// A backup while the daemon runs goes through the admin API and is verified.
	out := filepath.Join(t.TempDir(), "backup.db")
	code, stdout, stderr = de.cli("db", "backup", "--db", de.cfg.Storage.Path, out)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "via the admin API, verified")
	code, stdout, stderr = de.cli("db", "check", "--db", out)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "result:     ok")

	// Offline commands refuse the locked live database clearly.
	code, _, stderr = de.cli("db", "check", "--db", de.cfg.Storage.Path)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "database is locked by another process")
	code, _, stderr = de.cli("consent", "import", "--db", de.cfg.Storage.Path, "../../examples/consents")
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr, "add consents with 'billingd consent add'")

	code, stdout, _ = de.cli("consent", "revoke", "--reason", "moved away", c.ID)
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "revoked")
	code, stdout, stderr = de.cli("consent", "show", c.ID, "--format", "json")
	require.Equal(t, 0, code, stderr)
	assert.Regexp(t, `"kind":\s*"revoked"[^}]*"actor":\s*"maria"|"actor":\s*"maria"[^}]*"kind":\s*"revoked"`, stdout, "the timeline says who revoked it")
	code, _, stderr = de.cli("consent", "revoke", c.ID)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "already revoked")

	// Graceful stop: readiness goes away, the store is closed and reopens cleanly.
	require.NoError(t, de.d.Close(context.Background()))
	db, err := bolt.Open(de.cfg.Storage.Path, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	rec, err := db.GetConsent(context.Background(), c.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentRevoked, rec.State)
	atts, err := db.Attempts(context.Background(), c.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptCompleted, atts[0].State)
}

func TestDaemon_AdminCLIBadInput(t *testing.T) {
	de := startTestDaemon(t, cycle.MustDate(2026, 1, 1).At(8, 0))
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"consent", "add", "../../consent/testdata/broken.json"}, 2, "27 problems"},
		{[]string{"consent", "show", "urn:x:nope"}, 2, "not found (HTTP 404)"},
		{[]string{"consent", "amount", "urn:x:nope", "1", "12.3"}, 2, "invalid amount"},
		{[]string{"consent", "amount", "urn:x:nope", "-1", "12.30"}, 2, "consent amount: -1 is not a valid argument: negative numbers are not taken"},
		{[]string{"consent", "amount", "urn:x:nope", "1", "12.30"}, 2, "not found"},
		{[]string{"consent", "authorize"}, 2, "want exactly one consent ID"},
		{[]string{"consent", "frob"}, 2, "unknown subcommand"},
		{[]string{"payments", "list", "--state", "COMPLETED"}, 2, "state"},
	}
	for _, tt := range tests {
		code, _, stderr := de.cli(tt.args...)
		assert.Equal(t, tt.code, code, "%v", tt.args)
		assert.Contains(t, stderr, tt.msg, "%v", tt.args)
	}
	// A wrong token is refused.
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, clock: de.clock, getenv: func(k string) string {
		if k == "BILLINGD_ADMIN_TOKEN" {
			return "wrong-token-0123456789"
		}
		return de.getenv(k)
	}}
	assert.Equal(t, 2, Main(context.Background(), e, []string{"consent", "list"}))
	assert.Contains(t, errb.String(), "missing or wrong bearer token (HTTP 401)")
}

func TestRun_BadStarts(t *testing.T) {
	writeCfg := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), "billingd.yaml")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	base := func(db string) string {
		return fmt.Sprintf("storage:\n  path: %s\n  open_timeout: 200ms\nklavi:\n  access_key: ak\n  secret_key: sk\nhttp:\n  listen: 127.0.0.1:0\n", db)
	}
	t.Run("broken config", func(t *testing.T) {
		p := writeCfg(t, "billing:\n  lead_days: [\n")
		code, _, stderr := runCLI(t, nil, "run", "--config", p)
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "billingd: "+p+":2: not valid YAML: ")
	})
	t.Run("missing secrets", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, "run", "--config", writeCfg(t, "klavi:\n  access_key: ${KLAVI_ACCESS_KEY}\n"))
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "klavi.access_key: is empty")
		assert.Contains(t, stderr, "KLAVI_ACCESS_KEY")
	})
	t.Run("missing config file", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, "run", "--config", filepath.Join(t.TempDir(), "none.yaml"))
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "no such file")
	})
	t.Run("locked database", func(t *testing.T) {
		dbPath := filepath.Join(t.TempDir(), "b.db")
		holder, err := bolt.Open(dbPath, bolt.Options{})
		require.NoError(t, err)
		defer holder.Close()
		code, _, stderr := runCLI(t, nil, "run", "--config", writeCfg(t, base(dbPath)))
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, "database is locked by another process")
	})
	t.Run("GOGC the runtime does not read as written", func(t *testing.T) {
		dbPath := filepath.Join(t.TempDir(), "b.db")
		holder, err := bolt.Open(dbPath, bolt.Options{})
		require.NoError(t, err)
		defer holder.Close()
		t.Setenv("GOGC", "junk")
		code, _, stderr := runCLI(t, nil, "run", "--config", writeCfg(t, base(dbPath)))
		assert.Equal(t, 1, code) // the locked database; the warning came first
		assert.Contains(t, stderr, "GOGC is neither a whole number nor off: Go's runtime reads it as 100")
		assert.Contains(t, stderr, `"GOGC":"junk"`)
	})
	t.Run("foreign database", func(t *testing.T) {
		dbPath := filepath.Join(t.TempDir(), "other.db")
		bdb, err := bbolt.Open(dbPath, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("orders")); return err }))
		require.NoError(t, bdb.Close())
		before, _ := os.ReadFile(dbPath)
		code, _, stderr := runCLI(t, nil, "run", "--config", writeCfg(t, base(dbPath)))
		assert.Equal(t, exitEnvironment, code)
		assert.Contains(t, stderr, "not a billingd database")
		after, _ := os.ReadFile(dbPath)
		assert.True(t, bytes.Equal(before, after), "the foreign file is untouched")
	})
	t.Run("corrupt database", func(t *testing.T) {
		dbPath := filepath.Join(t.TempDir(), "b.db")
		require.NoError(t, os.WriteFile(dbPath, bytes.Repeat([]byte("garbage!"), 2048), 0o600))
		code, _, stderr := runCLI(t, nil, "run", "--config", writeCfg(t, base(dbPath)))
		assert.Equal(t, exitEnvironment, code)
		assert.Contains(t, stderr, "database file is corrupt")
	})
	t.Run("config values refused before any file is created", func(t *testing.T) {
		// The listen address is taken: were a value let through, run would stop at
		// once (exit 1) rather than serve.
		ln := httptest.NewServer(http.NotFoundHandler())
		defer ln.Close()
		addr := strings.TrimPrefix(ln.URL, "http://")
		for _, tc := range []struct{ name, section, line, want string }{
			{"rate limit NaN", "klavi", "rate_limit: .nan", "klavi.rate_limit: NaN: want a number of requests per second"},
			{"rate limit infinite", "klavi", "rate_limit: .inf", "klavi.rate_limit: +Inf: want a number of requests per second"},
			{"base URL with a query", "klavi", `base_url: "https://api-sandbox.klavi.ai/?x=1"`, "klavi.base_url:"},
			{"schedule with CRON_TZ", "scheduler", `scan_schedule: "CRON_TZ=UTC 0 9 * * *"`, "scheduler.scan_schedule: \"CRON_TZ=UTC 0 9 * * *\" names a time zone (CRON_TZ=): billingd reads every schedule in Brasília time"},
			{"schedule on 30 February", "scheduler", `scan_schedule: "0 0 30 2 *"`, `scheduler.scan_schedule: "0 0 30 2 *" does not fire within a year`},
			{"poll schedule on 31 April", "scheduler", `poll_schedule: "0 9 31 4 *"`, `scheduler.poll_schedule: "0 9 31 4 *" does not fire within a year`},
			{"refresh schedule on 30 February", "scheduler", `refresh_schedule: "0 0 30 2 *"`, `scheduler.refresh_schedule: "0 0 30 2 *" does not fire within a year`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := t.TempDir()
				body := strings.Replace(base(filepath.Join(dir, "b.db")), "127.0.0.1:0", addr, 1)
				if strings.Contains(body, tc.section+":\n") {
					body = strings.Replace(body, tc.section+":\n", tc.section+":\n  "+tc.line+"\n", 1)
				} else {
					body += tc.section + ":\n  " + tc.line + "\n"
				}
				line := strings.Count(body[:strings.Index(body, tc.line)], "\n") + 1
				p := writeCfg(t, body)
				code, _, stderr := runCLI(t, nil, "run", "--config", p)
				assert.Equal(t, exitUsage, code, stderr)
				assert.Contains(t, stderr, fmt.Sprintf("billingd: %s:%d: %s", p, line, tc.want))
				left, err := os.ReadDir(dir)
				require.NoError(t, err)
				assert.Empty(t, left, "no database, lock or archive file")
			})
		}
	})
	t.Run("a directory where the lock or archive file goes", func(t *testing.T) {
		for _, suffix := range []string{".lock", ".archive"} {
			t.Run("new database"+suffix, func(t *testing.T) {
				dir := t.TempDir()
				dbPath := filepath.Join(dir, "b.db")
				require.NoError(t, os.Mkdir(dbPath+suffix, 0o700))
				code, _, stderr := runCLI(t, nil, "run", "--config", writeCfg(t, base(dbPath)))
				assert.Equal(t, exitEnvironment, code, stderr)
				assert.Contains(t, stderr, dbPath+suffix+": is a directory")
				code, _, stderr = runCLI(t, nil, "consent", "import", "--db", dbPath, "../../examples/consents/monthly-31st.json")
				assert.Equal(t, exitEnvironment, code, stderr)
				assert.Contains(t, stderr, dbPath+suffix+": is a directory")
				left, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Len(t, left, 1, "nothing created beside the directory")
				assert.Equal(t, "b.db"+suffix, left[0].Name())
			})
			t.Run("existing database"+suffix, func(t *testing.T) {
				dbPath := filepath.Join(t.TempDir(), "b.db")
				code, _, stderr := runCLI(t, nil, "consent", "import", "--db", dbPath, "../../examples/consents/monthly-31st.json")
				require.Equal(t, 0, code, stderr)
				require.NoError(t, os.Remove(dbPath+suffix))
				require.NoError(t, os.Mkdir(dbPath+suffix, 0o700))
				before, err := os.ReadFile(dbPath)
				require.NoError(t, err)
				code, _, stderr = runCLI(t, nil, "run", "--config", writeCfg(t, base(dbPath)))
				assert.Equal(t, exitEnvironment, code, stderr)
				assert.Contains(t, stderr, dbPath+suffix+": is a directory")
				after, err := os.ReadFile(dbPath)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(before, after), "the database is untouched")
			})
		}
	})
	t.Run("port in use", func(t *testing.T) {
		ln := httptest.NewServer(http.NotFoundHandler())
		defer ln.Close()
		addr := strings.TrimPrefix(ln.URL, "http://")
		dbPath := filepath.Join(t.TempDir(), "b.db")
		code, _, stderr := runCLI(t, nil, "run", "--config", writeCfg(t, strings.Replace(base(dbPath), "127.0.0.1:0", addr, 1)))
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, "address already in use")
		// The store opened before the listener failed is closed again: reopen works.
		db, err := bolt.Open(dbPath, bolt.Options{Timeout: 200 * time.Millisecond})
		require.NoError(t, err)
		db.Close()
	})
}

// TestConsentFiles_DuplicateNames: a member name twice in one object of an operator's
// file (encoding/json alone would take the last: a consent billed at 1.00, not 99.90)
// is invalid input, exit 2, naming the file and the path; nothing is created.
func TestConsentFiles_DuplicateNames(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("../../examples/consents/monthly-31st.json")
	require.NoError(t, err)
	write := func(name, old, new string) string {
		t.Helper()
		require.Contains(t, string(good), old)
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(good), old, new, 1)), 0o600))
		return p
	}
	amount := write("amount.json", `"fixedAmount": "99.90"`, `"fixedAmount": "99.90", "fixedAmount": "1.00"`)
	id := write("id.json", `"id": "urn:klavi:consent-monthly-31st-0001"`, `"id": "urn:klavi:consent-monthly-31st-0001", "id": "urn:klavi:consent-other-0009"`)
	scenario := filepath.Join(dir, "scenario.json")
	require.NoError(t, os.WriteFile(scenario, []byte(`{"rules":[{"consentId":"*","attempt":0,"outcome":"rejected","reason":"NOT_INFORMED","outcome":"completed"}]}`), 0o600))
	db := filepath.Join(dir, "b.db")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"import fixedAmount", []string{"consent", "import", "--db", db, amount}, amount + `: 1 problem:` + "\n" + `  paymentMethodConfig.fixedAmount: duplicate member name "fixedAmount"`},
		{"import id", []string{"consent", "import", "--db", db, id}, `id: duplicate member name "id"`},
		{"import a directory", []string{"consent", "import", "--db", db, dir}, `paymentMethodConfig.fixedAmount: duplicate member name`},
		{"preview", []string{"preview", "--consent-file", amount}, `paymentMethodConfig.fixedAmount: duplicate member name`},
		{"consent add", []string{"consent", "add", "--addr", "http://127.0.0.1:1", amount}, `paymentMethodConfig.fixedAmount: duplicate member name`},
		{"simulate consents", []string{"simulate", "--consents", amount}, `paymentMethodConfig.fixedAmount: duplicate member name`},
		{"simulate scenario", []string{"simulate", "--scenario", scenario}, `rules[0].outcome: duplicate member name "outcome"`},
		// An address that cannot be listened on: without the check, the sandbox fails
		// at once instead of serving until the test times out.
		{"sandbox scenario", []string{"sandbox", "--addr", "256.0.0.1:1", "--scenario", scenario}, `rules[0].outcome: duplicate member name "outcome"`},
		{"sandbox consents", []string{"sandbox", "--addr", "256.0.0.1:1", "--consents", amount}, `paymentMethodConfig.fixedAmount: duplicate member name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, tc.args...)
			assert.Equal(t, 2, code, stderr)
			assert.Contains(t, stderr, tc.want)
		})
	}
	_, err = os.Stat(db)
	assert.True(t, os.IsNotExist(err), "nothing was imported: no database")
}

func TestImportAndDBCommands(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "b.db")
	code, stdout, stderr := runCLI(t, nil, "consent", "import", "--db", dbPath, "../../examples/consents")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "imported 6 consents")
	assert.NotContains(t, stdout, "MISSED", "nothing missed on 2026-11-26")

	// A bill-from in the past: the cycles whose window closed are named, and a
	// warning says why; one far ahead is warned about too.
	past := filepath.Join(dir, "past.db")
	code, stdout, stderr = runCLI(t, nil, "consent", "import", "--db", past, "--bill-from", "2026-10-01", "../../examples/consents/weekly-retries.json")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "warning: --bill-from 2026-10-01 is before today (2026-11-26)")
	assert.Regexp(t, `urn:klavi:\S+: cycle \d+ \(due \S+ 2026-10-\d\d\) will be MISSED: its window closed on .*; the next cycle billed is`, stdout)
	ahead := filepath.Join(dir, "ahead.db")
	code, _, stderr = runCLI(t, nil, "consent", "import", "--db", ahead, "--bill-from", "2099-01-01", "../../examples/consents/weekly-retries.json")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stderr, "warning: --bill-from 2099-01-01 is more than a year ahead")
	code, stdout, _ = runCLI(t, nil, "consent", "import", "--db", dbPath, "../../examples/consents/monthly-31st.json")
	require.Equal(t, 0, code)
	assert.Contains(t, stdout, "imported 0 consents", "already there: skipped")
	assert.Contains(t, stdout, "1 already there")

	// An array file with one bad element imports nothing and names the element.
	var arr []json.RawMessage
	for _, n := range []string{"weekly-retries.json", "variable-amount.json"} {
		b, _ := os.ReadFile("../../examples/consents/" + n)
		arr = append(arr, b)
	}
	arr[1] = bytes.Replace(arr[1], []byte(`"10.00"`), []byte(`"10"`), 1)
	bulk, _ := json.Marshal(arr)
	bulkPath := filepath.Join(dir, "bulk.json")
	require.NoError(t, os.WriteFile(bulkPath, bulk, 0o600))
	other := filepath.Join(dir, "other.db")
	code, _, stderr = runCLI(t, nil, "consent", "import", "--db", other, bulkPath)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "[1].paymentMethodConfig.minimumVariableAmount")
	_, err := os.Stat(other)
	assert.True(t, os.IsNotExist(err), "nothing was created")

	code, stdout, stderr = runCLI(t, nil, "db", "check", "--db", dbPath)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "6 active")
	backup := filepath.Join(dir, "copy.db")
	code, stdout, stderr = runCLI(t, nil, "db", "backup", "--db", dbPath, backup)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "via the file, verified")
	code, _, stderr = runCLI(t, nil, "db", "backup", "--db", dbPath, backup)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "use --force")

	// A damaged file: check says so, exit 3.
	raw, _ := os.ReadFile(backup)
	for i := 3 * 4096; i < len(raw); i += 4096 {
		copy(raw[i:i+64], bytes.Repeat([]byte{0xAB}, 64))
	}
	require.NoError(t, os.WriteFile(backup, raw, 0o600))
	code, stdout, stderr = runCLI(t, nil, "db", "check", "--db", backup)
	assert.Equal(t, exitEnvironment, code)
	assert.Contains(t, stderr, "database file is corrupt")
	assert.Contains(t, stdout, "problems:")
	assert.NotContains(t, stdout+stderr, "run 'billingd db check", "db check never sends you to db check")
	code, _, stderr = runCLI(t, nil, "db", "check", "--db", filepath.Join(dir, "missing.db"))
	assert.Equal(t, exitEnvironment, code)
	assert.Contains(t, stderr, "no such file")
	code, _, _ = runCLI(t, nil, "db")
	assert.Equal(t, 2, code)
	for _, sub := range []string{"check", "backup", "compact"} {
		args := []string{"db", sub, "--db", dir}
		if sub != "check" {
			args = append(args, filepath.Join(dir, "out-"+sub+".db"))
		}
		code, _, stderr = runCLI(t, nil, args...)
		assert.Equal(t, exitUsage, code, "db %s --db DIR is a mistake of the command line, as storage.path naming a directory is", sub)
		assert.Contains(t, stderr, "--db "+dir+" is a directory; name the database file in it")
	}

	compacted := filepath.Join(dir, "compact.db")
	code, stdout, stderr = runCLI(t, nil, "db", "compact", "--db", dbPath, compacted)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "verified")
	assert.Regexp(t, `archived \d+ settled attempts and \d+ older events; moved \d+ records to the archive file`, stdout)
	assert.Contains(t, stdout, "bytes with its archive file) into "+compacted)
	assert.Contains(t, stdout, "its archive file is "+bolt.ArchivePath(compacted)+": replace the database file and its archive file together")
	code, stdout, stderr = runCLI(t, nil, "db", "check", "--db", compacted)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "6 active")
	assert.Contains(t, stdout, "archive:    "+bolt.ArchivePath(compacted))
	code, _, stderr = runCLI(t, nil, "db", "compact", "--db", dbPath, compacted)
	assert.Equal(t, exitUsage, code, "an OUT that exists is the caller's mistake, as for db migrate and simulate --db")
	assert.Contains(t, stderr, "db compact: "+compacted+" exists; compact into a new file")
}

// Under BILLINGD_TEST_CLOCK the Klavi client waits on the test's timeline, which the
// sandbox shares: a Retry-After of an hour at 3.6e12× is a nanosecond, where the
// real clock would wait the hour (the crash test at 17,280× saw a 1 s Retry-After
// carry a local retry 4.8 virtual hours past its request day).
func TestKlaviOptions_ScaledClockWaits(t *testing.T) {
	var calls atomic.Int32
	var bearer atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer t" {
			bearer.Store(true)
		}
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"accessToken":"t","expireIn":3600}`))
	}))
	defer srv.Close()
	scaled := &clock.Scaled{Start: time.Now(), Epoch: time.Now(), Rate: 3.6e12}
	kc, err := klavi.New(klavi.Config{BaseURL: srv.URL, AccessKey: "ak", SecretKey: "sk", Timeout: 5 * time.Second,
		MaxAttempts: 3, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond, RateLimit: 1000, RateBurst: 10},
		klaviOptions(slog.New(slog.NewTextHandler(io.Discard, nil)), scaled, klavi.Hooks{})...)
	require.NoError(t, err)
	// No deadline (the client gives up at once on a Retry-After past one); a client
	// waiting the real hour is cut short when the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- kc.Probe(ctx) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the client waited the Retry-After's hour on the real clock")
	}
	assert.True(t, bearer.Load(), "the token came after the 429's wait, and the probe carried it")
}
