//go:build scale

package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/test/proc"
)

// TestHistory measures what a year of history costs the submissions: the same
// consents, the same due cycles, in a store without history and in one where every
// consent already has SCALE_HISTORY_MONTHS (12) monthly cycles billed and settled.
//
//	go test -tags scale -run '^TestHistory$' -v -count=1 -timeout 90m ./test/scale/
//	make bench-history
//
// Two master bbolt files are built once (kept in SCALE_DIR when set, and reused
// while they exist; a new layout needs a new SCALE_DIR) with SCALE_HISTORY_CONSENTS
// (100,000) monthly consents, SCALE_HISTORY_DUE (10,000) of them with a submission
// due now and the rest 4 to 28 days ahead:
//   - none: the consents added today (the scheduler's AddConsents, billed from
//     today), their "added" events published to the feed;
//   - history: the same consents added a year earlier and billed since: for every
//     month, for all consents, the changes the scheduler writes (due.go's send,
//     poll.go's applyStatus), each applied in a commit of its own by 64 concurrent
//     writers sharing group commits, as the daemon's workers do: the SUBMITTING
//     attempt; SUBMITTED with its payment id, poll entry and "submitted" event, the
//     cursor moved on to the next cycle and its due entry; COMPLETED with its
//     "completed" event and the poll entry gone. After each month the outbox is
//     published to the feed a thousand events at a time, as the daemon's
//     dispatcher does.
//
// Written a commit at a time, a store's buckets end up spread over the whole file
// by copy-on-write (bbolt puts a rewritten page wherever a page is free), the live
// ones among the history, and it keeps some free pages, whose list every commit
// rewrites. That is what a year of the daemon leaves too. Settled attempts and older
// events are drained to the archive file (storage/bolt/archivefile.go) as the
// daemon drains them, so the database file holds what can still change. Each master
// (the database file and its archive file) is also compacted (bolt.Compact, what
// `billingd db compact` does): every bucket in contiguous pages, no free page.
// SCALE_HISTORY_AS_BUILT=1 runs on the stores as written; without it, on the
// compacted copies.
//
// Each run copies a master (synced), starts a fresh sandbox (an httptest.Server in
// this process, holding the due consents) and re-executes this test binary as a
// child process, which opens the copy with durable writes and runs the real
// scheduler (SCALE_HISTORY_WORKERS, 64) against the sandbox through klavi.Client: a
// first scan while nothing is due yet (the start-up re-plan reads every consent),
// then the timed scan that submits the due cycles (SUBMITTING synced, POST,
// SUBMITTED synced). The child reports the submissions/s and its own memory from
// /proc/self/status: VmHWM over its whole life (open, re-plan, scan), and the peak
// during the timed scan alone (VmHWM reset through /proc/self/clear_refs before it).
// Runs are interleaved none, history, history, none (SCALE_HISTORY_ROUNDS times),
// each SCALE_HISTORY_SETTLE seconds (15) after its copy is synced, and each line
// says how long an fdatasync took just before it (the machine's disk is shared).
// SCALE_HISTORY_CACHE=cold drops each copy from the page cache before its run (the
// state after a reboot); the default, copied, leaves it as cp did: on Linux 6.18
// with ext4 in folios of up to 2 MiB, each mapped whole by the first touch of any
// of its pages, so peak RSS then counts the 2 MiB regions the child touches.
// SCALE_HISTORY_MAPPED_BUDGET_MIB sets the measured process's
// storage.mapped_budget_mib (default 0, no bound).
// SCALE_HISTORY_COMPACT_AT_START sets the measured process's
// storage.compact_at_start (auto, the daemon's default; never; always): with auto,
// a master past 64 MiB that was never compacted is compacted as the child opens it.
// SCALE_HISTORY_VERIFY=0 skips the Verify the child runs once open, as
// storage.verify_on_start (the daemon's default) does.
// SCALE_HISTORY_RESIDENT=1 reports, after each run, the MiB of the database file
// resident in the child's mapping by the bucket that owns each page.
// SCALE_HISTORY_CPUPROFILE=FILE writes the CPU profile of the timed scans to
// FILE.none and FILE.history (the last run of each).
func TestHistory(t *testing.T) {
	if os.Getenv("SCALE_HISTORY_CHILD") != "" {
		historyChild(t)
		return
	}
	n, due := proc.EnvInt("SCALE_HISTORY_CONSENTS", 100_000), proc.EnvInt("SCALE_HISTORY_DUE", 10_000)
	months := proc.EnvInt("SCALE_HISTORY_MONTHS", 12)
	workers := proc.EnvInt("SCALE_HISTORY_WORKERS", 64)
	rounds := proc.EnvInt("SCALE_HISTORY_ROUNDS", 1)
	asBuilt := os.Getenv("SCALE_HISTORY_AS_BUILT") != ""
	settle := time.Duration(proc.EnvInt("SCALE_HISTORY_SETTLE", 15)) * time.Second
	cold := false
	switch c := os.Getenv("SCALE_HISTORY_CACHE"); c {
	case "", "copied":
	case "cold":
		cold = true
	default:
		t.Fatalf("SCALE_HISTORY_CACHE is %q: it is copied (the default) or cold", c)
	}
	dir := os.Getenv("SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	now := cycle.DateOf(time.Now()).At(9, 0)
	if d := os.Getenv("SCALE_HISTORY_DATE"); d != "" { // reuse stores built on another day
		day, err := cycle.ParseDate(d)
		require.NoError(t, err, "SCALE_HISTORY_DATE must be a date, YYYY-MM-DD")
		now = day.At(9, 0)
	}
	cache := "each copy as cp left it in the page cache"
	if cold {
		cache = "each copy dropped from the page cache before its run"
	}
	report(t, "history: machine %d CPUs, %s; %d consents, %d due, %d months of history, workers %d; %s",
		runtime.NumCPU(), runtime.Version(), n, due, months, workers, cache)

	masters := map[string]string{}
	var seed []*klavi.CreatedConsent
	for _, kind := range []string{"none", "history"} {
		layout := "copied"
		if asBuilt {
			layout = "as-built"
		}
		// "af": stores with an archive file (a store of an earlier layout would be
		// drained during the runs).
		path := filepath.Join(dir, fmt.Sprintf("history-af-%s-%d-%d-%d-%s-%s.db", kind, months, n, due, cycle.DateOf(now), layout))
		if _, err := os.Stat(path); err != nil {
			h := 0
			if kind == "history" {
				h = months
			}
			built := filepath.Join(dir, fmt.Sprintf("history-af-%s-%d-%d-%d-%s-as-built.db", kind, months, n, due, cycle.DateOf(now)))
			if _, err := os.Stat(built); err != nil {
				buildHistory(t, built+".tmp", n, due, h, months, now)
				require.NoError(t, exec.Command("sync").Run()) // built without fsync
				renameStore(t, built+".tmp", built)
			}
			if !asBuilt {
				compactStore(t, path+".tmp", built)
				require.NoError(t, exec.Command("sync").Run())
				renameStore(t, path+".tmp", path)
			}
		}
		masters[kind] = path
	}
	for i := 0; i < due; i++ {
		seed = append(seed, historyConsent(i, due, months, now))
	}

	type result struct {
		kind string
		historyRun
	}
	var results []result
	order := []string{"none", "history", "history", "none"}
	for r := 0; r < rounds; r++ {
		for _, kind := range order {
			work := filepath.Join(dir, "history-work.db")
			require.NoError(t, exec.Command("cp", masters[kind], work).Run())
			require.NoError(t, exec.Command("cp", bolt.ArchivePath(masters[kind]), bolt.ArchivePath(work)).Run())
			require.NoError(t, exec.Command("sync", work, bolt.ArchivePath(work)).Run())
			if cold {
				dropCache(t, work, bolt.ArchivePath(work))
			}
			// Let the disk absorb the copy's writes before the timed fsyncs begin.
			time.Sleep(settle)
			st, err := os.Stat(work)
			require.NoError(t, err)
			ast, err := os.Stat(bolt.ArchivePath(work))
			require.NoError(t, err)
			probe := fsyncProbe(t, dir)
			run := runHistoryChild(t, kind, work, seed, due, workers, now)
			require.NoError(t, os.Remove(work))
			require.NoError(t, os.Remove(bolt.ArchivePath(work)))
			_ = os.Remove(work + ".lock")
			results = append(results, result{kind, run})
			if run.Resident != "" {
				report(t, "history: run %d %s: resident after the scan, MiB by bucket: %s", len(results), kind, run.Resident)
			}
			report(t, "history: run %d %-7s (file %d MiB, archive file %d MiB; fsync %s before it): %d submissions in %s: %.0f submissions/s; peak RSS %d MiB (%d MiB before the scan, %d MiB at its peak: +%d MiB, %d minor faults; at the end %d MiB of the file, %d MiB anonymous); open %s, verify %s (peak RSS %d MiB once open and verified), re-plan %s; %d records drained to the archive file; load average %s",
				len(results), kind, st.Size()>>20, ast.Size()>>20, probe.Round(10*time.Microsecond), due, run.Took.Round(time.Millisecond), run.Rate, run.PeakKB>>10, run.ReadyKB>>10, run.ScanPeakKB>>10,
				(run.ScanPeakKB-run.ReadyKB)>>10, run.Faults, run.FileKB>>10, run.AnonKB>>10, run.Open.Round(time.Millisecond), run.Verify.Round(time.Millisecond), run.OpenPeakKB>>10, run.Replan.Round(time.Millisecond), run.Drained, proc.LoadAvg())
		}
	}
	pick := func(kind string, f func(historyRun) float64) []float64 {
		var xs []float64
		for _, r := range results {
			if r.kind == kind {
				xs = append(xs, f(r.historyRun))
			}
		}
		return xs
	}
	rate := func(r historyRun) float64 { return r.Rate }
	peak := func(r historyRun) float64 { return float64(r.PeakKB) / 1024 }
	scanPeak := func(r historyRun) float64 { return float64(r.ScanPeakKB) / 1024 }
	openPeak := func(r historyRun) float64 { return float64(r.OpenPeakKB) / 1024 }
	growth := func(r historyRun) float64 { return float64(r.ScanPeakKB-r.ReadyKB) / 1024 }
	faults := func(r historyRun) float64 { return float64(r.Faults) }
	for _, m := range []struct {
		name string
		f    func(historyRun) float64
	}{{"submissions/s", rate}, {"peak RSS MiB", peak}, {"peak RSS during the scan MiB", scanPeak}, {"peak RSS once open MiB", openPeak},
		{"RSS growth during the scan MiB", growth}, {"minor faults during the scan", faults}} {
		a, b := pick("none", m.f), pick("history", m.f)
		report(t, "history summary: %s: none %.0f (runs %s), history %.0f (runs %s); history/none %.3f",
			m.name, proc.Median(a), proc.JoinRates(a), proc.Median(b), proc.JoinRates(b), proc.Median(b)/proc.Median(a))
	}
}

// historyConsent is consent i of the harness: a monthly consent whose cycle
// `months` is due in 3 days (submission due now, lead 3) for the first due
// consents, and 4 to 28 days ahead for the others.
func historyConsent(i, due, months int, now time.Time) *klavi.CreatedConsent {
	next := cycle.DateOf(now).AddDays(3)
	if i >= due {
		next = cycle.DateOf(now).AddDays(4 + i%25)
	}
	return sandbox.SampleConsent(fmt.Sprintf("urn:scale:h-%07d", i), cycle.Monthly, next.AddMonthsClamped(-months), klavi.Cents(99_90))
}

// buildHistory writes a master store of n consents with `history` months of billed
// history (0: none), without fsync.
func buildHistory(t *testing.T, path string, n, due, history, months int, now time.Time) {
	_ = os.Remove(path)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := bolt.Open(path, bolt.Options{NoSync: true, Logger: quiet})
	require.NoError(t, err)
	defer db.Close()
	pol := scheduler.Policy{LeadDays: 3, RetryMode: consent.Off}
	today := cycle.DateOf(now)
	// Added a year earlier (with history) or today, billed from then.
	start := today.AddDays(3).AddMonthsClamped(-history).AddDays(-30)
	if history == 0 {
		start = today
	}
	clk := clock.NewFake(start.At(8, 0))
	sch, err := scheduler.New(scheduler.Config{Policy: pol}, db, nil, scheduler.WithClock(clk), scheduler.WithLogger(quiet))
	require.NoError(t, err)
	began := time.Now()
	const chunk = 5000
	ids := make([]string, 0, n)
	for from := 0; from < n; from += chunk {
		var cs []*consent.Consent
		for i := from; i < min(from+chunk, n); i++ {
			c := &consent.Consent{CreatedConsent: *historyConsent(i, due, months, now)}
			c.Billing.RetryMode = consent.Off
			cs = append(cs, c)
			ids = append(ids, c.ID)
		}
		added, _, err := sch.AddConsents(ctx, cs, start)
		require.NoError(t, err)
		require.Equal(t, len(cs), added)
	}
	publishAll(t, db)
	// Each month's cycles as the daemon writes them: a commit per change, 64 writers
	// sharing group commits, then the outbox published a thousand events at a time.
	var (
		last time.Time
		mu   sync.Mutex
	)
	for m := 0; m < history; m++ {
		work := make(chan string)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range work {
					rec, err := db.GetConsent(ctx, id)
					if err != nil {
						errs <- err
						return
					}
					chs := billedCycle(pol, rec)
					for _, ch := range chs {
						if err := db.Apply(ctx, ch); err != nil {
							errs <- err
							return
						}
					}
					mu.Lock()
					if at := chs[len(chs)-1].Attempts[0].UpdatedAt; at.After(last) {
						last = at
					}
					mu.Unlock()
				}
			}()
		}
		for _, id := range ids {
			work <- id
		}
		close(work)
		wg.Wait()
		close(errs)
		require.NoError(t, <-errs)
		publishAll(t, db)
	}
	if !last.IsZero() {
		// The latest instant the scheduler acted on: its last poll.
		require.NoError(t, db.Apply(ctx, &storage.Change{HighWater: last}))
	}
	items, err := db.DueBefore(ctx, now, due+1)
	require.NoError(t, err)
	require.Equal(t, due, len(items), "due now")
	moved, err := db.DrainArchive()
	require.NoError(t, err)
	st, err := db.Stats(ctx)
	require.NoError(t, err)
	report(t, "history: drained the last %d archived records;", moved)
	report(t, "history: built %s (%d consents, %d months of history) in %s: file %d MiB",
		filepath.Base(path), n, history, time.Since(began).Round(time.Second), st.SizeBytes>>20)
}

// dropCache drops the files' pages from the page cache (POSIX_FADV_DONTNEED after
// they are synced), so that a run starts as after a reboot: every page the child
// touches is read from the disk, one page at a time (bbolt maps the file
// MADV_RANDOM), instead of mapped from the folios `cp` left in the cache, which
// on Linux 6.18 and ext4 are up to 2 MiB each and are mapped whole at a touch.
func dropCache(t *testing.T, paths ...string) {
	for _, p := range paths {
		f, err := os.Open(p)
		require.NoError(t, err)
		require.NoError(t, unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED), "fadvise %s", p)
		require.NoError(t, f.Close())
	}
}

// fsyncProbe is the median time of 20 writes of 4 KiB to a file in dir, each
// followed by an fdatasync: how busy the shared disk is before a run.
func fsyncProbe(t *testing.T, dir string) time.Duration {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	require.NoError(t, err)
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var times []time.Duration
	for i := range 20 {
		start := time.Now()
		_, err := f.WriteAt(buf, int64(i)*4096)
		require.NoError(t, err)
		require.NoError(t, syscall.Fdatasync(int(f.Fd())))
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	return times[len(times)/2]
}

// compactStore compacts the store at from (its database file and archive file)
// into to, as `billingd db compact` does: every bucket in contiguous pages, no free
// page.
func compactStore(t *testing.T, to, from string) {
	_ = os.Remove(to)
	_ = os.Remove(bolt.ArchivePath(to))
	began := time.Now()
	before, after, err := bolt.Compact(to, from)
	require.NoError(t, err)
	report(t, "history: compacted %s (%d MiB) into a new pair of files (%d MiB) in %s", filepath.Base(from), before>>20, after>>20, time.Since(began).Round(time.Second))
}

// renameStore renames a store's database file and archive file.
func renameStore(t *testing.T, from, to string) {
	require.NoError(t, os.Rename(bolt.ArchivePath(from), bolt.ArchivePath(to)))
	require.NoError(t, os.Rename(from, to))
	_ = os.Remove(from + ".lock")
}

// billedCycle returns the changes the scheduler writes to bill the next cycle of
// rec and see it settle: SUBMITTING; SUBMITTED with the cursor moved on; COMPLETED
// at the first status poll a day later. Each attempt record carries the version
// the store holds when it is applied in turn.
func billedCycle(pol scheduler.Policy, rec *storage.ConsentRecord) []*storage.Change {
	c := rec.Consent
	sched := pol.Schedule(c)
	k := rec.NextCycle
	d := sched.Due(k)
	at := d.AddDays(-pol.LeadDays).At(0, 0).Add(time.Duration(len(c.ID)%60) * time.Second)
	key := storage.AttemptKey{ConsentID: c.ID, Cycle: k}
	submitting := &storage.Attempt{AttemptKey: key, State: storage.AttemptSubmitting, ClientRequestID: consent.ClientRequestID(c.ID, k, 0),
		Date: d, Amount: 99_90, Mode: consent.Off, Sends: 1, CreatedAt: at, UpdatedAt: at}
	submitted := *submitting
	submitted.Version = 1
	submitted.State, submitted.PaymentID, submitted.Status, submitted.SubmittedAt = storage.AttemptSubmitted,
		fmt.Sprintf("urn:sandbox:payment-%s-%03d", c.ID[len(c.ID)-7:], k), klavi.PaymentScheduled, at
	submitted.NextPoll = at.Add(5 * time.Minute)
	completed := submitted
	completed.Version = 2
	done := at.Add(24 * time.Hour)
	completed.State, completed.Status, completed.Polls, completed.UpdatedAt, completed.NextPoll = storage.AttemptCompleted, klavi.PaymentCompleted, 1, done, time.Time{}

	advanced := *rec
	oldDue := rec.NextDue
	advanced.NextCycle, advanced.UpdatedAt = k+1, at
	next := sched.Due(k+1).AddDays(-pol.LeadDays).At(0, 0)
	advanced.NextDue = next
	*rec = advanced // the caller's record: Apply advances its version
	ev := func(kind scheduler.EventKind, when time.Time, a *storage.Attempt) []storage.Event {
		return []storage.Event{storage.AttemptEvent(string(kind), when, a, storage.ActorBillingd, "")}
	}
	return []*storage.Change{
		{Attempts: []*storage.Attempt{submitting}},
		{Attempts: []*storage.Attempt{&submitted}, Cursor: rec,
			DelDue:  []storage.DueItem{{At: oldDue, Key: key}},
			PutDue:  []storage.DueItem{{At: next, Key: storage.AttemptKey{ConsentID: c.ID, Cycle: k + 1}}},
			PutPoll: []storage.PollItem{{At: submitted.NextPoll, Key: key}},
			Events:  ev(scheduler.EventSubmitted, at, &submitted)},
		{Attempts: []*storage.Attempt{&completed}, DelPoll: []storage.PollItem{{At: submitted.NextPoll, Key: key}},
			Events: ev(scheduler.EventCompleted, done, &completed)},
	}
}

// publishAll moves the outbox into the feed, as the daemon's dispatcher does.
func publishAll(t *testing.T, db storage.Store) {
	for {
		n, err := db.Publish(context.Background(), kv.Fence{}, 1000)
		require.NoError(t, err)
		if n == 0 {
			return
		}
	}
}

// historyRun is what the child reports.
type historyRun struct {
	Took       time.Duration `json:"took"`
	Rate       float64       `json:"rate"`
	Replan     time.Duration `json:"replan"`
	ReadyKB    int           `json:"readyKB"`    // VmRSS before the timed scan
	ScanPeakKB int           `json:"scanPeakKB"` // VmHWM during the timed scan
	PeakKB     int           `json:"peakKB"`     // VmHWM over the child's life
	FileKB     int           `json:"fileKB"`     // RssFile at the end (pages of the mapped file)
	AnonKB     int           `json:"anonKB"`     // RssAnon at the end
	Faults     int64         `json:"faults"`     // minor page faults during the timed scan
	Drained    int64         `json:"drained"`    // records drained to the archive file during the child's life
	Open       time.Duration `json:"open"`       // bolt.Open, a compaction at start included
	Verify     time.Duration `json:"verify"`     // Verify after the open (SCALE_HISTORY_VERIFY)
	OpenPeakKB int           `json:"openPeakKB"` // VmHWM once open and verified
	Resident   string        `json:"resident"`   // SCALE_HISTORY_RESIDENT: MiB of the database file resident after the scan, by bucket
}

const historyResult = "HISTORY-RESULT "

// runHistoryChild runs one measured scan in a child process against a fresh
// sandbox in this one.
func runHistoryChild(t *testing.T, kind, path string, seed []*klavi.CreatedConsent, due, workers int, now time.Time) historyRun {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sb := sandbox.New(sandbox.Options{Clock: clock.NewFake(now), AccessKey: "ak", SecretKey: "sk", Logger: quiet})
	require.NoError(t, sb.AddConsent(seed...))
	srv := httptest.NewServer(sb)
	defer srv.Close()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHistory$", "-test.count", "1", "-test.timeout", "30m")
	cmd.Env = append(os.Environ(), "SCALE_HISTORY_CHILD=1", "SCALE_HISTORY_DB="+path, "SCALE_HISTORY_URL="+srv.URL,
		"SCALE_HISTORY_NOW="+strconv.FormatInt(now.UnixNano(), 10), "SCALE_HISTORY_DUE="+strconv.Itoa(due),
		"SCALE_HISTORY_WORKERS="+strconv.Itoa(workers))
	if p := os.Getenv("SCALE_HISTORY_CPUPROFILE"); p != "" {
		cmd.Env = append(cmd.Env, "SCALE_HISTORY_CPUPROFILE="+p+"."+kind)
	}
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	var (
		run   historyRun
		found bool
		lines []string
	)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, historyResult); ok {
			require.NoError(t, json.Unmarshal([]byte(rest), &run))
			found = true
		} else {
			lines = append(lines, line)
		}
	}
	require.NoError(t, cmd.Wait(), "child:\n%s", strings.Join(lines, "\n"))
	require.True(t, found, "child:\n%s", strings.Join(lines, "\n"))
	require.Equal(t, due, sb.Stats().Accepted[sandbox.KindOriginal], "payments the sandbox accepted")
	return run
}

// historyChild is the child's side: open the store durably, re-plan while nothing
// is due, then time the scan that submits the due cycles.
func historyChild(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ns, err := strconv.ParseInt(os.Getenv("SCALE_HISTORY_NOW"), 10, 64)
	require.NoError(t, err)
	now := time.Unix(0, ns)
	due, workers := proc.EnvInt("SCALE_HISTORY_DUE", 0), proc.EnvInt("SCALE_HISTORY_WORKERS", 64)
	// Before today's submit instant (00:00): nothing is due yet.
	clk := clock.NewFake(cycle.DateOf(now).At(0, 0).Add(-time.Minute))
	compact, err := bolt.ParseCompactMode(os.Getenv("SCALE_HISTORY_COMPACT_AT_START"))
	require.NoError(t, err, "SCALE_HISTORY_COMPACT_AT_START")
	opened := time.Now()
	db, err := bolt.Open(os.Getenv("SCALE_HISTORY_DB"), bolt.Options{Logger: quiet,
		MappedBudget: int64(proc.EnvInt("SCALE_HISTORY_MAPPED_BUDGET_MIB", 0)) << 20, CompactAtStart: compact})
	require.NoError(t, err)
	openTook := time.Since(opened)
	defer db.Close()
	// storage.verify_on_start, as billingd run does before its first scan.
	var verifyTook time.Duration
	if os.Getenv("SCALE_HISTORY_VERIFY") != "0" {
		vstart := time.Now()
		require.NoError(t, db.Verify(ctx))
		verifyTook = time.Since(vstart)
	}
	openedKB := statusKB(t, "VmHWM")
	var sch *scheduler.Scheduler
	hooks := klavi.Hooks{OnServerTime: func(server, local time.Time) {
		if sch != nil {
			sch.ObserveKlaviTime(server, local)
		}
	}}
	kc, err := klavi.New(klavi.Config{BaseURL: os.Getenv("SCALE_HISTORY_URL"), AccessKey: "ak", SecretKey: "sk", Timeout: 30 * time.Second,
		MaxAttempts: 3, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, RateLimit: 1e6, RateBurst: 10000},
		klavi.WithClock(clk), klavi.WithLogger(quiet), klavi.WithHooks(hooks))
	require.NoError(t, err)
	sch, err = scheduler.New(scheduler.Config{Policy: scheduler.Policy{LeadDays: 3, RetryMode: consent.Off},
		SubmitHour: 0, Workers: workers, Batch: 1000}, db, kc, scheduler.WithClock(clk), scheduler.WithLogger(quiet))
	require.NoError(t, err)

	// The start-up re-plan reads every consent; its scan has nothing due (it may
	// pause on the clock: the sandbox's is at now).
	rstart := time.Now()
	res, err := sch.Scan(ctx)
	require.NoError(t, err)
	require.Zero(t, res.Handled)
	replan := time.Since(rstart)

	clk.Set(now)
	ready := statusKB(t, "VmRSS")
	lifePeak := statusKB(t, "VmHWM")
	// Reset the peak to the current resident size (Linux ≥ 4.0).
	require.NoError(t, os.WriteFile("/proc/self/clear_refs", []byte("5"), 0o200))
	if path := os.Getenv("SCALE_HISTORY_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		require.NoError(t, err)
		require.NoError(t, pprof.StartCPUProfile(f))
		defer f.Close()
	}
	faults := minorFaults(t)
	start := time.Now()
	res, err = sch.Scan(ctx)
	took := time.Since(start)
	faults = minorFaults(t) - faults
	pprof.StopCPUProfile()
	require.NoError(t, err)
	require.Equal(t, due, res.Handled, "%+v %+v", res, sch.ClockState())
	require.Zero(t, res.Errors)
	scanPeak := statusKB(t, "VmHWM")
	resident := ""
	if os.Getenv("SCALE_HISTORY_RESIDENT") != "" {
		pages := residentPages(t, os.Getenv("SCALE_HISTORY_DB"))
		require.NoError(t, db.Close())
		resident = residentByBucket(pages, pageOwners(t, os.Getenv("SCALE_HISTORY_DB")))
	}
	out, err := json.Marshal(historyRun{Took: took, Rate: float64(due) / took.Seconds(), Replan: replan, ReadyKB: ready,
		ScanPeakKB: scanPeak, PeakKB: max(lifePeak, scanPeak), Drained: db.ArchiveDrained(), FileKB: statusKB(t, "RssFile"), AnonKB: statusKB(t, "RssAnon"), Faults: faults, Resident: resident, Open: openTook, Verify: verifyTook, OpenPeakKB: openedKB})
	require.NoError(t, err)
	fmt.Println(historyResult + string(out))
}

// minorFaults is the process's count of minor page faults so far (each maps a page
// of the file, and Linux maps the cached pages around it with it).
func minorFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return int64(ru.Minflt)
}

// statusKB reads a kB figure of /proc/self/status.
func statusKB(t *testing.T, key string) int {
	return procStatus(t, os.Getpid(), key)
}
