//go:build crash

// Package crash kills billingd with SIGKILL at random moments while it submits
// thousands of payments to a sandbox running as a separate process, restarts it, and
// checks the sandbox's ledger at the end: exactly one payment per (consent, cycle),
// none missing, every UNCONFIRMED attempt explained.
//
//	go test -tags crash -v -count=1 -timeout 10m ./test/crash/
//
// CRASH_CONSENTS (default 4000) and CRASH_KILLS (default 25) size it; CRASH_SEED fixes
// the random kill moments and faults; CRASH_RACE=1 builds billingd with -race.
package crash

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/test/proc"
)

const token = "crash-test-admin-token-0123456789"

// expectation is the cycle a consent must be billed for.
type expectation struct {
	id    string
	cycle int
	crid  string
}

func TestCrash(t *testing.T) {
	n, kills := proc.EnvInt("CRASH_CONSENTS", 4000), proc.EnvInt("CRASH_KILLS", 25)
	seed := uint64(proc.EnvInt("CRASH_SEED", int(time.Now().UnixNano()%1e9)))
	rng := rand.New(rand.NewPCG(seed, 99))
	dir := t.TempDir()
	t.Logf("crash test: %d consents, %d kills, seed %d, dir %s", n, kills, seed, dir)

	var flags []string
	if os.Getenv("CRASH_RACE") != "" {
		flags = append(flags, "-race") // the daemon itself under the race detector
	}
	bin := proc.Build(t, dir, flags...)

	// Consents: each has exactly one cycle due in three days, which billingd submits
	// now (lead 3, submit time 00:00). Half are weekly with cycle 0 in the past (before
	// billingd was responsible), so the cycle due is cycle 1.
	today := cycle.DateOf(time.Now())
	due := today.AddDays(3)
	var (
		cs     []*consent.Consent
		expect []expectation
	)
	intervals := []cycle.Interval{cycle.Weekly, cycle.Monthly, cycle.Quarterly, cycle.Semiannual, cycle.Yearly}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("urn:crash:consent-%05d", i)
		iv, ref, k := intervals[i%5], due, 0
		if i%2 == 1 {
			iv, ref, k = cycle.Weekly, due.AddDays(-7), 1
		}
		c := sandbox.SampleConsent(id, iv, ref, klavi.Cents(12_34+i%100))
		c.Billing.RetryMode = consent.Off
		cs = append(cs, c)
		expect = append(expect, expectation{id: id, cycle: k, crid: consent.ClientRequestID(id, k, 0)})
	}
	consentsFile := filepath.Join(dir, "consents.json")
	raw, err := json.Marshal(cs)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(consentsFile, raw, 0o600))

	// The sandbox: a separate process that outlives every kill and keeps the ledger.
	sbAddr := proc.FreePort(t)
	sbLog, err := os.Create(filepath.Join(dir, "sandbox.log"))
	require.NoError(t, err)
	defer sbLog.Close()
	sb := exec.Command(bin, "sandbox", "--addr", sbAddr, "--access-key", "ak", "--secret-key", "sk",
		"--consents", consentsFile, "--faults", fmt.Sprintf("drop=0.02,5xx=0.02,429=0.01,latency=1ms,seed=%d", seed))
	sb.Stdout, sb.Stderr = sbLog, sbLog
	require.NoError(t, sb.Start())
	defer func() { _ = sb.Process.Kill(); _ = sb.Wait() }()
	proc.WaitHTTP(t, "http://"+sbAddr+"/_sandbox/stats", 30*time.Second)

	// billingd's database: the consents imported offline, billed from today.
	dbPath := filepath.Join(dir, "billingd.db")
	apiAddr := proc.FreePort(t)
	cfgPath := filepath.Join(dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
billing:
  lead_days: 3
  submit_time: "00:00"
  retry_mode: "off"
storage:
  path: %s
  open_timeout: 10s
klavi:
  base_url: http://%s
  access_key: ak
  secret_key: sk
  timeout: 2s
  max_attempts: 4
  backoff_min: 5ms
  backoff_max: 100ms
  rate_limit: 600
  rate_burst: 100
scheduler:
  scan_schedule: "@every 1s"
  poll_schedule: "@every 10s"
  workers: 32
  resend_min_interval: 1s
  resend_max_interval: 5s
  shutdown_timeout: 10s
http:
  listen: %s
  admin_token: %s
log:
  format: json
`, dbPath, sbAddr, apiAddr, token)), 0o600))
	imp := exec.Command(bin, "consent", "import", "--config", cfgPath, consentsFile)
	out, err := imp.CombinedOutput()
	require.NoError(t, err, string(out))
	t.Logf("%s", bytes.TrimSpace(out))

	logFile, err := os.Create(filepath.Join(dir, "billingd.log"))
	require.NoError(t, err)
	defer logFile.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		require.NoError(t, cmd.Start())
		return cmd
	}

	// Kill it at random moments, many times.
	var killTimes []time.Time
	began := time.Now()
	for i := 0; i < kills; i++ {
		cmd := start()
		time.Sleep(time.Duration(30+rng.IntN(600)) * time.Millisecond)
		killTimes = append(killTimes, time.Now())
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
	}

	// Then let it finish: scan until nothing is left, and stop it gracefully.
	cmd := start()
	proc.WaitHTTP(t, "http://"+apiAddr+"/readyz", 30*time.Second)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var res struct{ Handled, Errors int }
		proc.Do(t, "POST", "http://"+apiAddr+"/v1/scheduler/scan", token, &res)
		if res.Handled == 0 && remaining(t, apiAddr) == 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "billingd did not finish its work")
		time.Sleep(200 * time.Millisecond) // resends wait for their backoff (1s..5s)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "graceful stop exits 0")
	if logs, err := os.ReadFile(logFile.Name()); err == nil && bytes.Contains(logs, []byte("DATA RACE")) {
		t.Errorf("the race detector reported a data race in billingd (log: %s)", logFile.Name())
	}
	elapsed := time.Since(began)

	// The verdict, from the sandbox's ledger and billingd's store.
	var ledger []sandbox.LedgerEntry
	proc.Do(t, "GET", "http://"+sbAddr+"/_sandbox/ledger", "", &ledger)
	var stats sandbox.Stats
	proc.Do(t, "GET", "http://"+sbAddr+"/_sandbox/stats", "", &stats)
	byPair := map[string][]sandbox.LedgerEntry{}
	byCRID := map[string]sandbox.LedgerEntry{}
	for _, l := range ledger {
		if l.Kind != sandbox.KindOriginal {
			continue
		}
		key := fmt.Sprintf("%s/%d", l.ConsentID, l.Cycle)
		byPair[key] = append(byPair[key], l)
		byCRID[l.ClientRequestID] = l
	}
	db, err := storage.Open(dbPath, storage.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Check())

	var duplicates, missing, unconfirmed, byDrop, byKill, unexplained, submitting int
	states := map[storage.AttemptState]int{}
	for _, ex := range expect {
		pays := byPair[fmt.Sprintf("%s/%d", ex.id, ex.cycle)]
		switch {
		case len(pays) == 0:
			missing++
			t.Errorf("missing: %s cycle %d has no payment at the sandbox", ex.id, ex.cycle)
		case len(pays) > 1:
			duplicates++
			t.Errorf("duplicate: %s cycle %d has %d payments", ex.id, ex.cycle, len(pays))
		}
		a, err := db.GetAttempt(storage.AttemptKey{ConsentID: ex.id, Cycle: ex.cycle})
		require.NoError(t, err, ex.id)
		states[a.State]++
		require.Equal(t, ex.crid, a.ClientRequestID)
		switch a.State {
		case storage.AttemptSubmitting:
			submitting++
		case storage.AttemptUnconfirmed:
			unconfirmed++
			l, ok := byCRID[a.ClientRequestID]
			switch {
			case !ok:
				unexplained++
				t.Errorf("unconfirmed %s: no payment at the sandbox for %s", ex.id, a.ClientRequestID)
			case l.ResponseDropped:
				byDrop++
			case killedWithin(killTimes, l.CreatedAt, 5*time.Second):
				byKill++
			default:
				unexplained++
				t.Errorf("unconfirmed %s (%s) is explained by neither a dropped response nor a kill: %s", ex.id, a.ClientRequestID, a.Reason)
			}
		case storage.AttemptSubmitted, storage.AttemptCompleted:
			if l, ok := byCRID[a.ClientRequestID]; !ok || l.PaymentID != a.PaymentID {
				t.Errorf("%s: billingd recorded payment %q, the sandbox has %q", ex.id, a.PaymentID, l.PaymentID)
			}
		default:
			t.Errorf("%s: attempt ended %s: %s", ex.id, a.State, a.Reason)
		}
	}
	summary := fmt.Sprintf("kills %d, consents %d, payments at the sandbox %d, duplicates %d, missing %d, "+
		"still submitting %d, unconfirmed %d (dropped responses %d, kills %d, unexplained %d), "+
		"one-per-cycle refusals %d, faults injected %v, attempt states %v, wall time %s",
		len(killTimes), n, len(byCRID), duplicates, missing, submitting, unconfirmed, byDrop, byKill, unexplained,
		stats.Refusals["one_per_cycle"], stats.Faults, states, elapsed.Round(time.Millisecond))
	t.Log(summary)
	fmt.Println("CRASH TEST:", summary)
	require.Zero(t, duplicates)
	require.Zero(t, missing)
	require.Zero(t, submitting)
	require.Zero(t, unexplained)
	require.Zero(t, stats.Refusals["one_per_cycle"], "billingd never asked for a second payment in a cycle")
	require.Len(t, byCRID, n)
}

func killedWithin(kills []time.Time, committed time.Time, window time.Duration) bool {
	for _, k := range kills {
		if !k.Before(committed) && k.Sub(committed) <= window {
			return true
		}
	}
	return false
}

// remaining counts due entries at or before now, through the admin API's attention
// and consent listings: active consents whose next submission is not in the future.
func remaining(t *testing.T, apiAddr string) int {
	var res struct {
		Consents []struct {
			NextDue *time.Time `json:"nextDue"`
		} `json:"consents"`
	}
	proc.Do(t, "GET", "http://"+apiAddr+"/v1/consents?state=active&limit=10000", token, &res)
	left := 0
	for _, c := range res.Consents {
		if c.NextDue != nil && !c.NextDue.After(time.Now()) {
			left++
		}
	}
	return left
}
