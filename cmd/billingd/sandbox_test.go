package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/internal/logtest"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage/bolt"
)

func TestSandbox_Command(t *testing.T) {
	dir := t.TempDir()
	ledgerFile := filepath.Join(dir, "ledger.json")
	scenarioFile := filepath.Join(dir, "scenario.json")
	require.NoError(t, os.WriteFile(scenarioFile, []byte(`{"rules":[{"consentId":"*","attempt":0,"outcome":"rejected","reason":"NOT_INFORMED"}]}`), 0o600))

	// The command logs to a pipe; the test reads the address it listens on.
	pr, pw := io.Pipe()
	var stderr logtest.Buffer
	clk := clock.NewFake(cycle.MustDate(2026, 2, 25).At(10, 0))
	e := &env{stdout: io.Discard, stderr: io.MultiWriter(pw, &stderr), getenv: func(string) string { return "" }, clock: clk}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, e, []string{"sandbox", "--addr", "127.0.0.1:0", "--consents", "../../examples/consents",
			"--scenario", scenarioFile, "--faults", "seed=3", "--access-key", "ak-1", "--secret-key", "sk-1", "--ledger", ledgerFile})
		pw.Close()
	}()
	var addr string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "sandbox listening" {
			addr = line.Addr
			break
		}
	}
	go io.Copy(io.Discard, pr)
	require.NotEmpty(t, addr, "stderr: %s", stderr.String())

	kc, err := klavi.New(klavi.Config{BaseURL: addr, AccessKey: "ak-1", SecretKey: "sk-1", Timeout: 5 * time.Second,
		MaxAttempts: 1, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond, RateLimit: 100, RateBurst: 10}, klavi.WithClock(clk))
	require.NoError(t, err)
	const id = "urn:klavi:consent-monthly-31st-0001"
	p, err := kc.CreatePayment(ctx, id, &klavi.CreatePaymentRequest{
		ClientRequestID: "cmd-1", Date: cycle.MustDate(2026, 2, 28), Amount: 9990, Currency: klavi.Currency})
	require.NoError(t, err, "the consents were seeded")
	clk.Set(cycle.MustDate(2026, 2, 28).At(7, 0))
	got, err := kc.GetPayment(ctx, id, p.ID)
	require.NoError(t, err)
	assert.Equal(t, klavi.PaymentRejected, got.Status, "the scenario file was read")

	cancel()
	select {
	case c := <-code:
		require.Equal(t, 0, c, "stderr: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("the sandbox did not stop")
	}
	data, err := os.ReadFile(ledgerFile)
	require.NoError(t, err)
	var l []sandbox.LedgerEntry
	require.NoError(t, json.Unmarshal(data, &l))
	require.Len(t, l, 1)
	assert.Equal(t, "cmd-1", l[0].ClientRequestID)
	assert.Equal(t, klavi.PaymentRejected, l[0].Status)
	assert.NotContains(t, stderr.String(), "sk-1", "keys are never logged")
}

func TestSandbox_CommandUsage(t *testing.T) {
	dir := t.TempDir()
	badScenario := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(badScenario, []byte(`{"rules":[{"consentId":"*","outcome":"maybe"}]}`), 0o600))
	badConsent := filepath.Join(dir, "consent.json")
	require.NoError(t, os.WriteFile(badConsent, []byte(`{"id":"a b"}`), 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--faults", "5xx=2"}, "--faults"},
		{[]string{"--access-key", "only"}, "go together"},
		{[]string{"--settle-hour", "0"}, "--settle-hour"},
		{[]string{"--scenario", badScenario}, "rules[0].outcome"},
		{[]string{"--scenario", filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{"--consents", badConsent}, "id:"},
		{[]string{"stray"}, "unexpected argument"},
		{[]string{"--ids", "int"}, "ids"},
		{[]string{"--amounts", "float"}, "amounts"},
		{[]string{"--status-case", "camel"}, "status case"},
		{[]string{"--duplicate", "200"}, "duplicate"},
		{[]string{"--check-order", "random"}, "check order"},
		{[]string{"--conflict-permissions", "2"}, "conflict permissions"},
		{[]string{"--cursor-field", "after"}, "cursor field"},
		{[]string{"--page-size-max", "0"}, "--page-size-max"},
		{[]string{"--clock-offset", "soon"}, "clock-offset"},
		{[]string{"--app-id", "a b"}, "app id"},
	} {
		code, _, stderr := runCLI(t, nil, append([]string{"sandbox"}, tc.args...)...)
		assert.Equal(t, 2, code, "%v: %s", tc.args, stderr)
		assert.Contains(t, stderr, tc.want, tc.args)
	}
	code, _, stderr := runCLI(t, nil, "sandbox", "--addr", "256.0.0.1:1")
	assert.Equal(t, 1, code, stderr)
	code, stdout, _ := runCLI(t, nil, "sandbox", "-h")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "/_sandbox/ledger")
	for _, f := range []string{"ids", "amounts", "status-case", "duplicate", "check-order", "conflict-permissions", "cursor-field", "page-size-max", "clock-offset", "app-id", "seed"} {
		assert.Contains(t, stdout, "  --"+f+" ", "the usage documents --%s", f)
	}
}

// startSandbox runs `billingd sandbox args...` and returns its base URL and a stop
// function that returns its exit code.
func startSandbox(t *testing.T, clk clock.Clock, args ...string) (string, func() int) {
	t.Helper()
	pr, pw := io.Pipe()
	var stderr logtest.Buffer
	e := &env{stdout: io.Discard, stderr: io.MultiWriter(pw, &stderr), getenv: func(string) string { return "" }, clock: clk}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, e, append([]string{"sandbox", "--addr", "127.0.0.1:0"}, args...))
		pw.Close()
	}()
	var addr string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "sandbox listening" {
			addr = line.Addr
			break
		}
	}
	go io.Copy(io.Discard, pr)
	require.NotEmpty(t, addr, "stderr: %s", stderr.String())
	return addr, func() int {
		cancel()
		select {
		case c := <-code:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("the sandbox did not stop")
			return -1
		}
	}
}

// post sends an API request with a fresh token and returns the status and body.
func post(t *testing.T, base, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(base+"/payment/customer/v1/auth", "application/json", strings.NewReader(`{"accessKey":"a","secretKey":"s"}`))
	require.NoError(t, err)
	var tok struct{ AccessToken string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	resp.Body.Close()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func TestSandbox_CommandJournal(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "sandbox.journal")
	clk := clock.NewFake(cycle.MustDate(2026, 2, 25).At(10, 0))
	args := []string{"--consents", "../../examples/consents", "--journal", journal, "--amounts", "number", "--status-case", "lower"}
	const path = "/payment/customer/v1/automatic/consents/urn:klavi:consent-monthly-31st-0001/payments"
	const body = `{"clientRequestId":"cmd-j-1","date":"2026-02-28","amount":"99.90","currency":"BRL"}`

	addr, stop := startSandbox(t, clk, args...)
	code, p := post(t, addr, path, body)
	require.Equal(t, 201, code, "%v", p)
	assert.Equal(t, 99.9, p["amount"])
	assert.Equal(t, "payment_pending", p["status"])
	require.Equal(t, 0, stop())

	addr, stop = startSandbox(t, clk, args...)
	code, again := post(t, addr, path, body)
	assert.Equal(t, 409, code, "the restarted sandbox knows the clientRequestId: %v", again)
	require.Equal(t, 0, stop())

	addr, stop = startSandbox(t, clk, append(args, "--duplicate", "existing")...)
	code, replayed := post(t, addr, path, body)
	assert.Equal(t, 201, code, "%v", replayed)
	assert.Equal(t, p["id"], replayed["id"], "the payment created before both restarts")
	require.Equal(t, 0, stop())
}

// Was wrong: the ledger file was checked at start only, and written at exit, over
// whatever the path had become meanwhile (here, a database).
func TestSandbox_LedgerCheckedAgainAtExit(t *testing.T) {
	dir := t.TempDir()
	ledgerFile := filepath.Join(dir, "late.db")
	pr, pw := io.Pipe()
	var stderr logtest.Buffer
	e := &env{stdout: io.Discard, stderr: io.MultiWriter(pw, &stderr), getenv: func(string) string { return "" },
		clock: clock.NewFake(cycle.MustDate(2026, 2, 25).At(10, 0))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- Main(ctx, e, []string{"sandbox", "--addr", "127.0.0.1:0", "--ledger", ledgerFile})
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var line struct{ Msg string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "sandbox listening" {
			break
		}
	}
	go io.Copy(io.Discard, pr)

	// A database appears at the ledger's path while the sandbox runs.
	db, err := bolt.Open(ledgerFile, bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	before, err := os.ReadFile(ledgerFile)
	require.NoError(t, err)

	cancel()
	select {
	case c := <-code:
		assert.Equal(t, 2, c, "stderr: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("the sandbox did not stop")
	}
	assert.Contains(t, stderr.String(), "sandbox: --ledger "+ledgerFile)
	after, err := os.ReadFile(ledgerFile)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the database is left as it was")
}

// Was wrong: two of the sandbox's output flags could name one file; the ledger,
// written at exit, replaced the journal.
func TestSandbox_OutputsDistinct(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x")
	code, _, stderr := runCLI(t, nil, "sandbox", "--addr", "127.0.0.1:0", "--ledger", p, "--journal", p)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "--ledger and --journal name the same file")
	assert.NoFileExists(t, p)
}
