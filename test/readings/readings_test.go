// Package readings runs the real billingd binary against the sandbox started as a
// process with each reading of Klavi's documents that the sandbox can produce (ids,
// amount encoding, status spelling, what a reused clientRequestId gets, which check
// comes first, 409s that refuse), on one scaled clock shared by both processes, and
// checks that the daemon bills every due cycle exactly once, knows every payment's id
// and follows each to a final state.
//
//	go test -count=1 -v ./test/readings/
//
// It is part of `make test` (short: about 15 seconds per reading); -short skips it.
package readings

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/test/proc"
)

const (
	token    = "readings-test-admin-token-0123456789"
	consents = 24
	// rate is the scaled clock's speed: one real second is 5.5 virtual hours, so a
	// payment dated three days ahead settles in about 14 real seconds.
	rate = 20000
)

func TestReadings(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds and runs the binary")
	}
	dir := t.TempDir()
	// Under go test -race the daemon and the sandbox run with the race detector too:
	// the logs are searched for its reports below.
	bin := proc.Build(t, dir, proc.RaceFlags...)
	readings := []struct {
		name  string
		flags []string
	}{
		{"uuid ids, number amounts, lowercase statuses", []string{"--ids", "uuid", "--amounts", "number", "--status-case", "lower"}},
		{"urn ids, string amounts, spaced statuses", []string{"--ids", "urn", "--amounts", "string", "--status-case", "spaced"}},
		{"a reused key gets the existing payment, rules checked first, lost answers", []string{"--duplicate", "existing", "--check-order", "rules-first", "--faults", "drop=0.2,seed=7"}},
		{"409 on a reused key, key checked first, lost answers and 5xx", []string{"--duplicate", "409", "--check-order", "key-first", "--faults", "drop=0.2,5xx=0.1,seed=11", "--cursor-field", "next", "--page-size-max", "2"}},
		// The seeds' only 409: a refusal that creates nothing. Those cycles end FAILED
		// with Klavi's message, never adopted, never charged.
		{"409 that refuses (insufficient permissions)", []string{"--conflict-permissions", "0.3", "--seed", "5"}},
	}
	for i, r := range readings {
		t.Run(r.name, func(t *testing.T) { run(t, bin, filepath.Join(dir, fmt.Sprint(i)), r.flags) })
	}
}

// uuid is a deterministic version-4 form UUID for consent i.
func uuid(i int) string {
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", 0x06c26b65+i, i, i%0xfff, (i*7)%0xfff, int64(0x4c86ece05114)+int64(i))
}

func run(t *testing.T, bin, dir string, flags []string) {
	require.NoError(t, os.MkdirAll(dir, 0o755))
	// The virtual day begins at 00:00 in Brasília whatever the real hour: the cycles'
	// submission window (from now to the end of the day two days before their due
	// date) is then two virtual days (8.6 real seconds), not what was left of today
	// plus one (as little as 4.3 s, which a loaded machine can spend starting the
	// daemon under -race).
	real := time.Now()
	start := cycle.DateOf(real).At(0, 0)
	clockEnv := fmt.Sprintf("BILLINGD_TEST_CLOCK=start=%s,epoch=%d,rate=%d", start.UTC().Format(time.RFC3339), real.UnixMilli(), rate)
	env := append(os.Environ(), clockEnv)

	// Each consent has cycle 0 due in three virtual days: submitted at once (lead 3,
	// submit time 00:00), settled at 06:00 of its date.
	due := cycle.DateOf(start).AddDays(3)
	intervals := []cycle.Interval{cycle.Weekly, cycle.Monthly, cycle.Quarterly, cycle.Semiannual, cycle.Yearly}
	var cs []*consent.Consent
	for i := 0; i < consents; i++ {
		c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(uuid(i), intervals[i%5], due, klavi.Cents(10_00+i))}
		c.Billing.RetryMode = []consent.RetryMode{consent.Off, consent.Attach, consent.Local}[i%3]
		cs = append(cs, c)
	}
	consentsFile := filepath.Join(dir, "consents.json")
	raw, err := json.Marshal(cs)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(consentsFile, raw, 0o600))

	sbAddr := proc.FreePort(t)
	sbLog, err := os.Create(filepath.Join(dir, "sandbox.log"))
	require.NoError(t, err)
	defer sbLog.Close()
	args := append([]string{"sandbox", "--addr", sbAddr, "--access-key", "ak", "--secret-key", "sk",
		"--consents", consentsFile, "--token-ttl", "10000h"}, flags...)
	sb := exec.Command(bin, args...)
	sb.Env, sb.Stdout, sb.Stderr = env, sbLog, sbLog
	require.NoError(t, sb.Start())
	defer func() { _ = sb.Process.Kill(); _ = sb.Wait() }()
	proc.WaitHTTP(t, "http://"+sbAddr+"/_sandbox/stats", 30*time.Second)

	dbPath := filepath.Join(dir, "billingd.db")
	apiAddr := proc.FreePort(t)
	cfgPath := filepath.Join(dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
billing:
  lead_days: 3
  submit_time: "00:00"
storage:
  path: %s
klavi:
  base_url: http://%s
  access_key: ak
  secret_key: sk
  timeout: 2s
  max_attempts: 2
  backoff_min: 5ms
  backoff_max: 50ms
  rate_limit: 500
  rate_burst: 100
scheduler:
  scan_schedule: "@every 1s"
  poll_schedule: "@every 1s"
  resend_min_interval: 1m
  resend_max_interval: 10m
  refresh_schedule: "@every 1s"
http:
  listen: %s
  admin_token: %s
log:
  format: json
`, dbPath, sbAddr, apiAddr, token)), 0o600))
	imp := exec.Command(bin, "consent", "import", "--config", cfgPath, consentsFile)
	imp.Env = env
	out, err := imp.CombinedOutput()
	require.NoError(t, err, string(out))

	logPath := filepath.Join(dir, "billingd.log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	defer logFile.Close()
	d := exec.Command(bin, "run", "--config", cfgPath)
	d.Env, d.Stdout, d.Stderr = env, logFile, logFile
	require.NoError(t, d.Start())
	stopped := false
	defer func() {
		if !stopped {
			_ = d.Process.Kill()
			_ = d.Wait()
		}
	}()
	proc.WaitHTTP(t, "http://"+apiAddr+"/readyz", 30*time.Second)

	// Wait (bounded) until every cycle's attempt is final.
	deadline := time.Now().Add(90 * time.Second)
	for {
		open := 0
		for _, c := range cs {
			var res struct {
				Attempts []*storage.Attempt `json:"attempts"`
			}
			proc.Do(t, "GET", "http://"+apiAddr+"/v1/consents/"+c.ID+"/attempts", token, &res)
			if len(res.Attempts) == 0 {
				open++
			}
			for _, a := range res.Attempts {
				// UNCONFIRMED is final for billing but still reconciled (every
				// scheduler.reconcile_every): wait for it to settle too.
				if !a.State.Final() || a.State == storage.AttemptUnconfirmed {
					open++
				}
			}
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(logPath)
			t.Fatalf("%d attempts not final after 90s; billingd log tail:\n%s", open, tail(logs, 4000))
		}
		time.Sleep(250 * time.Millisecond) // the processes run on their own; this only waits to look again
	}
	require.NoError(t, d.Process.Signal(syscall.SIGTERM))
	require.NoError(t, d.Wait(), "graceful stop exits 0")
	stopped = true

	var ledger []sandbox.LedgerEntry
	proc.Do(t, "GET", "http://"+sbAddr+"/_sandbox/ledger", "", &ledger)
	byCRID := map[string]sandbox.LedgerEntry{}
	perCycle := map[string]int{}
	for _, l := range ledger {
		byCRID[l.ClientRequestID] = l
		if l.Kind == sandbox.KindOriginal {
			perCycle[fmt.Sprintf("%s/%d", l.ConsentID, l.Cycle)]++
		}
	}
	db, err := bolt.Open(dbPath, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	refusals := strings.Contains(strings.Join(flags, " "), "--conflict-permissions")
	failed := 0
	for _, c := range cs {
		a, err := db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: c.ID})
		require.NoError(t, err, c.ID)
		if refusals && a.State == storage.AttemptFailed {
			failed++
			assert.Contains(t, a.Reason, "Insufficient permissions requested")
			assert.Zero(t, perCycle[c.ID+"/0"], "%s: a refused cycle has no payment at the sandbox", c.ID)
			continue
		}
		assert.Equal(t, 1, perCycle[c.ID+"/0"], "%s: one payment for cycle 0 at the sandbox", c.ID)
		assert.Equal(t, storage.AttemptCompleted, a.State, "%s: %s", c.ID, a.Reason)
		l, ok := byCRID[a.ClientRequestID]
		if assert.True(t, ok, "%s: the sandbox has the clientRequestId", c.ID) {
			assert.Equal(t, l.PaymentID, a.PaymentID, "%s: billingd knows Klavi's payment id", c.ID)
		}
		if strings.Contains(strings.Join(flags, " "), "uuid") {
			assert.NotContains(t, a.PaymentID, "urn:", "the sandbox issued a UUID payment id")
		}
	}
	if refusals {
		assert.Positive(t, failed, "some creates were refused with a 409")
	}
	for _, st := range []storage.AttemptState{storage.AttemptUnconfirmed, storage.AttemptStuck, storage.AttemptFailed, storage.AttemptMissed} {
		items, err := db.Attention(context.Background(), st, 100)
		require.NoError(t, err)
		if st == storage.AttemptFailed {
			assert.Len(t, items, failed)
			continue
		}
		assert.Empty(t, items, "no attempt ends %s", st)
	}
	logs, err := os.ReadFile(logPath)
	require.NoError(t, err)
	for _, c := range cs {
		assert.NotContains(t, string(logs), c.PaymentMethodConfig.ContractDebtor.Identifier, "no CPF in the log")
	}
	sbLogs, err := os.ReadFile(sbLog.Name())
	require.NoError(t, err)
	for name, b := range map[string][]byte{"billingd": logs, "sandbox": sbLogs} {
		assert.False(t, bytes.Contains(b, []byte("DATA RACE")), "the race detector reported a data race in the %s process", name)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
