package bolt

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestIsBoltFile: told from the meta pages' bytes, with the database held by a
// writer, from either meta page, and never by reading what is not a regular file.
func TestIsBoltFile(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "billingd.db")
	require.NoError(t, openArchived(t, db).Close())
	held := filepath.Join(dir, "held.db")
	h := openArchived(t, held) // open until the test ends: its flocks are held
	_ = h

	firstPageZeroed := filepath.Join(dir, "zeroed.db")
	raw, err := os.ReadFile(db)
	require.NoError(t, err)
	raw = append([]byte(nil), raw...)
	clear(raw[:os.Getpagesize()])
	require.NoError(t, os.WriteFile(firstPageZeroed, raw, 0o600))
	bothZeroed := filepath.Join(dir, "both-zeroed.db")
	clear(raw[:2*os.Getpagesize()])
	require.NoError(t, os.WriteFile(bothZeroed, raw, 0o600))

	text := filepath.Join(dir, "ledger.json")
	require.NoError(t, os.WriteFile(text, []byte("[]\n"), 0o600))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte{0xED, 0xDA, 0x0C, 0xED}, 0o600))
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))

	tests := []struct {
		name, path string
		want       bool
	}{
		{"a database", db, true},
		{"its archive file", ArchivePath(db), true},
		{"a database a writer holds", held, true},
		{"a database whose first page is zeroes (page 1's meta)", firstPageZeroed, true},
		{"both meta pages zeroes", bothZeroed, false},
		{"its lock file", LockPath(db), false},
		{"a text file", text, false},
		{"an empty file", empty, false},
		{"a file shorter than a page header", short, false},
		{"a FIFO (not opened: it would wait for a writer)", fifo, false},
		{"a directory", dir, false},
		{"a missing file", filepath.Join(dir, "missing"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := IsBoltFile(tt.path)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	t.Run("a file that cannot be read", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads a file of mode 000")
		}
		p := filepath.Join(dir, "unreadable.db")
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o000))
		_, err := IsBoltFile(p)
		assert.ErrorIs(t, err, os.ErrPermission)
	})
}

// TestIsLockFile: a lock file a writer marked is told wherever it is; an unmarked
// one is not.
func TestIsLockFile(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "billingd.db")
	require.NoError(t, openArchived(t, db).Close())
	moved := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.Rename(LockPath(db), moved))
	unmarked := filepath.Join(dir, "sim.db.lock")
	require.NoError(t, os.WriteFile(unmarked, nil, 0o600))

	assert.True(t, IsLockFile(moved), "a marked lock file, renamed")
	assert.False(t, IsLockFile(unmarked), "an empty lock file")
	assert.False(t, IsLockFile(db), "the database")
	assert.False(t, IsLockFile(filepath.Join(dir, "missing")))
}

// TestIsArchiveFile: an archive file is told from a database by its contents,
// wherever it is.
func TestIsArchiveFile(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "billingd.db")
	require.NoError(t, openArchived(t, db).Close())
	away := filepath.Join(dir, "history.bak")
	require.NoError(t, os.Rename(ArchivePath(db), away))

	assert.True(t, IsArchiveFile(away))
	assert.False(t, IsArchiveFile(db))
	assert.False(t, IsArchiveFile(filepath.Join(dir, "missing")))
}
