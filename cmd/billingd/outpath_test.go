package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage/bolt"
)

func TestCheckOutputs(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	require.NoError(t, os.Mkdir(state, 0o755))
	db := filepath.Join(state, "billingd.db")
	require.NoError(t, os.WriteFile(db, []byte("live"), 0o600))
	require.NoError(t, os.WriteFile(bolt.LockPath(db), nil, 0o600))
	// A second database that has no lock file yet (never opened for writing).
	state2 := filepath.Join(dir, "state2")
	require.NoError(t, os.Mkdir(state2, 0o755))
	db2 := filepath.Join(state2, "b2.db")
	require.NoError(t, os.WriteFile(db2, []byte("live"), 0o600))

	require.NoError(t, os.Link(db, filepath.Join(dir, "hard.db")))
	require.NoError(t, os.Symlink(db, filepath.Join(dir, "sym.db")))
	require.NoError(t, os.Symlink(state, filepath.Join(dir, "alias")))
	require.NoError(t, os.Symlink(state2, filepath.Join(dir, "alias2")))
	require.NoError(t, os.Symlink(bolt.LockPath(db2), filepath.Join(dir, "dangling")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "other.db"), []byte("x"), 0o600))
	cwd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(cwd, db)
	require.NoError(t, err)

	dbs := []liveDB{{path: db, from: "storage.path of the config"}, {path: db2, from: "--db"}}
	tests := []struct {
		name, out, want string // want "": accepted
	}{
		{"the same path", db, "is the database " + db + " (storage.path of the config)"},
		{"an unclean path", filepath.Join(state, "..", "state", ".") + "/./billingd.db", "is the database " + db},
		{"a relative path", rel, "is the database " + db},
		{"a hard link", filepath.Join(dir, "hard.db"), "is the database " + db},
		{"a symlink", filepath.Join(dir, "sym.db"), "is the database " + db},
		{"through a symlinked directory", filepath.Join(dir, "alias", "billingd.db"), "is the database " + db},
		{"the lock file", bolt.LockPath(db), "is the lock file " + bolt.LockPath(db) + " of the database " + db},
		{"a lock file not there yet, through a symlinked directory", filepath.Join(dir, "alias2", "b2.db.lock"), "is the lock file " + bolt.LockPath(db2) + " of the database " + db2 + " (--db)"},
		{"a dangling symlink to a lock file", filepath.Join(dir, "dangling"), "is the lock file " + bolt.LockPath(db2)},
		{"a directory", state, "FILE " + state + " is a directory; name a file"},
		{"another file", filepath.Join(dir, "other.db"), ""},
		{"a new file beside the database", filepath.Join(state, "copy.db"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkOutputs("db backup: FILE", dbs, tt.out)
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, errUsage)
			assert.Contains(t, err.Error(), "db backup: FILE "+tt.out+" ")
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// liveFixture is a database with consents, named by the config as storage.path.
type liveFixture struct {
	dir, db, config string
	raw             []byte
	fi              os.FileInfo
}

func newLiveFixture(t *testing.T) *liveFixture {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "state", "billingd.db")
	require.NoError(t, os.Mkdir(filepath.Dir(db), 0o700))
	code, _, stderr := runCLI(t, nil, "consent", "import", "--db", db, "../../examples/consents")
	require.Equal(t, 0, code, stderr)
	cfg := filepath.Join(dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("storage:\n  path: "+db+"\n"), 0o600))
	f := &liveFixture{dir: dir, db: db, config: cfg}
	f.raw = must(os.ReadFile(db))
	f.fi = must(os.Stat(db))
	return f
}

// files lists every file under the fixture's directory.
func (f *liveFixture) files(t *testing.T) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(f.dir, func(p string, d fs.DirEntry, err error) error {
		out = append(out, p)
		return err
	}))
	return out
}

// untouched asserts that the database is the same file with the same bytes.
func (f *liveFixture) untouched(t *testing.T) {
	t.Helper()
	fi, err := os.Stat(f.db)
	require.NoError(t, err)
	assert.True(t, os.SameFile(f.fi, fi), "the database is still the file it was")
	assert.Equal(t, f.raw, must(os.ReadFile(f.db)), "the database's bytes are unchanged")
}

// TestDBBackup_NeverTheDatabase: a backup whose FILE is the database (or its lock
// file, or a directory) is refused, --force or not, with or without the daemon.
func TestDBBackup_NeverTheDatabase(t *testing.T) {
	t.Run("offline", func(t *testing.T) {
		f := newLiveFixture(t)
		require.NoError(t, os.Link(f.db, filepath.Join(f.dir, "hard.db")))
		require.NoError(t, os.Symlink(f.db, filepath.Join(f.dir, "sym.db")))
		require.NoError(t, os.Symlink(filepath.Dir(f.db), filepath.Join(f.dir, "bind")))
		tests := []struct {
			name string
			args []string
			out  string
			want string
		}{
			{"storage.path itself", nil, f.db, "is the database " + f.db + " (storage.path of the config)"},
			{"--db itself", []string{"--db", f.db}, f.db, "is the database " + f.db + " (--db)"},
			{"storage.path, backing up another --db", []string{"--db", filepath.Join(f.dir, "hard.db")}, filepath.Join(f.dir, "sym.db"), "is the database"},
			{"a hard link", nil, filepath.Join(f.dir, "hard.db"), "is the database " + f.db},
			{"a symlink", nil, filepath.Join(f.dir, "sym.db"), "is the database " + f.db},
			{"another path to the directory", nil, filepath.Join(f.dir, "bind", "billingd.db"), "is the database " + f.db},
			{"the lock file", nil, bolt.LockPath(f.db), "is the lock file " + bolt.LockPath(f.db)},
			{"a directory", nil, filepath.Dir(f.db), "is a directory"},
		}
		before := f.files(t)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				args := append([]string{"db", "backup", "--config", f.config, "--force", tt.out}, tt.args...)
				code, stdout, stderr := runCLI(t, nil, args...)
				assert.Equal(t, exitUsage, code, stderr)
				assert.Empty(t, stdout)
				assert.Contains(t, stderr, "billingd: db backup: FILE "+tt.out+" ")
				assert.Contains(t, stderr, tt.want)
				f.untouched(t)
				assert.Equal(t, before, f.files(t), "nothing written")
			})
		}
		code, stdout, stderr := runCLI(t, nil, "db", "backup", "--config", f.config, filepath.Join(f.dir, "copy.db"))
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "via the file, verified")
	})

	t.Run("while the daemon runs", func(t *testing.T) {
		de := startTestDaemon(t, nov26)
		path := de.cfg.Storage.Path
		cfg := writeConfig(t, "storage:\n  path: "+path+"\n")
		fi := must(os.Stat(path))
		code, stdout, stderr := de.cli("db", "backup", "--config", cfg, path, "--force")
		assert.Equal(t, exitUsage, code)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, "billingd: db backup: FILE "+path+" is the database "+path+" (storage.path of the config)")
		assert.True(t, os.SameFile(fi, must(os.Stat(path))), "the daemon's file is still at the path")

		code, body := readyz(t, de.d)
		assert.Equal(t, 200, code, body)
		code, _, stderr = de.cli("consent", "add", "../../examples/consents/weekly-retries.json")
		require.Equal(t, 0, code, "the daemon still writes: %s", stderr)

		code, stdout, stderr = de.cli("db", "backup", "--config", cfg, bolt.LockPath(path), "--force")
		assert.Equal(t, exitUsage, code)
		assert.Contains(t, stderr, "is the lock file "+bolt.LockPath(path)+" of the database "+path)
		assert.Empty(t, stdout)

		copyPath := filepath.Join(t.TempDir(), "copy.db")
		code, stdout, stderr = de.cli("db", "backup", "--config", cfg, copyPath)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "via the admin API, verified")
	})
}

// TestOutputs_NeverTheDatabase: no command that writes a file writes over the
// database of the config or its lock file.
func TestOutputs_NeverTheDatabase(t *testing.T) {
	f := newLiveFixture(t)
	require.NoError(t, os.Symlink(f.db, filepath.Join(f.dir, "sym.db")))
	require.NoError(t, os.Link(f.db, filepath.Join(f.dir, "hard.db")))
	lock := bolt.LockPath(f.db)
	_, err := os.Stat(lock)
	require.NoError(t, err, "consent import left the lock file")
	sym, hard := filepath.Join(f.dir, "sym.db"), filepath.Join(f.dir, "hard.db")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"db compact OUT", []string{"db", "compact", sym}, "db compact: OUT " + sym + " is the database " + f.db},
		{"db compact OUT, the lock file", []string{"db", "compact", lock}, "db compact: OUT " + lock + " is the lock file"},
		{"db compact OUT, the archive file", []string{"db", "compact", bolt.ArchivePath(f.db)}, "db compact: OUT " + bolt.ArchivePath(f.db) + " is the archive file"},
		{"db migrate --to the source", []string{"db", "migrate", "--from", "bolt:" + f.db, "--to", "bolt:" + hard},
			"db migrate: --to " + hard + " is the database " + f.db + " (--from)"},
		{"db migrate --to the config's database", []string{"db", "migrate", "--from", "etcd:http://127.0.0.1:1", "--to", "bolt:" + sym},
			"db migrate: --to " + sym + " is the database " + f.db + " (storage.path of the config)"},
		{"db migrate --to the lock file", []string{"db", "migrate", "--from", "etcd:http://127.0.0.1:1", "--to", "bolt:" + lock},
			"db migrate: --to " + lock + " is the lock file"},
		{"simulate --db", []string{"simulate", "--db", f.db}, "simulate: --db " + f.db + " is the database"},
		{"simulate --svg", []string{"simulate", "--svg", sym}, "simulate: --svg " + sym + " is the database " + f.db},
		{"simulate --html", []string{"simulate", "--html", lock}, "simulate: --html " + lock + " is the lock file"},
		{"sandbox --ledger", []string{"sandbox", "--addr", "127.0.0.1:99999", "--ledger", hard}, "sandbox: --ledger " + hard + " is the database " + f.db},
		{"sandbox --journal", []string{"sandbox", "--addr", "127.0.0.1:99999", "--journal", lock}, "sandbox: --journal " + lock + " is the lock file"},
	}
	before := f.files(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, append(tt.args, "--config", f.config)...)
			assert.Equal(t, exitUsage, code, stderr)
			assert.Contains(t, stderr, "billingd: "+tt.want)
			f.untouched(t)
			assert.Equal(t, before, f.files(t), "nothing written")
		})
	}

	t.Run("man DIR", func(t *testing.T) {
		dir := t.TempDir()
		page := filepath.Join(dir, "billingd-run.1")
		require.NoError(t, os.WriteFile(page, []byte("live"), 0o600))
		cfg := writeConfig(t, "storage:\n  path: "+page+"\n")
		code, stdout, stderr := runCLI(t, nil, "man", dir, "--config", cfg)
		assert.Equal(t, exitUsage, code)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, "billingd: man: page "+page+" is the database "+page)
		assert.Equal(t, "live", string(must(os.ReadFile(page))))
		entries, _ := os.ReadDir(dir)
		assert.Len(t, entries, 1, "no page written")
	})
}
