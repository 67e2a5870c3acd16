package bolt

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"
)

// populated returns the path of a closed database of n consents, each with a due
// entry and an attempt, so that its buckets span many pages.
func populated(t testing.TB, n int) string {
	t.Helper()
	db, path := openTemp(t)
	var chs []*storage.Change
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("urn:t:%05d", i)
		k := storage.AttemptKey{ConsentID: id, Cycle: 1}
		chs = append(chs, &storage.Change{
			Consent:  storagetest.Record(t, id, storage.ConsentActive),
			Attempts: []*storage.Attempt{{AttemptKey: k, State: storage.AttemptSubmitted, ClientRequestID: "crid-" + id, CreatedAt: t0, UpdatedAt: t0}},
			PutDue:   []storage.DueItem{{At: t0.Add(time.Duration(i) * time.Minute), Key: storage.AttemptKey{ConsentID: id, Cycle: 2}}},
		})
	}
	_, err := db.ApplyAll(context.Background(), chs)
	require.NoError(t, err)
	require.NoError(t, db.Close())
	return path
}

func sum(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

// corruptPages overwrites the first bytes of count random pages past the meta pages
// with random bytes, as a torn or misdirected write leaves them.
func corruptPages(t testing.TB, path string, rng *rand.Rand, count int) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	pages := len(raw) / 4096
	for i := 0; i < count; i++ {
		p := 2 + rng.IntN(pages-2)
		for j := 0; j < 64; j++ {
			raw[p*4096+j] = byte(rng.UintN(256))
		}
	}
	require.NoError(t, os.WriteFile(path, raw, 0o600))
}

func TestOpen_CorruptFiles(t *testing.T) {
	src := populated(t, 600)
	raw, err := os.ReadFile(src)
	require.NoError(t, err)
	db, err := Open(src, Options{ReadOnly: true})
	require.NoError(t, err)
	var used int
	require.NoError(t, db.e.view(func(tx *bbolt.Tx) error { used = int(tx.Size()); return nil }))
	require.NoError(t, db.Close())
	require.Greater(t, used, 20*4096)

	// Every way of opening and reading a damaged file ends in ErrCorrupt, never in a
	// panic or a fault, and leaves the file as it was.
	use := func(t *testing.T, path string) error {
		db, err := Open(path, Options{Timeout: time.Second})
		if err != nil {
			return err
		}
		defer db.Close()
		if err := db.Verify(context.Background()); err != nil {
			return err
		}
		_, err = db.ListConsents(context.Background(), "", 10000, "")
		return err
	}
	t.Run("truncated", func(t *testing.T) {
		for _, n := range []int{20000, 4096 * 3, used / 2, used - 4096} {
			path := filepath.Join(t.TempDir(), "t.db")
			require.NoError(t, os.WriteFile(path, raw[:n], 0o600))
			before := sum(t, path)
			err := use(t, path)
			require.ErrorIs(t, err, ErrCorrupt, "%d bytes", n)
			assert.Contains(t, err.Error(), "truncated")
			_, err = Inspect(path, time.Second)
			require.ErrorIs(t, err, ErrCorrupt)
			assert.Equal(t, before, sum(t, path), "the file is untouched")
		}
	})
	t.Run("empty or shorter than its first pages", func(t *testing.T) {
		for _, n := range []int{0, 100, 4096} {
			path := filepath.Join(t.TempDir(), "e.db")
			require.NoError(t, os.WriteFile(path, raw[:n], 0o600))
			before := sum(t, path)
			err := use(t, path)
			require.ErrorIs(t, err, ErrCorrupt, "%d bytes: never taken for a new database", n)
			for _, ro := range []bool{true, false} {
				_, err = Open(path, Options{ReadOnly: ro, Timeout: time.Second})
				require.ErrorIs(t, err, ErrCorrupt, "%d bytes, read-only %t", n, ro)
			}
			assert.Equal(t, before, sum(t, path), "the file is untouched")
		}
	})
	t.Run("random pages", func(t *testing.T) {
		found := 0
		for seed := uint64(1); seed <= 40; seed++ {
			path := filepath.Join(t.TempDir(), "c.db")
			require.NoError(t, os.WriteFile(path, raw, 0o600))
			corruptPages(t, path, rand.New(rand.NewPCG(seed, 7)), 1+int(seed%4))
			before := sum(t, path)
			err := use(t, path)
			if err == nil {
				// The damage fell on free pages only: the data is intact.
				continue
			}
			require.ErrorIs(t, err, ErrCorrupt, "seed %d", seed)
			assert.NotContains(t, err.Error(), "self identifies", "no garbage page number")
			found++
			rep, err := Inspect(path, time.Second)
			require.ErrorIs(t, err, ErrCorrupt, "seed %d", seed)
			require.NotNil(t, rep)
			assert.NotEmpty(t, rep.Problems)
			_, _, err = Compact(filepath.Join(t.TempDir(), "out.db"), path)
			require.ErrorIs(t, err, ErrCorrupt, "seed %d", seed)
			assert.Equal(t, before, sum(t, path), "seed %d: the file is untouched", seed)
		}
		t.Logf("%d of 40 damaged copies hit pages in use", found)
		assert.Greater(t, found, 20)
	})
}

func TestDB_Replaced(t *testing.T) {
	rec := func(id string) *storage.Change {
		return &storage.Change{Consent: storagetest.Record(t, id, storage.ConsentActive), NewConsent: true}
	}
	for _, tt := range []struct {
		name    string
		replace func(t *testing.T, path string)
	}{
		{"moved aside and copied back", func(t *testing.T, path string) {
			require.NoError(t, os.Rename(path, path+".moved"))
			b, err := os.ReadFile(path + ".moved")
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path+".new", b, 0o600))
			require.NoError(t, os.Rename(path+".new", path))
		}},
		{"removed", func(t *testing.T, path string) {
			// With its archive file: a new database beside the old one's archive
			// file is refused (TestArchiveFile_Binding).
			require.NoError(t, os.Rename(path, path+".moved"))
			require.NoError(t, os.Rename(ArchivePath(path), ArchivePath(path+".moved")))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			removed := tt.name == "removed"
			var (
				mu      sync.Mutex
				reports []error
			)
			path := filepath.Join(t.TempDir(), "billingd.db")
			db, err := Open(path, Options{OnWrite: func(err error) { mu.Lock(); reports = append(reports, err); mu.Unlock() }})
			require.NoError(t, err)
			defer db.Close()
			require.NoError(t, db.Apply(context.Background(), rec("urn:t:before")))
			require.NoError(t, db.CheckIdentity())

			tt.replace(t, path)
			err = db.Apply(context.Background(), rec("urn:t:after"))
			require.ErrorIs(t, err, ErrReplaced)
			assert.Contains(t, err.Error(), "database file was replaced or removed while open: "+path)
			_, err = db.ApplyAll(context.Background(), []*storage.Change{rec("urn:t:after2")})
			assert.ErrorIs(t, err, ErrReplaced)
			assert.ErrorIs(t, db.SetAmount(context.Background(), "urn:t:before", 1, 100), ErrReplaced)
			assert.ErrorIs(t, db.Probe(context.Background()), ErrReplaced)
			assert.ErrorIs(t, db.CheckIdentity(), ErrReplaced)
			_, err = db.GetConsent(context.Background(), "urn:t:after")
			assert.ErrorIs(t, err, storage.ErrNotFound, "nothing was written to the open file either")
			mu.Lock()
			require.NotEmpty(t, reports)
			assert.NoError(t, reports[0])
			assert.ErrorIs(t, reports[len(reports)-1], ErrReplaced)
			mu.Unlock()

			// A second writer on the same path is refused, replaced file or not.
			_, err = Open(path, Options{Timeout: 100 * time.Millisecond})
			require.ErrorIs(t, err, ErrLocked)
			require.NoError(t, db.Close())
			again, err := Open(path, Options{Timeout: time.Second})
			if removed {
				// Free once the first one closed, but no new, empty database is made
				// where one was lost (TestOpen_LostDatabase).
				require.ErrorIs(t, err, os.ErrNotExist)
				assert.Contains(t, err.Error(), "the database file is missing")
				require.NoError(t, os.Rename(path+".moved", path))
				require.NoError(t, os.Rename(ArchivePath(path+".moved"), ArchivePath(path)))
				again, err = Open(path, Options{Timeout: time.Second})
			}
			require.NoError(t, err, "free once the first one closed")
			require.NoError(t, again.Close())
		})
	}
	t.Run("concurrent writers all refused", func(t *testing.T) {
		db, path := openTemp(t)
		require.NoError(t, os.Rename(path, path+".moved"))
		var wg sync.WaitGroup
		errs := make([]error, 50)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = db.Apply(context.Background(), rec(fmt.Sprintf("urn:t:%d", i)))
			}()
		}
		wg.Wait()
		for _, err := range errs {
			assert.ErrorIs(t, err, ErrReplaced)
		}
		list, err := db.ListConsents(context.Background(), "", 100, "")
		require.NoError(t, err)
		assert.Empty(t, list)
	})
}

func TestOpen_LockFile(t *testing.T) {
	t.Run("reader waits for a writer", func(t *testing.T) {
		db, path := openTemp(t)
		_, err := Open(path, Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, ErrLocked)
		require.NoError(t, db.Close())
		ro, err := Open(path, Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, ro.Close())
	})
	t.Run("read-only copy without a lock file", func(t *testing.T) {
		path := populated(t, 3)
		cp := filepath.Join(t.TempDir(), "copy.db")
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(cp, b, 0o600))
		ro, err := Open(cp, Options{ReadOnly: true})
		require.NoError(t, err)
		require.NoError(t, ro.Close())
		_, err = os.Stat(lockPath(cp))
		assert.ErrorIs(t, err, os.ErrNotExist, "a reader creates no lock file")
	})
}

func TestFailureReason(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("store: %w: /x", ErrReplaced), "replaced"},
		{fmt.Errorf("store: write: %w", syscall.ENOSPC), "enospc"},
		{errors.New("file resize error: no space left on device"), "enospc"},
		{fmt.Errorf("store: %w", syscall.EDQUOT), "enospc"},
		{fmt.Errorf("store: %w", syscall.EROFS), "readonly"},
		{&os.PathError{Op: "write", Path: "/x", Err: syscall.EACCES}, "readonly"},
		{errors.New("something else"), "other"},
		{fmt.Errorf("store: %w: a page is damaged", ErrCorrupt), "other"},
	} {
		t.Run(tt.err.Error(), func(t *testing.T) {
			assert.Equal(t, tt.want, storage.FailureReason(tt.err))
		})
	}
}

func TestDB_OnWrite(t *testing.T) {
	var got []error
	path := filepath.Join(t.TempDir(), "billingd.db")
	db, err := Open(path, Options{OnWrite: func(err error) { got = append(got, err) }})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true}))
	require.ErrorIs(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true}), storage.ErrExists)
	require.ErrorIs(t, db.SetAmount(context.Background(), "urn:t:none", 1, 1), storage.ErrNotFound)
	require.NoError(t, db.Probe(context.Background()))
	assert.Equal(t, []error{nil, nil}, got, "refusals for what a write contains say nothing about the store")
}

func TestCompact_Sizes(t *testing.T) {
	path := populated(t, 400)
	dir := t.TempDir()
	one, two := filepath.Join(dir, "one.db"), filepath.Join(dir, "two.db")
	before, after, err := Compact(one, path)
	require.NoError(t, err)
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		ai, err := os.Stat(ArchivePath(p))
		require.NoError(t, err, "a copy of a database with an archive file has one too")
		return fi.Size() + ai.Size()
	}
	assert.Equal(t, size(path), before, "sizes are the files' sizes, the archive file's added")
	assert.Equal(t, size(one), after)
	before2, after2, err := Compact(two, one)
	require.NoError(t, err)
	assert.Equal(t, after, before2)
	assert.LessOrEqual(t, after2, before2, "compacting a compacted file never grows it")

	rep, err := Inspect(one, time.Second)
	require.NoError(t, err)
	fi, err := os.Stat(one)
	require.NoError(t, err)
	assert.Equal(t, fi.Size(), rep.FileBytes)
	assert.Equal(t, size(one)-fi.Size(), rep.ArchiveBytes)
	assert.Equal(t, ArchivePath(one), rep.ArchivePath)
	assert.Equal(t, 400, rep.Records["consents"])
	assert.Equal(t, 400, rep.Records["attempts"])
	assert.Equal(t, storage.SchemaVersion, rep.Schema)
	assert.Equal(t, 400, rep.Consents[storage.ConsentActive])
	assert.Empty(t, rep.Problems)

	db, err := Open(one, Options{ReadOnly: true})
	require.NoError(t, err)
	defer db.Close()
	st, err := db.Stats(context.Background())
	require.NoError(t, err)
	assert.Equal(t, size(one), st.SizeBytes, "Stats agrees with ls, the archive file's size added")
}

// BenchmarkApply measures the cost of the identity check: one stat(2) per write
// transaction. Compare the two sub-benchmarks' ns/op.
func BenchmarkApply(b *testing.B) {
	for _, check := range []bool{true, false} {
		b.Run(fmt.Sprintf("identity_check=%t", check), func(b *testing.B) {
			db, _ := openTemp(b)
			if !check {
				db.e.hasID = false
			}
			rec := storagetest.Record(b, "urn:t:bench", storage.ConsentActive)
			require.NoError(b, db.Apply(context.Background(), &storage.Change{Consent: rec}))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rec.NextCycle = i
				if err := db.Apply(context.Background(), &storage.Change{Cursor: rec}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckIdentity is the check alone.
func BenchmarkCheckIdentity(b *testing.B) {
	db, _ := openTemp(b)
	b.ResetTimer() // creating the database (an fsync or more) is not the check
	for i := 0; i < b.N; i++ {
		if err := db.CheckIdentity(); err != nil {
			b.Fatal(err)
		}
	}
}

// A free list damaged in its page header panics in bbolt's Open after the file is
// mapped (recovered: ErrCorrupt). The mapping must not outlive the failed open: it
// would hold bbolt's lock on the file, and every later open in the process (billingd
// db check after a failed start) would fail as locked, not as damaged.
func TestOpen_DamagedFreeListReleasesTheFile(t *testing.T) {
	path := populated(t, 50)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	const ps = 4096
	meta := func(i int) (txid, freelist uint64) {
		m := raw[i*ps+16:]
		return binary.LittleEndian.Uint64(m[48:]), binary.LittleEndian.Uint64(m[32:])
	}
	tx0, fl0 := meta(0)
	tx1, fl1 := meta(1)
	fl := fl0
	if tx1 > tx0 {
		fl = fl1
	}
	require.Less(t, int(fl)*ps+ps, len(raw)+1, "the free list page is in the file")
	binary.LittleEndian.PutUint16(raw[int(fl)*ps+8:], 0x7e38) // an unknown page type
	require.NoError(t, os.WriteFile(path, raw, 0o600))

	_, err = Open(path, Options{Timeout: time.Second})
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "freelist")
	for _, ro := range []bool{false, true} {
		_, err = Open(path, Options{ReadOnly: ro, Timeout: time.Second})
		require.ErrorIs(t, err, ErrCorrupt, "read-only %t: the damage again, not a lock", ro)
		assert.NotErrorIs(t, err, ErrLocked)
	}
	_, err = Inspect(path, time.Second)
	require.ErrorIs(t, err, ErrCorrupt)
}
