package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/storagetest"
)

// TestConformance_ArchiveDrainedAtOnce runs the storage conformance suite with a
// drain after every write that archives (no delay): storage's readers then meet
// records in the stage, in the archive file, and moving between them.
func TestConformance_ArchiveDrainedAtOnce(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		path := filepath.Join(t.TempDir(), "billingd.db")
		db, err := Open(path, Options{ArchiveDelay: time.Nanosecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		return db
	})
}

// openArchived opens a database whose drain runs only when the test asks.
func openArchived(t *testing.T, path string) *Store {
	t.Helper()
	db, err := Open(path, Options{ArchiveDelay: time.Hour})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// archiveModel is what the layers' buckets must read as.
type archiveModel [len(layers)]map[string]string

func (m *archiveModel) keys(i int) []string {
	var ks []string
	for k := range m[i] {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestArchiveFile_Model writes, deletes and drains at random, with writes made
// between a drain's two commits and drains cut off between them (a crash there),
// and with the database reopened now and then, and checks after every step that
// both buckets read exactly as a map would: Get, ForEach, Cursor's First, Seek and
// Next, and Last of every prefix.
func TestArchiveFile_Model(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			path := filepath.Join(t.TempDir(), "billingd.db")
			db := openArchived(t, path)
			var m archiveModel
			for i := range m {
				m[i] = map[string]string{}
			}
			key := func() string { return fmt.Sprintf("k%02d", rng.IntN(40)) }
			write := func() {
				i, k := rng.IntN(len(layers)), key()
				if rng.IntN(3) == 0 {
					require.NoError(t, db.e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
						return tx.Bucket(layers[i].name).Delete([]byte(k))
					}))
					delete(m[i], k)
					return
				}
				v := fmt.Sprintf("v%d", rng.Uint32())
				require.NoError(t, db.e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
					return tx.Bucket(layers[i].name).Put([]byte(k), []byte(v))
				}))
				m[i][k] = v
			}
			errCut := errors.New("cut between the two commits")
			for step := range 400 {
				switch r := rng.IntN(20); {
				case r < 11:
					write()
				case r < 14:
					_, err := db.e.drainArchive(1 + rng.IntN(8))
					require.NoError(t, err)
				case r < 17:
					// Changes after the drain read the stages, and after its first
					// commit; reads between its two commits.
					db.e.drainHook = func(at int) error {
						for range rng.IntN(4) {
							write()
						}
						if at == 2 {
							checkModel(t, db, &m, fmt.Sprintf("step %d, between a drain's commits", step))
						}
						return nil
					}
					_, err := db.e.drainArchive(1 + rng.IntN(8))
					db.e.drainHook = nil
					require.NoError(t, err)
				case r < 19:
					cut := 1 + rng.IntN(2)
					db.e.drainHook = func(at int) error {
						if at == cut {
							return errCut
						}
						return nil
					}
					n, err := db.e.drainArchive(1 + rng.IntN(8))
					db.e.drainHook = nil
					if err != nil || n > 0 {
						require.ErrorIs(t, err, errCut) // nothing staged: no commit to cut
					}
				default:
					require.NoError(t, db.Close())
					db = openArchived(t, path)
				}
				checkModel(t, db, &m, fmt.Sprintf("step %d", step))
			}
			n, err := db.DrainArchive()
			require.NoError(t, err)
			t.Logf("last drain moved %d; drained in all %d", n, db.e.arch.moved.Load())
			checkModel(t, db, &m, "after the last drain")
			staged := 0
			require.NoError(t, db.e.view(func(tx *bbolt.Tx) error {
				for _, l := range layers {
					staged += tx.Bucket(l.name).Stats().KeyN + tx.Bucket(l.gone).Stats().KeyN
				}
				return nil
			}))
			assert.Zero(t, staged, "a drain to the end leaves no record or tombstone in the database file")
			held := 0
			require.NoError(t, guard(func() error {
				return db.e.arch.db.View(func(tx *bbolt.Tx) error {
					for _, l := range layers {
						held += tx.Bucket(l.name).Stats().KeyN
					}
					return nil
				})
			}))
			want := 0
			for i := range m {
				want += len(m[i])
			}
			assert.Equal(t, want, held, "the archive file holds every record, and no deleted one")
		})
	}
}

func checkModel(t *testing.T, db *Store, m *archiveModel, when string) {
	t.Helper()
	require.NoError(t, db.e.View(context.Background(), func(tx kv.Tx) error {
		for i, l := range layers {
			b := tx.Bucket(l.name)
			want := m.keys(i)
			got := []string{}
			require.NoError(t, b.ForEach(func(k, v []byte) error {
				got = append(got, string(k)+"="+string(v))
				return nil
			}))
			wantKV := []string{}
			for _, k := range want {
				wantKV = append(wantKV, k+"="+m[i][k])
			}
			require.Equal(t, wantKV, got, "%s: %s, ForEach", when, l.name)
			for n := range 40 {
				k := fmt.Sprintf("k%02d", n)
				v, ok := m[i][k]
				if ok {
					require.Equal(t, v, string(b.Get([]byte(k))), "%s: %s, Get %s", when, l.name, k)
				} else {
					require.Nil(t, b.Get([]byte(k)), "%s: %s, Get %s", when, l.name, k)
				}
				// Seek then Next to the end reads the keys from k on.
				from := []string{}
				c := b.Cursor()
				for ck, cv := c.Seek([]byte(k)); ck != nil; ck, cv = c.Next() {
					from = append(from, string(ck)+"="+string(cv))
				}
				j := sort.SearchStrings(want, k)
				require.Equal(t, wantKV[j:], from, "%s: %s, Seek %s", when, l.name, k)
			}
			for _, p := range []string{"", "k", "k0", "k1", "k2", "k3", "k39", "x"} {
				lk, lv := b.Last([]byte(p))
				var wk string
				for _, k := range want {
					if strings.HasPrefix(k, p) {
						wk = k
					}
				}
				if wk == "" {
					require.Nil(t, lk, "%s: %s, Last %q", when, l.name, p)
					continue
				}
				require.Equal(t, wk+"="+m[i][wk], string(lk)+"="+string(lv), "%s: %s, Last %q", when, l.name, p)
			}
		}
		return nil
	}))
}

// TestArchiveFile_Binding: the database file and its archive file are a pair; a
// missing, foreign or stray archive file is refused with a message saying what to
// do, and nothing is written.
func TestArchiveFile_Binding(t *testing.T) {
	ctx := context.Background()
	// fill writes a consent whose cycle 0 was missed: its attempt is archived at
	// once (the cursor has moved past it), then drained to the archive file.
	missedKey := storage.AttemptKey{ConsentID: "urn:t:a"}
	fill := func(t *testing.T, path string) {
		db := openArchived(t, path)
		rec := storagetest.Record(t, "urn:t:a", storage.ConsentActive)
		rec.NextCycle = 1
		missed := storagetest.Attempt("urn:t:a", 0, 0, storage.AttemptMissed, cycle.MustDate(2026, 3, 31), t0)
		require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true, Attempts: []*storage.Attempt{missed}}))
		n, err := db.DrainArchive()
		require.NoError(t, err)
		require.Equal(t, 2, n, "the missed attempt, archived, and its entry in the dates index")
		require.NoError(t, db.Close())
	}
	read := func(t *testing.T, db *Store) string {
		a, err := db.GetAttempt(ctx, missedKey)
		require.NoError(t, err)
		return string(a.State)
	}
	const v = string(storage.AttemptMissed)

	t.Run("missing once used", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		fill(t, path)
		require.NoError(t, os.Rename(ArchivePath(path), ArchivePath(path)+".away"))
		for _, ro := range []bool{false, true} {
			_, err := Open(path, Options{ReadOnly: ro, Timeout: time.Second})
			require.ErrorIs(t, err, ErrCorrupt)
			require.ErrorIs(t, err, ErrArchiveMissing)
			assert.Contains(t, err.Error(), "the archive file is missing: "+ArchivePath(path)+" holds the settled attempts")
			assert.NotContains(t, err.Error(), "corrupt")
		}
		_, err := os.Stat(ArchivePath(path))
		assert.ErrorIs(t, err, os.ErrNotExist, "a refused open creates no archive file")
		require.NoError(t, os.Rename(ArchivePath(path)+".away", ArchivePath(path)))
		db := openArchived(t, path)
		assert.Equal(t, v, read(t, db))
	})
	t.Run("a link at the path, its archive file beside the linked file", func(t *testing.T) {
		base := t.TempDir()
		real, link := filepath.Join(base, "real.db"), filepath.Join(base, "link.db")
		fill(t, real)
		require.NoError(t, os.Symlink(real, link))
		_, err := Open(link, Options{Timeout: time.Second})
		require.ErrorIs(t, err, ErrArchiveMissing)
		assert.Contains(t, err.Error(), link+" is a symbolic link to "+real+", and "+ArchivePath(real)+" is beside that")
	})
	t.Run("emptied once used", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		fill(t, path)
		require.NoError(t, os.WriteFile(ArchivePath(path), nil, 0o600))
		_, err := Open(path, Options{Timeout: time.Second})
		require.ErrorIs(t, err, ErrArchiveMissing)
		assert.Contains(t, err.Error(), "is empty (0 bytes), and it held the settled attempts")
		assert.NotContains(t, err.Error(), "remove it to start a new one")
	})
	t.Run("never used: made again", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		require.NoError(t, openArchived(t, path).Close())
		require.NoError(t, os.Remove(ArchivePath(path)))
		ro, err := Open(path, Options{ReadOnly: true})
		require.NoError(t, err, "a reader reads the database file alone")
		require.NoError(t, ro.Close())
		_, err = os.Stat(ArchivePath(path))
		require.ErrorIs(t, err, os.ErrNotExist, "a reader writes nothing")
		require.NoError(t, openArchived(t, path).Close())
		_, err = os.Stat(ArchivePath(path))
		require.NoError(t, err, "a writer makes it again")
	})
	t.Run("another database's", func(t *testing.T) {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
		fill(t, a)
		fill(t, b)
		require.NoError(t, os.Rename(ArchivePath(b), ArchivePath(a)))
		_, err := Open(a, Options{Timeout: time.Second})
		require.ErrorIs(t, err, ErrArchiveMismatch)
		require.ErrorIs(t, err, ErrNotBillingd)
		assert.Contains(t, err.Error(), "was made for the database")
		assert.NotContains(t, err.Error(), "not a billingd database", "both files are billingd's")
	})
	t.Run("restored backup beside the old archive file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		fill(t, path)
		db := openArchived(t, path)
		var buf bytes.Buffer
		_, err := db.Backup(ctx, &buf)
		require.NoError(t, err)
		require.NoError(t, db.Close())
		require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))
		_, err = Open(path, Options{Timeout: time.Second})
		require.ErrorIs(t, err, ErrArchiveMismatch)
		assert.Contains(t, err.Error(), "move "+ArchivePath(path)+" away")
		require.NoError(t, os.Remove(ArchivePath(path)))
		db = openArchived(t, path)
		assert.Equal(t, v, read(t, db), "the backup holds the archived record in itself")
		n, err := db.DrainArchive()
		require.NoError(t, err)
		assert.Equal(t, 2, n, "and a writer moves it (and its dates entry) to a new archive file")
		assert.Equal(t, v, read(t, db))
	})
	t.Run("compacted pair", func(t *testing.T) {
		dir := t.TempDir()
		path, out := filepath.Join(dir, "billingd.db"), filepath.Join(dir, "out.db")
		fill(t, path)
		_, _, err := Compact(out, path)
		require.NoError(t, err)
		db := openArchived(t, out)
		assert.Equal(t, v, read(t, db), "the copy reads the archived record from its own archive file")
		require.NoError(t, db.Close())
		// Its database file beside the original archive file: a new pair has a new
		// identifier, so the mix is refused (it would read the same history only
		// until either file is written again).
		require.NoError(t, os.Remove(ArchivePath(out)))
		require.NoError(t, copyFile(ArchivePath(path), ArchivePath(out)))
		_, err = Open(out, Options{Timeout: time.Second})
		require.ErrorIs(t, err, ErrArchiveMismatch)
	})
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

// TestArchiveFile_StageBounded: writes that stage faster than the drain runs (here,
// its delay is an hour) wake it past stageLimit and wait for it, so the database
// file never holds much more than that.
func TestArchiveFile_StageBounded(t *testing.T) {
	db := openArchived(t, filepath.Join(t.TempDir(), "billingd.db"))
	most := 0
	for i := range 3 * stageLimit / 100 {
		require.NoError(t, db.e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
			for j := range 100 {
				if err := tx.Bucket(layers[3].name).Put(fmt.Appendf(nil, "%08d", i*100+j), []byte("v")); err != nil {
					return err
				}
			}
			return nil
		}))
		most = max(most, stagedCount(t, db))
	}
	assert.LessOrEqual(t, most, stageLimit+drainChunk, "staged at most the limit and about a drain's worth")
	assert.Greater(t, db.ArchiveDrained(), int64(stageLimit), "the writes drained")
}

// TestArchiveFile_BacklogNotHeldByView: while a View the drain must wait for is
// open (a backup), writes past stageLimit do not wait for the drain, which cannot
// shorten the stages before the View ends; after it, the drain takes them all.
func TestArchiveFile_BacklogNotHeldByView(t *testing.T) {
	ctx := context.Background()
	db := openArchived(t, filepath.Join(t.TempDir(), "billingd.db"))
	growFiles(t, db)
	db.e.arch.backlog = time.Hour // were a write to wait for the drain, it would wait past the guard below
	opened, release, viewed := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		viewed <- db.e.View(ctx, func(tx kv.Tx) error {
			_ = tx.Bucket([]byte("attempts")).Get([]byte("k"))
			close(opened)
			<-release
			return nil
		})
	}()
	<-opened
	wrote := make(chan error, 1)
	go func() {
		for i := range stageLimit/1000 + 3 {
			if err := db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
				for j := range 1000 {
					if err := tx.Bucket(layers[3].name).Put(fmt.Appendf(nil, "%08d", i*1000+j), []byte("v")); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		require.NoError(t, err)
	case <-time.After(time.Minute): // a guard against a hang, not a wait for work
		close(release)
		t.Fatal("a write past the stage bound waited for a drain held by an open View")
	}
	close(release)
	require.NoError(t, <-viewed)
	_, err := db.DrainArchive()
	require.NoError(t, err)
	require.NoError(t, db.e.View(ctx, func(tx kv.Tx) error {
		assert.Equal(t, 0, tx.Bucket(layers[3].name).(*layered).stage.b.Stats().KeyN, "the stage drained after the View")
		n := 0
		require.NoError(t, tx.Bucket(layers[3].name).ForEach(func(k, v []byte) error { n++; return nil }))
		assert.Equal(t, (stageLimit/1000+3)*1000, n, "every record reads once")
		return nil
	}))
}

// TestBackup_StaleCopyRemoved: what a backup or a compaction at start interrupted by a
// crash left beside the database is removed by the next writer's open, and nothing
// of another database.
func TestBackup_StaleCopyRemoved(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "billingd.db")
	require.NoError(t, openArchived(t, path).Close())
	stale := filepath.Join(dir, backupDirPrefix(path)+"123")
	staleCompact := filepath.Join(dir, compactDirPrefix(path)+"123")
	other := filepath.Join(dir, backupDirPrefix(filepath.Join(dir, "other.db"))+"123")
	for _, d := range []string{stale, staleCompact, other} {
		require.NoError(t, os.Mkdir(d, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(d, "copy.db"), []byte("x"), 0o600))
	}
	ro, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	require.NoError(t, ro.Close())
	_, err = os.Stat(stale)
	require.NoError(t, err, "a reader removes nothing")
	require.NoError(t, openArchived(t, path).Close())
	_, err = os.Stat(stale)
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(staleCompact)
	assert.ErrorIs(t, err, os.ErrNotExist, "what a compaction at start cut short left")
	_, err = os.Stat(other)
	assert.NoError(t, err, "another database's copy stays")
}

// growFiles makes the database file big enough (and leaves free pages) so writes while a
// read transaction is open do not need a remap (which would wait for the reader).
func growFiles(t *testing.T, db *Store) {
	t.Helper()
	big := bytes.Repeat([]byte("x"), 4<<20)
	ctx := context.Background()
	require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
		return tx.Bucket([]byte("webhooks")).Put([]byte("pad"), big)
	}))
	require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
		return tx.Bucket([]byte("webhooks")).Delete([]byte("pad"))
	}))
	// The archive file too (a drain's commit must not need to remap it).
	for _, del := range []bool{false, true} {
		require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			if del {
				return tx.Bucket([]byte("feed_ids")).Delete([]byte("pad"))
			}
			return tx.Bucket([]byte("feed_ids")).Put([]byte("pad"), big)
		}))
		_, err := db.DrainArchive()
		require.NoError(t, err)
	}
}

// TestArchiveFile_ViewOneSnapshot: a View's two read transactions are one point in
// time. Were the archive file's begun at its first read, it could see a drain of a
// change the View's database-file snapshot does not have: a record moved back from
// the archive to a live bucket (unpin) would be in neither bucket for that View, one
// moved into the archive (a sweep) in both; a backup (kv.Copy reads one View, live
// buckets first) would lose or double it.
func TestArchiveFile_ViewOneSnapshot(t *testing.T) {
	ctx := context.Background()
	attempts, archive := []byte("attempts"), []byte("archive")
	for _, tc := range []struct {
		name     string
		from, to []byte
	}{{"archive to live", archive, attempts}, {"live to archive", attempts, archive}} {
		t.Run(tc.name, func(t *testing.T) {
			db := openArchived(t, filepath.Join(t.TempDir(), "billingd.db"))
			growFiles(t, db)
			k := []byte("urn:t:a\x00attempt0")
			require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
				return tx.Bucket(tc.from).Put(k, []byte("settled"))
			}))
			_, err := db.DrainArchive()
			require.NoError(t, err)
			read := make(chan struct{}, 1)
			db.e.drainHook = func(at int) error {
				if at == 1 {
					read <- struct{}{}
				}
				return nil
			}
			var live, arch []byte
			drained := make(chan error, 1)
			require.NoError(t, db.e.View(ctx, func(tx kv.Tx) error {
				// The View has begun and read a live bucket, as kv.Copy does.
				_ = tx.Bucket(attempts).Get(k)
				// Meanwhile the record moves, and a drain reads the stages.
				require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
					if err := tx.Bucket(tc.to).Put(k, []byte("settled")); err != nil {
						return err
					}
					return tx.Bucket(tc.from).Delete(k)
				}))
				go func() {
					_, err := db.DrainArchive()
					drained <- err
				}()
				<-read
				// The drain must not commit while this View is open; were it to,
				// it would be done well within this wait.
				select {
				case err := <-drained:
					drained <- err
				case <-time.After(200 * time.Millisecond):
				}
				live, arch = tx.Bucket(attempts).Get(k), tx.Bucket(archive).Get(k)
				return nil
			}))
			require.NoError(t, <-drained)
			db.e.drainHook = nil
			assert.True(t, live != nil || arch != nil, "the View sees the record in neither bucket")
			assert.False(t, live != nil && arch != nil, "the View sees the record in both buckets")
		})
	}
}

// TestArchiveFile_CloseWaitsForReads: a read under way when Close is called finishes:
// the archive file is closed after the database file, whose Close waits for it.
func TestArchiveFile_CloseWaitsForReads(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "billingd.db")
	db, err := Open(path, Options{ArchiveDelay: time.Hour})
	require.NoError(t, err)
	started, closed := make(chan struct{}), make(chan error, 1)
	var viewErr error
	viewDone := make(chan struct{})
	go func() {
		defer close(viewDone)
		viewErr = db.e.View(ctx, func(tx kv.Tx) error {
			_ = tx.Bucket([]byte("attempts")).Get([]byte("x"))
			close(started)
			time.Sleep(200 * time.Millisecond) // Close is called meanwhile
			_ = tx.Bucket([]byte("archive")).Get([]byte("x"))
			return nil
		})
	}()
	<-started
	go func() { closed <- db.Close() }()
	<-viewDone
	require.NoError(t, <-closed)
	require.NoError(t, viewErr, "a read under way when Close is called finishes")
}

// TestArchiveFile_StatsCountBothFiles: Stats' SizeBytes and InUseBytes both count the
// archive file (billingd_db_inuse_bytes / billingd_db_size_bytes, the
// BillingdDatabaseFragmented alert, would otherwise be low for any store with history).
func TestArchiveFile_StatsCountBothFiles(t *testing.T) {
	ctx := context.Background()
	db := openArchived(t, filepath.Join(t.TempDir(), "billingd.db"))
	val := bytes.Repeat([]byte("h"), 200)
	for i := range 8 {
		require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			b := tx.Bucket([]byte("event_archive"))
			for j := range 5000 {
				if err := b.Put(fmt.Appendf(nil, "urn:t:%02d\x00%06d", i, j), val); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	_, err := db.DrainArchive()
	require.NoError(t, err)
	st, err := db.Stats(ctx)
	require.NoError(t, err)
	t.Logf("size %d, in use %d (%.2f)", st.SizeBytes, st.InUseBytes, float64(st.InUseBytes)/float64(st.SizeBytes))
	require.Greater(t, st.InUseBytes, int64(40000*200), "the 8 MB of history in the archive file are in use")
}

// TestArchiveFile_CreationCrash: an archive file a crash left empty or unwritten while
// it was first made (nothing was ever drained to it) is made again.
func TestArchiveFile_CreationCrash(t *testing.T) {
	for name, content := range map[string][]byte{"empty": nil, "zeroes": make([]byte, 16384)} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "billingd.db")
			db, err := Open(path, Options{ArchiveDelay: time.Hour})
			require.NoError(t, err)
			require.NoError(t, db.Close())
			require.NoError(t, os.WriteFile(ArchivePath(path), content, 0o600))
			db, err = Open(path, Options{ArchiveDelay: time.Hour, Timeout: time.Second})
			require.NoError(t, err, "nothing was ever moved to the archive file: it can be made again")
			require.NoError(t, db.Close())
		})
	}
}

// TestArchiveFile_RemovedWhileOpen: the archive file removed (or replaced) under a
// running daemon fails the store's identity check (readiness, the daemon's ErrReplaced
// stop), as the database file does: history drained there would be lost with the
// process.
func TestArchiveFile_RemovedWhileOpen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "billingd.db")
	db := openArchived(t, path)
	put := func(k string) error {
		return db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			return tx.Bucket([]byte("archive")).Put([]byte(k), []byte("settled"))
		})
	}
	require.NoError(t, put("a"))
	_, err := db.DrainArchive()
	require.NoError(t, err)
	require.NoError(t, os.Rename(ArchivePath(path), ArchivePath(path)+".moved"))
	err = put("b")
	require.ErrorIs(t, err, ErrReplaced, "a write is refused, as when the database file is replaced")
	assert.Contains(t, err.Error(), ArchivePath(path))
	require.ErrorIs(t, db.CheckIdentity(), ErrReplaced, "the store's identity check covers the archive file too")
}

// stagedCount is the records and tombstones the stages hold.
func stagedCount(t *testing.T, db *Store) int {
	n := 0
	require.NoError(t, db.e.view(func(tx *bbolt.Tx) error {
		for _, l := range layers {
			n += tx.Bucket(l.name).Stats().KeyN + tx.Bucket(l.gone).Stats().KeyN
		}
		return nil
	}))
	return n
}

// stagePut writes n records to a layer, keys from on.
func stagePut(t *testing.T, db *Store, from, n int) {
	require.NoError(t, db.e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
		for j := range n {
			if err := tx.Bucket(layers[3].name).Put(fmt.Appendf(nil, "%08d", from+j), []byte("v")); err != nil {
				return err
			}
		}
		return nil
	}))
}

// TestArchiveFile_StagedCountAfterHeldDrain: a drain that read fewer than drainChunk
// records and was then held by a View (a backup) does not forget, when it ends,
// what was staged during the hold (writes then do not wait for it): the count that
// bounds the stages stays at least what they hold.
func TestArchiveFile_StagedCountAfterHeldDrain(t *testing.T) {
	ctx := context.Background()
	db := openArchived(t, filepath.Join(t.TempDir(), "billingd.db"))
	growFiles(t, db)
	db.e.arch.stopDrain() // drains only when the test asks
	db.e.arch.backlog = time.Hour
	stagePut(t, db, 0, 100) // what the drain 1 s after a write finds
	opened, release, viewed := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		viewed <- db.e.View(ctx, func(tx kv.Tx) error {
			close(opened)
			<-release
			return nil
		})
	}()
	<-opened
	drained := make(chan error, 1)
	go func() { _, err := db.e.drainArchive(drainChunk); drained <- err }()
	for db.e.arch.heldSince.Load() == 0 { // the drain waits for the View
		runtime.Gosched()
	}
	for i := range 30 { // the backup's 20 s of writes
		stagePut(t, db, 1000+i*1000, 1000)
	}
	close(release)
	require.NoError(t, <-viewed)
	require.NoError(t, <-drained)
	held := stagedCount(t, db)
	t.Logf("staged records %d, staged counter %d", held, db.e.arch.staged.Load())
	assert.GreaterOrEqual(t, db.e.arch.staged.Load(), int64(held), "the counter forgot what was staged during the hold")
}

// TestArchiveFile_BacklogShortViews: with short Views always open (API reads, here
// 2 ms each), a drain waits a moment for them at every waitViews; a write past
// stageLimit waits that out, so the stages stay bounded.
func TestArchiveFile_BacklogShortViews(t *testing.T) {
	ctx := context.Background()
	db := openArchived(t, filepath.Join(t.TempDir(), "billingd.db"))
	growFiles(t, db)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				_ = db.e.View(ctx, func(tx kv.Tx) error {
					_ = tx.Bucket(layers[3].name).Get([]byte("k"))
					time.Sleep(2 * time.Millisecond)
					return nil
				})
			}
		}()
	}
	most := 0
	const per = 5000
	start := time.Now()
	for i := range 60 {
		stagePut(t, db, i*per, per)
		most = max(most, stagedCount(t, db))
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("most staged %d in %v", most, time.Since(start))
	assert.LessOrEqual(t, most, stageLimit+per+drainChunk, "staged far past the bound with only short Views open")
}

// TestOpen_LostDatabase: a writer that finds no database file where one was (its
// archive file beside the path, or a lock file a writer marked) refuses to make a
// new, empty one, which would bill nobody while looking healthy, and writes nothing;
// a first start, and a start anew once the leftovers are moved away, make one.
func TestOpen_LostDatabase(t *testing.T) {
	t.Run("its archive file beside it", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		require.NoError(t, openArchived(t, path).Close())
		require.NoError(t, os.Rename(path, path+".away"))
		require.NoError(t, os.Remove(LockPath(path))) // even without the mark
		_, err := Open(path, Options{Timeout: time.Second})
		require.ErrorIs(t, err, os.ErrNotExist)
		assert.Contains(t, err.Error(), "the database file is missing, and its archive file "+ArchivePath(path)+" is beside it")
		_, err = os.Stat(path)
		assert.ErrorIs(t, err, os.ErrNotExist, "no database file made")
		require.NoError(t, os.Rename(path+".away", path))
		require.NoError(t, openArchived(t, path).Close())
	})
	t.Run("a marked lock file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		require.NoError(t, openArchived(t, path).Close())
		mark, err := os.ReadFile(LockPath(path))
		require.NoError(t, err)
		assert.Equal(t, lostDatabaseMark, string(mark), "a writer marks the lock file")
		require.NoError(t, os.Remove(path))
		require.NoError(t, os.Remove(ArchivePath(path)))
		_, err = Open(path, Options{Timeout: time.Second})
		require.ErrorIs(t, err, os.ErrNotExist)
		assert.Contains(t, err.Error(), "its lock file "+LockPath(path)+" shows billingd opened a database here before")
		_, err = os.Stat(path)
		assert.ErrorIs(t, err, os.ErrNotExist, "no database file made")
		require.NoError(t, os.Remove(LockPath(path)))
		require.NoError(t, openArchived(t, path).Close(), "started anew, as the message says")
	})
	t.Run("an unmarked lock file (a first open that failed)", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		require.NoError(t, os.WriteFile(LockPath(path), nil, 0o600))
		require.NoError(t, openArchived(t, path).Close())
	})
	t.Run("the archive file given as the database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		require.NoError(t, openArchived(t, path).Close())
		for _, ro := range []bool{false, true} {
			_, err := Open(ArchivePath(path), Options{ReadOnly: ro, Timeout: time.Second})
			require.ErrorIs(t, err, ErrNotBillingd)
			assert.Contains(t, err.Error(), "it is the archive file of the database "+path+" beside it")
		}
		_, err := os.Stat(LockPath(ArchivePath(path)))
		assert.ErrorIs(t, err, os.ErrNotExist, "no lock file made beside it")

		// Its database file gone: told by its contents, not called a damaged database.
		require.NoError(t, os.Rename(path, path+".away"))
		for _, ro := range []bool{false, true} {
			_, err := Open(ArchivePath(path), Options{ReadOnly: ro, Timeout: time.Second})
			require.ErrorIs(t, err, ErrNotBillingd)
			assert.Contains(t, err.Error(), "it is an archive file, of the database "+path+", which is missing")
		}
		_, err = os.Stat(LockPath(ArchivePath(path)))
		assert.ErrorIs(t, err, os.ErrNotExist, "no lock file made beside it")
	})
}
