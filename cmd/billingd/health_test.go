package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
)

func readyz(t *testing.T, d *daemon) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.Addr() + "/readyz")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStoreHealth(t *testing.T) {
	var stopped []error
	h := newStoreHealth(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, func(err error) { stopped = append(stopped, err) })
	assert.Empty(t, h.problem(), "healthy from the start")
	h.wrote(fmt.Errorf("store: write: %w", syscall.ENOSPC))
	assert.Contains(t, h.problem(), "store writes fail (enospc)")
	h.wrote(nil)
	assert.Empty(t, h.problem(), "one write that succeeds is enough")
	assert.Empty(t, stopped, "a full disk does not stop the daemon")
	h.wrote(fmt.Errorf("store: %w: /x", storage.ErrReplaced))
	assert.Contains(t, h.problem(), "store writes fail (replaced)")
	require.Len(t, stopped, 1, "a replaced file stops it")
	assert.ErrorIs(t, stopped[0], storage.ErrReplaced)

	t.Run("after a full disk, a small write that fits is not recovery", func(t *testing.T) {
		h := newStoreHealth(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, func(error) {})
		h.dir = t.TempDir()
		if _, ok := freeBytes(h.dir); !ok {
			t.Skip("free space cannot be read here")
		}
		h.minFree = math.MaxUint64 // the file system never has that much free
		h.wrote(fmt.Errorf("store: write: %w", syscall.ENOSPC))
		h.wrote(nil)
		assert.Contains(t, h.problem(), "store writes fail (enospc)", "still full: not ready")
		h.minFree = 0 // space has returned
		h.wrote(nil)
		assert.Empty(t, h.problem())
		h.wrote(errors.New("store: write: input/output error"))
		h.minFree = math.MaxUint64
		h.wrote(nil)
		assert.Empty(t, h.problem(), "only a full disk waits for free space")
	})
	t.Run("probe", func(t *testing.T) {
		h := newStoreHealth(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, func(error) {})
		h.wrote(errors.New("store: write: input/output error"))
		h.tried = time.Now().Add(-probeEvery)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.probeLoop(ctx, func(context.Context) error { h.wrote(nil); cancel(); return nil })
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("an unhealthy store was not probed")
		}
		assert.Empty(t, h.problem(), "the probe's write made it healthy")
	})
}

func TestDaemon_ReadinessFollowsTheStore(t *testing.T) {
	de := startTestDaemon(t, cycle.MustDate(2026, 1, 1).At(8, 0))
	code, body := readyz(t, de.d)
	require.Equal(t, 200, code, body)
	// The start-up scan's one write (the latest instant acted on; the test clock then
	// stands still, so there is no other) must not land after the failure below.
	deadline := time.Now().Add(10 * time.Second)
	for hw, _ := de.d.db.HighWater(context.Background()); hw.IsZero(); hw, _ = de.d.db.HighWater(context.Background()) {
		require.True(t, time.Now().Before(deadline), "the start-up scan did not run")
		time.Sleep(5 * time.Millisecond)
	}

	// A write of the start-up's other passes (poll, reconciliation) that succeeds in
	// between makes the store healthy again, as it should: fail it again then.
	// Readiness and the metric are read one after the other: both must show the
	// failure in the same round.
	var metrics string
	for range 50 {
		de.d.health.wrote(fmt.Errorf("store: write: %w", syscall.ENOSPC))
		code, body = readyz(t, de.d)
		metrics = de.get("/metrics")
		if code == 503 && strings.Contains(metrics, "billingd_store_healthy 0") {
			break
		}
	}
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "not ready: store writes fail (enospc)")
	assert.Regexp(t, `billingd_store_write_errors_total\{reason="enospc"\} [1-9]`, metrics)
	assert.Contains(t, metrics, "billingd_store_healthy 0")

	// A write that succeeds (the probe's, here) makes it ready again by itself.
	require.NoError(t, de.d.db.Probe(context.Background()))
	code, body = readyz(t, de.d)
	assert.Equal(t, 200, code, body)
	assert.Contains(t, de.get("/metrics"), "billingd_store_healthy 1")
}

func TestDaemon_DatabaseReplaced(t *testing.T) {
	de := startTestDaemon(t, cycle.MustDate(2026, 1, 1).At(8, 0))
	path := de.cfg.Storage.Path
	require.NoError(t, os.Rename(path, path+".moved"))
	raw, err := os.ReadFile(path + ".moved")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, raw, 0o600))

	code, body := readyz(t, de.d)
	assert.Equal(t, 503, code, "the identity check fails before any write")
	assert.Contains(t, body, "database file was replaced or removed while open: "+path)

	// A second daemon on the path is refused: the lock file still belongs to the first.
	cfg := de.cfg
	cfg.HTTP.Listen, cfg.Storage.OpenTimeout = "127.0.0.1:0", 100*time.Millisecond
	_, err = startDaemon(cfg, runFlags{}, slog.New(slog.NewTextHandler(io.Discard, nil)), de.clock)
	require.ErrorIs(t, err, storage.ErrLocked)

	// The next write is refused and the daemon is told to stop.
	code, _, stderr := de.cli("consent", "add", "../../examples/consents/weekly-retries.json")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, stderr, "database file was replaced or removed while open")
	select {
	case err := <-de.d.fatal:
		require.ErrorIs(t, err, storage.ErrReplaced)
		assert.Equal(t, exitEnvironment, exitCode(&env{stderr: io.Discard}, nil, err))
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon was not told to stop")
	}
	assert.Equal(t, raw, must(os.ReadFile(path)), "nothing was written to the file now at the path")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func (de *daemonEnv) get(path string) string {
	de.t.Helper()
	resp, err := http.Get("http://" + de.d.Addr() + path)
	require.NoError(de.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(de.t, err)
	return string(b)
}

// TestRun_ExitCodes: every config problem exits 2 before the database is opened (no
// file is created); what a restart cannot fix exits 3.
func TestRun_ExitCodes(t *testing.T) {
	cfgFor := func(t *testing.T, db, listen string) string {
		return writeConfig(t, fmt.Sprintf("storage:\n  path: %s\n  open_timeout: 200ms\nklavi:\n  access_key: ak\n  secret_key: sk\nhttp:\n  listen: %q\n", db, listen))
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0") // a daemon already running, say
	require.NoError(t, err)
	t.Cleanup(func() { _ = busy.Close() })
	tests := []struct {
		name   string
		db     func(t *testing.T) string
		listen string
		code   int
		stderr string
	}{
		{"port out of range", nil, "127.0.0.1:99999", exitUsage, `http.listen: "127.0.0.1:99999": port "99999" is not a number in 0..65535`},
		{"port not a number", nil, "127.0.0.1:http-ish", exitUsage, "http.listen"},
		{"bad host", nil, "bad host!:80", exitUsage, "is neither an IP address nor a host name"},
		{"path is a directory", func(t *testing.T) string { return t.TempDir() }, "127.0.0.1:0", exitUsage, "storage.path"},
		{"path ends with a slash", func(t *testing.T) string { return t.TempDir() + "/db/" }, "127.0.0.1:0", exitUsage, "storage.path"},
		{"address in use", nil, busy.Addr().String(), exitFailure, "a billingd already running? `billingd healthcheck --url http://" + busy.Addr().String() + "/healthz` asks it"},
		{"missing state directory", func(t *testing.T) string { return filepath.Join(t.TempDir(), "gone", "b.db") }, "127.0.0.1:0", exitEnvironment, "gone does not exist: create it, writable by the user billingd runs as"},
		{"state path under a file", func(t *testing.T) string {
			f := filepath.Join(t.TempDir(), "file")
			require.NoError(t, os.WriteFile(f, nil, 0o600))
			return filepath.Join(f, "b.db")
		}, "127.0.0.1:0", exitEnvironment, "not a directory"},
		{"corrupt database", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "b.db")
			require.NoError(t, os.WriteFile(p, []byte(strings.Repeat("garbage!", 4096)), 0o600))
			return p
		}, "127.0.0.1:0", exitEnvironment, "database file is corrupt"},
		{"read-only state directory", func(t *testing.T) string {
			if os.Geteuid() == 0 {
				t.Skip("root writes in a read-only directory; test/envfail covers it with a read-only mount")
			}
			dir := t.TempDir()
			require.NoError(t, os.Chmod(dir, 0o500))
			t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			return filepath.Join(dir, "b.db")
		}, "127.0.0.1:0", exitEnvironment, "permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "b.db")
			if tt.db != nil {
				db = tt.db(t)
			}
			_, existed := os.Stat(db)
			code, _, stderr := runCLI(t, nil, "run", "--config", cfgFor(t, db, tt.listen))
			assert.Equal(t, tt.code, code, stderr)
			assert.Contains(t, stderr, tt.stderr)
			if tt.code == exitUsage {
				_, err := os.Stat(strings.TrimSuffix(db, "/") + ".lock")
				assert.ErrorIs(t, err, os.ErrNotExist, "a config error creates no lock file")
				if existed != nil {
					_, err := os.Stat(db)
					assert.ErrorIs(t, err, os.ErrNotExist, "a config error creates no database file")
				}
			}
		})
	}
}

func TestRun_VerifyOnStart(t *testing.T) {
	// A file whose header and meta bucket read fine but a data page is damaged: only
	// the start-up verification finds it.
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "b.db")
	code, _, stderr := runCLI(t, nil, "consent", "import", "--db", dbPath, "../../examples/consents")
	require.Equal(t, 0, code, stderr)
	db, err := bolt.Open(dbPath, bolt.Options{})
	require.NoError(t, err)
	var chs []*storage.Change
	for i := 0; i < 300; i++ {
		chs = append(chs, &storage.Change{PutDue: []storage.DueItem{{At: time.Unix(int64(i), 0), Key: storage.AttemptKey{ConsentID: fmt.Sprintf("urn:x:%03d", i)}}}})
	}
	_, err = db.ApplyAll(context.Background(), chs)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	raw, err := os.ReadFile(dbPath)
	require.NoError(t, err)
	damaged := 0
	for p := 2; p*4096 < len(raw); p++ {
		// Leaf pages (flag 0x02) of the due index: keys start with 8 bytes of time.
		if raw[p*4096+8] == 0x02 && strings.Contains(string(raw[p*4096:p*4096+4096]), "urn:x:150") {
			copy(raw[p*4096:], []byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff, 0xff, 0xff})
			damaged++
		}
	}
	require.Positive(t, damaged)
	require.NoError(t, os.WriteFile(dbPath, raw, 0o600))
	cfg := func(verify bool) string {
		return writeConfig(t, fmt.Sprintf("storage:\n  path: %s\n  open_timeout: 200ms\n  verify_on_start: %t\nklavi:\n  access_key: ak\n  secret_key: sk\n  base_url: http://127.0.0.1:1\nhttp:\n  listen: 127.0.0.1:0\n", dbPath, verify))
	}
	code, _, stderr = runCLI(t, nil, "run", "--config", cfg(true))
	assert.Equal(t, exitEnvironment, code)
	assert.Contains(t, stderr, "database file is corrupt")
	assert.NotContains(t, stderr, "goroutine ")
	assert.Equal(t, raw, must(os.ReadFile(dbPath)), "the file is untouched")
}

// healthcheck asks the daemon of the config it is given, at its http.listen (a
// wildcard host on loopback); --url wins over the config.
func TestHealthcheck_Config(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	cfg := writeConfig(t, fmt.Sprintf("klavi:\n  access_key: ak\n  secret_key: sk\nhttp:\n  listen: %q\n", "0.0.0.0:"+port))

	code, _, stderr := runCLI(t, nil, "healthcheck", "--config", cfg)
	assert.Equal(t, 0, code, stderr)
	status = http.StatusServiceUnavailable
	code, _, stderr = runCLI(t, nil, "healthcheck", "--config", cfg)
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr, "http://127.0.0.1:"+port+"/healthz answered 503")
	code, _, stderr = runCLI(t, nil, "healthcheck", "--config", cfg, "--url", "http://127.0.0.1:1/healthz")
	assert.Equal(t, exitFailure, code)
	assert.Contains(t, stderr, "127.0.0.1:1", "--url wins")

	assert.Equal(t, "http://[::1]:8080/healthz", healthURL("[::]:8080"))
	assert.Equal(t, "http://127.0.0.1:8080/healthz", healthURL(":8080"))
	assert.Equal(t, "http://billingd.internal:8080/healthz", healthURL("billingd.internal:8080"))
}
