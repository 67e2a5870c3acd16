package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/etcd"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/storagetest"
)

// fill stores n consents, each with an event, two attempts (one needing
// attention), a due and a poll entry and a variable amount: every bucket holds keys.
func fill(t *testing.T, db *Store, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		id := fmt.Sprintf("urn:t:%03d", i)
		rec := storagetest.Record(t, id, storage.ConsentActive)
		require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true,
			PutDue: []storage.DueItem{{At: t0.Add(time.Duration(i) * time.Hour), Key: storage.AttemptKey{ConsentID: id, Cycle: 1}}},
			Events: []storage.Event{storage.ConsentEvent("added", t0, id, "alice", "")}}))
		paid := storagetest.Attempt(id, 0, 0, storage.AttemptSubmitted, cycle.MustDate(2026, 3, 31), t0)
		paid.PaymentID = "pay-" + id
		missed := storagetest.Attempt(id, 0, 1, storage.AttemptMissed, cycle.MustDate(2026, 4, 1), t0)
		require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{paid, missed},
			PutPoll:   []storage.PollItem{{At: t0.Add(time.Hour), Key: paid.AttemptKey}},
			Amounts:   []storage.CycleAmount{{ConsentID: id, Cycle: 2, Amount: 12_34}},
			Events:    []storage.Event{storage.AttemptEvent("submitted", t0, paid, storage.ActorBillingd, "")},
			HighWater: t0.Add(time.Duration(i) * time.Minute)}))
	}
	// Half the events published into the feed (the rest wait in the outbox), and a
	// webhook endpoint's cursor and backlog.
	_, err := db.Publish(ctx, kv.Fence{}, n)
	require.NoError(t, err)
	_, err = db.StartWebhook(ctx, kv.Fence{}, "shop")
	require.NoError(t, err)
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "shop", Put: []*storage.WebhookBacklog{
		{Endpoint: "shop", ConsentID: "urn:t:000", Parked: []uint64{1}, Since: t0, Attempts: 1, FirstFailure: t0, NextTry: t0}}}))
}

// keys counts the keys of every bucket of e.
func keys(t *testing.T, e kv.Engine) map[string]int {
	t.Helper()
	n := map[string]int{}
	require.NoError(t, e.View(context.Background(), func(tx kv.Tx) error {
		for _, b := range storage.Buckets {
			_ = tx.Bucket(b).ForEach(func(_, _ []byte) error { n[string(b)]++; return nil })
		}
		return nil
	}))
	return n
}

func keyTotal(m map[string]int) (s int) {
	for _, n := range m {
		s += n
	}
	return s
}

// TestCopy_BoltEtcdBolt: a store copied from bolt to etcd (in Updates of 20 puts)
// and back is identical key by key, and opens and checks as a billingd store.
func TestCopy_BoltEtcdBolt(t *testing.T) {
	ctx := t.Context()
	src, _ := openTemp(t)
	fill(t, src, 40)
	want := keys(t, src.Engine())
	for _, b := range storage.Buckets {
		require.Positive(t, want[string(b)], "bucket %s is filled", b)
	}

	srv := etcdtest.Start(t)
	mid, err := etcd.Open(ctx, etcd.Options{Endpoints: srv.Endpoints, Prefix: "/migrate/", Buckets: storage.Buckets, MaxOps: 20})
	require.NoError(t, err)
	defer mid.Close()
	got := map[string]int{}
	calls := 0
	n, err := kv.Copy(ctx, mid, src.Engine(), storage.Buckets, func(b string, n int) { got[b] = n; calls++ })
	require.NoError(t, err)
	assert.Equal(t, keyTotal(want), n)
	assert.Equal(t, want, got, "the last progress call of each bucket carries its count")
	assert.Greater(t, calls, keyTotal(want)/20, "chunked into Updates of at most 20 puts")
	require.NoError(t, kv.Compare(ctx, src.Engine(), mid, storage.Buckets))

	path := filepath.Join(t.TempDir(), "back.db")
	dst, err := OpenEngine(path, Options{})
	require.NoError(t, err)
	n, err = kv.Copy(ctx, dst, mid, storage.Buckets, nil)
	require.NoError(t, err)
	assert.Equal(t, keyTotal(want), n)
	require.NoError(t, kv.Compare(ctx, src.Engine(), dst, storage.Buckets))
	require.NoError(t, dst.Close())

	back, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	defer back.Close()
	require.NoError(t, back.Check(ctx))
	rec, err := back.GetConsent(ctx, "urn:t:007")
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentActive, rec.State)
	list, _, err := back.Events(ctx, "urn:t:007", 0, 10)
	require.NoError(t, err)
	assert.Len(t, list, 2)
	es, err := etcd.OpenStore(ctx, etcd.Options{Endpoints: srv.Endpoints, Prefix: "/migrate/"}, storage.Options{ReadOnly: true})
	require.NoError(t, err)
	defer es.Close()
	require.NoError(t, es.Check(ctx))
}

// TestCopy_RefusesNonEmptyTarget: a target with any key is refused before a write,
// naming the bucket, and is left as it was.
func TestCopy_RefusesNonEmptyTarget(t *testing.T) {
	ctx := t.Context()
	src, _ := openTemp(t)
	fill(t, src, 3)
	dst, _ := openTemp(t) // Open writes billingd's marker: meta is not empty
	before := keys(t, dst.Engine())
	n, err := kv.Copy(ctx, dst.Engine(), src.Engine(), storage.Buckets, nil)
	require.ErrorIs(t, err, kv.ErrNotEmpty)
	assert.ErrorContains(t, err, "bucket meta holds keys")
	assert.Zero(t, n)
	assert.Equal(t, before, keys(t, dst.Engine()), "untouched")

	t.Run("a key in a later bucket", func(t *testing.T) {
		e, err := OpenEngine(filepath.Join(t.TempDir(), "x.db"), Options{})
		require.NoError(t, err)
		defer e.Close()
		require.NoError(t, e.Update(ctx, kv.Write{}, func(tx kv.Tx) error { return tx.Bucket([]byte("attempts")).Put([]byte("k"), nil) }))
		_, err = kv.Copy(ctx, e, src.Engine(), storage.Buckets, nil)
		require.ErrorIs(t, err, kv.ErrNotEmpty)
		assert.ErrorContains(t, err, "bucket attempts holds keys")
		assert.Equal(t, map[string]int{"attempts": 1}, keys(t, e))
	})
}

// TestCompare_FindsDifferences: a changed value, a missing key and an extra key
// are each named, the first in bucket and key order, with the count of all.
func TestCompare_FindsDifferences(t *testing.T) {
	ctx := t.Context()
	src, _ := openTemp(t)
	fill(t, src, 3)
	dst, err := OpenEngine(filepath.Join(t.TempDir(), "dst.db"), Options{})
	require.NoError(t, err)
	defer dst.Close()
	total, err := kv.Copy(ctx, dst, src.Engine(), storage.Buckets, nil)
	require.NoError(t, err)
	require.NoError(t, kv.Compare(ctx, src.Engine(), dst, storage.Buckets))

	write := func(bucket, key string, v []byte) {
		require.NoError(t, dst.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			if v == nil {
				return tx.Bucket([]byte(bucket)).Delete([]byte(key))
			}
			return tx.Bucket([]byte(bucket)).Put([]byte(key), v)
		}))
	}
	var m *kv.Mismatch

	write("consents", "urn:t:001", []byte(`{"corrupt":true}`))
	err = kv.Compare(ctx, src.Engine(), dst, storage.Buckets)
	require.ErrorIs(t, err, kv.ErrDiffer)
	require.ErrorAs(t, err, &m)
	assert.Equal(t, kv.Mismatch{Bucket: "consents", Key: []byte("urn:t:001"), What: "value differs", Differ: 1, Same: total - 1}, *m)
	assert.EqualError(t, err, fmt.Sprintf(`stores differ: bucket consents, key "urn:t:001": value differs; %d keys identical`, total-1))

	write("consents", "urn:t:000", nil)
	write("consents", "urn:t:zzz", []byte("x"))
	err = kv.Compare(ctx, src.Engine(), dst, storage.Buckets)
	require.ErrorAs(t, err, &m)
	assert.Equal(t, kv.Mismatch{Bucket: "consents", Key: []byte("urn:t:000"), What: "missing in target", Differ: 3, Same: total - 2}, *m)
	assert.ErrorContains(t, err, "(and 2 more differences)")

	err = kv.Compare(ctx, dst, src.Engine(), storage.Buckets)
	require.ErrorAs(t, err, &m)
	assert.Equal(t, "extra in target", m.What, "swapped: the source's key is the target's extra")
}

// TestOpenEngine_LaysOutNoRecord: a new file has every bucket and no key, so it is
// not yet a billingd store.
func TestOpenEngine_LaysOutNoRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	e, err := OpenEngine(path, Options{})
	require.NoError(t, err)
	assert.Equal(t, "bolt", e.Name())
	assert.Empty(t, keys(t, e))
	_, err = storage.New(t.Context(), e, storage.Options{ReadOnly: true})
	require.ErrorIs(t, err, storage.ErrNotBillingd)
	require.NoError(t, e.Close())
	_, err = Open(path, Options{ReadOnly: true})
	require.ErrorIs(t, err, storage.ErrNotBillingd)
}
