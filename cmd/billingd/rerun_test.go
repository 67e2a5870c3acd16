package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage/bolt"
)

// TestSimulate_DBAgain: simulate --db into a path whose earlier run's files were
// removed (the database and its archive file, as its own refusals name them) runs:
// a simulation's database is not kept, and not guarded as lost.
func TestSimulate_DBAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim.db")
	code, _, stderr := runCLI(t, nil, "simulate", "--days", "5", "--from", "2026-11-26", "--format", "json", "--db", path)
	require.Equal(t, 0, code, stderr)
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Remove(bolt.ArchivePath(path)))
	code, _, stderr = runCLI(t, nil, "simulate", "--days", "5", "--from", "2026-11-26", "--format", "json", "--db", path)
	require.Equal(t, 0, code, stderr)
}

// TestDBMigrate_AgainAfterRemoval: after removing DST and DST.archive, as db
// migrate's partial-failure message says, migrating again works.
func TestDBMigrate_AgainAfterRemoval(t *testing.T) {
	src := migrateSource(t)
	dst := filepath.Join(t.TempDir(), "dst.db")
	code, _, stderr := runCLI(t, nil, "db", "migrate", "--from", "bolt:"+src, "--to", "bolt:"+dst)
	require.Equal(t, 0, code, stderr)
	require.NoError(t, os.Remove(dst))
	require.NoError(t, os.Remove(bolt.ArchivePath(dst)))
	code, _, stderr = runCLI(t, nil, "db", "migrate", "--from", "bolt:"+src, "--to", "bolt:"+dst)
	require.Equal(t, 0, code, stderr)
}
