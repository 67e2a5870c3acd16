package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage/kv"
)

// dumpFile is every bucket (with its sequence) and key of the bbolt file at path,
// nested buckets included, as lines.
func dumpFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer b.Close()
	var out []string
	var walk func(prefix string, bk *bbolt.Bucket)
	walk = func(prefix string, bk *bbolt.Bucket) {
		out = append(out, fmt.Sprintf("%s seq=%d", prefix, bk.Sequence()))
		require.NoError(t, bk.ForEach(func(k, v []byte) error {
			if v == nil {
				walk(prefix+"/"+string(k), bk.Bucket(k))
				return nil
			}
			out = append(out, fmt.Sprintf("%s/%q=%q", prefix, k, v))
			return nil
		}))
	}
	require.NoError(t, b.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
			walk(string(name), bk)
			return nil
		})
	}))
	return out
}

// fillStore writes records into live buckets, into the archive file (drained) and
// into the stages (not yet drained), and a bucket sequence.
func fillStore(t *testing.T, db *Store) {
	t.Helper()
	ctx := context.Background()
	for round, drain := range []bool{true, false} {
		require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			for i := range 200 {
				k := fmt.Appendf(nil, "urn:t:%d\x00%04d", round, i)
				if err := tx.Bucket([]byte("attempts")).Put(k, bytes.Repeat([]byte("a"), 300)); err != nil {
					return err
				}
				if err := tx.Bucket([]byte("archive")).Put(k, bytes.Repeat([]byte("h"), 200)); err != nil {
					return err
				}
			}
			return nil
		}))
		if drain {
			_, err := db.DrainArchive()
			require.NoError(t, err)
		}
	}
	require.NoError(t, db.e.bolt.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("consents")).SetSequence(42) }))
}

// filledStore is a closed store written by fillStore.
func filledStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "billingd.db")
	db, err := Open(path, Options{ArchiveDelay: time.Hour})
	require.NoError(t, err)
	fillStore(t, db)
	require.NoError(t, db.Close())
	return path
}

func inode(t *testing.T, path string) fileID {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	id, _ := idOf(fi)
	return id
}

// TestCompactAtStart: a writer's open compacts the database file into a copy holding
// every bucket, key and sequence of the original (live records, staged records, the
// archive file's binding), renamed over it; the archive file is untouched and the
// store reads and writes as before.
func TestCompactAtStart(t *testing.T) {
	path := filledStore(t)
	before, archBefore, id := dumpFile(t, path), dumpFile(t, ArchivePath(path)), inode(t, path)

	db, err := Open(path, Options{ArchiveDelay: time.Hour, CompactAtStart: CompactAlways})
	require.NoError(t, err)
	assert.NotEqual(t, id, inode(t, path), "the file was replaced by its compacted copy")
	require.NoError(t, db.CheckIdentity(), "the open file is the one at the path")
	ctx := context.Background()
	// The copy was walked before it took the path: the first Verify (verify_on_start)
	// walks the archive file alone, later ones the database file too.
	assert.True(t, db.e.checkedAtOpen.Load())
	require.NoError(t, db.Verify(ctx))
	assert.False(t, db.e.checkedAtOpen.Load(), "once")
	require.NoError(t, db.e.View(ctx, func(tx kv.Tx) error {
		n := 0
		require.NoError(t, tx.Bucket([]byte("archive")).ForEach(func(k, v []byte) error { n++; return nil }))
		assert.Equal(t, 400, n, "the drained and the staged records read once each")
		return nil
	}))
	require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
		return tx.Bucket([]byte("attempts")).Put([]byte("after"), []byte("x"))
	}))
	require.NoError(t, db.Close())

	after := dumpFile(t, path)
	var last []byte
	for _, l := range after {
		if bytes.HasPrefix([]byte(l), []byte(`archive_file/"compacted"`)) {
			last = []byte(l)
		}
	}
	assert.NotNil(t, last, "the copy records its size")
	assert.Equal(t, append(without(before, `archive_file/"compacted"`), ""), append(without(without(after, `attempts/"after"`), `archive_file/"compacted"`), ""))
	assert.Contains(t, after, `attempts/"after"="x"`)
	assert.Equal(t, archBefore, dumpFile(t, ArchivePath(path)), "the archive file is untouched")
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(path), compactDirPrefix(path)+"*"))
	assert.Empty(t, stale, "nothing left beside the file")
}

func without(lines []string, prefix string) []string {
	var out []string
	for _, l := range lines {
		if !bytes.HasPrefix([]byte(l), []byte(prefix)) {
			out = append(out, l)
		}
	}
	return out
}

// TestCompactAtStart_FailureLeavesTheFile: a compaction that fails before its switch
// (a full disk, here injected) leaves the file open as it was, and the open succeeds.
func TestCompactAtStart_FailureLeavesTheFile(t *testing.T) {
	path := filledStore(t)
	before, id := dumpFile(t, path), inode(t, path)
	compactFault = func() error { return errors.New("no space left on device") }
	t.Cleanup(func() { compactFault = nil })
	db, err := Open(path, Options{ArchiveDelay: time.Hour, CompactAtStart: CompactAlways})
	require.NoError(t, err)
	require.NoError(t, db.e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
		return tx.Bucket([]byte("attempts")).Put([]byte("after"), []byte("x"))
	}))
	require.NoError(t, db.Close())
	assert.Equal(t, id, inode(t, path), "the same file")
	assert.Equal(t, before, without(dumpFile(t, path), `attempts/"after"`))
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(path), compactDirPrefix(path)+"*"))
	assert.Empty(t, stale, "the copy removed")
}

// TestCompactAtStart_Auto: CompactAuto compacts a file past compactFloor that has
// grown compactGrowth times since its last compaction, or was never compacted; a
// small file is left alone.
func TestCompactAtStart_Auto(t *testing.T) {
	for _, tc := range []struct {
		mode       CompactMode
		size, last int64
		want       bool
	}{
		{CompactNever, 1 << 30, 0, false},
		{CompactAlways, 32 << 10, 32 << 10, true},
		{CompactAuto, compactFloor - 4096, 0, false},
		{CompactAuto, compactFloor, 0, true},
		{CompactAuto, 200 << 20, 120 << 20, false},
		{CompactAuto, 240 << 20, 120 << 20, true},
		{CompactAuto, 100 << 20, 10 << 20, true},
	} {
		assert.Equal(t, tc.want, wantCompact(tc.mode, tc.size, tc.last), "%+v", tc)
	}
	path := filledStore(t)
	id := inode(t, path)
	db, err := Open(path, Options{ArchiveDelay: time.Hour, CompactAtStart: CompactAuto})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	assert.Equal(t, id, inode(t, path), "a small file is not compacted")

	// The record the compaction leaves is what the rule reads.
	db, err = Open(path, Options{ArchiveDelay: time.Hour, CompactAtStart: CompactAlways})
	require.NoError(t, err)
	size, last, err := db.e.compactedSize()
	require.NoError(t, err)
	require.NoError(t, db.Close())
	assert.InDelta(t, float64(size), float64(last), 2*4096, "the copy records its size, within a page or two")
	for _, m := range []string{"auto", "always", "never", ""} {
		_, err := ParseCompactMode(m)
		assert.NoError(t, err, m)
	}
	_, err = ParseCompactMode("sometimes")
	assert.ErrorContains(t, err, `"sometimes" is not auto, always or never`)
}

// TestCompactAtStart_DamagedFileNotCompacted: a branch page whose count was cut (a
// torn write, a bad disk) leaves a subtree unreachable. A copy would hold what it can
// reach and pass every check, and replace the evidence: the compaction walks the
// file first and leaves a damaged one as it is, for verify_on_start to refuse.
func TestCompactAtStart_DamagedFileNotCompacted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "billingd.db")
	db, err := Open(path, Options{ArchiveDelay: time.Hour})
	require.NoError(t, err)
	const n = 3000
	require.NoError(t, db.e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
		for i := range n {
			if err := tx.Bucket([]byte("attempts")).Put(fmt.Appendf(nil, "urn:t:%06d", i), bytes.Repeat([]byte("a"), 300)); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, db.Close())

	// Cut the count of the attempts bucket's root branch page by one.
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	var root uint64
	require.NoError(t, b.View(func(tx *bbolt.Tx) error { root = uint64(tx.Bucket([]byte("attempts")).Root()); return nil }))
	ps := b.Info().PageSize
	require.NoError(t, b.Close())
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	hdr := make([]byte, 16)
	_, err = f.ReadAt(hdr, int64(root)*int64(ps))
	require.NoError(t, err)
	require.Equal(t, uint16(1), binary.LittleEndian.Uint16(hdr[8:]), "a branch page")
	cnt := binary.LittleEndian.Uint16(hdr[10:])
	require.Greater(t, cnt, uint16(2))
	binary.LittleEndian.PutUint16(hdr[10:], cnt-1)
	_, err = f.WriteAt(hdr, int64(root)*int64(ps))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	// Without compaction at start: verify_on_start refuses the damaged file.
	db, err = Open(path, Options{ArchiveDelay: time.Hour})
	require.NoError(t, err)
	verr := db.Verify(context.Background())
	require.NoError(t, db.Close())
	require.Error(t, verr, "the damage is visible to Verify")
	t.Logf("Verify of the original: %v", verr)

	// billingd run's open (auto compacts a large file; always here for a small one).
	id := inode(t, path)
	db, err = Open(path, Options{ArchiveDelay: time.Hour, CompactAtStart: CompactAlways})
	require.NoError(t, err)
	defer db.Close()
	assert.Equal(t, id, inode(t, path), "not compacted")
	assert.Error(t, db.Verify(context.Background()), "verify_on_start after the open: the damage is still seen")
}

// TestCompactAtStart_SymlinkKept: storage.path a symlink to the real file (on a data
// volume): the copy is made beside the real file and renamed over it; the link stays.
func TestCompactAtStart_SymlinkKept(t *testing.T) {
	real, link := linkedStore(t, "billingd.db", fillStore)
	db, err := Open(link, Options{ArchiveDelay: time.Hour, NoArchiveFile: true, CompactAtStart: CompactAlways})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.True(t, fi.Mode()&os.ModeSymlink != 0, "storage.path is still the symlink to %s (now %v)", real, fi.Mode())
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(filepath.Dir(real)), "*", ".billingd.db.compact-*"))
	assert.Empty(t, left)
	db, err = Open(link, Options{ArchiveDelay: time.Hour, NoArchiveFile: true})
	require.NoError(t, err)
	require.NoError(t, db.Close())
}

// TestCompactAtStart_KeepsMode: the compacted copy has the original's mode (and
// owner; not its ACLs or labels).
func TestCompactAtStart_KeepsMode(t *testing.T) {
	path := filledStore(t)
	require.NoError(t, os.Chmod(path, 0o640))
	db, err := Open(path, Options{ArchiveDelay: time.Hour, CompactAtStart: CompactAlways})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
}

// TestOpenEngine_RetryAfterRemoval: a copy's target (db migrate's) does not mark its
// lock file, so removing what a failed copy left (DST, DST.archive, as db migrate
// says) lets the copy be made again, rather than being refused as a lost database.
func TestOpenEngine_RetryAfterRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "target.db")
	e, err := OpenEngine(path, Options{Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, e.Close())
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Remove(ArchivePath(path)))
	e, err = OpenEngine(path, Options{Timeout: time.Second})
	require.NoError(t, err, "a retry after removing what the message names")
	require.NoError(t, e.Close())
}

// TestCompactAtStart_EmptyValuesNestedAndNoLeaks: empty values, nested buckets and
// sequences survive; no descriptor or mapping of the replaced file stays open.
func TestCompactAtStart_EmptyValuesNestedAndNoLeaks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "billingd.db")
	db, err := Open(path, Options{ArchiveDelay: time.Hour})
	require.NoError(t, err)
	fillStore(t, db)
	require.NoError(t, db.e.bolt.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("attempts"))
		require.NoError(t, b.Put([]byte("empty"), []byte{}))
		require.NoError(t, b.Put([]byte("nil"), nil))
		nb, err := tx.Bucket([]byte("events")).CreateBucket([]byte("nested"))
		require.NoError(t, err)
		require.NoError(t, nb.SetSequence(7))
		return nb.Put([]byte("k"), nil)
	}))
	require.NoError(t, db.Close())
	before := dumpFile(t, path)
	old := inode(t, path)
	fds := func() int { e, _ := os.ReadDir("/proc/self/fd"); return len(e) }
	n0 := fds()
	db, err = Open(path, Options{ArchiveDelay: time.Hour, CompactAtStart: CompactAlways})
	require.NoError(t, err)
	assert.NotEqual(t, old, inode(t, path), "compacted")
	maps, _ := os.ReadFile("/proc/self/maps")
	assert.NotContains(t, string(maps), "(deleted)", "the old file still mapped")
	require.NoError(t, db.Close())
	assert.Equal(t, n0, fds(), "fds")
	assert.Equal(t, without(before, `archive_file/"compacted"`), without(dumpFile(t, path), `archive_file/"compacted"`))
}

// TestCompactAtStart_StaleCopiesBesideTheLink: what a compaction cut short left
// beside the file a symbolic link at the path names (where the copy is made) is
// removed by the next writer's open, as beside the path, even when the path holds
// glob characters.
func TestCompactAtStart_StaleCopiesBesideTheLink(t *testing.T) {
	real, link := linkedStore(t, "b[1].db", nil)
	base := filepath.Dir(filepath.Dir(real))
	stale := []string{
		filepath.Join(base, "data", compactDirPrefix(link)+"123"),
		filepath.Join(base, "etc", compactDirPrefix(link)+"456"),
	}
	for _, d := range stale {
		require.NoError(t, os.Mkdir(d, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(d, "compact.db"), []byte("partial"), 0o600))
	}
	db, err := Open(link, Options{ArchiveDelay: time.Hour, NoArchiveFile: true})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	for _, d := range stale {
		_, err := os.Stat(d)
		assert.ErrorIs(t, err, os.ErrNotExist, d)
	}
}

// linkedStore makes a store (without an archive file) at data/name, filled by fill
// when not nil, and a symbolic link to it at etc/name; it returns both paths.
func linkedStore(t *testing.T, name string, fill func(*testing.T, *Store)) (real, link string) {
	t.Helper()
	base := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(base, "data"), 0o700))
	require.NoError(t, os.Mkdir(filepath.Join(base, "etc"), 0o700))
	real, link = filepath.Join(base, "data", name), filepath.Join(base, "etc", name)
	db, err := Open(real, Options{ArchiveDelay: time.Hour, NoArchiveFile: true})
	require.NoError(t, err)
	if fill != nil {
		fill(t, db)
	}
	require.NoError(t, db.Close())
	require.NoError(t, os.Symlink(real, link))
	return real, link
}
