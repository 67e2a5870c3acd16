package bolt

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/storagetest"
)

// simulatedDB makes a database as billingd simulate does (Options.Simulated, a
// consent in it) and returns its path.
func simulatedDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sim.db")
	db, err := Open(path, Options{NoSync: true, Simulated: true})
	require.NoError(t, err)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true}))
	require.NoError(t, db.Close())
	return path
}

// isSimulated opens path read-only and asks.
func isSimulated(t *testing.T, path string) bool {
	t.Helper()
	db, err := Open(path, Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	sim, err := db.Simulated(context.Background())
	require.NoError(t, err)
	return sim
}

// TestOpen_RefusesSimulated: with RefuseSimulated a simulation's database is refused
// before anything is written (no compaction at start, no layout, the lock file not
// marked); opened otherwise, it reads, and reports itself simulated.
func TestOpen_RefusesSimulated(t *testing.T) {
	path := simulatedDB(t)
	files := []string{path, ArchivePath(path), LockPath(path)}
	before := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		before[f] = b
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)

	_, err = Open(path, Options{RefuseSimulated: true, CompactAtStart: CompactAlways, Timeout: time.Second})
	require.ErrorIs(t, err, ErrSimulated)
	assert.Contains(t, err.Error(), "open "+path+": the store was made by billingd simulate")
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.Equal(t, before[f], b, "%s unchanged", f)
	}
	now, err := os.Stat(path)
	require.NoError(t, err)
	assert.True(t, os.SameFile(fi, now), "not compacted into a new file")
	assert.False(t, IsLockFile(LockPath(path)), "the lock file not marked as a kept database's")

	assert.True(t, isSimulated(t, path), "a reader opens it")
	rep, err := Inspect(path, time.Second)
	require.NoError(t, err)
	assert.True(t, rep.Simulated, "db check reports it")

	plain, _ := openTemp(t)
	require.NoError(t, plain.Close())
	db, err := Open(plain.Path(), Options{RefuseSimulated: true, Timeout: time.Second})
	require.NoError(t, err, "any other database opens")
	require.NoError(t, db.Close())
}

// TestSimulated_MarkSurvivesCopies: a backup and a compacted copy of a simulation's
// database are a simulation's too.
func TestSimulated_MarkSurvivesCopies(t *testing.T) {
	path := simulatedDB(t)
	dir := t.TempDir()

	t.Run("Backup", func(t *testing.T) {
		src, err := Open(path, Options{ReadOnly: true, Timeout: time.Second})
		require.NoError(t, err)
		out := filepath.Join(dir, "backup.db")
		f, err := os.Create(out)
		require.NoError(t, err)
		_, err = src.Backup(context.Background(), f)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		require.NoError(t, src.Close())
		assert.True(t, isSimulated(t, out))
		_, err = Open(out, Options{RefuseSimulated: true, Timeout: time.Second})
		assert.ErrorIs(t, err, ErrSimulated)
	})
	t.Run("Compact", func(t *testing.T) {
		out := filepath.Join(dir, "compact.db")
		_, _, err := Compact(out, path)
		require.NoError(t, err)
		assert.True(t, isSimulated(t, out))
		_, err = Open(out, Options{RefuseSimulated: true, Timeout: time.Second})
		assert.ErrorIs(t, err, ErrSimulated)
	})
}
