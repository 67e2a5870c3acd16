package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

func testConsent(t testing.TB, id string) *consent.Consent {
	t.Helper()
	data, err := os.ReadFile("../examples/consents/monthly-31st.json")
	require.NoError(t, err)
	c, err := consent.Decode(data)
	require.NoError(t, err)
	c.ID = id
	return c
}

func openTemp(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "billingd.db")
	db, err := Open(path, Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

func record(t testing.TB, id string, state ConsentState) *ConsentRecord {
	return &ConsentRecord{Consent: testConsent(t, id), State: state, AddedAt: t0, UpdatedAt: t0, BillFrom: cycle.DateOf(t0)}
}

func TestOpen_CreatesAndReopens(t *testing.T) {
	db, path := openTemp(t)
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive), NewConsent: true}))
	require.NoError(t, db.Close())
	db2, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	defer db2.Close()
	r, err := db2.GetConsent("urn:t:a")
	require.NoError(t, err)
	assert.Equal(t, ConsentActive, r.State)
	assert.Equal(t, klavi.Cents(9990), *r.Consent.PaymentMethodConfig.FixedAmount)
}

func TestOpen_BadFiles(t *testing.T) {
	t.Run("locked by another process", func(t *testing.T) {
		db, path := openTemp(t)
		require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive)}))
		start := time.Now()
		_, err := Open(path, Options{Timeout: 100 * time.Millisecond})
		require.ErrorIs(t, err, ErrLocked)
		assert.Contains(t, err.Error(), "is billingd already running?")
		assert.Less(t, time.Since(start), 30*time.Second, "fails instead of hanging")
		_, err = db.GetConsent("urn:t:a")
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
		bdb, err := bolt.Open(path, 0o600, nil)
		require.NoError(t, err)
		require.NoError(t, bdb.Update(func(tx *bolt.Tx) error {
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
		after, _ := os.ReadFile(path)
		assert.Equal(t, before, after, "nothing in the foreign file changed")
	})
	t.Run("newer schema", func(t *testing.T) {
		db, path := openTemp(t)
		require.NoError(t, db.bolt.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 0, 0, 9})
		}))
		require.NoError(t, db.Close())
		_, err := Open(path, Options{})
		require.ErrorIs(t, err, ErrSchema)
	})
	t.Run("damaged header", func(t *testing.T) {
		db, path := openTemp(t)
		require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive)}))
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
	})
	t.Run("missing file read-only", func(t *testing.T) {
		_, err := Open(filepath.Join(t.TempDir(), "nope.db"), Options{ReadOnly: true})
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestApply_IndexesAndCounts(t *testing.T) {
	db, _ := openTemp(t)
	for i, st := range []ConsentState{ConsentActive, ConsentActive, ConsentAwaiting} {
		require.NoError(t, db.Apply(&Change{Consent: record(t, fmt.Sprintf("urn:t:%d", i), st), NewConsent: true}))
	}
	err := db.Apply(&Change{Consent: record(t, "urn:t:0", ConsentActive), NewConsent: true})
	require.ErrorIs(t, err, ErrExists)

	counts, err := db.Counts()
	require.NoError(t, err)
	assert.Equal(t, map[ConsentState]int{ConsentActive: 2, ConsentAwaiting: 1}, counts)

	// Due entries come back in time order, and only up to "now".
	k := func(id string, c, a int) AttemptKey { return AttemptKey{ConsentID: id, Cycle: c, Attempt: a} }
	due := []DueItem{
		{At: t0.Add(3 * time.Hour), Key: k("urn:t:1", 2, 0)},
		{At: t0, Key: k("urn:t:0", 5, 0)},
		{At: t0.Add(time.Hour), Key: k("urn:t:0", 5, 1)},
		{At: t0.Add(48 * time.Hour), Key: k("urn:t:2", 0, 0)},
	}
	require.NoError(t, db.Apply(&Change{PutDue: due}))
	got, err := db.DueBefore(t0.Add(3*time.Hour), 100)
	require.NoError(t, err)
	require.Len(t, got, 3)
	assert.Equal(t, []AttemptKey{k("urn:t:0", 5, 0), k("urn:t:0", 5, 1), k("urn:t:1", 2, 0)}, []AttemptKey{got[0].Key, got[1].Key, got[2].Key})
	assert.True(t, got[0].At.Equal(t0))
	got, err = db.DueBefore(t0.Add(3*time.Hour), 2)
	require.NoError(t, err)
	assert.Len(t, got, 2, "limit")

	oldest, next, err := db.DueBounds(t0.Add(90 * time.Minute))
	require.NoError(t, err)
	assert.True(t, oldest.Equal(t0))
	assert.True(t, next.Equal(t0.Add(3*time.Hour)))

	// A consent moves state: counts follow.
	r := record(t, "urn:t:2", ConsentRevoked)
	require.NoError(t, db.Apply(&Change{Consent: r, DelDue: due[3:]}))
	counts, _ = db.Counts()
	assert.Equal(t, map[ConsentState]int{ConsentActive: 2, ConsentAwaiting: 0, ConsentRevoked: 1}, counts)
	got, _ = db.DueBefore(t0.Add(1000*time.Hour), 100)
	assert.Len(t, got, 3)
	require.NoError(t, db.Check())
}

func TestApply_AttemptsAndAttention(t *testing.T) {
	db, _ := openTemp(t)
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive)}))
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:ab", ConsentActive)}))
	a := &Attempt{AttemptKey: AttemptKey{ConsentID: "urn:t:a", Cycle: 3}, State: AttemptSubmitting, ClientRequestID: "billingd-x-3-0", Date: cycle.MustDate(2026, 3, 5), Amount: 9990}
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{a}}))
	a2 := *a
	a2.State = AttemptUnconfirmed
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{&a2}}))
	missed := &Attempt{AttemptKey: AttemptKey{ConsentID: "urn:t:ab", Cycle: 1}, State: AttemptMissed}
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{missed}}))

	un, err := db.Attention(AttemptUnconfirmed, 10)
	require.NoError(t, err)
	require.Len(t, un, 1)
	assert.Equal(t, "billingd-x-3-0", un[0].ClientRequestID)

	// Resolving it removes it from the attention index.
	a3 := a2
	a3.State = AttemptCompleted
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{&a3}}))
	un, _ = db.Attention(AttemptUnconfirmed, 10)
	assert.Empty(t, un)
	ms, _ := db.Attention(AttemptMissed, 10)
	assert.Len(t, ms, 1)

	// Attempts of "urn:t:a" do not include those of "urn:t:ab".
	list, err := db.Attempts("urn:t:a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, AttemptCompleted, list[0].State)

	_, err = db.GetAttempt(AttemptKey{ConsentID: "urn:t:a", Cycle: 9})
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestAmounts(t *testing.T) {
	db, _ := openTemp(t)
	require.ErrorIs(t, db.SetAmount("urn:t:none", 1, 100), ErrNotFound)
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:v", ConsentActive)}))
	require.NoError(t, db.SetAmount("urn:t:v", 4, 123_45))
	c, ok, err := db.Amount("urn:t:v", 4)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, klavi.Cents(123_45), c)
	_, ok, _ = db.Amount("urn:t:v", 5)
	assert.False(t, ok)
	all, err := db.Amounts("urn:t:v")
	require.NoError(t, err)
	assert.Equal(t, map[int]klavi.Cents{4: 123_45}, all)
}

func TestBackupAndCheck(t *testing.T) {
	db, _ := openTemp(t)
	for i := 0; i < 50; i++ {
		require.NoError(t, db.Apply(&Change{Consent: record(t, fmt.Sprintf("urn:t:%03d", i), ConsentActive)}))
	}
	var buf bytes.Buffer
	n, err := db.Backup(&buf)
	require.NoError(t, err)
	assert.Equal(t, int64(buf.Len()), n)
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	require.NoError(t, os.WriteFile(copyPath, buf.Bytes(), 0o600))
	cp, err := Open(copyPath, Options{ReadOnly: true})
	require.NoError(t, err)
	defer cp.Close()
	require.NoError(t, cp.Check())
	list, err := cp.ListConsents("", 1000, "")
	require.NoError(t, err)
	assert.Len(t, list, 50)
	page, err := cp.ListConsents("urn:t:010", 5, ConsentActive)
	require.NoError(t, err)
	require.Len(t, page, 5)
	assert.Equal(t, "urn:t:011", page[0].ID())

	st, err := db.Stats()
	require.NoError(t, err)
	assert.Greater(t, st.SizeBytes, int64(0))
	assert.LessOrEqual(t, st.InUseBytes, st.SizeBytes)
}

func TestCheck_FindsDamage(t *testing.T) {
	db, _ := openTemp(t)
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive),
		PutPoll: []PollItem{{At: t0, Key: AttemptKey{ConsentID: "urn:t:a", Cycle: 1}}}}))
	err := db.Check()
	require.ErrorIs(t, err, ErrCorrupt)
	assert.Contains(t, err.Error(), "poll index entry for urn:t:a/1/0 has no attempt")
	require.NoError(t, db.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketConsents).Put([]byte("urn:t:b"), []byte("{not json"))
	}))
	err = db.Check()
	require.True(t, errors.Is(err, ErrCorrupt))
	assert.Contains(t, err.Error(), `consent "urn:t:b": record does not decode`)
	_, err = db.GetConsent("urn:t:b")
	assert.ErrorIs(t, err, ErrCorrupt)
}

func TestKeys_RoundTrip(t *testing.T) {
	k := AttemptKey{ConsentID: "urn:bank:abc-123", Cycle: 70000, Attempt: 3}
	got, err := parseAttemptKey(attemptKeyBytes(k))
	require.NoError(t, err)
	assert.Equal(t, k, got)
	at, got2, err := parseTimeKey(timeKey(t0, k))
	require.NoError(t, err)
	assert.Equal(t, k, got2)
	assert.True(t, at.Equal(t0))
	_, err = parseAttemptKey([]byte("short"))
	assert.Error(t, err)
}

func TestApply_CursorOnly(t *testing.T) {
	db, _ := openTemp(t)
	r := record(t, "urn:t:c", ConsentActive)
	require.NoError(t, db.Apply(&Change{Consent: r, NewConsent: true}))
	r.NextCycle, r.NextDue, r.State = 7, t0.Add(time.Hour), ConsentExpired
	r.Consent.Billing.RemittanceInformation = "changed in memory only"
	require.NoError(t, db.Apply(&Change{Cursor: r}))
	got, err := db.GetConsent("urn:t:c")
	require.NoError(t, err)
	assert.Equal(t, 7, got.NextCycle)
	assert.True(t, got.NextDue.Equal(t0.Add(time.Hour)))
	assert.Equal(t, "Plano Premium", got.Consent.Billing.RemittanceInformation, "a cursor write leaves the consent alone")
	counts, _ := db.Counts()
	assert.Equal(t, map[ConsentState]int{ConsentActive: 0, ConsentExpired: 1}, counts)
	require.NoError(t, db.Check())
	// A cursor for an unknown consent is refused.
	err = db.Apply(&Change{Cursor: record(t, "urn:t:none", ConsentActive)})
	require.ErrorIs(t, err, ErrNotFound)
}

func TestSnapshot(t *testing.T) {
	db, path := openTemp(t)
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:s", ConsentActive)}))
	f, n, err := db.Snapshot()
	require.NoError(t, err)
	defer f.Close()
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"billingd.db", "billingd.db.lock"}, names, "the snapshot leaves no file behind, only the database and its lock")
	var buf bytes.Buffer
	got, err := buf.ReadFrom(f)
	require.NoError(t, err)
	assert.Equal(t, n, got)
	cp := filepath.Join(t.TempDir(), "snap.db")
	require.NoError(t, os.WriteFile(cp, buf.Bytes(), 0o600))
	sdb, err := Open(cp, Options{ReadOnly: true})
	require.NoError(t, err)
	defer sdb.Close()
	require.NoError(t, sdb.Check())
	_, err = sdb.GetConsent("urn:t:s")
	require.NoError(t, err)
}

func TestDB_ConsentIDsDifferingOnlyInCase(t *testing.T) {
	db, _ := openTemp(t)
	const id = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
	require.NoError(t, db.Apply(&Change{Consent: record(t, id, ConsentActive), NewConsent: true}))
	err := db.Apply(&Change{Consent: record(t, strings.ToUpper(id), ConsentActive), NewConsent: true})
	require.ErrorIs(t, err, ErrExists, "the same UUID in capitals is the same consent")
	assert.Contains(t, err.Error(), "differ only in letter case")
	require.NoError(t, db.Apply(&Change{Consent: record(t, id, ConsentActive)}), "rewriting the stored one is fine")
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:klavi:other", ConsentActive), NewConsent: true}))
	n, err := db.ListConsents("", 10, "")
	require.NoError(t, err)
	assert.Len(t, n, 2)
}
