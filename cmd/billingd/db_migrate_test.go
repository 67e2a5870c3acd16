package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/storage/kv"
)

// migrateSource is a bolt store with the six example consents, their events and
// an attempt that needs attention.
func migrateSource(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.db")
	code, _, stderr := runCLI(t, nil, "consent", "import", "--db", path, "../../examples/consents")
	require.Equal(t, 0, code, stderr)
	db, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer db.Close()
	list, err := db.ListConsents(context.Background(), "", 1, "")
	require.NoError(t, err)
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	a := &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: list[0].Consent.ID}, State: storage.AttemptMissed,
		Date: cycle.DateOf(at), Amount: 99_90, ClientRequestID: "billingd-x-0-0", CreatedAt: at, UpdatedAt: at}
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a},
		Events: []storage.Event{storage.AttemptEvent("missed", at, a, storage.ActorBillingd, "")}}))
	return path
}

var verified = regexp.MustCompile(`verified: (\d+) records identical`)

// TestDBMigrate: bolt → etcd → bolt gives back the same records, each copy
// verified and checked; every refusal says why and writes nothing.
func TestDBMigrate(t *testing.T) {
	src := migrateSource(t)
	srv := etcdtest.Start(t)
	ep := srv.Endpoints[0]
	cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: time.Second})
	require.NoError(t, err)
	defer cli.Close()
	revision := func() int64 {
		resp, err := cli.Get(context.Background(), "/", clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		require.NoError(t, err)
		return resp.Header.Revision
	}

	code, stdout, stderr := runCLI(t, nil, "db", "migrate", "--from", "bolt:"+src, "--to", "etcd:"+ep)
	require.Equal(t, 0, code, stderr)
	assert.Empty(t, stderr)
	assert.Contains(t, stdout, "source:   bolt:"+src+"\n")
	assert.Contains(t, stdout, "target:   etcd:"+ep+" (prefix /billingd/)\n")
	assert.Regexp(t, `\n  consents\s+6\n`, stdout)
	assert.Regexp(t, `\n  attention\s+1\n`, stdout)
	assert.Contains(t, stdout, "check:    the target opens as a billingd store (schema 3) and passes its check (in 0s)\n")
	m := verified.FindStringSubmatch(stdout)
	require.NotNil(t, m, stdout)
	n, _ := strconv.Atoi(m[1])
	assert.Greater(t, n, 20)
	assert.Contains(t, stdout, "copied:   "+m[1]+" keys in ")

	back := filepath.Join(t.TempDir(), "back.db")
	code, stdout, stderr = runCLI(t, nil, "db", "migrate", "--from", "etcd:"+ep, "--to", "bolt:"+back, "--dial-timeout", "2s")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "verified: "+m[1]+" records identical")
	code, stdout, stderr = runCLI(t, nil, "db", "check", "--db", back)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "result:     ok")

	// The file that came back holds exactly the original's keys and values.
	a, err := bolt.Open(src, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	b, err := bolt.Open(back, bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, kv.Compare(context.Background(), a.Engine(), b.Engine(), storage.Buckets))
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())

	t.Run("refusals", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.db")
		missing := filepath.Join(t.TempDir(), "missing.db")
		pw := filepath.Join(t.TempDir(), "nope")
		for _, tt := range []struct {
			name string
			args []string
			code int
			msg  string
		}{
			{"no --from", []string{"--to", "bolt:" + other}, 2, "db migrate: --from is required: bolt:PATH or etcd:ENDPOINT[,ENDPOINT...]\nRun 'billingd db migrate --help' for usage."},
			{"unknown engine", []string{"--from", "postgres:x", "--to", "bolt:" + other}, 2, `--from "postgres:x": want bolt:PATH or etcd:ENDPOINT[,ENDPOINT...]`},
			{"no path", []string{"--from", "bolt:" + src, "--to", "bolt:"}, 2, `--to "bolt:": no PATH`},
			{"empty endpoint", []string{"--from", "etcd:" + ep + ",", "--to", "bolt:" + other}, 2, "an empty ENDPOINT"},
			{"an argument", []string{"--from", "bolt:" + src, "--to", "bolt:" + other, "extra"}, 2, "extra"},
			{"same file", []string{"--from", "bolt:" + src, "--to", "bolt:" + src}, 2, "--from and --to name the same file"},
			{"password without user", []string{"--from", "bolt:" + src, "--to", "etcd:" + ep, "--etcd-password-file", pw}, 2, "--etcd-password-file needs --etcd-user"},
			{"bad prefix", []string{"--from", "bolt:" + src, "--to", "etcd:" + ep, "--etcd-prefix", "billingd"}, 2, `--etcd-prefix "billingd": want a key prefix beginning with /`},
			{"target file exists", []string{"--from", "etcd:" + ep, "--to", "bolt:" + back}, 2, "--to bolt:" + back + " exists; migrate into a new file"},
			{"target prefix not empty", []string{"--from", "bolt:" + src, "--to", "etcd:" + ep}, 2,
				"target is not empty: etcd prefix /billingd/ holds " + m[1] + " keys; migrate into an empty prefix (--etcd-prefix)"},
			{"source file missing", []string{"--from", "bolt:" + missing, "--to", "bolt:" + other}, 3, "no such file or directory"},
			{"source prefix empty", []string{"--from", "etcd:" + ep, "--etcd-prefix", "/empty/", "--to", "bolt:" + other}, 3,
				"source etcd:" + ep + " (prefix /empty/): etcd /empty/: not a billingd database: the store is empty"},
			{"password file missing", []string{"--from", "etcd:" + ep, "--etcd-user", "u", "--etcd-password-file", pw, "--to", "bolt:" + other}, 3, "--etcd-password-file: open " + pw},
			{"etcd does not answer", []string{"--from", "bolt:" + src, "--to", "etcd:http://127.0.0.1:1", "--dial-timeout", "200ms"}, 1, "etcd: open http://127.0.0.1:1"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				rev := revision()
				code, stdout, stderr := runCLI(t, nil, append([]string{"db", "migrate"}, tt.args...)...)
				assert.Equal(t, tt.code, code, stderr)
				assert.Contains(t, stderr, tt.msg)
				assert.NotContains(t, stdout, "verified")
				assert.Equal(t, rev, revision(), "nothing written to etcd")
				_, err := os.Stat(other)
				assert.ErrorIs(t, err, os.ErrNotExist, "no file created")
			})
		}
	})

	t.Run("source locked by a running daemon", func(t *testing.T) {
		db, err := bolt.Open(src, bolt.Options{})
		require.NoError(t, err)
		defer db.Close()
		code, _, stderr := runCLI(t, nil, "db", "migrate", "--from", "bolt:"+src, "--to", "etcd:"+ep, "--etcd-prefix", "/other/")
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, "database is locked by another process")
		assert.Contains(t, stderr, "stop billingd first")
	})
}
