//go:build envfail

// Package envfail runs the real billingd binary on a machine that misleads it: a
// database file replaced while the daemon runs, truncated and damaged copies, a full
// disk, a read-only state directory, a listen address that cannot work. Each
// subtest checks the documented outcome (exit code, message, readiness, metrics)
// and, where billing runs, the sandbox's ledger: exactly one payment per cycle.
//
//	go test -tags envfail -v -count=1 -timeout 5m ./test/envfail/
//
// The full-disk and read-only subtests mount a small tmpfs and need root (CI runs as
// root); without it they are skipped with a message.
package envfail

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

const token = "envfail-test-admin-token-0123456789"

// Exit codes of docs/OPERATIONS.md.
const (
	exitFailure     = 1
	exitUsage       = 2
	exitEnvironment = 3
)

func TestEnvFail(t *testing.T) {
	dir := t.TempDir()
	bin := proc.Build(t, dir)
	t.Run("database replaced while running", func(t *testing.T) { testReplaced(t, bin) })
	t.Run("truncated and damaged copies", func(t *testing.T) { testCorrupt(t, bin) })
	t.Run("full disk", func(t *testing.T) { testFullDisk(t, bin) })
	t.Run("read-only state directory", func(t *testing.T) { testReadOnly(t, bin) })
	t.Run("missing state directory", func(t *testing.T) { testMissingDir(t, bin) })
	t.Run("bad listen port", func(t *testing.T) { testBadListen(t, bin) })
	t.Run("clock 15 days ahead of Klavi's", func(t *testing.T) { testClockAhead(t, bin) })
	t.Run("clock and Klavi both 15 days ahead: real downtime", func(t *testing.T) { testDowntime(t, bin) })
}

// world is one test's consents, sandbox and config.
type world struct {
	t        *testing.T
	bin, dir string
	db       string
	consents string
	expect   []storage.AttemptKey
	sbAddr   string
	apiAddr  string
	cfg      string
	// env is extra environment for the daemon and the commands (its clock).
	env []string
}

// newWorld writes n consents, each with one cycle whose submission is due now (it
// falls in 3 days; lead 3, submit time 00:00), starts a sandbox process that knows
// them (with faults), and writes a config for a database at dbPath.
func newWorld(t *testing.T, bin, dbPath string, n int, faults string, extra string) *world {
	t.Helper()
	return newWorldEnv(t, bin, dbPath, n, faults, extra, nil)
}

// newWorldEnv is newWorld with extra environment for the sandbox process (its clock).
func newWorldEnv(t *testing.T, bin, dbPath string, n int, faults string, extra string, sbEnv []string) *world {
	t.Helper()
	w := &world{t: t, bin: bin, dir: t.TempDir(), db: dbPath}
	due := cycle.DateOf(time.Now()).AddDays(3)
	var cs []*consent.Consent
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("urn:envfail:consent-%04d", i)
		c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(id, cycle.Monthly, due, klavi.Cents(10_00+i))}
		c.Billing.RetryMode = consent.Off
		cs = append(cs, c)
		w.expect = append(w.expect, storage.AttemptKey{ConsentID: id, Cycle: 0})
	}
	raw, err := json.Marshal(cs)
	require.NoError(t, err)
	w.consents = filepath.Join(w.dir, "consents.json")
	require.NoError(t, os.WriteFile(w.consents, raw, 0o600))

	w.sbAddr = proc.FreePort(t)
	args := []string{"sandbox", "--addr", w.sbAddr, "--access-key", "ak", "--secret-key", "sk", "--consents", w.consents}
	if faults != "" {
		args = append(args, "--faults", faults)
	}
	sb := exec.Command(bin, args...)
	sb.Env = append(os.Environ(), sbEnv...)
	sbLog, err := os.Create(filepath.Join(w.dir, "sandbox.log"))
	require.NoError(t, err)
	t.Cleanup(func() { sbLog.Close() })
	sb.Stdout, sb.Stderr = sbLog, sbLog
	require.NoError(t, sb.Start())
	t.Cleanup(func() { _ = sb.Process.Kill(); _ = sb.Wait() })
	proc.WaitHTTP(t, "http://"+w.sbAddr+"/_sandbox/stats", 30*time.Second)

	w.apiAddr = proc.FreePort(t)
	w.cfg = filepath.Join(w.dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(w.cfg, []byte(fmt.Sprintf(`
billing:
  lead_days: 3
  submit_time: "00:00"
  retry_mode: "off"
storage:
  path: %s
  open_timeout: 1s
klavi:
  base_url: http://%s
  access_key: ak
  secret_key: sk
  timeout: 2s
  max_attempts: 1
  backoff_min: 5ms
  backoff_max: 50ms
  rate_limit: 1000
  rate_burst: 100
scheduler:
  scan_schedule: "@every 1s"
  poll_schedule: "@every 1h"
  workers: 16
  resend_min_interval: 1s
  confirm_after: 3s
  resend_max_interval: 2s
  poll_min_interval: 1h
  poll_max_interval: 2h
  shutdown_timeout: 10s
http:
  listen: %s
  admin_token: %s
log:
  format: json
%s`, dbPath, w.sbAddr, w.apiAddr, token, extra)), 0o600))
	return w
}

// importAll loads the consents into the database offline.
func (w *world) importAll() {
	w.t.Helper()
	cmd := exec.Command(w.bin, "consent", "import", "--config", w.cfg, w.consents)
	cmd.Env = append(os.Environ(), w.env...)
	out, err := cmd.CombinedOutput()
	require.NoError(w.t, err, "%s", out)
}

// daemon is a billingd run process.
type daemon struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
	err  error
}

func (w *world) start() *daemon {
	w.t.Helper()
	d := &daemon{cmd: exec.Command(w.bin, "run", "--config", w.cfg), log: &bytes.Buffer{}, done: make(chan struct{})}
	d.cmd.Env = append(os.Environ(), w.env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	require.NoError(w.t, d.cmd.Start())
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	w.t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if w.t.Failed() {
			w.t.Logf("billingd log:\n%s", d.log.String())
		}
	})
	return d
}

// wait waits for the daemon to exit and returns its exit code.
func (d *daemon) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(limit):
		t.Fatalf("billingd did not exit within %s", limit)
	}
	return exitCodeOf(d.err)
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, d.wait(t, 30*time.Second), "graceful stop exits 0")
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// get fetches a URL of the daemon: status and body.
func (w *world) get(path string) (int, string) {
	resp, err := http.Get("http://" + w.apiAddr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond every 20 ms until it holds, failing the test after limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads one sample of the daemon's /metrics ("" when absent).
func (w *world) metric(series string) string {
	_, body := w.get("/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return v
		}
	}
	return ""
}

// pending counts active consents whose next submission is not in the future: work
// the daemon still has to do now.
func (w *world) pending(t *testing.T) int {
	var res struct {
		Consents []struct {
			NextDue *time.Time `json:"nextSubmitAt"`
		} `json:"consents"`
	}
	proc.Do(t, "GET", "http://"+w.apiAddr+"/v1/consents?state=active&limit=10000", token, &res)
	n := 0
	for _, c := range res.Consents {
		if c.NextDue != nil && !c.NextDue.After(time.Now()) {
			n++
		}
	}
	return n
}

func (w *world) sandboxStats(t *testing.T) sandbox.Stats {
	var st sandbox.Stats
	proc.Do(t, "GET", "http://"+w.sbAddr+"/_sandbox/stats", "", &st)
	return st
}

func (w *world) ledger(t *testing.T) map[storage.AttemptKey][]sandbox.LedgerEntry {
	var l []sandbox.LedgerEntry
	proc.Do(t, "GET", "http://"+w.sbAddr+"/_sandbox/ledger", "", &l)
	out := map[storage.AttemptKey][]sandbox.LedgerEntry{}
	for _, e := range l {
		if e.Kind == sandbox.KindOriginal {
			k := storage.AttemptKey{ConsentID: e.ConsentID, Cycle: e.Cycle}
			out[k] = append(out[k], e)
		}
	}
	return out
}

// finish lets a running daemon submit everything, then checks the ledger and the
// store: every expected cycle paid exactly once, nothing left SUBMITTING.
func (w *world) finish(t *testing.T, d *daemon) {
	t.Helper()
	eventually(t, 90*time.Second, "every cycle submitted", func() bool {
		return len(w.ledger(t)) == len(w.expect) && w.pending(t) == 0
	})
	d.stop(t)
	ledger := w.ledger(t)
	db, err := bolt.Open(w.db, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Check(context.Background()))
	var duplicates, lost, unconfirmed int
	for _, k := range w.expect {
		pays := ledger[k]
		switch {
		case len(pays) == 0:
			lost++
			t.Errorf("lost: %s has no payment", k)
		case len(pays) > 1:
			duplicates++
			t.Errorf("duplicate: %s has %d payments", k, len(pays))
		}
		a, err := db.GetAttempt(context.Background(), k)
		require.NoError(t, err, "%s", k)
		switch a.State {
		case storage.AttemptSubmitted, storage.AttemptCompleted:
			if len(pays) == 1 {
				assert.Equal(t, pays[0].PaymentID, a.PaymentID, "%s", k)
			}
		case storage.AttemptUnconfirmed:
			unconfirmed++ // reconciliation looks every unknown outcome up: none should be left
			assert.Len(t, pays, 1, "%s: unconfirmed, and the sandbox has it", k)
		default:
			t.Errorf("%s ended %s: %s", k, a.State, a.Reason)
		}
	}
	st := w.sandboxStats(t)
	t.Logf("%d cycles: %d paid, %d duplicates, %d lost, %d unconfirmed (Klavi has the payment; a re-send got 409), faults %v",
		len(w.expect), len(ledger), duplicates, lost, unconfirmed, st.Faults)
	assert.Zero(t, duplicates)
	assert.Zero(t, lost)
	assert.Zero(t, unconfirmed, "every unknown outcome was looked up in Klavi's orders list")
	assert.Zero(t, st.Refusals["one_per_cycle"], "billingd never asked for a second payment in a cycle")
}

// testReplaced: the database file is moved aside and a copy put in its place while
// the daemon runs. The daemon writes nothing more and sends nothing more, exits 3, a
// second daemon is refused, and a restart on the right file finishes every cycle
// exactly once.
func testReplaced(t *testing.T, bin string) {
	dbPath := filepath.Join(t.TempDir(), "billingd.db")
	// A third of the submissions get a 503 and wait for a re-send, so work remains
	// after the first scan; scans run only when the test asks (and once at start).
	w := newWorld(t, bin, dbPath, 300, "5xx=0.3,seed=7", "")
	scanEverySecond := must(os.ReadFile(w.cfg))
	require.NoError(t, os.WriteFile(w.cfg, bytes.Replace(scanEverySecond, []byte(`scan_schedule: "@every 1s"`), []byte(`scan_schedule: "@every 1h"`), 1), 0o600))
	w.importAll()
	started := time.Now()
	a := w.start()
	proc.WaitHTTP(t, "http://"+w.apiAddr+"/readyz", 30*time.Second)

	// The start-up scan handles every consent once: submitted, or waiting to be re-sent.
	var listing struct {
		Consents []struct {
			NextDue *time.Time `json:"nextSubmitAt"`
		} `json:"consents"`
	}
	eventually(t, 60*time.Second, "the start-up scan handled every consent", func() bool {
		proc.Do(t, "GET", "http://"+w.apiAddr+"/v1/consents?state=active&limit=10000", token, &listing)
		for _, c := range listing.Consents {
			if c.NextDue == nil || !c.NextDue.After(started) {
				return false
			}
		}
		return true
	})
	paidBefore := len(w.ledger(t))
	require.Positive(t, paidBefore)
	require.Less(t, paidBefore, len(w.expect), "some cycles wait for a re-send")
	eventually(t, 10*time.Second, "a re-send is due", func() bool { return w.pending(t) > 0 })
	requestsBefore := w.sandboxStats(t).Requests

	// Move the file aside and put a copy in its place, as a careless restore would.
	moved := dbPath + ".moved"
	require.NoError(t, os.Rename(dbPath, moved))
	require.NoError(t, os.WriteFile(dbPath+".tmp", must(os.ReadFile(moved)), 0o600))
	require.NoError(t, os.Rename(dbPath+".tmp", dbPath))

	code, body := w.get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "database file was replaced or removed while open: "+dbPath)

	// A second daemon on the same path (on another port) is refused: the lock is the path's.
	second := filepath.Join(t.TempDir(), "second.yaml")
	require.NoError(t, os.WriteFile(second, bytes.Replace(must(os.ReadFile(w.cfg)), []byte(w.apiAddr), []byte(proc.FreePort(t)), 1), 0o600))
	out, err := exec.Command(bin, "run", "--config", second).CombinedOutput()
	assert.Equal(t, exitFailure, exitCodeOf(err), "%s", out)
	assert.Contains(t, string(out), "database is locked by another process")

	// The next scan's first write is refused: nothing is sent, and the daemon stops.
	req, _ := http.NewRequest("POST", "http://"+w.apiAddr+"/v1/scheduler/scan", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	assert.Equal(t, exitEnvironment, a.wait(t, 30*time.Second))
	assert.Contains(t, a.log.String(), "database file was replaced or removed while open")
	assert.Equal(t, requestsBefore, w.sandboxStats(t).Requests, "no request reached Klavi after the replacement")

	// Nothing is lost in the file the daemon had open: every payment is recorded there
	// (read with its archive file, as an operator putting it back moves both).
	require.NoError(t, os.Rename(bolt.ArchivePath(dbPath), bolt.ArchivePath(moved)))
	db, err := bolt.Open(moved, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	ledger := w.ledger(t)
	for k, pays := range ledger {
		at, err := db.GetAttempt(context.Background(), k)
		require.NoError(t, err, "%s", k)
		assert.Equal(t, pays[0].PaymentID, at.PaymentID, "%s", k)
	}
	require.NoError(t, db.Check(context.Background()))
	require.NoError(t, db.Close())

	// A restart on the right file (put back with its archive file) finishes every
	// cycle exactly once.
	require.NoError(t, os.Rename(moved, dbPath))
	require.NoError(t, os.Rename(bolt.ArchivePath(moved), bolt.ArchivePath(dbPath)))
	require.NoError(t, os.WriteFile(w.cfg, scanEverySecond, 0o600))
	b := w.start()
	proc.WaitHTTP(t, "http://"+w.apiAddr+"/readyz", 30*time.Second)
	w.finish(t, b)
}

// testCorrupt: truncated and damaged copies of a populated database make every
// command that opens it exit 3 with "database file is corrupt", with no panic, and
// leave the file as it was.
func testCorrupt(t *testing.T, bin string) {
	dir := t.TempDir()
	src := filepath.Join(dir, "billingd.db")
	w := newWorld(t, bin, src, 2000, "", "")
	w.importAll()
	raw := must(os.ReadFile(src))
	used := usedBytes(t, src)

	variants := map[string][]byte{
		"head -c 20000":         raw[:20000],
		"half of the pages":     raw[:used/2],
		"all but the last page": raw[:used-4096],
	}
	rng := rand.New(rand.NewPCG(42, 9))
	for i := 0; len(variants) < 3+6 && i < 100; i++ {
		cp := append([]byte(nil), raw...)
		for j := 0; j < 1+i%3; j++ {
			p := 2 + rng.IntN(int(used)/4096-2)
			for k := 0; k < 64; k++ {
				cp[p*4096+k] = byte(rng.UintN(256))
			}
		}
		// Keep copies whose damage falls on pages in use (db check finds it).
		path := filepath.Join(dir, "probe.db")
		require.NoError(t, os.WriteFile(path, cp, 0o600))
		if err := exec.Command(bin, "db", "check", "--db", path).Run(); exitCodeOf(err) == exitEnvironment {
			variants[fmt.Sprintf("random pages %d", i)] = cp
		}
	}
	require.Len(t, variants, 9)

	n := 0
	for name, content := range variants {
		t.Run(name, func(t *testing.T) {
			n++
			vdir := filepath.Join(dir, fmt.Sprintf("v%d", n))
			require.NoError(t, os.Mkdir(vdir, 0o700))
			path := filepath.Join(vdir, "billingd.db")
			require.NoError(t, os.WriteFile(path, content, 0o600))
			sum := sha256.Sum256(content)
			cfg := filepath.Join(vdir, "billingd.yaml")
			require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(
				"storage:\n  path: %s\n  open_timeout: 1s\nklavi:\n  base_url: http://127.0.0.1:1\n  access_key: ak\n  secret_key: sk\nhttp:\n  listen: %s\n",
				path, proc.FreePort(t))), 0o600))
			for _, args := range [][]string{
				{"run", "--config", cfg},
				{"consent", "import", "--config", cfg, w.consents},
				{"db", "check", "--db", path},
				{"db", "compact", "--db", path, filepath.Join(vdir, "compact.db")},
				{"db", "backup", "--db", path, filepath.Join(vdir, "backup.db")},
			} {
				cmd := exec.Command(bin, args...)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				start := time.Now()
				err := cmd.Run()
				assert.Less(t, time.Since(start), 20*time.Second)
				assert.Equal(t, exitEnvironment, exitCodeOf(err), "%v: %s", args[:2], stderr.String())
				assert.Contains(t, stderr.String(), "database file is corrupt", "%v", args[:2])
				for _, p := range []string{"goroutine ", "panic:", "fatal error", "self identifies"} {
					assert.NotContains(t, stderr.String(), p, "%v", args[:2])
				}
				assert.Equal(t, sum, sha256.Sum256(must(os.ReadFile(path))), "%v: the file is untouched", args[:2])
			}
			_, err := os.Stat(filepath.Join(vdir, "compact.db"))
			assert.ErrorIs(t, err, os.ErrNotExist, "no compacted copy of a damaged file")
			_, err = os.Stat(filepath.Join(vdir, "backup.db"))
			assert.ErrorIs(t, err, os.ErrNotExist, "no backup of a damaged file")
		})
	}
}

// usedBytes is the database's high-water mark (the file may be longer).
func usedBytes(t *testing.T, path string) int {
	t.Helper()
	// The database file's high-water mark (Stats adds the archive file's figures).
	rep, err := bolt.Inspect(path, time.Second)
	require.NoError(t, err)
	return int(rep.UsedPages) * rep.PageSize
}

// mountTmpfs mounts a tmpfs of size at a new directory, or skips the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes a file at path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := bytes.Repeat([]byte{1}, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			return
		}
	}
}

// testFullDisk: the state directory's file system fills up while the daemon has work.
// It submits nothing without its write, is not ready while writes fail, counts the
// failures, and recovers by itself once space returns: 0 duplicates, 0 lost.
func testFullDisk(t *testing.T, bin string) {
	mnt := mountTmpfs(t, "16m")
	dbPath := filepath.Join(mnt, "billingd.db")
	w := newWorld(t, bin, dbPath, 600, "", "")
	w.importAll()
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)

	d := w.start()
	eventually(t, 30*time.Second, "/readyz fails while the disk is full", func() bool {
		code, body := w.get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "store writes fail (enospc)")
	})
	eventually(t, 10*time.Second, "the write-error metric rises", func() bool {
		v := w.metric(`billingd_store_write_errors_total{reason="enospc"}`)
		return v != "" && v != "0"
	})
	assert.Equal(t, "0", w.metric("billingd_store_healthy"))
	paidWhileFull := len(w.ledger(t))
	t.Logf("paid while full: %d of %d; write errors: %s", paidWhileFull, len(w.expect),
		w.metric(`billingd_store_write_errors_total{reason="enospc"}`))

	require.NoError(t, os.Remove(filler))
	eventually(t, 30*time.Second, "ready again once space returns", func() bool {
		code, _ := w.get("/readyz")
		return code == http.StatusOK
	})
	assert.Equal(t, "1", w.metric("billingd_store_healthy"))
	assert.Contains(t, d.log.String(), "store writes again: ready")
	w.finish(t, d)
}

// testReadOnly: a read-only state directory is an environment problem: exit 3.
func testReadOnly(t *testing.T, bin string) {
	var dir, want string
	if os.Geteuid() == 0 {
		dir, want = mountTmpfs(t, "8m"), "read-only file system"
	} else {
		dir, want = t.TempDir(), "permission denied"
	}
	dbPath := filepath.Join(dir, "billingd.db")
	w := newWorld(t, bin, dbPath, 5, "", "")
	w.importAll()
	if os.Geteuid() == 0 {
		out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput()
		require.NoError(t, err, "%s", out)
	} else {
		require.NoError(t, os.Remove(dbPath+".lock"))
		require.NoError(t, os.Chmod(dir, 0o500))
		t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
	}
	for _, args := range [][]string{{"run", "--config", w.cfg}, {"consent", "import", "--config", w.cfg, w.consents}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		assert.Equal(t, exitEnvironment, exitCodeOf(err), "%v: %s", args[:2], out)
		assert.Contains(t, string(out), want, "%v", args[:2])
	}
	// Reading still works: db check of a read-only file is fine.
	out, err := exec.Command(bin, "db", "check", "--db", dbPath).CombinedOutput()
	assert.NoError(t, err, "%s", out)
}

// testMissingDir: the state directory does not exist: exit 3, nothing created.
func testMissingDir(t *testing.T, bin string) {
	dbPath := filepath.Join(t.TempDir(), "gone", "billingd.db")
	w := newWorld(t, bin, dbPath, 1, "", "")
	out, err := exec.Command(bin, "run", "--config", w.cfg).CombinedOutput()
	assert.Equal(t, exitEnvironment, exitCodeOf(err), "%s", out)
	assert.Contains(t, string(out), "no such file or directory")
	_, err = os.Stat(filepath.Dir(dbPath))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// testBadListen: a listen address that cannot work is a config error (exit 2),
// found before the database is opened: no file is created.
func testBadListen(t *testing.T, bin string) {
	dbPath := filepath.Join(t.TempDir(), "billingd.db")
	w := newWorld(t, bin, dbPath, 1, "", "")
	require.NoError(t, os.WriteFile(w.cfg, bytes.Replace(must(os.ReadFile(w.cfg)), []byte(w.apiAddr), []byte("127.0.0.1:99999"), 1), 0o600))
	out, err := exec.Command(bin, "run", "--config", w.cfg).CombinedOutput()
	assert.Equal(t, exitUsage, exitCodeOf(err), "%s", out)
	assert.Contains(t, string(out), `http.listen: "127.0.0.1:99999": port "99999" is not a number in 0..65535`)
	entries, err := os.ReadDir(filepath.Dir(dbPath))
	require.NoError(t, err)
	assert.Empty(t, entries, "no database or lock file is created for a config error")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// aheadBy is the test clock (BILLINGD_TEST_CLOCK) d ahead of the real one, at real speed.
func aheadBy(d time.Duration) string {
	now := time.Now()
	return fmt.Sprintf("BILLINGD_TEST_CLOCK=start=%s,epoch=%d,rate=1", now.Add(d).UTC().Format(time.RFC3339Nano), now.UnixMilli())
}

// testClockAhead: the daemon's clock is 15 days ahead of Klavi's (the sandbox on the
// real clock). Every cycle's window looks closed to it, but it writes no MISSED and no
// FAILED and sends nothing: it is not ready and says why, and the clock metric is
// set. Started again with a right clock, it submits every cycle once.
func testClockAhead(t *testing.T, bin string) {
	dbPath := filepath.Join(t.TempDir(), "billingd.db")
	w := newWorld(t, bin, dbPath, 50, "", "")
	w.importAll()
	w.env = []string{aheadBy(15 * 24 * time.Hour)}
	d := w.start()
	proc.WaitHTTP(t, "http://"+w.apiAddr+"/healthz", 30*time.Second)
	eventually(t, 30*time.Second, "three scans", func() bool {
		n, err := strconv.ParseFloat(w.metric("billingd_due_scan_duration_seconds_count"), 64)
		return err == nil && n >= 3
	})
	code, body := w.get("/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "clock in doubt")
	assert.Contains(t, body, "ahead of Klavi's")
	assert.Equal(t, "1", w.metric("billingd_clock_in_doubt"))
	skew, err := strconv.ParseFloat(w.metric("billingd_clock_skew_seconds"), 64)
	require.NoError(t, err)
	assert.InDelta(t, 15*24*3600, skew, 60)
	assert.Empty(t, w.ledger(t), "nothing sent while in doubt")
	d.stop(t)
	db, err := bolt.Open(dbPath, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	for _, k := range w.expect {
		_, err := db.GetAttempt(context.Background(), k)
		assert.ErrorIs(t, err, storage.ErrNotFound, "%s: no MISSED, no FAILED, nothing written while in doubt", k)
	}
	hw, err := db.HighWater(context.Background())
	require.NoError(t, err)
	assert.True(t, hw.IsZero() || hw.Before(time.Now().Add(time.Minute)), "the wrong clock was never recorded as the latest instant")
	require.NoError(t, db.Close())

	w.env = nil // the clock is put right
	d = w.start()
	proc.WaitHTTP(t, "http://"+w.apiAddr+"/readyz", 30*time.Second)
	w.finish(t, d)
}

// testDowntime: billingd acted last 15 days ago and both clocks now read 15 days
// later: real downtime. Klavi confirms the jump, so the daemon is ready and does
// today's catch-up: every cycle whose window closed meanwhile is MISSED, none sent.
func testDowntime(t *testing.T, bin string) {
	dbPath := filepath.Join(t.TempDir(), "billingd.db")
	ahead := aheadBy(15 * 24 * time.Hour)
	w := newWorldEnv(t, bin, dbPath, 20, "", "", []string{ahead})
	w.importAll()
	db, err := bolt.Open(dbPath, bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{HighWater: time.Now()})) // the last run, 15 days ago
	require.NoError(t, db.Close())
	w.env = []string{ahead}
	d := w.start()
	proc.WaitHTTP(t, "http://"+w.apiAddr+"/readyz", 30*time.Second)
	eventually(t, 30*time.Second, "every cycle decided", func() bool { return w.pending(t) == 0 })
	assert.Equal(t, "0", w.metric("billingd_clock_in_doubt"))
	d.stop(t)
	db, err = bolt.Open(dbPath, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	for _, k := range w.expect {
		a, err := db.GetAttempt(context.Background(), k)
		require.NoError(t, err, "%s", k)
		assert.Equal(t, storage.AttemptMissed, a.State, "%s: its window closed during the downtime", k)
	}
	assert.Empty(t, w.ledger(t), "nothing sent late")
}
