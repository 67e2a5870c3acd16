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
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/test/harness"
	"github.com/klavi-billing/billingd/test/proc"
)

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
	dir := harness.Dir(t, "billingd-crash-", "billingd.log, sandbox.log, billingd.db")
	began := time.Now()
	span := time.Duration(float64(days) * 24 * float64(time.Hour) / rate) // real length of the run
	t.Logf("crash test: %d consents, %d kills, %d days at %g× (%s real), seed %d, race %v, dir %s",
		n, kills, days, rate, span.Round(time.Second), seed, race, dir)

	var flags []string
	if race {
		flags = append(flags, "-race")
	}
	bin := proc.Build(t, dir, flags...)

	w := harness.Generate(n, harness.VirtualStart, days, rng, seed)
	w.Tick = time.Duration(2 * rate * float64(time.Second)) // two scans, with margin
	consentsFile, scenarioFile := filepath.Join(dir, "consents.json"), filepath.Join(dir, "scenario.json")
	require.NoError(t, w.Write(consentsFile, scenarioFile))
	t.Logf("world: %s", w.Counts())

	// One timeline for every process: the clock reads virtualStart a moment from now,
	// once the sandbox is up and the consents are imported.
	epoch := time.Now().Add(2 * time.Second)
	clk := &clock.Scaled{Start: harness.VirtualStart, Epoch: time.UnixMilli(epoch.UnixMilli()), Rate: rate}
	environ := append(os.Environ(), "BILLINGD_TEST_CLOCK="+clk.String())
	t.Logf("BILLINGD_TEST_CLOCK=%s", clk)

	// The sandbox: a separate process that keeps the ledger in a write-ahead journal,
	// so that it can be killed too. Each 429 holds a request for a real second
	// (Retry-After) and each hang for the Klavi timeout, hours on the fast clock:
	// they are kept rare.
	faults := fmt.Sprintf("drop=0.05,5xx=0.02,429=0.005,timeout=0.001,latency=1ms,seed=%d", seed)
	sb := harness.StartSandbox(t, bin, dir, environ, "--consents", consentsFile, "--scenario", scenarioFile,
		"--faults", faults, "--journal", filepath.Join(dir, "sandbox.journal"))
	sbAddr := sb.Addr

	// billingd's database: the consents imported offline, billed from three days in.
	dbPath := filepath.Join(dir, "billingd.db")
	apiAddr := proc.FreePort(t)
	cfgPath := filepath.Join(dir, "billingd.yaml")
	// Every start compacts the database file (storage.compact_at_start: always, a few
	// milliseconds here), so that kills land in compactions too.
	require.NoError(t, os.WriteFile(cfgPath, []byte(harness.Config("  path: "+dbPath+"\n  open_timeout: 10s\n  compact_at_start: always\n", sbAddr, apiAddr, klaviTimeout,
		time.Duration(float64(2*3*klaviTimeout)*rate).Round(time.Minute))), 0o600))
	out := harness.Import(t, bin, cfgPath, environ, w.BillFrom.String(), consentsFile)
	t.Logf("%s", bytes.TrimSpace(out))
	daemon := harness.NewDaemon(t, bin, dir, cfgPath, environ)

	// The events, spread over the whole run.
	var events []event
	for range kills {
		events = append(events, event{at: time.Duration(rng.Int64N(int64(span))), kind: "kill"})
	}
	events = append(events, event{at: span/5 + time.Duration(rng.Int64N(int64(span*3/5))), kind: "stop"})
	events = append(events, event{at: span/10 + time.Duration(rng.Int64N(int64(span*4/5))), kind: "sandbox-kill"})
	sort.Slice(events, func(i, j int) bool { return events[i].at < events[j].at })
	stopFor := 4 * klaviTimeout

	stopNudges := harness.Nudge([]string{apiAddr})
	defer stopNudges()

	time.Sleep(time.Until(epoch))
	daemon.Start(t)
	var (
		done     struct{ kills, stops, sandboxKills int }
		killedAt []string // virtual instants, for reading the logs
	)
	for _, ev := range events {
		time.Sleep(time.Until(epoch.Add(ev.at)))
		switch ev.kind {
		case "kill":
			daemon.Kill(t)
			killedAt = append(killedAt, clk.Now().Format("01-02T15:04"))
			daemon.Start(t)
			done.kills++
		case "stop":
			t.Logf("SIGSTOP billingd for %s at %s (virtual %s)", stopFor, time.Since(epoch).Round(time.Millisecond), clk.Now().Format(time.RFC3339))
			require.NoError(t, daemon.Cmd.Process.Signal(syscall.SIGSTOP))
			time.Sleep(stopFor)
			require.NoError(t, daemon.Cmd.Process.Signal(syscall.SIGCONT))
			done.stops++
		case "sandbox-kill":
			t.Logf("SIGKILL the sandbox at %s (virtual %s)", time.Since(epoch).Round(time.Millisecond), clk.Now().Format(time.RFC3339))
			sb.Restart(t)
			done.sandboxKills++
		}
	}
	time.Sleep(time.Until(epoch.Add(span)))
	t.Logf("billingd killed at (virtual, UTC) %s", strings.Join(killedAt, " "))
	t.Logf("run over at virtual %s; settling", clk.Now().Format(time.RFC3339))

	// Settle, bounded: what is left then is reported.
	left := harness.Settle(w, clk, time.Now().Add(max(90*time.Second, 6*span/time.Duration(days))), func() string {
		return pending(t, apiAddr, dir)
	})
	stopNudges()
	if left != "" {
		t.Errorf("billingd did not settle within the deadline: %s", left)
	}
	// A graceful stop with nothing in flight is quick; if it is not, a goroutine dump
	// (SIGQUIT) shows in billingd.log what it waits for.
	switch inTime, err := daemon.Stop(t, 8*time.Second, syscall.SIGQUIT); {
	case !inTime:
		t.Errorf("billingd did not stop within 8s of SIGTERM with nothing left to do; its goroutines are dumped in billingd.log")
	case err != nil:
		t.Errorf("graceful stop of a settled billingd: %v (see billingd.log)", err)
	}
	for _, f := range []string{daemon.LogFile(), sb.LogFile()} {
		if logs, err := os.ReadFile(f); err == nil && bytes.Contains(logs, []byte("DATA RACE")) {
			t.Errorf("the race detector reported a data race (log: %s)", f)
		}
	}

	// The verdict, from the sandbox's ledger and billingd's store.
	ledger, stats := sb.Ledger(t), sb.Stats(t)
	db, err := bolt.Open(dbPath, bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Check(context.Background()))
	v := harness.Judge(t, w, ledger, db)

	summary := fmt.Sprintf("kills %d, stops %d, sandbox kills %d, consents %d, cycles expected %d, cycles billed %d, "+
		"payments %d (originals %d, local retries %d, Klavi retries %d), duplicates %d, lost %d, unconfirmed %d, "+
		"submitting %d, unsettled %d, retry violations %d, retries late past midnight %d, mismatches %d, refusals %v, "+
		"attempt states %v, faults %v, days %d at %g×, seed %d, wall time %s",
		done.kills, done.stops, done.sandboxKills, n, v.Expected, v.Billed,
		len(ledger), stats.Accepted[sandbox.KindOriginal], stats.Accepted[sandbox.KindRetry], stats.Accepted[sandbox.KindAutoRetry],
		v.Count[harness.CatDuplicate], v.Count[harness.CatLost], v.Count[harness.CatUnconfirmed], v.Count[harness.CatSubmitting], v.Count[harness.CatUnsettled],
		v.Count[harness.CatRetry], v.Late, v.Count[harness.CatMismatch], stats.Refusals,
		v.States, stats.Faults, days, rate, seed, time.Since(began).Round(time.Second))
	t.Log(summary)
	fmt.Println("CRASH TEST:", summary)
	if stats.Refusals[sandbox.RuleOnePerCycle] > 0 {
		t.Errorf("billingd asked %d times for a second live payment in a cycle (refused by Klavi's one-per-cycle rule)",
			stats.Refusals[sandbox.RuleOnePerCycle])
	}
	for _, c := range harness.Categories {
		if v.Count[c] > 0 {
			t.Errorf("%d %s (listed above)", v.Count[c], c)
		}
	}
	// Late retries are the sped-up clock's midnight edge: a few per run. Many of them
	// would be billingd sending retries late (or on their date), not the clock.
	if local := stats.Accepted[sandbox.KindRetry]; v.Late > max(5, local/20) {
		t.Errorf("%d local retries late past midnight against %d sent: more than the clock's midnight edge explains", v.Late, local)
	}
}

// pending returns what billingd still has to do, read from a consistent snapshot of
// its store taken through the admin API (the running daemon holds the file's lock).
// "" when nothing is left.
func pending(t *testing.T, apiAddr, dir string) string {
	snap := filepath.Join(dir, "snapshot.db")
	if err := proc.Download("http://"+apiAddr+"/v1/backup", harness.Token, snap, 30*time.Second); err != nil {
		return "no snapshot: " + err.Error()
	}
	defer os.Remove(snap)
	db, err := bolt.Open(snap, bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return "snapshot: " + err.Error()
	}
	defer db.Close()
	left, err := harness.Pending(context.Background(), db)
	require.NoError(t, err)
	return left
}
