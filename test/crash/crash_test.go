//go:build crash

// Package crash runs billingd as production meets it, only faster, and checks that no
// money went wrong. A sandbox process plays Klavi; billingd bills thousands of
// consents over weeks of a shared test clock (BILLINGD_TEST_CLOCK: both processes
// read start + (real now − epoch) × rate, so days pass in seconds and a restarted
// daemon finds the date where the timeline is). Meanwhile:
//
//   - consents of every interval, month-end and leap-day references, several cycles
//     each inside the run, expiring near its end (so that billing ends by itself);
//   - retry modes local, attach and off; a scenario (sandbox --scenario) rejects a
//     share of payments with a retryable reason (local and Klavi-run retries follow),
//     revokes some consents (REVOKED_USER), refuses or cancels others;
//   - the sandbox drops 5 % of answers after committing them, answers 5xx and 429,
//     and hangs a few requests past the client timeout;
//   - billingd is SIGKILLed at random instants spread over the whole run and
//     restarted, SIGSTOPped once for longer than its Klavi timeout, and the sandbox
//     itself is SIGKILLed and restarted once (its --journal keeps the ledger).
//
// Billing starts three days into the run, so every cycle's submission window is open
// when billingd first starts: a cycle left MISSED, SKIPPED or FAILED is a lost cycle.
// Besides its own once-a-second cron, billingd is asked to scan and poll through the
// admin API several times a second, so that its cadence stays finer than an hour of
// the fast clock.
//
// When the run's span is over the daemon is left to settle (every attempt final,
// bounded), stopped gracefully, and the verdict reads the sandbox's ledger and
// billingd's store: no duplicate charge, no lost cycle, no attempt left UNCONFIRMED,
// SUBMITTING or unsettled, every rejected payment retried as its mode and strategy
// plan, and billingd's record of each payment agreeing with Klavi's. Each violation
// is reported with its consent, cycle, attempt, clientRequestId and states, and one
// line "CRASH TEST: ..." sums the run up.
//
//	go test -tags crash -v -count=1 -timeout 30m ./test/crash/   (make crash)
//
// Knobs (environment):
//
//	CRASH_CONSENTS  consents (default 1500)
//	CRASH_KILLS     SIGKILLs of billingd over the run (default 25)
//	CRASH_DAYS      virtual days the run spans (default 40)
//	CRASH_RATE      virtual seconds per real second (default 17280: a day in 5 s;
//	                larger runs need a lower rate so billingd keeps up)
//	CRASH_SEED      seeds consents, scenario, faults and kill instants (default: random, logged)
//	CRASH_RACE=1    builds billingd (daemon and sandbox) with -race
package crash

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/test/proc"
)

const token = "crash-test-admin-token-0123456789"

// The run starts on Wednesday 20 Jan 2027, 00:00 in Brasília, so that 31 Jan and the
// clamped 28 Feb fall inside it.
var virtualStart = time.Date(2027, 1, 20, 3, 0, 0, 0, time.UTC)

// klaviTimeout is billingd's per-request timeout (real time); the SIGSTOP lasts four
// times as long. Short, because on the fast clock a second is hours: a request that
// hangs through every attempt must not outlast a retry's request day.
const klaviTimeout = 500 * time.Millisecond

// An event is something done to the processes at a real offset from the epoch.
type event struct {
	at   time.Duration
	kind string // "kill", "stop", "sandbox-kill"
}

func TestCrash(t *testing.T) {
	n, kills := proc.EnvInt("CRASH_CONSENTS", 1500), proc.EnvInt("CRASH_KILLS", 25)
	days, rate := proc.EnvInt("CRASH_DAYS", 40), proc.EnvFloat("CRASH_RATE", 17280)
	seed := uint64(proc.EnvInt("CRASH_SEED", int(time.Now().UnixNano()%1e9)))
	race := os.Getenv("CRASH_RACE") != ""
	rng := rand.New(rand.NewPCG(seed, 99))
	// The directory (logs, database, journal) is kept when the test fails.
	dir, err := os.MkdirTemp("", "billingd-crash-")
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept %s (billingd.log, sandbox.log, billingd.db)", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	began := time.Now()
	span := time.Duration(float64(days) * 24 * float64(time.Hour) / rate) // real length of the run
	t.Logf("crash test: %d consents, %d kills, %d days at %g× (%s real), seed %d, race %v, dir %s",
		n, kills, days, rate, span.Round(time.Second), seed, race, dir)

	var flags []string
	if race {
		flags = append(flags, "-race")
	}
	bin := proc.Build(t, dir, flags...)

	w := generate(n, virtualStart, days, rng, seed)
	w.tick = time.Duration(2 * rate * float64(time.Second)) // two scans, with margin
	consentsFile, scenarioFile := filepath.Join(dir, "consents.json"), filepath.Join(dir, "scenario.json")
	require.NoError(t, w.write(consentsFile, scenarioFile))
	t.Logf("world: %s", w.counts())

	// One timeline for every process: the clock reads virtualStart a moment from now,
	// once the sandbox is up and the consents are imported.
	epoch := time.Now().Add(2 * time.Second)
	clk := &clock.Scaled{Start: virtualStart, Epoch: time.UnixMilli(epoch.UnixMilli()), Rate: rate}
	environ := append(os.Environ(), "BILLINGD_TEST_CLOCK="+clk.String())
	t.Logf("BILLINGD_TEST_CLOCK=%s", clk)

	// The sandbox: a separate process that keeps the ledger in a write-ahead journal,
	// so that it can be killed too.
	sbAddr := proc.FreePort(t)
	sbLog, err := os.Create(filepath.Join(dir, "sandbox.log"))
	require.NoError(t, err)
	defer sbLog.Close()
	// Each 429 holds a request for a real second (Retry-After) and each hang for the
	// Klavi timeout, hours on the fast clock: they are kept rare.
	faults := fmt.Sprintf("drop=0.05,5xx=0.02,429=0.005,timeout=0.001,latency=1ms,seed=%d", seed)
	sbArgs := []string{"sandbox", "--addr", sbAddr, "--access-key", "ak", "--secret-key", "sk",
		"--consents", consentsFile, "--scenario", scenarioFile, "--faults", faults, "--token-ttl", "24h",
		"--journal", filepath.Join(dir, "sandbox.journal")}
	startSandbox := func() *exec.Cmd {
		cmd := exec.Command(bin, sbArgs...)
		cmd.Env, cmd.Stdout, cmd.Stderr = environ, sbLog, sbLog
		require.NoError(t, cmd.Start())
		proc.WaitHTTP(t, "http://"+sbAddr+"/_sandbox/stats", 60*time.Second)
		return cmd
	}
	sb := startSandbox()
	defer func() { _ = sb.Process.Kill(); _ = sb.Wait() }()

	// billingd's database: the consents imported offline, billed from three days in.
	dbPath := filepath.Join(dir, "billingd.db")
	apiAddr := proc.FreePort(t)
	cfgPath := filepath.Join(dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(config(dbPath, sbAddr, apiAddr, klaviTimeout,
		time.Duration(float64(2*3*klaviTimeout)*rate).Round(time.Minute))), 0o600))
	imp := exec.Command(bin, "consent", "import", "--config", cfgPath, "--bill-from", w.billFrom.String(), consentsFile)
	imp.Env = environ
	out, err := imp.CombinedOutput()
	require.NoError(t, err, string(out))
	t.Logf("%s", bytes.TrimSpace(out))

	logFile, err := os.Create(filepath.Join(dir, "billingd.log"))
	require.NoError(t, err)
	defer logFile.Close()
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfgPath)
		cmd.Env, cmd.Stdout, cmd.Stderr = environ, logFile, logFile
		require.NoError(t, cmd.Start())
		return cmd
	}

	// The events, spread over the whole run.
	var events []event
	for range kills {
		events = append(events, event{at: time.Duration(rng.Int64N(int64(span))), kind: "kill"})
	}
	events = append(events, event{at: span/5 + time.Duration(rng.Int64N(int64(span*3/5))), kind: "stop"})
	events = append(events, event{at: span/10 + time.Duration(rng.Int64N(int64(span*4/5))), kind: "sandbox-kill"})
	sort.Slice(events, func(i, j int) bool { return events[i].at < events[j].at })
	stopFor := 4 * klaviTimeout

	// Nudges: besides its own once-a-second cron, billingd is asked through the admin
	// API to scan and poll several times a second, so that its cadence on the fast
	// clock stays finer than a virtual hour. Answers are ignored (it may be down).
	ctx, cancelNudge := context.WithCancel(context.Background())
	var nudges sync.WaitGroup
	for _, what := range []string{"scan", "poll"} {
		nudges.Add(1)
		go func() {
			defer nudges.Done()
			for ctx.Err() == nil {
				if proc.Try("POST", "http://"+apiAddr+"/v1/scheduler/"+what, token, 30*time.Second) != nil {
					time.Sleep(50 * time.Millisecond) // down or stopped: do not spin
				}
				time.Sleep(150 * time.Millisecond)
			}
		}()
	}
	stopNudges := func() { cancelNudge(); nudges.Wait() }
	defer stopNudges()

	time.Sleep(time.Until(epoch))
	daemon := start()
	var (
		done     struct{ kills, stops, sandboxKills int }
		killedAt []string // virtual instants, for reading the logs
	)
	for _, ev := range events {
		time.Sleep(time.Until(epoch.Add(ev.at)))
		switch ev.kind {
		case "kill":
			require.NoError(t, daemon.Process.Signal(syscall.SIGKILL))
			_ = daemon.Wait()
			killedAt = append(killedAt, clk.Now().Format("01-02T15:04"))
			daemon = start()
			done.kills++
		case "stop":
			t.Logf("SIGSTOP billingd for %s at %s (virtual %s)", stopFor, time.Since(epoch).Round(time.Millisecond), clk.Now().Format(time.RFC3339))
			require.NoError(t, daemon.Process.Signal(syscall.SIGSTOP))
			time.Sleep(stopFor)
			require.NoError(t, daemon.Process.Signal(syscall.SIGCONT))
			done.stops++
		case "sandbox-kill":
			t.Logf("SIGKILL the sandbox at %s (virtual %s)", time.Since(epoch).Round(time.Millisecond), clk.Now().Format(time.RFC3339))
			require.NoError(t, sb.Process.Signal(syscall.SIGKILL))
			_ = sb.Wait()
			sb = startSandbox()
			done.sandboxKills++
		}
	}
	time.Sleep(time.Until(epoch.Add(span)))
	t.Logf("billingd killed at (virtual, UTC) %s", strings.Join(killedAt, " "))
	t.Logf("run over at virtual %s; settling", clk.Now().Format(time.RFC3339))

	// Settle: every consent's last payment is dated by its expiry; once the clock is a
	// day past the last expiry nothing new can happen at Klavi, and billingd must bring
	// every attempt to a final state. Bounded: what is left then is reported.
	settled, left := false, ""
	deadline := time.Now().Add(max(90*time.Second, 6*span/time.Duration(days)))
	for time.Now().Before(deadline) {
		if !clk.Now().Before(w.end.AddDays(1).At(12, 0)) {
			if left = pending(t, apiAddr, dir); left == "" {
				settled = true
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	stopNudges()
	if !settled {
		t.Errorf("billingd did not settle within the deadline: %s", left)
	}
	// A graceful stop with nothing in flight is quick; if it is not, a goroutine dump
	// (SIGQUIT) shows in billingd.log what it waits for.
	require.NoError(t, daemon.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("graceful stop of a settled billingd: %v (see billingd.log)", err)
		}
	case <-time.After(8 * time.Second):
		_ = daemon.Process.Signal(syscall.SIGQUIT)
		<-exited
		t.Errorf("billingd did not stop within 8s of SIGTERM with nothing left to do; its goroutines are dumped in billingd.log")
	}
	for _, f := range []string{logFile.Name(), sbLog.Name()} {
		if logs, err := os.ReadFile(f); err == nil && bytes.Contains(logs, []byte("DATA RACE")) {
			t.Errorf("the race detector reported a data race (log: %s)", f)
		}
	}

	// The verdict, from the sandbox's ledger and billingd's store.
	var ledger []sandbox.LedgerEntry
	proc.Do(t, "GET", "http://"+sbAddr+"/_sandbox/ledger", "", &ledger)
	var stats sandbox.Stats
	proc.Do(t, "GET", "http://"+sbAddr+"/_sandbox/stats", "", &stats)
	db, err := bolt.Open(dbPath, bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Check(ctx))
	v := judge(t, w, ledger, db)

	summary := fmt.Sprintf("kills %d, stops %d, sandbox kills %d, consents %d, cycles expected %d, cycles billed %d, "+
		"payments %d (originals %d, local retries %d, Klavi retries %d), duplicates %d, lost %d, unconfirmed %d, "+
		"submitting %d, unsettled %d, retry violations %d, retries late past midnight %d, mismatches %d, refusals %v, "+
		"attempt states %v, faults %v, days %d at %g×, seed %d, wall time %s",
		done.kills, done.stops, done.sandboxKills, n, v.expected, v.billed,
		len(ledger), stats.Accepted[sandbox.KindOriginal], stats.Accepted[sandbox.KindRetry], stats.Accepted[sandbox.KindAutoRetry],
		v.count[catDuplicate], v.count[catLost], v.count[catUnconfirmed], v.count[catSubmitting], v.count[catUnsettled],
		v.count[catRetry], v.late, v.count[catMismatch], stats.Refusals,
		v.states, stats.Faults, days, rate, seed, time.Since(began).Round(time.Second))
	t.Log(summary)
	fmt.Println("CRASH TEST:", summary)
	if stats.Refusals[sandbox.RuleOnePerCycle] > 0 {
		t.Errorf("billingd asked %d times for a second live payment in a cycle (refused by Klavi's one-per-cycle rule)",
			stats.Refusals[sandbox.RuleOnePerCycle])
	}
	for _, c := range categories {
		if v.count[c] > 0 {
			t.Errorf("%d %s (listed above)", v.count[c], c)
		}
	}
	// Late retries are the sped-up clock's midnight edge: a few per run. Many of them
	// would be billingd sending retries late (or on their date), not the clock.
	if local := stats.Accepted[sandbox.KindRetry]; v.late > max(5, local/20) {
		t.Errorf("%d local retries late past midnight against %d sent: more than the clock's midnight edge explains", v.late, local)
	}
}

// pending returns what billingd still has to do, read from a consistent snapshot of
// its store taken through the admin API (the running daemon holds the file's lock):
// attempts that are not final, and consents still billed. "" when nothing is left.
func pending(t *testing.T, apiAddr, dir string) string {
	snap := filepath.Join(dir, "snapshot.db")
	if err := proc.Download("http://"+apiAddr+"/v1/backup", token, snap, 30*time.Second); err != nil {
		return "no snapshot: " + err.Error()
	}
	defer os.Remove(snap)
	db, err := bolt.Open(snap, bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return "snapshot: " + err.Error()
	}
	defer db.Close()
	states := map[storage.AttemptState]int{}
	active, after := 0, ""
	for {
		recs, err := db.ListConsents(context.Background(), after, 1000, "")
		require.NoError(t, err)
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			after = r.ID()
			if r.State == storage.ConsentActive {
				active++
			}
			as, err := db.Attempts(context.Background(), r.ID())
			require.NoError(t, err)
			for _, a := range as {
				if !a.State.Final() {
					states[a.State]++
				}
			}
		}
	}
	if active == 0 && len(states) == 0 {
		return ""
	}
	var parts []string
	for s, n := range states {
		parts = append(parts, fmt.Sprintf("%d %s", n, s))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d consents still active, attempts not final: %s", active, strings.Join(parts, ", "))
}
