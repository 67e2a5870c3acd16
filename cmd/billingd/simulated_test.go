package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage/bolt"
)

// simulatedStore is what `billingd simulate --from 2026-02-01 --days 60 --db` keeps,
// copied (database and archive file) to state/billingd.db, as an operator would
// copy it to a config's storage.path. The simulated days are months before the
// CLI's clock (2026-11-26): a daemon whose clock is not in doubt would find every
// cycle since overdue.
func simulatedStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.db")
	code, _, stderr := runCLI(t, nil, "simulate", "--from", "2026-02-01", "--days", "60", "--format", "json", "--db", base)
	require.Equal(t, 0, code, stderr)
	path := filepath.Join(dir, "state", "billingd.db")
	copyTo(t, base, path)
	copyTo(t, bolt.ArchivePath(base), bolt.ArchivePath(path))
	return path
}

// runRefused runs billingd run with args, which must refuse to start: were it to
// start, it is stopped after 10 s (its exit code then 0) rather than left serving.
func runRefused(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, clock: clock.NewFake(cycle.MustDate(2026, 11, 26).At(10, 0))}
	code := Main(ctx, e, append([]string{"run"}, args...))
	return code, out.String(), errb.String()
}

// runConfig is a config that billingd run takes, its storage.path path.
func runConfig(t *testing.T, path string) string {
	t.Helper()
	return writeConfig(t, fmt.Sprintf("storage:\n  path: %s\n  open_timeout: 200ms\n  compact_at_start: always\nklavi:\n  access_key: ak\n  secret_key: sk\n  base_url: http://127.0.0.1:1\nhttp:\n  listen: 127.0.0.1:0\n", path))
}

// TestRun_RefusesSimulatedStore: billingd run on a store billingd simulate made
// exits 3 (the database file is unusable as it is: found only by opening it, as
// "not a billingd database" is), names the file and its maker, and writes nothing
// to it: the database and archive files keep their bytes (compact_at_start: always
// would otherwise rewrite the file), the lock file is not marked.
func TestRun_RefusesSimulatedStore(t *testing.T) {
	path := simulatedStore(t)
	files := []string{path, bolt.ArchivePath(path)}
	before := map[string][]byte{}
	for _, f := range files {
		before[f] = must(os.ReadFile(f))
	}
	fi := must(os.Stat(path))

	code, stdout, stderr := runRefused(t, "--config", runConfig(t, path))
	assert.Equal(t, exitEnvironment, code, stderr)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "billingd: open "+path+": the store was made by billingd simulate: its consents and payments are a simulation's")
	assert.Contains(t, stderr, "billingd run refuses it (to serve its reads to the operator commands: billingd run --read-only)")
	for _, f := range files {
		assert.Equal(t, before[f], must(os.ReadFile(f)), "%s unchanged", f)
	}
	assert.True(t, os.SameFile(fi, must(os.Stat(path))), "the database is still the file it was")
	assert.False(t, bolt.IsLockFile(bolt.LockPath(path)), "the lock file is not marked as a kept database's")
}

// TestRun_ReadOnly: billingd run --read-only serves a simulated store's reads to
// the operator commands (report, consent show, payments upcoming), refuses every
// change (403: exit 2 for the CLI), calls nobody, and leaves the file as it was.
func TestRun_ReadOnly(t *testing.T) {
	path := simulatedStore(t)
	raw := must(os.ReadFile(path))
	de := startTestDaemonFlags(t, cycle.MustDate(2026, 4, 2).At(10, 0), nil, func(c *Config) { c.Storage.Path = path }, runFlags{readOnly: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))

	code, body := readyz(t, de.d)
	assert.Equal(t, 200, code)
	assert.Equal(t, "ready (read-only: billing nothing)\n", body)

	t.Run("reads", func(t *testing.T) {
		code, stdout, stderr := de.cli("report", "--month", "2026-03", "--format", "json")
		require.Equal(t, 0, code, stderr)
		var rep struct {
			Rows []json.RawMessage `json:"rows"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
		assert.NotEmpty(t, rep.Rows, "the simulated month's ledger")
		code, stdout, stderr = de.cli("consent", "show", "urn:klavi:consent-weekly-0002")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "urn:klavi:consent-weekly-0002")
		code, _, stderr = de.cli("payments", "upcoming")
		require.Equal(t, 0, code, stderr)
	})
	t.Run("changes are refused", func(t *testing.T) {
		code, stdout, stderr := de.cli("consent", "add", "../../examples/consents/weekly-retries.json")
		assert.Equal(t, exitUsage, code)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, "read-only: billingd run --read-only changes nothing")
		for _, p := range []string{"/v1/scheduler/scan", "/v1/scheduler/poll", "/v1/reconcile", "/ui/attention/resolve"} {
			req, _ := http.NewRequest("POST", "http://"+de.d.Addr()+p, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, p)
		}
	})

	de.clock.Set(cycle.MustDate(2026, 6, 1).At(10, 0)) // cycles due since: nothing acts on them
	assert.Zero(t, de.sb.Stats().Requests, "no call to Klavi")
	require.NoError(t, de.d.Close(t.Context()))
	assert.Equal(t, raw, must(os.ReadFile(path)), "the database's bytes are unchanged")

	code, stdout, stderr := runCLI(t, nil, "db", "check", "--db", path)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "simulated:  yes, made by billingd simulate: billingd run refuses to bill on it")
}

// TestRun_ReadOnly_Refusals: --read-only opens an existing bolt file only.
func TestRun_ReadOnly_Refusals(t *testing.T) {
	t.Run("an etcd store", func(t *testing.T) {
		cfg := writeConfig(t, "storage:\n  backend: etcd\n  etcd:\n    endpoints: [http://127.0.0.1:1]\nklavi:\n  access_key: ak\n  secret_key: sk\nhttp:\n  listen: 127.0.0.1:0\n")
		code, _, stderr := runCLI(t, nil, "run", "--config", cfg, "--read-only")
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, stderr, "billingd: run --read-only: storage.backend is etcd")
	})
	t.Run("a missing database is not made", func(t *testing.T) {
		dir := t.TempDir()
		code, _, stderr := runCLI(t, nil, "run", "--config", runConfig(t, filepath.Join(dir, "billingd.db")), "--read-only")
		assert.Equal(t, exitEnvironment, code)
		assert.Contains(t, stderr, "no such file or directory")
		entries, _ := os.ReadDir(dir)
		assert.Empty(t, entries, "no file made")
	})
}

// TestSimulatedStore_CopiesStaySimulated: db backup, db compact and db migrate
// copy the mark with the store: db check says so, and billingd run refuses each
// copy.
func TestSimulatedStore_CopiesStaySimulated(t *testing.T) {
	path := simulatedStore(t)
	dir := t.TempDir()
	backup, compacted, migrated := filepath.Join(dir, "backup.db"), filepath.Join(dir, "compact.db"), filepath.Join(dir, "migrated.db")
	for _, args := range [][]string{
		{"db", "backup", "--db", path, backup},
		{"db", "compact", "--db", path, compacted},
		{"db", "migrate", "--from", "bolt:" + path, "--to", "bolt:" + migrated},
	} {
		code, _, stderr := runCLI(t, nil, args...)
		require.Equal(t, 0, code, "%v: %s", args, stderr)
	}
	for name, p := range map[string]string{"db backup": backup, "db compact": compacted, "db migrate": migrated} {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, "db", "check", "--db", p)
			require.Equal(t, 0, code, stderr)
			assert.Contains(t, stdout, "simulated:  yes")
			code, _, stderr = runRefused(t, "--config", runConfig(t, p))
			assert.Equal(t, exitEnvironment, code, stderr)
			assert.Contains(t, stderr, "billingd: open "+p+": the store was made by billingd simulate")
		})
	}
}
