//go:build peer

// Package peer is `make bench-peer`: billingd beside River on PostgreSQL (what a Go
// team would build instead), the same POST per due cycle against the same sandbox
// process, runs interleaved, and the machine's own ceiling measured in the same run.
//
//	go test -tags peer -run '^TestPeer$' -v -count=1 -timeout 12m ./test/peer/
//	make bench-peer
//
// PEER_DUE (default 10000) cycles a run, PEER_WORKERS (default 64) concurrent calls
// on both sides, PEER_ROUNDS (default 2) pairs of runs in the order billingd, River,
// River, billingd, …, so that drift on a shared machine falls on both.
//
// billingd runs in this process, as test/scale's TestEngines does: a fresh bbolt
// store (every commit fsynced), PEER_DUE consents due now added with AddConsents,
// then one timed due Scan with scheduler.workers PEER_WORKERS through a real
// klavi.Client; the count is billingd's (the ScanResult and the store). River runs
// in its own process (test/peer/river, a module of its own): PEER_DUE jobs inserted
// before the timing, then a river.Client with MaxWorkers PEER_WORKERS whose jobs each
// make the same klavi.Client.CreatePayment; it times Start to the last job's
// completion, counted by River. PostgreSQL is Debian's (installed with apt-get when
// missing and the test runs as root; skipped otherwise), a fresh cluster in a
// temporary directory on 127.0.0.1 with its durable defaults stated explicitly
// (fsync on, synchronous_commit on, full_page_writes on), run as the postgres user
// when the test runs as root. Both sides pay fresh consents of the same `billingd
// sandbox` process on loopback; after each run the sandbox's count of accepted
// payments is read once and must have grown by exactly PEER_DUE. Each run says the
// CPU time per item of the sandbox process (/proc): for billingd over its timed
// scan, beside billingd's own; for River over the River process's life (the
// sandbox serves nothing while River inserts its jobs).
//
// The ceiling (issue 13 asks billingd for 0.75 of it) is measured in the same run,
// after the pairs: (a) bbolt group commits (DB.Batch of a small put from 256
// goroutines, the batch window billingd's store uses) on a fresh file in the same
// directory, (b) fdatasync/s of one writer there, (c) loopback POST/s to a trivial
// net/http handler from 64 goroutines, (d) CreatePayment/s the sandbox process
// accepts from 64 goroutines with no storage on the client. Submissions/s cannot
// exceed min(a / 2 commits per submission, c, d).
//
// River's client is set for throughput as River's own benchmark (riverbench) sets it:
// FetchCooldown 2ms and FetchPollInterval 20ms (its defaults, 100ms and 1s, let 64
// workers fetch at most 64 jobs per 100 ms); its pgx pool has pgx's default size.
// PEER_PG_CONNS sets the pool's size; PEER_RIVER_FLAGS adds flags to the River
// worker (e.g. "-fetch-cooldown 100ms -fetch-poll-interval 1s" for River's
// defaults); PEER_CEILING_SECONDS (default 3) is the length of ceilings (a) to (c);
// PEER_CPUPROFILE, a directory (made if missing), gets a CPU profile of each of billingd's timed scans.
//
// Lines starting "PEER:" are the figures; the last line is
// "billingd/river ratio: X.XX" (the medians' ratio).
package peer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/gcpercent"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/test/proc"
)

func report(format string, args ...any) {
	fmt.Printf("PEER: "+format+"\n", args...)
}

// klaviConfig is the client both sides use.
func klaviConfig(base string) klavi.Config {
	return klavi.Config{BaseURL: base, AccessKey: "ak", SecretKey: "sk", Timeout: 30 * time.Second,
		MaxAttempts: 3, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, RateLimit: 1e6, RateBurst: 10000}
}

func TestPeer(t *testing.T) {
	due := proc.EnvInt("PEER_DUE", 10000)
	workers := proc.EnvInt("PEER_WORKERS", 64)
	rounds := proc.EnvInt("PEER_ROUNDS", 2)
	began := time.Now()
	// The daemon's garbage collector target (runtime.gc_percent), for billingd's side
	// in this process; River's worker runs with the same GOGC. GOGC set in the
	// environment wins on both sides.
	gc, _ := gcpercent.Apply(gcpercent.Default)
	riverGC = gc
	report("garbage collector target %d on both sides (GOGC)", gc)

	bin := postgresBin(t)
	dir := workDir(t)
	pg := startPostgres(t, bin, dir)

	// Both programs, built before anything is timed.
	billingd := proc.Build(t, dir)
	riverBin := filepath.Join(dir, "peer-river")
	build := exec.Command("go", "build", "-o", riverBin, ".")
	build.Dir = "river"
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build test/peer/river: %s", out)

	// The consents of every run and of the ceiling, fresh ids each, seeded in the
	// sandbox at its start; due now for billingd (cycle 0 in 3 days, lead 3, submit
	// time 00:00).
	today := cycle.DateOf(time.Now())
	ref := today.AddDays(3)
	runs := 2 * rounds
	ids := func(run int, side string) []*consent.Consent {
		cs := make([]*consent.Consent, due)
		for i := range cs {
			c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(fmt.Sprintf("urn:peer:run%02d-%s-%06d", run, side, i), cycle.Monthly, ref, 99_90)}
			c.Billing.RetryMode = consent.Off
			cs[i] = c
		}
		return cs
	}
	var all []*consent.Consent
	sides := make([]string, 0, runs)
	for r := 0; r < rounds; r++ {
		pair := []string{"billingd", "river"}
		if r%2 == 1 {
			slices.Reverse(pair) // billingd, river, river, billingd, …
		}
		sides = append(sides, pair...)
	}
	for run, side := range sides {
		all = append(all, ids(run+1, side)...)
	}
	all = append(all, ids(0, "ceiling")...)
	raw, err := json.Marshal(all)
	require.NoError(t, err)
	seedFile := filepath.Join(dir, "consents.json")
	require.NoError(t, os.WriteFile(seedFile, raw, 0o600))

	sbAddr := proc.FreePort(t)
	sbURL := "http://" + sbAddr
	sb := exec.Command(billingd, "sandbox", "--addr", sbAddr, "--access-key", "ak", "--secret-key", "sk", "--consents", seedFile)
	sbLog, err := os.Create(filepath.Join(dir, "sandbox.log"))
	require.NoError(t, err)
	sb.Stdout, sb.Stderr = sbLog, sbLog
	require.NoError(t, sb.Start())
	t.Cleanup(func() { _ = sb.Process.Kill(); _ = sb.Wait() })
	proc.WaitHTTP(t, sbURL+"/_sandbox/stats", 2*time.Minute)
	accepted := func() int {
		var st sandbox.Stats
		proc.Do(t, "GET", sbURL+"/_sandbox/stats", "", &st)
		return st.Accepted[sandbox.KindOriginal]
	}

	report("machine: %d CPUs, %s, %s; %s", runtime.NumCPU(), runtime.Version(), cpuModel(), pg.version)
	report("%d due cycles a run, %d workers on both sides, %d pairs of runs; PostgreSQL fsync=%s synchronous_commit=%s full_page_writes=%s wal_sync_method=%s; billingd on bbolt, every commit fsynced",
		due, workers, rounds, pg.setting(t, "fsync"), pg.setting(t, "synchronous_commit"), pg.setting(t, "full_page_writes"), pg.setting(t, "wal_sync_method"))

	// billingd's Klavi client: one for every run, its Date headers handed to the
	// scheduler of the current run, as the daemon wires them.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var current atomic.Pointer[scheduler.Scheduler]
	hooks := klavi.Hooks{OnServerTime: func(server, local time.Time) {
		if s := current.Load(); s != nil {
			s.ObserveKlaviTime(server, local)
		}
	}}
	kc, err := klavi.New(klaviConfig(sbURL), klavi.WithLogger(quiet), klavi.WithHooks(hooks))
	require.NoError(t, err)

	rates := map[string][]float64{}
	for i, side := range sides {
		run := i + 1
		before := accepted()
		var rate float64
		var line string
		switch side {
		case "billingd":
			rate, line = runBillingd(t, dir, run, ids(run, side), kc, &current, workers, ref, sb.Process.Pid)
		case "river":
			rate, line = runRiver(t, riverBin, pg, run, sbURL, due, workers, ref, sb.Process.Pid)
		}
		got := accepted() - before
		require.Equal(t, due, got, "run %d (%s): payments the sandbox accepted", run, side)
		rates[side] = append(rates[side], rate)
		report("run %d %-8s %s; the sandbox accepted %d; load average %s", run, side, line, got, proc.LoadAvg())
	}
	bMed, rMed := proc.Median(rates["billingd"]), proc.Median(rates["river"])
	report("billingd: %.0f submissions/s median (runs %s)", bMed, proc.JoinRates(rates["billingd"]))
	report("river:    %.0f jobs/s median (runs %s)", rMed, proc.JoinRates(rates["river"]))

	// The ceiling, measured now on the same machine.
	window := time.Duration(proc.EnvFloat("PEER_CEILING_SECONDS", 3) * float64(time.Second))
	batch := boltBatchRate(t, filepath.Join(dir, "ceiling-batch.db"), 256, window)
	report("ceiling (a) bbolt DB.Batch of one small put from 256 goroutines, MaxBatchDelay 2ms (billingd's), fresh file: %.0f writes/s; load average %s", batch, proc.LoadAvg())
	syncs := fdatasyncRate(t, filepath.Join(dir, "ceiling-fdatasync"), window)
	report("ceiling (b) fdatasync after a 4 KiB write, one writer: %.0f/s; load average %s", syncs, proc.LoadAvg())
	trivial := trivialPostRate(t, 64, window)
	report("ceiling (c) loopback POST to a trivial net/http handler from 64 goroutines: %.0f/s; load average %s", trivial, proc.LoadAvg())
	before := accepted()
	cpu := startCPU(sb.Process.Pid)
	sandboxRate := sandboxPostRate(t, sbURL, ids(0, "ceiling"), 64, ref)
	used := cpu.stop(due)
	require.Equal(t, due, accepted()-before, "ceiling (d): payments the sandbox accepted")
	report("ceiling (d) CreatePayment to the sandbox process from 64 goroutines, nothing stored: %.0f/s (%d payments); %s; load average %s", sandboxRate, due, used, proc.LoadAvg())
	ceiling := min(batch/2, trivial, sandboxRate)
	report("ceiling: min(a/2 = %.0f, c = %.0f, d = %.0f) = %.0f submissions/s; billingd/ceiling %.2f; river/ceiling %.2f",
		batch/2, trivial, sandboxRate, ceiling, bMed/ceiling, rMed/ceiling)
	report("wall time of the harness: %s", time.Since(began).Round(time.Second))
	fmt.Printf("billingd/river ratio: %.2f\n", bMed/rMed)
}

// runBillingd times one due scan of billingd submitting cs on a fresh durable store.
func runBillingd(t *testing.T, dir string, run int, cs []*consent.Consent, kc *klavi.Client, current *atomic.Pointer[scheduler.Scheduler], workers int, ref cycle.Date, sandboxPid int) (float64, string) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := bolt.Open(filepath.Join(dir, fmt.Sprintf("billingd-run%02d.db", run)), bolt.Options{Logger: quiet})
	require.NoError(t, err)
	defer db.Close()
	s, err := scheduler.New(scheduler.Config{Policy: scheduler.Policy{LeadDays: 3, RetryMode: consent.Off},
		SubmitHour: 0, Workers: workers}, db, kc, scheduler.WithLogger(quiet))
	require.NoError(t, err)
	current.Store(s)
	defer current.Store(nil)
	// The first scan of a process re-plans every active consent once (Replan) and
	// reads Klavi's time; a daemon running before the submit time has done both. So
	// the harness runs that first scan on the empty store, as River's client is
	// started only in its timed part but its database is migrated before.
	_, err = s.Scan(ctx)
	require.NoError(t, err)
	bstart := time.Now()
	for from := 0; from < len(cs); from += 500 {
		_, _, err := s.AddConsents(ctx, cs[from:min(from+500, len(cs))], cycle.DateOf(time.Now()))
		require.NoError(t, err)
	}
	built := time.Since(bstart)

	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	stopProfile := startProfile(t, dir, run)
	cpu := startCPU(sandboxPid)
	start := time.Now()
	res, err := s.Scan(sctx)
	took := time.Since(start)
	used := cpu.stop(len(cs))
	stopProfile()
	require.NoError(t, err)
	require.Equal(t, len(cs), res.Handled, "%+v %+v", res, s.ClockState())
	require.Zero(t, res.Errors, "%+v", res)

	// billingd's own count: every cycle SUBMITTED in the store, nothing left due.
	states := map[storage.AttemptState]int{}
	require.NoError(t, db.EachAttemptBetween(ctx, ref, ref, func(a *storage.Attempt) error {
		states[a.State]++
		return nil
	}))
	require.Equal(t, map[storage.AttemptState]int{storage.AttemptSubmitted: len(cs)}, states, "attempts in billingd's store")
	left, err := db.DueBefore(ctx, time.Now(), 1)
	require.NoError(t, err)
	require.Empty(t, left, "due entries left")
	rate := float64(len(cs)) / took.Seconds()
	return rate, fmt.Sprintf("%d submissions in %s: %.0f submissions/s (%d consents added in %s, not timed); %s",
		res.Handled, took.Round(time.Millisecond), rate, len(cs), built.Round(time.Millisecond), used)
}

// startProfile starts a CPU profile of this process for billingd's timed scan when
// PEER_CPUPROFILE names a directory (one file per run, cpu-runNN.prof); the returned
// function stops it.
func startProfile(t *testing.T, dir string, run int) func() {
	to := os.Getenv("PEER_CPUPROFILE")
	if to == "" {
		return func() {}
	}
	require.NoError(t, os.MkdirAll(to, 0o755), "PEER_CPUPROFILE")
	f, err := os.Create(filepath.Join(to, fmt.Sprintf("cpu-run%02d.prof", run)))
	require.NoError(t, err)
	require.NoError(t, pprof.StartCPUProfile(f))
	return func() {
		pprof.StopCPUProfile()
		require.NoError(t, f.Close())
	}
}

// A cpuSpan is the CPU time this process, the sandbox process and the whole machine
// used over a timed part (/proc, 10 ms ticks).
type cpuSpan struct {
	sandboxPid          int
	self, sandbox, busy time.Duration
	total               time.Duration
}

func startCPU(sandboxPid int) *cpuSpan {
	busy, total := proc.MachineCPU()
	return &cpuSpan{sandboxPid: sandboxPid, self: proc.CPU(0), sandbox: proc.CPU(sandboxPid), busy: busy, total: total}
}

// stop says what the span used per item (µs of CPU time) and how busy the machine
// was: the share of every CPU's time not idle.
func (c *cpuSpan) stop(items int) string {
	busy, total := proc.MachineCPU()
	self, sb := proc.CPU(0)-c.self, proc.CPU(c.sandboxPid)-c.sandbox
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(items, 1)) }
	machine := 0.0
	if total > c.total {
		machine = 100 * float64(busy-c.busy) / float64(total-c.total)
	}
	return fmt.Sprintf("CPU per item: this process %.0f µs, the sandbox %.0f µs, the rest of the machine %.0f µs; machine %.0f%% busy",
		per(self), per(sb), per(busy-c.busy-self-sb), machine)
}

// riverResult is what test/peer/river prints.
type riverResult struct {
	Jobs              int     `json:"jobs"`
	Completed         int     `json:"completed"`
	FailedAttempts    int     `json:"failedAttempts"`
	InsertSeconds     float64 `json:"insertSeconds"`
	Seconds           float64 `json:"seconds"`
	JobsPerSecond     float64 `json:"jobsPerSecond"`
	FetchCooldown     string  `json:"fetchCooldown"`
	FetchPollInterval string  `json:"fetchPollInterval"`
	PoolMaxConns      int     `json:"poolMaxConns"`
	River             string  `json:"river"`
	Postgres          string  `json:"postgres"`
	Fsync             string  `json:"fsync"`
	SynchronousCommit string  `json:"synchronousCommit"`
}

// riverGC is the GOGC the River worker runs with: billingd's side's target.
var riverGC = gcpercent.Default

// runRiver runs the River worker once on a database of its own.
func runRiver(t *testing.T, bin string, pg *postgres, run int, sbURL string, due, workers int, ref cycle.Date, sandboxPid int) (float64, string) {
	cmd := exec.Command(bin, "-dsn", pg.dsn, "-pool-max-conns", strconv.Itoa(proc.EnvInt("PEER_PG_CONNS", 0)), "-database", fmt.Sprintf("peer_run%02d", run), "-sandbox", sbURL,
		"-consents", fmt.Sprintf("urn:peer:run%02d-river-", run), "-jobs", strconv.Itoa(due), "-workers", strconv.Itoa(workers),
		"-date", ref.String(), "-amount", "9990", "-timeout", "5m")
	cmd.Args = append(cmd.Args, strings.Fields(os.Getenv("PEER_RIVER_FLAGS"))...)
	cmd.Env = append(os.Environ(), "GOGC="+strconv.Itoa(riverGC))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The sandbox's CPU over the River process's whole life: the sandbox serves
	// nothing while the jobs are inserted, so this is its share per job.
	sb0 := proc.CPU(sandboxPid)
	require.NoError(t, cmd.Run(), "river run %d: %s", run, stderr.String())
	sbPer := float64((proc.CPU(sandboxPid) - sb0).Microseconds()) / float64(max(due, 1))
	var res riverResult
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), "river run %d: %s", run, stdout.String())
	require.Equal(t, due, res.Completed, "river run %d", run)
	require.Equal(t, "on", res.Fsync)
	require.Equal(t, "on", res.SynchronousCommit)
	return res.JobsPerSecond, fmt.Sprintf("%d jobs in %.3fs: %.0f jobs/s (%d failed runs; %d inserted in %.3fs, not timed; River %s, FetchCooldown %s, FetchPollInterval %s, pool of %d connections); CPU per item: the sandbox %.0f µs",
		res.Completed, res.Seconds, res.JobsPerSecond, res.FailedAttempts, res.Jobs, res.InsertSeconds, res.River, res.FetchCooldown, res.FetchPollInterval, res.PoolMaxConns, sbPer)
}

// boltBatchRate is bbolt's group commit alone: writers goroutines each putting a
// small value with DB.Batch in a loop for d, on a fresh file with fsync on.
func boltBatchRate(t *testing.T, path string, writers int, d time.Duration) float64 {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{FreelistType: bbolt.FreelistMapType})
	require.NoError(t, err)
	defer db.Close()
	db.MaxBatchDelay = 2 * time.Millisecond // as storage/bolt sets it
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("b"))
		return err
	}))
	value := bytes.Repeat([]byte("v"), 150) // about a SUBMITTED attempt's record
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				k := binary.BigEndian.AppendUint64(nil, uint64(n.Add(1)))
				if err := db.Batch(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put(k, value) }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// fdatasyncRate is how many write+fdatasync pairs one writer makes per second.
func fdatasyncRate(t *testing.T, path string, d time.Duration) float64 {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	defer f.Close()
	block := bytes.Repeat([]byte{1}, 4096)
	_, err = f.WriteAt(block, 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		block[0]++
		_, err := f.WriteAt(block, 0)
		require.NoError(t, err)
		require.NoError(t, syscall.Fdatasync(int(f.Fd())))
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// trivialPostRate is loopback HTTP alone: callers goroutines POSTing a body the size
// of a CreatePayment request to a handler that answers {} (keep-alive connections).
func trivialPostRate(t *testing.T, callers int, d time.Duration) float64 {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: callers, MaxIdleConnsPerHost: callers}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	body := []byte(`{"clientRequestId":"billingd-88d4a59b13b8ce9a-13-0","date":"2026-12-04","amount":"99.90","currency":"BRL"}`)
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				resp, err := client.Post(srv.URL+"/payments", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// sandboxPostRate is what the sandbox process accepts: callers goroutines sending
// CreatePayment for cs (one payment each) through a klavi.Client, storing nothing.
func sandboxPostRate(t *testing.T, sbURL string, cs []*consent.Consent, callers int, ref cycle.Date) float64 {
	kc, err := klavi.New(klaviConfig(sbURL), klavi.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	ctx := context.Background()
	// The token is bought before the timing, as the runs' clients hold one.
	_, err = kc.GetConsent(ctx, cs[0].ID)
	require.NoError(t, err)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cs) {
					return
				}
				_, err := kc.CreatePayment(ctx, cs[i].ID, &klavi.CreatePaymentRequest{
					ClientRequestID: fmt.Sprintf("ceiling-%06d-0-0", i), Date: ref, Amount: 99_90, Currency: klavi.Currency,
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(len(cs)) / time.Since(start).Seconds()
}

// postgresBin returns the bin directory of Debian's PostgreSQL (the newest major
// version installed), installing the postgresql package first when there is none
// and the test runs as root; it skips the test when it cannot.
func postgresBin(t *testing.T) string {
	find := func() string {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		slices.SortFunc(found, func(a, b string) int { return majorOf(a) - majorOf(b) })
		if len(found) == 0 {
			return ""
		}
		return filepath.Dir(found[len(found)-1])
	}
	if bin := find(); bin != "" {
		return bin
	}
	if os.Geteuid() != 0 {
		t.Skip("bench-peer: PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb) and this is not root: apt-get install postgresql, then run it again")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("bench-peer: PostgreSQL is not installed and there is no apt-get to install it (Debian's postgresql package is expected)")
	}
	install := func() ([]byte, error) {
		cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "postgresql")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	report("PostgreSQL is not installed: apt-get install -y postgresql")
	out, err := install()
	if err != nil {
		report("apt-get install failed (%v); apt-get update, then again", err)
		if upd, uerr := exec.Command("apt-get", "update").CombinedOutput(); uerr != nil {
			t.Skipf("bench-peer: PostgreSQL could not be installed: apt-get update: %v\n%s", uerr, tail(upd))
		}
		out, err = install()
	}
	if bin := find(); err != nil || bin == "" {
		t.Skipf("bench-peer: PostgreSQL could not be installed: apt-get install postgresql: %v\n%s", err, tail(out))
	}
	return find()
}

func majorOf(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

func tail(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}

// workDir is a fresh directory for the whole run: the PostgreSQL cluster, the bbolt
// files, the binaries and logs. It can be traversed by the postgres user (the
// cluster's own directory is that user's, mode 0700).
func workDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "billingd-peer-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o711))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// postgres is a cluster started for the run.
type postgres struct {
	bin, data, dsn, version string
	asUser                  []string // the command prefix that runs a program as the cluster's owner
}

// run runs a PostgreSQL program as the cluster's owner.
func (p *postgres) run(name string, args ...string) ([]byte, error) {
	argv := append(slices.Clone(p.asUser), append([]string{filepath.Join(p.bin, name)}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	return cmd.CombinedOutput()
}

// setting reads a server setting with psql.
func (p *postgres) setting(t *testing.T, name string) string {
	out, err := p.run("psql", "-X", "-A", "-t", "-d", p.dsn, "-c", "SHOW "+name)
	require.NoError(t, err, "psql: %s", out)
	return strings.TrimSpace(string(out))
}

// startPostgres creates a cluster under dir and starts it on 127.0.0.1 at a free
// port, with its socket in its own directory; it is stopped when the test ends.
// PostgreSQL refuses to run as root: as root, every program runs as the postgres
// user the Debian package creates.
func startPostgres(t *testing.T, bin, dir string) *postgres {
	p := &postgres{bin: bin}
	root := filepath.Join(dir, "pg")
	require.NoError(t, os.Mkdir(root, 0o700))
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("bench-peer: running as root and there is no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, os.Chown(root, uid, gid))
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			runuser, err = exec.LookPath("setpriv")
			require.NoError(t, err, "runuser or setpriv is needed to run PostgreSQL as postgres")
			p.asUser = []string{runuser, "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--"}
		} else {
			p.asUser = []string{runuser, "-u", "postgres", "--"}
		}
	}
	p.data = filepath.Join(root, "data")
	if out, err := p.run("initdb", "-D", p.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	host, port, err := net.SplitHostPort(proc.FreePort(t))
	require.NoError(t, err)
	// Durable, as PostgreSQL ships: stated so that nothing in the environment changes it.
	opts := strings.Join([]string{"-c listen_addresses=" + host, "-c port=" + port, "-c unix_socket_directories=" + root,
		"-c fsync=on", "-c synchronous_commit=on", "-c full_page_writes=on"}, " ")
	if out, err := p.run("pg_ctl", "-D", p.data, "-l", filepath.Join(root, "server.log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(root, "server.log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() {
		if out, err := p.run("pg_ctl", "-D", p.data, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
			t.Errorf("pg_ctl stop: %v\n%s", err, out)
		}
	})
	p.dsn = fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", net.JoinHostPort(host, port))
	p.version = "PostgreSQL " + p.setting(t, "server_version")
	return p
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
