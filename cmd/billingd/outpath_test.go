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

// dirState is every file under a directory with its bytes (a symbolic link: where
// it points), to show that a refused command wrote nothing.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	st := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			st[p] = "-> " + must(os.Readlink(p))
			return nil
		}
		st[p] = string(must(os.ReadFile(p)))
		return nil
	}))
	return st
}

// copyTo copies the file from into to, creating to's directory.
func copyTo(t *testing.T, from, to string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o700))
	require.NoError(t, os.WriteFile(to, must(os.ReadFile(from)), 0o600))
}

// TestOutputs_NeverAnotherDatabase: a file a command writes is refused when it is,
// or was, a database, whatever the config names (here another path): a bbolt file
// of any name (told from its meta pages), a file with a database's lock or archive
// file beside it, the path of a database that was moved or lost, a lock file, an
// archive file. Exit 2, the file and the reason named, and nothing written.
func TestOutputs_NeverAnotherDatabase(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, "storage:\n  path: "+filepath.Join(t.TempDir(), "billingd.db")+"\n")
	importDB := func(path string) {
		t.Helper()
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
		code, _, stderr := runCLI(t, nil, "consent", "import", "--db", path, "../../examples/consents")
		require.Equal(t, 0, code, stderr)
	}
	// A kept database: its archive file and marked lock file beside it.
	other := filepath.Join(dir, "other", "billingd.db")
	importDB(other)
	require.True(t, bolt.IsLockFile(bolt.LockPath(other)), "the fixture's lock file is marked")
	// Copies with nothing beside them.
	cp := filepath.Join(dir, "copies", "copy.db")
	copyTo(t, other, cp)
	history := filepath.Join(dir, "copies", "history.bak")
	copyTo(t, bolt.ArchivePath(other), history)
	zeroed := filepath.Join(dir, "copies", "zeroed.db")
	copyTo(t, other, zeroed)
	raw := must(os.ReadFile(zeroed))
	clear(raw[:os.Getpagesize()])
	require.NoError(t, os.WriteFile(zeroed, raw, 0o600))
	movedLock := filepath.Join(dir, "copies", "notes.txt")
	copyTo(t, bolt.LockPath(other), movedLock)
	// A database file emptied by a copy gone wrong, its lock file beside it.
	emptied := filepath.Join(dir, "emptied", "billingd.db")
	importDB(emptied)
	require.NoError(t, os.Truncate(emptied, 0))
	require.NoError(t, os.Remove(bolt.ArchivePath(emptied)))
	// Lost databases: the marked lock file left, or the archive file.
	lostLock := filepath.Join(dir, "lost-lock", "billingd.db")
	importDB(lostLock)
	require.NoError(t, os.Remove(lostLock))
	require.NoError(t, os.Remove(bolt.ArchivePath(lostLock)))
	lostArch := filepath.Join(dir, "lost-archive", "billingd.db")
	importDB(lostArch)
	require.NoError(t, os.Remove(lostArch))
	require.NoError(t, os.Remove(bolt.LockPath(lostArch)))
	link := filepath.Join(dir, "calendar.svg")
	require.NoError(t, os.Symlink(lostLock, link))

	svg := func(out string) []string { return []string{"simulate", "--days", "1", "--svg", out} }
	html := func(out string) []string { return []string{"simulate", "--days", "1", "--html", out} }
	ledger := func(out string) []string { return []string{"sandbox", "--addr", "127.0.0.1:99999", "--ledger", out} }
	backup := func(out string) []string { return []string{"db", "backup", "--db", other, "--force", out} }
	tests := []struct {
		name  string
		args  []string
		label string
		out   string
		want  string
	}{
		{"a copy of a database", svg(cp), "simulate: --svg", cp, "is a bbolt database file"},
		{"a database whose first page is damaged", html(zeroed), "simulate: --html", zeroed, "is a bbolt database file"},
		{"an archive file away from its database", ledger(history), "sandbox: --ledger", history, "is a bbolt database file"},
		{"an archive file beside its database", svg(bolt.ArchivePath(other)), "simulate: --svg", bolt.ArchivePath(other),
			"is the archive file of the database " + other + " beside it"},
		{"the lock file of a database beside it", html(bolt.LockPath(other)), "simulate: --html", bolt.LockPath(other),
			"is the lock file of the database " + other + " beside it"},
		{"a lock file moved away", ledger(movedLock), "sandbox: --ledger", movedLock, "is the lock file of a billingd database"},
		{"a database file with its lock file beside it", ledger(other), "sandbox: --ledger", other,
			"has the lock file " + bolt.LockPath(other) + " beside it: it is a billingd database"},
		{"an emptied database file, its lock file beside it", svg(emptied), "simulate: --svg", emptied,
			"has the lock file " + bolt.LockPath(emptied) + " beside it"},
		{"a lost database's path, its marked lock file beside it", svg(lostLock), "simulate: --svg", lostLock,
			"has the lock file " + bolt.LockPath(lostLock) + " beside it, marked by billingd: the database there is missing"},
		{"a lost database's path, its archive file beside it", ledger(lostArch), "sandbox: --ledger", lostArch,
			"has the archive file " + bolt.ArchivePath(lostArch) + " beside it: the database there is missing"},
		{"a dangling symlink to a lost database's path", html(link), "simulate: --html", link, "has the lock file " + bolt.LockPath(lostLock)},
		{"db backup --force over a database with its lock file beside it", backup(emptied), "db backup: FILE", emptied,
			"has the lock file " + bolt.LockPath(emptied)},
		{"db backup --force over an archive file away from its database", backup(history), "db backup: FILE", history,
			"is the archive file of a billingd database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := dirState(t, dir)
			code, stdout, stderr := runCLI(t, nil, append(tt.args, "--config", cfg)...)
			assert.Equal(t, exitUsage, code, stderr)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, "billingd: "+tt.label+" "+tt.out+" ")
			assert.Contains(t, stderr, tt.want)
			assert.Equal(t, before, dirState(t, dir), "nothing written: every file byte-identical, none added or removed")
		})
	}

	t.Run("still written", func(t *testing.T) {
		ok := t.TempDir()
		old := filepath.Join(ok, "calendar.svg")
		require.NoError(t, os.WriteFile(old, []byte("<svg/>"), 0o600))
		code, _, stderr := runCLI(t, nil, append(svg(old), "--config", cfg)...)
		require.Equal(t, 0, code, "a file of another kind is replaced: %s", stderr)
		assert.NotEqual(t, "<svg/>", string(must(os.ReadFile(old))))

		// A removed simulation's unmarked lock file marks no database.
		sim := filepath.Join(ok, "sim.svg")
		require.NoError(t, os.WriteFile(bolt.LockPath(sim), nil, 0o600))
		code, _, stderr = runCLI(t, nil, append(html(sim), "--config", cfg)...)
		require.Equal(t, 0, code, stderr)

		// An earlier backup is replaced with --force.
		bak := filepath.Join(ok, "backup.db")
		for range 2 {
			code, _, stderr = runCLI(t, nil, append(backup(bak), "--config", cfg)...)
			require.Equal(t, 0, code, stderr)
		}
	})
}

// TestOutputs_NeverARunningDaemonsDatabase: with no config naming it (simulate
// without --config reads the built-in defaults), a running daemon's database is
// refused by what is beside it, and a hard link to it elsewhere by its meta pages,
// read while the daemon holds the file's locks; the daemon goes on writing. (Its
// bytes are not compared: the daemon writes them.)
func TestOutputs_NeverARunningDaemonsDatabase(t *testing.T) {
	de := startTestDaemon(t, nov26)
	path := de.cfg.Storage.Path
	hard := filepath.Join(t.TempDir(), "calendar.svg")
	require.NoError(t, os.Link(path, hard))
	fi := must(os.Stat(path))
	for _, tt := range []struct{ name, out, want string }{
		{"the database", path, "has the lock file " + bolt.LockPath(path) + " beside it: it is a billingd database"},
		{"a hard link to it in another directory", hard, "is a bbolt database file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := de.cli("simulate", "--days", "3", "--svg", tt.out)
			assert.Equal(t, exitUsage, code, stderr)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, "billingd: simulate: --svg "+tt.out+" "+tt.want)
			// The daemon writes meanwhile (its probe, the archive drain): its bytes
			// are its own; what a refused command would have changed is the file at
			// the path, and its kind.
			assert.True(t, os.SameFile(fi, must(os.Stat(path))), "the daemon's file is still at the path")
			assert.True(t, os.SameFile(fi, must(os.Stat(hard))), "the hard link is still to it")
			assert.True(t, must(bolt.IsBoltFile(path)), "still a bbolt file")
		})
	}
	code, body := readyz(t, de.d)
	assert.Equal(t, 200, code, body)
	code, _, stderr := de.cli("consent", "add", "../../examples/consents/weekly-retries.json")
	require.Equal(t, 0, code, "the daemon still writes: %s", stderr)
}
