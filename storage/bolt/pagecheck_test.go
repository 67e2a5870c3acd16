package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"
)

// bboltWalk is the reference checkPages is held to: every bucket walked through
// bbolt's cursors (every key counted into records) and bbolt's Tx.Check, read
// through the mapping, under guard.
func bboltWalk(bdb *bbolt.DB, records map[string]int) []string {
	view := func(fn func(tx *bbolt.Tx) error) error { return guard(func() error { return bdb.View(fn) }) }
	var problems []string
	var names [][]byte
	if err := view(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			names = append(names, append([]byte(nil), name...))
			return nil
		})
	}); err != nil {
		return []string{"root bucket: " + problemText(err)}
	}
	for _, name := range names {
		n := 0
		err := view(func(tx *bbolt.Tx) error {
			var walk func(b *bbolt.Bucket) error
			walk = func(b *bbolt.Bucket) error {
				c := b.Cursor()
				for k, v := c.First(); k != nil; k, v = c.Next() {
					n++
					if v == nil {
						if sub := b.Bucket(k); sub != nil {
							if err := walk(sub); err != nil {
								return err
							}
						}
					}
				}
				return nil
			}
			return walk(tx.Bucket(name))
		})
		if err != nil {
			problems = append(problems, fmt.Sprintf("bucket %s: %s", name, problemText(err)))
			continue
		}
		if records != nil {
			records[string(name)] = n
		}
	}
	if len(problems) > 0 {
		return problems
	}
	if err := view(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, err.Error())
		}
		return nil
	}); err != nil {
		problems = append(problems, problemText(err))
	}
	return problems
}

// varied writes a bbolt file of commits transactions of random writes: four
// top-level buckets, nested buckets (small ones inline in their parent's page),
// values from empty to several pages (overflow pages), and deletes, so that its free
// list is long and its trees several pages deep.
func varied(t testing.TB, path string, seed uint64, commits int) {
	t.Helper()
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true})
	require.NoError(t, err)
	defer b.Close()
	rng := rand.New(rand.NewPCG(seed, 1))
	for range commits {
		require.NoError(t, b.Update(func(tx *bbolt.Tx) error {
			for range 60 {
				top, err := tx.CreateBucketIfNotExists(fmt.Appendf(nil, "b%d", rng.IntN(4)))
				if err != nil {
					return err
				}
				key := fmt.Appendf(nil, "k%05d", rng.IntN(3000))
				switch r := rng.IntN(20); {
				case r == 0:
					nb, err := top.CreateBucketIfNotExists(fmt.Appendf(nil, "nested%02d", rng.IntN(30)))
					if err != nil {
						return err
					}
					if _, err := nb.NextSequence(); err != nil {
						return err
					}
					for range 1 + rng.IntN(40) {
						if err := nb.Put(fmt.Appendf(nil, "n%04d", rng.IntN(500)), make([]byte, rng.IntN(120))); err != nil {
							return err
						}
					}
				case r < 4:
					c := top.Cursor()
					if k, v := c.Seek(key); k != nil && v != nil {
						if err := c.Delete(); err != nil {
							return err
						}
					}
				case r == 5:
					if _, err := top.NextSequence(); err != nil {
						return err
					}
				case r == 4:
					if top.Bucket(key) == nil {
						if err := top.Put(key, bytes.Repeat([]byte{byte(r)}, 4096+rng.IntN(20000))); err != nil {
							return err
						}
					}
				default:
					if top.Bucket(key) == nil {
						if err := top.Put(key, bytes.Repeat([]byte{byte(r)}, rng.IntN(300))); err != nil {
							return err
						}
					}
				}
			}
			return nil
		}))
	}
}

func openRaw(t testing.TB, path string) (*bbolt.DB, *os.File) {
	t.Helper()
	b, f, err := openBolt(path, &bbolt.Options{ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b, f
}

// A sound file: no problem, and each top-level bucket's keys counted as bbolt's
// cursors count them, over files of every shape varied writes.
func TestCheckPages_SoundFiles(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		path := filepath.Join(t.TempDir(), "v.db")
		varied(t, path, seed, int(20*seed))
		b, f := openRaw(t, path)
		want, got := map[string]int{}, map[string]int{}
		require.Empty(t, bboltWalk(b, want), "seed %d: bbolt finds the file sound", seed)
		require.Empty(t, checkPages(b, f, got, ""), "seed %d", seed)
		assert.Equal(t, want, got, "seed %d", seed)
		require.Len(t, got, 4)
	}
	// A store's own file, with its archive file.
	db, err := Open(populated(t, 800), Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	want, got := map[string]int{}, map[string]int{}
	require.Empty(t, bboltWalk(db.e.bolt, want))
	require.Empty(t, checkPages(db.e.bolt, db.e.file, got, ""))
	assert.Equal(t, want, got)
	require.NotNil(t, db.e.arch)
	require.Empty(t, checkPages(db.e.arch.db, db.e.arch.file, nil, ""))
}

// Random damage anywhere in the pages past the meta pages (a few bytes or a torn
// sector, in the header or among the keys and values): where checkPages finds the
// file sound, so do bbolt's walk and check.
func TestCheckPages_FindsWhatBboltFinds(t *testing.T) {
	src := filepath.Join(t.TempDir(), "v.db")
	varied(t, src, 42, 60)
	raw, err := os.ReadFile(src)
	require.NoError(t, err)
	pages := len(raw) / 4096
	found, sound := 0, 0
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 9))
		c := bytes.Clone(raw)
		for range 1 + rng.IntN(3) {
			p := 2 + rng.IntN(pages-2)
			off, n := rng.IntN(4096), 1+rng.IntN(64)
			if rng.IntN(3) == 0 {
				off = rng.IntN(32) // the header and the first elements
			}
			for j := off; j < min(off+n, 4096); j++ {
				c[p*4096+j] = byte(rng.UintN(256))
			}
		}
		path := filepath.Join(t.TempDir(), "c.db")
		require.NoError(t, os.WriteFile(path, c, 0o600))
		b, f, err := openBolt(path, &bbolt.Options{ReadOnly: true})
		if err != nil {
			require.ErrorIs(t, err, ErrCorrupt, "seed %d", seed)
			continue // bbolt refuses it at the open (its free list)
		}
		// bbolt's walk is run only where checkPages finds the file sound: a damaged
		// branch page that points back at an ancestor sends bbolt's cursors down a
		// loop without end, which holds memory until the process is killed.
		ours := checkPages(b, f, map[string]int{}, "")
		if len(ours) > 0 {
			found++
			require.NoError(t, b.Close())
			continue
		}
		ref := bboltWalk(b, map[string]int{})
		require.NoError(t, b.Close())
		require.Empty(t, ref, "seed %d: bbolt finds problems, checkPages none", seed)
		sound++ // the damage fell on free pages, or on bytes no check reads
	}
	t.Logf("of 300 damaged copies: %d found by checkPages, %d sound to both checks", found, sound)
	assert.Greater(t, found, 60)
}

// Each kind of damage is named.
func TestCheckPages_Damage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "v.db")
	varied(t, src, 7, 40)
	b, _ := openRaw(t, src)
	// A branch page of bucket b0 and its children.
	var branch uint64
	require.NoError(t, b.View(func(tx *bbolt.Tx) error {
		branch = uint64(tx.Bucket([]byte("b0")).Root())
		return nil
	}))
	raw, err := os.ReadFile(src)
	require.NoError(t, err)
	le := binary.LittleEndian
	pg := func(c []byte, id uint64) []byte { return c[id*4096 : (id+1)*4096] }
	require.Equal(t, uint16(branchPageFlag), le.Uint16(pg(raw, branch)[8:]), "b0's root is a branch page")
	require.Greater(t, le.Uint16(pg(raw, branch)[10:]), uint16(2))
	child := func(c []byte, i int) uint64 { return le.Uint64(pg(c, branch)[pageHeaderSize+i*pageElementSize+8:]) }
	// A leaf page under it.
	leaf := child(raw, 0)
	for le.Uint16(pg(raw, leaf)[8:]) == branchPageFlag {
		leaf = le.Uint64(pg(raw, leaf)[pageHeaderSize+8:])
	}
	for _, tc := range []struct {
		name, want string
		damage     func(c []byte)
	}{
		{"a branch page's count cut", "unreachable unfreed", func(c []byte) {
			le.PutUint16(pg(c, branch)[10:], le.Uint16(pg(c, branch)[10:])-1)
		}},
		{"a page's number overwritten", "does not carry its own page number", func(c []byte) {
			le.PutUint64(pg(c, leaf)[0:], 999999)
		}},
		{"a page's type overwritten", "invalid type", func(c []byte) {
			le.PutUint16(pg(c, leaf)[8:], 0x20)
		}},
		{"two children of one page the same", "multiple references", func(c []byte) {
			le.PutUint64(pg(c, branch)[pageHeaderSize+pageElementSize+8:], child(c, 0))
		}},
		{"a child that is its own parent", "multiple references", func(c []byte) {
			le.PutUint64(pg(c, branch)[pageHeaderSize+8:], branch)
		}},
		{"a child past the high-water mark", "out of bounds", func(c []byte) {
			le.PutUint64(pg(c, branch)[pageHeaderSize+8:], 1<<40)
		}},
		{"two keys of a leaf swapped", "out of order", func(c []byte) {
			p := pg(c, leaf)
			e0, e1 := pageHeaderSize, pageHeaderSize+pageElementSize
			k0 := p[e0+int(le.Uint32(p[e0+4:])):][:le.Uint32(p[e0+8:])]
			k1 := p[e1+int(le.Uint32(p[e1+4:])):][:le.Uint32(p[e1+8:])]
			require.Equal(t, len(k0), len(k1))
			a := bytes.Clone(k0)
			copy(k0, k1)
			copy(k1, a)
		}},
		{"an element's key past the page", "lies outside the page", func(c []byte) {
			le.PutUint32(pg(c, leaf)[pageHeaderSize+4:], 1<<20)
		}},
		{"the file cut short", "truncated", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := bytes.Clone(raw)
			if tc.damage != nil {
				tc.damage(c)
			} else {
				c = c[:len(c)/2]
			}
			path := filepath.Join(t.TempDir(), "d.db")
			require.NoError(t, os.WriteFile(path, c, 0o600))
			b, f, err := openBolt(path, &bbolt.Options{ReadOnly: true})
			require.NoError(t, err)
			defer b.Close()
			problems := checkPages(b, f, nil, "file: ")
			require.NotEmpty(t, problems)
			assert.Contains(t, strings.Join(problems, "; "), tc.want)
			assert.True(t, strings.HasPrefix(problems[0], "file: "), problems[0])
			assert.LessOrEqual(t, len(problems), maxProblems+1)
		})
	}
}

// checkPages reads the file with pread: the process maps none of it, where a walk
// through bbolt's mapping maps every page it reads.
func TestCheckPages_NotThroughTheMapping(t *testing.T) {
	if mappedFile() < 0 {
		t.Skip("no /proc/self/statm here")
	}
	path := filepath.Join(t.TempDir(), "m.db")
	varied(t, path, 3, 150)
	b, f := openRaw(t, path)
	require.GreaterOrEqual(t, fileSize(t, path), int64(8<<20))
	release := func() {
		require.NoError(t, b.View(func(tx *bbolt.Tx) error { releaseMapped(b.Info().Data, tx.Size()); return nil }))
	}
	release()
	before := mappedFile()
	require.Empty(t, checkPages(b, f, nil, ""))
	ours := mappedFile() - before
	release()
	before = mappedFile()
	require.Empty(t, bboltWalk(b, nil))
	ref := mappedFile() - before
	t.Logf("mapped by checkPages: %d KiB; by bbolt's walk and check: %d KiB (a file of %d KiB)", ours>>10, ref>>10, fileSize(t, path)>>10)
	assert.Greater(t, ref, int64(4<<20), "the reference maps the file")
	assert.Less(t, ours, int64(512<<10), "checkPages maps none of it")
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}

// dump lists every bucket (with its sequence), key and value of a bbolt file, as
// bbolt's cursors read them.
func dump(t testing.TB, b *bbolt.DB) []string {
	t.Helper()
	var out []string
	var walk func(prefix string, bk *bbolt.Bucket)
	walk = func(prefix string, bk *bbolt.Bucket) {
		require.NoError(t, bk.ForEach(func(k, v []byte) error {
			if v == nil {
				sub := bk.Bucket(k)
				out = append(out, fmt.Sprintf("%s/%x seq=%d", prefix, k, sub.Sequence()))
				walk(fmt.Sprintf("%s/%x", prefix, k), sub)
				return nil
			}
			out = append(out, fmt.Sprintf("%s/%x=%x", prefix, k, v))
			return nil
		}))
	}
	require.NoError(t, b.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
			out = append(out, fmt.Sprintf("%x seq=%d", name, bk.Sequence()))
			walk(fmt.Sprintf("%x", name), bk)
			return nil
		})
	}))
	return out
}

// compactFile's copy holds exactly what the file holds (every bucket and its
// sequence, every key and value), counted as bbolt's cursors count them, and its
// pages pass the check.
func TestCompactFile_ExactCopy(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		dir := t.TempDir()
		src := filepath.Join(dir, "v.db")
		varied(t, src, seed, int(30*seed))
		b, f := openRaw(t, src)
		counts, want := map[string]int{}, map[string]int{}
		require.Empty(t, bboltWalk(b, want))
		dst := filepath.Join(dir, "copy.db")
		require.NoError(t, compactFile(dst, b, f, false, counts), "seed %d", seed)
		assert.Equal(t, want, counts, "seed %d", seed)
		c, cf := openRaw(t, dst)
		got := map[string]int{}
		require.Empty(t, checkPages(c, cf, got, ""), "seed %d", seed)
		assert.Equal(t, want, got, "seed %d", seed)
		assert.Equal(t, dump(t, b), dump(t, c), "seed %d", seed)
		assert.Less(t, fileSize(t, dst), fileSize(t, src), "seed %d: compacted", seed)
	}
}

// A damaged file fails compactFile with ErrCorrupt naming the damage: nothing is
// copied from it.
func TestCompactFile_DamagedFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "v.db")
	varied(t, src, 5, 40)
	b, _ := openRaw(t, src)
	var root uint64
	require.NoError(t, b.View(func(tx *bbolt.Tx) error { root = uint64(tx.Bucket([]byte("b1")).Root()); return nil }))
	require.NoError(t, b.Close())
	raw, err := os.ReadFile(src)
	require.NoError(t, err)
	binary.LittleEndian.PutUint64(raw[root*4096:], 12345678) // the page's own number
	require.NoError(t, os.WriteFile(src, raw, 0o600))
	b, f := openRaw(t, src)
	err = compactFile(filepath.Join(dir, "copy.db"), b, f, false, nil)
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), fmt.Sprintf("page %d is damaged", root))
}

// A leaf page whose overflow count was damaged to claim the rest of the file is
// not read whole: the pages it claims are another's or free, and the walk stops
// there instead of reading (and allocating) the file's size.
func TestCheckPages_DamagedOverflowNotRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.db")
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true})
	require.NoError(t, err)
	var leaf, hwm uint64
	for i := range 20 {
		require.NoError(t, b.Update(func(tx *bbolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("a"))
			if err != nil {
				return err
			}
			for j := range 10000 {
				if err := bk.Put(binary.BigEndian.AppendUint32(nil, uint32(i*10000+j)), make([]byte, 1000)); err != nil {
					return err
				}
			}
			if err := bk.Delete(binary.BigEndian.AppendUint32(nil, uint32(i*10000))); err != nil {
				return err
			}
			leaf, hwm = uint64(bk.Root()), uint64(tx.Size()/4096)
			return nil
		}))
	}
	require.NoError(t, b.Close())
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	le := binary.LittleEndian
	for le.Uint16(raw[leaf*4096+8:]) == branchPageFlag {
		leaf = le.Uint64(raw[leaf*4096+pageHeaderSize+8:])
	}
	le.PutUint32(raw[leaf*4096+12:], uint32(hwm-leaf-1))
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	b2, f := openRaw(t, path)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	require.NotEmpty(t, checkPages(b2, f, nil, ""))
	runtime.ReadMemStats(&m1)
	t.Logf("allocated %d KiB on a file of %d MiB", (m1.TotalAlloc-m0.TotalAlloc)>>10, len(raw)>>20)
	assert.Less(t, m1.TotalAlloc-m0.TotalAlloc, uint64(len(raw)/8))
}

// A meta page bbolt skips (it fails its checksum) is skipped here too, even when
// it holds the transaction's number.
func TestCheckPages_OlderMetaSameTxid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	varied(t, path, 3, 10)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	le := binary.LittleEndian
	txid := func(i int) []byte { return raw[i*4096+pageHeaderSize+48:][:8] }
	newer, older := 0, 1
	if le.Uint64(txid(1)) > le.Uint64(txid(0)) {
		newer, older = 1, 0
	}
	copy(txid(older), txid(newer))
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	b, f := openRaw(t, path)
	require.Empty(t, bboltWalk(b, nil))
	require.Empty(t, checkPages(b, f, nil, ""))
}

// Buckets nested 600 deep (bbolt sets no bound) are a sound file.
func TestCheckPages_DeepNesting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.db")
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{NoSync: true})
	require.NoError(t, err)
	require.NoError(t, b.Update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucket([]byte("deep"))
		for i := 0; err == nil && i < 600; i++ {
			bk, err = bk.CreateBucket([]byte("d"))
		}
		return err
	}))
	require.NoError(t, b.Close())
	b, f := openRaw(t, path)
	want, got := map[string]int{}, map[string]int{}
	require.Empty(t, bboltWalk(b, want))
	require.Empty(t, checkPages(b, f, got, ""))
	assert.Equal(t, want, got)
}

// A check that cannot find its transaction's meta page in the file it reads (here
// another file's, as a meta page rewritten at every try would leave it) reports
// that, and the copy fails: it never passes as sound having read nothing.
func TestCheckPages_MetaNeverFound(t *testing.T) {
	dir := t.TempDir()
	src, other := filepath.Join(dir, "s.db"), filepath.Join(dir, "o.db")
	varied(t, src, 1, 10)
	varied(t, other, 2, 3)
	b, _ := openRaw(t, src)
	_, of := openRaw(t, other)
	problems := checkPages(b, of, nil, "")
	require.NotEmpty(t, problems)
	assert.Contains(t, problems[0], "neither meta page held the transaction of the check intact")
	assert.Error(t, compactFile(filepath.Join(dir, "c.db"), b, of, false, map[string]int{}))
}

// A panic while writing the copy is the copy's error, not a problem of the file
// copied.
func TestWalkPages_VisitorPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	varied(t, path, 4, 5)
	b, f := openRaw(t, path)
	problems, err := walkPages(b, f, nil, "", func(_ [][]byte, _, _ []byte, _ uint64) error {
		var m map[string]int
		m["x"]++
		return nil
	})
	assert.Empty(t, problems)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nil map")
}

// prefetchFile brings a file that left the page cache back into it, read in order
// (mincore tells which pieces are missing).
func TestPrefetchFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	varied(t, path, 6, 40)
	b, f := openRaw(t, path)
	var used int64
	require.NoError(t, b.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil }))
	pages := int(used / int64(os.Getpagesize()))
	if cachedPages(b.Info().Data, 0, used) < 0 {
		t.Skip("mincore(2) unavailable here")
	}
	require.NoError(t, f.Sync()) // written without syncs: dirty pages stay cached
	dropPages(f, 0, 0, used)
	require.Less(t, cachedPages(b.Info().Data, 0, used), pages/2, "dropped from the page cache")
	prefetchFile(b, f)
	assert.Equal(t, pages, cachedPages(b.Info().Data, 0, used))
}
