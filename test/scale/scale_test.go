//go:build scale

// Package scale is the scale harness of docs/BENCHMARKS.md: a store of a million
// consents of which ten thousand are due, then billingd run against a sandbox process
// on loopback with durable writes. It reports, never asserts, wall-clock figures.
//
//	go test -tags scale -v -count=1 -timeout 60m ./test/scale/
//
// SCALE_CONSENTS (default 1000000) and SCALE_DUE (default 10000) size it;
// SCALE_DIR keeps the generated database between runs (it is reused when present);
// SCALE_WORKERS sets scheduler.workers (default 64); SCALE_COLD=1 drops the page cache
// before the daemon starts (root only), as after a reboot.
package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/test/proc"
)

const token = "scale-harness-admin-token-0123456789"

func report(t *testing.T, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	t.Log(line)
	fmt.Println("SCALE:", line)
}

// build writes a database of n consents, the first due of them with a submission due
// today (their cycle falls in 3 days, lead 3, submit time 00:00) and the rest spread
// over the coming year.
func build(t *testing.T, path string, n, due int, today cycle.Date) []*consent.Consent {
	db, err := bolt.Open(path, bolt.Options{NoSync: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	ctx := context.Background()
	sch, err := scheduler.New(scheduler.Config{Policy: scheduler.Policy{LeadDays: 3, RetryMode: consent.Off}}, db, nil)
	require.NoError(t, err)
	var seed []*consent.Consent
	started := time.Now()
	const chunk = 20000
	for from := 0; from < n; from += chunk {
		var cs []*consent.Consent
		for i := from; i < min(from+chunk, n); i++ {
			ref := today.AddDays(3)
			if i >= due {
				ref = today.AddDays(4 + i%360)
			}
			c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(fmt.Sprintf("urn:scale:consent-%07d", i), cycle.Monthly, ref, klavi.Cents(99_90))}
			c.Billing.RetryMode = consent.Off
			cs = append(cs, c)
			if i < due {
				seed = append(seed, c)
			}
		}
		_, _, err := sch.AddConsents(ctx, cs, today)
		require.NoError(t, err)
	}
	st, err := db.Stats(ctx)
	require.NoError(t, err)
	report(t, "built %d consents (%d due) in %s: file %d MiB", n, due, time.Since(started).Round(time.Second), st.SizeBytes>>20)
	return seed
}

func TestScale(t *testing.T) {
	n, due := proc.EnvInt("SCALE_CONSENTS", 1_000_000), proc.EnvInt("SCALE_DUE", 10_000)
	dir := os.Getenv("SCALE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	today := cycle.DateOf(time.Now())
	master := filepath.Join(dir, fmt.Sprintf("master-%d-%d-%s.db", n, due, today))
	seedFile := master + ".due.json"
	if _, err := os.Stat(master); err != nil {
		seed := build(t, master, n, due, today)
		require.NoError(t, exec.Command("sync").Run()) // the build wrote without fsync
		raw, err := json.Marshal(seed)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(seedFile, raw, 0o600))
	}
	report(t, "machine: %d CPUs, %s", runtime.NumCPU(), runtime.Version())

	// 1. The due scan's selection: read the 10k due entries out of 1M consents.
	ctx := context.Background()
	db, err := bolt.Open(master, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	now := time.Now()
	var times []time.Duration
	for i := 0; i < 7; i++ {
		start := time.Now()
		items, err := db.DueBefore(ctx, now, due+1)
		times = append(times, time.Since(start))
		require.NoError(t, err)
		require.Len(t, items, due)
	}
	// 1b. The structural check `billingd run` makes before its first submission
	// (storage.verify_on_start), and db check's full check (records decoded too).
	vstart := time.Now()
	require.NoError(t, db.Verify(ctx))
	verify := time.Since(vstart)
	cstart := time.Now()
	require.NoError(t, db.Check(ctx))
	check := time.Since(cstart)
	st, err := db.Stats(ctx)
	require.NoError(t, err)
	report(t, "verify on start (structure, every page) of %d consents, %d MiB file: %s; db check (structure and records): %s",
		n, st.SizeBytes>>20, verify.Round(time.Millisecond), check.Round(time.Millisecond))
	require.NoError(t, db.Close())
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	report(t, "due scan selection: %d due among %d consents in %s median (min %s, max %s, 7 runs)",
		due, n, times[3].Round(10*time.Microsecond), times[0].Round(10*time.Microsecond), times[6].Round(10*time.Microsecond))

	// 2. and 3. The daemon on a copy of that store: start-up, memory, submissions/s.
	work := filepath.Join(dir, "work.db")
	require.NoError(t, exec.Command("cp", master, work).Run())
	// Write the copy out now, so the daemon's first commit does not pay for it.
	require.NoError(t, exec.Command("sync", work).Run())
	cache := "warm page cache"
	if os.Getenv("SCALE_COLD") != "" {
		// As after a reboot: nothing of the database in memory (needs root).
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err == nil {
			cache = "cold page cache"
		}
	}
	defer os.Remove(work)
	defer os.Remove(work + ".lock")
	bin := proc.Build(t, dir)

	sbAddr := proc.FreePort(t)
	sb := exec.Command(bin, "sandbox", "--addr", sbAddr, "--access-key", "ak", "--secret-key", "sk", "--consents", seedFile)
	sbLog, _ := os.Create(filepath.Join(dir, "sandbox.log"))
	sb.Stdout, sb.Stderr = sbLog, sbLog
	require.NoError(t, sb.Start())
	defer func() { _ = sb.Process.Kill(); _ = sb.Wait() }()
	proc.WaitHTTP(t, "http://"+sbAddr+"/_sandbox/stats", 60*time.Second)

	apiAddr := proc.FreePort(t)
	cfg := filepath.Join(dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
billing:
  lead_days: 3
  submit_time: "00:00"
  retry_mode: "off"
storage:
  path: %s
klavi:
  base_url: http://%s
  access_key: ak
  secret_key: sk
  rate_limit: 100000
  rate_burst: 1000
scheduler:
  workers: %d
http:
  listen: %s
  admin_token: %s
log:
  format: json
  level: warn
`, work, sbAddr, proc.EnvInt("SCALE_WORKERS", 64), apiAddr, token)), 0o600))
	logf, _ := os.Create(filepath.Join(dir, "billingd.log"))
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	proc.WaitHTTP(t, "http://"+apiAddr+"/readyz", 60*time.Second)
	startup := time.Since(start)
	rssReady := procStatus(t, cmd.Process.Pid, "VmRSS")
	report(t, "start-up to /readyz with %d consents (%s): %s; resident memory when ready %d MiB", n, cache, startup.Round(time.Millisecond), rssReady>>10)

	// The catch-up scan at start submits the due consents; count them on billingd's
	// side, in its /metrics (billingd_payments_submitted_total: originals Klavi
	// accepted, counted once their SUBMITTED record is written). The sandbox is read
	// once, after the timing.
	// Only that family is encoded (name[]); every collector still runs at a scrape.
	metricsURL := "http://" + apiAddr + "/metrics?name[]=billingd_payments_submitted_total"
	var (
		last    time.Time
		scrapes int
		scraped time.Duration
	)
	deadline := time.Now().Add(10 * time.Minute)
	for {
		sstart := time.Now()
		got := submitted(t, metricsURL)
		scraped += time.Since(sstart)
		scrapes++
		if got >= due {
			last = time.Now()
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d submitted", got, due)
		time.Sleep(20 * time.Millisecond)
	}
	burst := last.Sub(start) - startup
	report(t, "end-to-end: %d submissions (SUBMITTING synced, POST, SUBMITTED synced) in %s after ready: %.0f submissions/s (counted in billingd's /metrics: %d scrapes, %s each on average)",
		due, burst.Round(time.Millisecond), float64(due)/burst.Seconds(), scrapes, (scraped / time.Duration(scrapes)).Round(10*time.Microsecond))
	// What one scrape costs the daemon once it is idle (the figure above is under load).
	var idle []time.Duration
	for i := 0; i < 9; i++ {
		sstart := time.Now()
		submitted(t, metricsURL)
		idle = append(idle, time.Since(sstart))
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i] < idle[j] })
	report(t, "one /metrics scrape of the idle daemon: %s median of 9", idle[4].Round(10*time.Microsecond))
	var sbStats sandbox.Stats
	proc.Do(t, "GET", "http://"+sbAddr+"/_sandbox/stats", "", &sbStats)
	require.Equal(t, due, sbStats.Accepted[sandbox.KindOriginal], "payments the sandbox accepted")
	report(t, "peak resident memory %d MiB, now %d MiB", procStatus(t, cmd.Process.Pid, "VmHWM")>>10, procStatus(t, cmd.Process.Pid, "VmRSS")>>10)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
}

// submitted reads billingd_payments_submitted_total, summed over its labels, from
// the daemon's /metrics at url.
func submitted(t *testing.T, url string) int {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", url)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "GET %s", url)
	n := 0.0
	if f := families["billingd_payments_submitted_total"]; f != nil {
		for _, m := range f.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return int(n)
}

// procStatus reads a kB figure of /proc/PID/status.
func procStatus(t *testing.T, pid int, key string) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, key+":") {
			f := strings.Fields(line)
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}
