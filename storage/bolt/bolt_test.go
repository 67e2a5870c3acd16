package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/kv/kvtest"
	"github.com/klavi-billing/billingd/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConformance runs the storage conformance suite on bolt.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		db, _ := openTemp(t)
		return db
	})
}

// t0 is the instant storagetest.Record's records are added at.
var t0 = storagetest.T0

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "billingd.db")
	db, err := Open(path, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func TestOpen_CreatesAndReopens(t *testing.T) {
	db, path := openTemp(t)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true}))
	require.NoError(t, db.Close())
	db2, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	defer db2.Close()
	r, err := db2.GetConsent(context.Background(), "urn:t:a")
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentActive, r.State)
	assert.Equal(t, klavi.Cents(9990), *r.Consent.PaymentMethodConfig.FixedAmount)
}

func TestOpen_BadFiles(t *testing.T) {
	t.Run("locked by another process", func(t *testing.T) {
		db, path := openTemp(t)
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "urn:t:a", storage.ConsentActive)}))
		start := time.Now()
		_, err := Open(path, Options{Timeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, ErrLocked)
		assert.Contains(t, err.Error(), "is billingd already running?")
		assert.Less(t, time.Since(start), 30*time.Second, "fails instead of hanging")
		_, err = db.GetConsent(context.Background(), "urn:t:a")
		assert.NoError(t, err, "the holder is unaffected")
	})
	t.Run("not a database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "notes.txt")
		content := bytes.Repeat([]byte("these are not the pages you are looking for\n"), 400)
		require.NoError(t, os.WriteFile(path, content, 0o600))
		_, err := Open(path, Options{})
		require.ErrorIs(t, err, ErrCorrupt)
		after, _ := os.ReadFile(path)
		assert.Equal(t, content, after, "the file is left untouched")
	})
	t.Run("foreign bbolt file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "other.db")
		bdb, err := bbolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket([]byte("widgets"))
			if err != nil {
				return err
			}
			return b.Put([]byte("w1"), []byte("blue"))
		}))
		require.NoError(t, bdb.Close())
		before, _ := os.ReadFile(path)
		_, err = Open(path, Options{})
		require.ErrorIs(t, err, ErrNotBillingd)
		assert.Contains(t, err.Error(), "widgets")
		_, err = Open(path, Options{Timeout: time.Second})
		require.ErrorIs(t, err, ErrNotBillingd, "the failed open released its lock")
		after, _ := os.ReadFile(path)
		assert.Equal(t, before, after, "nothing in the foreign file changed")
	})
	t.Run("newer schema", func(t *testing.T) {
		db, path := openTemp(t)
		require.NoError(t, db.e.bolt.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 0, 0, 9})
		}))
		require.NoError(t, db.Close())
		_, err := Open(path, Options{})
		require.ErrorIs(t, err, storage.ErrSchema)
	})
	t.Run("damaged header", func(t *testing.T) {
		db, path := openTemp(t)
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "urn:t:a", storage.ConsentActive)}))
		require.NoError(t, db.Close())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		require.NoError(t, err)
		_, err = f.WriteAt(bytes.Repeat([]byte{0xff}, 64), 0)
		require.NoError(t, err)
		_, err = f.WriteAt(bytes.Repeat([]byte{0xff}, 64), 4096)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		_, err = Open(path, Options{})
		require.ErrorIs(t, err, ErrCorrupt)
	})
	t.Run("directory", func(t *testing.T) {
		_, err := Open(t.TempDir(), Options{})
		require.ErrorContains(t, err, "is a directory")
		require.ErrorIs(t, err, syscall.EISDIR)
	})
	// A directory where the lock file or the archive file goes: EISDIR (the state
	// directory is unusable as it is), and nothing is created beside it.
	for _, suffix := range []string{".lock", ".archive"} {
		t.Run("directory at "+suffix, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "b.db")
			require.NoError(t, os.Mkdir(path+suffix, 0o700))
			_, err := Open(path, Options{Timeout: 100 * time.Millisecond})
			require.ErrorIs(t, err, syscall.EISDIR)
			require.ErrorContains(t, err, path+suffix+": is a directory")
			left, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Len(t, left, 1, "nothing created")
		})
	}
	t.Run("missing file read-only", func(t *testing.T) {
		_, err := Open(filepath.Join(t.TempDir(), "nope.db"), Options{ReadOnly: true})
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestBackupAndCheck(t *testing.T) {
	db, _ := openTemp(t)
	for i := 0; i < 50; i++ {
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, fmt.Sprintf("urn:t:%03d", i), storage.ConsentActive)}))
	}
	var buf bytes.Buffer
	n, err := db.Backup(context.Background(), &buf)
	require.NoError(t, err)
	assert.Equal(t, int64(buf.Len()), n)
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	require.NoError(t, os.WriteFile(copyPath, buf.Bytes(), 0o600))
	cp, err := Open(copyPath, Options{ReadOnly: true})
	require.NoError(t, err)
	defer cp.Close()
	require.NoError(t, cp.Check(context.Background()))
	list, err := cp.ListConsents(context.Background(), "", 1000, "")
	require.NoError(t, err)
	assert.Len(t, list, 50)
	page, err := cp.ListConsents(context.Background(), "urn:t:010", 5, storage.ConsentActive)
	require.NoError(t, err)
	require.Len(t, page, 5)
	assert.Equal(t, "urn:t:011", page[0].ID())

	st, err := db.Stats(context.Background())
	require.NoError(t, err)
	assert.Greater(t, st.SizeBytes, int64(0))
	assert.LessOrEqual(t, st.InUseBytes, st.SizeBytes)
}

func TestCheck_FindsDamage(t *testing.T) {
	db, _ := openTemp(t)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "urn:t:a", storage.ConsentActive),
		PutPoll: []storage.PollItem{{At: t0, Key: storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 1}}}}))
	err := db.Check(context.Background())
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "poll index entry for urn:t:a/1/0 has no attempt")
	require.NoError(t, db.e.bolt.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketConsents).Put([]byte("urn:t:b"), []byte("{not json"))
	}))
	err = db.Check(context.Background())
	require.True(t, errors.Is(err, ErrCorrupt))
	assert.Contains(t, err.Error(), `consent "urn:t:b": record does not decode`)
	_, err = db.GetConsent(context.Background(), "urn:t:b")
	assert.ErrorIs(t, err, ErrCorrupt)
}

func TestSnapshot(t *testing.T) {
	db, path := openTemp(t)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "urn:t:s", storage.ConsentActive)}))
	f, n, err := db.Snapshot(context.Background())
	require.NoError(t, err)
	defer f.Close()
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"billingd.db", "billingd.db.archive", "billingd.db.lock"}, names, "the snapshot leaves no file behind, only the database, its archive file and its lock")
	var buf bytes.Buffer
	got, err := buf.ReadFrom(f)
	require.NoError(t, err)
	assert.Equal(t, n, got)
	cp := filepath.Join(t.TempDir(), "snap.db")
	require.NoError(t, os.WriteFile(cp, buf.Bytes(), 0o600))
	sdb, err := Open(cp, Options{ReadOnly: true})
	require.NoError(t, err)
	defer sdb.Close()
	require.NoError(t, sdb.Check(context.Background()))
	_, err = sdb.GetConsent(context.Background(), "urn:t:s")
	require.NoError(t, err)
}

func TestOpen_MigratesSchema1(t *testing.T) {
	db, path := openTemp(t)
	rec := storagetest.Record(t, "urn:t:a", storage.ConsentActive)
	at := t0.Add(48 * time.Hour)
	rec.NextCycle, rec.NextDue = 1, at
	missed := storagetest.Attempt("urn:t:a", 0, 0, storage.AttemptMissed, cycle.MustDate(2026, 3, 31), t0)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: rec, NewConsent: true, Attempts: []*storage.Attempt{missed},
		PutDue: []storage.DueItem{{At: at, Key: storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 1}}}}))
	// Turn it back into what schema 1 wrote: every attempt live, no archive.
	require.NoError(t, db.e.bolt.Update(func(tx *bbolt.Tx) error {
		require.NoError(t, tx.Bucket(bucketArchive).ForEach(func(k, v []byte) error {
			return tx.Bucket(bucketAttempts).Put(k, v)
		}))
		for _, b := range append(v2Buckets, v3Buckets...) {
			require.NoError(t, tx.DeleteBucket(b))
		}
		for _, b := range [][]byte{bucketDue, bucketAttention} {
			c := tx.Bucket(b).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				require.NoError(t, tx.Bucket(b).Put(append([]byte{}, k...), nil))
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, 1))
	}))
	require.NoError(t, db.Close())

	ro, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err, "a reader opens schema 1 as it is")
	totals, err := ro.DueTotals(context.Background(), at)
	require.NoError(t, err)
	assert.Equal(t, 99_90, int(totals[0].Amount), "an empty due value is worked out from the records")
	oldest, err := ro.AttentionOldest(context.Background())
	require.NoError(t, err)
	assert.True(t, oldest[storage.AttemptMissed].Equal(t0))
	evs, _, err := ro.Events(context.Background(), "urn:t:a", 0, 10)
	require.NoError(t, err)
	assert.Empty(t, evs)
	require.NoError(t, ro.Close())

	db, err = Open(path, Options{})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.e.bolt.View(func(tx *bbolt.Tx) error {
		assert.Equal(t, uint32(storage.SchemaVersion), binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keySchema)))
		k, v := tx.Bucket(bucketDue).Cursor().First()
		require.NotNil(t, k)
		assert.Equal(t, encodeDue(storage.DueOriginal, 99_90, true), v)
		_, v = tx.Bucket(bucketAttention).Cursor().First()
		assert.Len(t, v, 8)
		return nil
	}))
	var n int
	require.NoError(t, db.EachAttemptBetween(context.Background(), cycle.MustDate(2026, 3, 1), cycle.MustDate(2026, 3, 31), func(*storage.Attempt) error { n++; return nil }))
	assert.Equal(t, 1, n, "the dates index was built")
	require.NoError(t, db.Check(context.Background()))
	err = db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, "URN:T:A", storage.ConsentActive), NewConsent: true})
	require.ErrorIs(t, err, storage.ErrExists, "the letter-case index was built from the stored consents")
}

// TestOpen_MigratesSchema2: a file written before the archive (every attempt and
// event live, schema 2) is read as it is by a reader, and a writer marks it schema 3
// (an older billingd then refuses it) without moving anything: its records settle
// into the archive as their consents settle their next attempt, or with Compact.
func TestOpen_MigratesSchema2(t *testing.T) {
	ctx := context.Background()
	db, path := openTemp(t)
	rec := storagetest.Record(t, "urn:t:a", storage.ConsentActive)
	rec.NextCycle = 1
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true, Events: []storage.Event{storage.ConsentEvent("added", t0, "urn:t:a", "alice", "")}}))
	paid := storagetest.Attempt("urn:t:a", 0, 0, storage.AttemptCompleted, cycle.MustDate(2026, 3, 31), t0)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{paid},
		Events: []storage.Event{storage.AttemptEvent("completed", t0, paid, storage.ActorBillingd, "")}}))
	// Turn it back into what schema 2 wrote.
	require.NoError(t, db.e.bolt.Update(func(tx *bbolt.Tx) error {
		for _, pair := range [][2][]byte{{bucketArchive, bucketAttempts}, {v3Buckets[1], []byte("events")}} {
			require.NoError(t, tx.Bucket(pair[0]).ForEach(func(k, v []byte) error { return tx.Bucket(pair[1]).Put(k, v) }))
		}
		for _, b := range v3Buckets {
			require.NoError(t, tx.DeleteBucket(b))
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, 2))
	}))
	require.NoError(t, db.Close())

	ro, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err, "a reader opens schema 2 as it is")
	n, err := ro.Schema(ctx)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	got, err := ro.GetAttempt(ctx, paid.AttemptKey)
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptCompleted, got.State)
	evs, _, err := ro.Events(ctx, "urn:t:a", 0, 10)
	require.NoError(t, err)
	assert.Len(t, evs, 2)
	require.NoError(t, ro.Check(ctx))
	require.NoError(t, ro.Close())

	db, err = Open(path, Options{})
	require.NoError(t, err)
	defer db.Close()
	n, err = db.Schema(ctx)
	require.NoError(t, err)
	assert.Equal(t, storage.SchemaVersion, n)
	require.NoError(t, db.e.bolt.View(func(tx *bbolt.Tx) error {
		assert.Equal(t, 1, tx.Bucket(bucketAttempts).Stats().KeyN, "nothing moved at the upgrade")
		assert.Zero(t, tx.Bucket(bucketArchive).Stats().KeyN)
		return nil
	}))
	require.NoError(t, db.Check(ctx))
	moved, events, err := db.Compact(ctx, 0, nil)
	require.NoError(t, err)
	assert.Equal(t, 1, moved)
	assert.Equal(t, 1, events, "every event but the newest")
	got, err = db.GetAttempt(ctx, paid.AttemptKey)
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptCompleted, got.State)
	evs, _, err = db.Events(ctx, "urn:t:a", 0, 10)
	require.NoError(t, err)
	assert.Len(t, evs, 2)
	require.NoError(t, db.Check(ctx))
}

// BenchmarkDueTotals measures the scrape-time read of the upcoming and
// amount-missing gauges: one walk of the due index's keys and values up to now + 7
// days, no record decoded. The index holds one entry per consent (BENCH_CONSENTS,
// default 1,000,000), their submit instants spread over 30 days as monthly consents'
// are, so about 233,000 entries fall in the 7-day window.

func BenchmarkDueTotals(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("BENCH_CONSENTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	db, _ := openTemp(b)
	now := t0
	const batch = 100_000
	for i := 0; i < n; i += batch {
		require.NoError(b, db.e.bolt.Update(func(tx *bbolt.Tx) error {
			due := tx.Bucket(bucketDue)
			for j := i; j < min(i+batch, n); j++ {
				at := now.Add(time.Duration(j) * (30 * 24 * time.Hour / time.Duration(n)))
				k := storage.AttemptKey{ConsentID: fmt.Sprintf("urn:bench:%08d", j), Cycle: 3}
				v := encodeDue(storage.DueOriginal, 99_90, true)
				if j%50 == 0 {
					v = encodeDue(storage.DueOriginal, 0, false) // variable, no amount set
				}
				if err := due.Put(timeKey(at, k), v); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	b.ResetTimer()
	var totals []storage.DueTotal
	for b.Loop() {
		var err error
		totals, err = db.DueTotals(context.Background(), now.Add(48*time.Hour), now.Add(24*time.Hour), now.Add(7*24*time.Hour))
		require.NoError(b, err)
	}
	b.ReportMetric(float64(totals[2].Charges), "entries_7d")
}

// The layout of storage's buckets, as these tests plant old or damaged records
// directly in the file.
var (
	bucketMeta      = []byte("meta")
	bucketConsents  = []byte("consents")
	bucketDue       = []byte("due")
	bucketAttention = []byte("attention")
	bucketAttempts  = []byte("attempts")
	bucketArchive   = []byte("archive")
	v2Buckets       = [][]byte{[]byte("events"), []byte("dates"), []byte("consent_folds")}
	v3Buckets       = [][]byte{bucketArchive, []byte("event_archive")}
	keySchema       = []byte("schema")
)

func encodeDue(k storage.DueKind, amount klavi.Cents, ok bool) []byte {
	if !ok {
		return []byte{byte(k)}
	}
	return binary.BigEndian.AppendUint64([]byte{byte(k)}, uint64(amount))
}

func timeKey(t time.Time, k storage.AttemptKey) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
	b = append(b, k.ConsentID...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(k.Cycle))
	return binary.BigEndian.AppendUint16(b, uint16(k.Attempt))
}

// TestEngine runs the kv conformance suite on the bbolt engine.
func TestEngine(t *testing.T) {
	kvtest.Run(t, func(t *testing.T, buckets [][]byte) kv.Engine {
		path := filepath.Join(t.TempDir(), "kv.db")
		db, err := bbolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
			for _, b := range buckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		}))
		return &engine{bolt: db, path: path, known: names(buckets)}
	})
}

// WriteStats counts the write transactions and the page writes of their commits:
// ApplyAll writes its changes in one transaction, Apply one each.
func TestWriteStats(t *testing.T) {
	db, _ := openTemp(t)
	before := db.WriteStats()
	var chs []*storage.Change
	for i := range 20 {
		chs = append(chs, &storage.Change{Consent: storagetest.Record(t, fmt.Sprintf("urn:t:%03d", i), storage.ConsentActive)})
	}
	n, err := db.ApplyAll(context.Background(), chs)
	require.NoError(t, err)
	require.Equal(t, 20, n)
	one := db.WriteStats()
	assert.Equal(t, int64(1), one.Transactions-before.Transactions, "ApplyAll: one transaction")
	assert.Positive(t, one.PagesWritten-before.PagesWritten)
	for i := range 3 {
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: storagetest.Record(t, fmt.Sprintf("urn:u:%03d", i), storage.ConsentActive)}))
	}
	assert.Equal(t, int64(3), db.WriteStats().Transactions-one.Transactions, "Apply one at a time: one transaction each")
	assert.Greater(t, db.WriteStats().PagesWritten, one.PagesWritten)
}
