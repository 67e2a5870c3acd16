package etcd

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/kv/kvtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// laggingKV counts the engine's reads by kind and plays a member that lags: it
// answers the next serializable read without a revision at revision stale, as a
// follower that has applied only that far would, and refuses the next future
// serializable reads at a revision with ErrFutureRev.
type laggingKV struct {
	clientv3.KV
	linearizable, serializable atomic.Int64
	stale                      atomic.Int64
	future                     atomic.Int64
}

func (l *laggingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	op := clientv3.OpGet(key, opts...)
	if !op.IsSerializable() {
		l.linearizable.Add(1)
		return l.KV.Get(ctx, key, opts...)
	}
	l.serializable.Add(1)
	if op.Rev() != 0 && l.future.Load() > 0 {
		l.future.Add(-1)
		return nil, rpctypes.ErrFutureRev
	}
	if rev := l.stale.Swap(0); op.Rev() == 0 && rev != 0 {
		resp, err := l.KV.Get(ctx, key, append(opts, clientv3.WithRev(rev))...)
		if err == nil {
			// The lagging member's own revision.
			resp.Header = &etcdserverpb.ResponseHeader{ClusterId: resp.Header.ClusterId, MemberId: resp.Header.MemberId,
				Revision: rev, RaftTerm: resp.Header.RaftTerm}
		}
		return resp, err
	}
	return l.KV.Get(ctx, key, opts...)
}

func (l *laggingKV) reset() { l.linearizable.Store(0); l.serializable.Store(0) }

// TestEngine_Reads checks which reads are linearizable and which serializable, the
// fallback from a member behind the transaction's revision, and that an optimistic
// (Batch) Update never keeps what a stale read made it decide.
func TestEngine_Reads(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, srv.Endpoints, time.Second)
	lag := &laggingKV{KV: c.KV}
	c.KV = lag
	newEngine := func(t *testing.T) *Engine {
		return New(c, Options{Prefix: "/test/" + t.Name() + "/", Buckets: kvtest.Buckets})
	}
	batch := kv.Write{Batch: true}
	// revision is the cluster's current revision.
	revision := func(t *testing.T) int64 {
		resp, err := lag.KV.Get(t.Context(), "/none")
		require.NoError(t, err)
		return resp.Header.Revision
	}
	readAll := func(tx kv.Tx) (a, b, first []byte) {
		bk := tx.Bucket(kvtest.Buckets[0])
		a, b = bk.Get([]byte("a")), bk.Get([]byte("b"))
		first, _ = bk.Cursor().First()
		return a, b, first
	}

	t.Run("OnlyTheFirstReadIsLinearizable", func(t *testing.T) {
		e := newEngine(t)
		put(t, e, "a", "1", "b", "2")
		lag.reset()
		require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
			a, b, first := readAll(tx)
			assert.Equal(t, "1", string(a))
			assert.Equal(t, "2", string(b))
			assert.Equal(t, "a", string(first))
			return nil
		}))
		assert.Equal(t, int64(1), lag.linearizable.Load(), "view")
		assert.Equal(t, int64(2), lag.serializable.Load(), "view")
		lag.reset()
		require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			readAll(tx)
			return tx.Bucket(kvtest.Buckets[0]).Put([]byte("c"), []byte("3"))
		}))
		assert.Equal(t, int64(1), lag.linearizable.Load(), "update")
		assert.Equal(t, int64(2), lag.serializable.Load(), "update")
		lag.reset()
		require.NoError(t, e.Update(t.Context(), batch, func(tx kv.Tx) error {
			bk := tx.Bucket(kvtest.Buckets[0])
			bk.Get([]byte("a"))
			bk.Last([]byte("b"))
			return bk.Put([]byte("d"), []byte("4"))
		}))
		assert.Zero(t, lag.linearizable.Load(), "batch update")
		assert.Equal(t, int64(2), lag.serializable.Load(), "batch update")
	})

	t.Run("AKeyIsReadOnce", func(t *testing.T) {
		e := newEngine(t)
		put(t, e, "a", "1")
		for _, w := range []*kv.Write{nil, {}, {Batch: true}} {
			lag.reset()
			fn := func(tx kv.Tx) error {
				bk := tx.Bucket(kvtest.Buckets[0])
				for range 3 {
					assert.Equal(t, "1", string(bk.Get([]byte("a"))))
					assert.Nil(t, bk.Get([]byte("none")))
				}
				if !tx.Writable() {
					return nil
				}
				require.NoError(t, bk.Put([]byte("a"), []byte("2")))
				assert.Equal(t, "2", string(bk.Get([]byte("a"))), "a write of the transaction wins")
				require.NoError(t, bk.Delete([]byte("a")))
				assert.Nil(t, bk.Get([]byte("a")), "and a delete")
				return bk.Put([]byte("a"), []byte("1"))
			}
			if w == nil {
				require.NoError(t, e.View(t.Context(), fn))
			} else {
				require.NoError(t, e.Update(t.Context(), *w, fn))
			}
			assert.Equal(t, int64(2), lag.linearizable.Load()+lag.serializable.Load(), "two keys, two reads (%v)", w)
		}
	})

	t.Run("Prefetch", func(t *testing.T) {
		e := newEngine(t)
		put(t, e, "a", "1", "b", "2", "c", "3")
		bucket := kvtest.Buckets[0]
		keys := func(ks ...string) []kv.BucketKey {
			var out []kv.BucketKey
			for _, k := range ks {
				out = append(out, kv.BucketKey{Bucket: bucket, Key: []byte(k)})
			}
			return out
		}
		for _, w := range []kv.Write{{}, {Batch: true}} {
			lag.reset()
			runs := 0
			require.NoError(t, e.Update(t.Context(), w, func(tx kv.Tx) error {
				runs++
				bk := tx.Bucket(bucket)
				require.NoError(t, bk.Put([]byte("c"), []byte("33")))
				tx.(kv.Prefetcher).Prefetch(keys("a", "b", "c", "none", "a"))
				reads := lag.linearizable.Load() + lag.serializable.Load()
				assert.Equal(t, "1", string(bk.Get([]byte("a"))))
				assert.Equal(t, "33", string(bk.Get([]byte("c"))), "the transaction's write wins")
				assert.Nil(t, bk.Get([]byte("none")))
				assert.Equal(t, reads, lag.linearizable.Load()+lag.serializable.Load(), "answered from the prefetch")
				if runs == 1 {
					// Another writer changes b, which was fetched but never read: no conflict.
					put(t, e, "b", "22")
				}
				return bk.Put([]byte("out"), []byte("x"))
			}))
			assert.Equal(t, 1, runs, "a key fetched but not read is not in the read set (%+v)", w)
			assert.Equal(t, int64(1), lag.linearizable.Load()+lag.serializable.Load(), "one key read alone, the rest in one Txn (%+v)", w)

			runs = 0
			var seen []string
			require.NoError(t, e.Update(t.Context(), w, func(tx kv.Tx) error {
				runs++
				tx.(kv.Prefetcher).Prefetch(keys("a", "b"))
				v := tx.Bucket(bucket).Get([]byte("b"))
				seen = append(seen, string(v))
				if runs == 1 {
					put(t, e, "b", "2"+string(v)) // b changes after it was read
				}
				return tx.Bucket(bucket).Put([]byte("out"), v)
			}))
			assert.Equal(t, 2, runs, "a key fetched and read is in the read set (%+v)", w)
			assert.Equal(t, "2"+seen[0], seen[1], "the second run reads b as changed")
			assert.Equal(t, seen[1], string(get(t, e, "out")))
		}
	})

	t.Run("MemberBehindTheRevision", func(t *testing.T) {
		e := newEngine(t)
		put(t, e, "a", "1", "b", "2")
		lag.reset()
		lag.future.Store(1)
		require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
			a, b, first := readAll(tx)
			assert.Equal(t, "1", string(a))
			assert.Equal(t, "2", string(b), "asked again, linearizably")
			assert.Equal(t, "a", string(first))
			return nil
		}))
		assert.Equal(t, int64(2), lag.linearizable.Load())
		assert.Zero(t, lag.future.Load())
	})

	t.Run("StaleReadIsAConflict", func(t *testing.T) {
		e := newEngine(t)
		put(t, e, "a", "1")
		lag.stale.Store(revision(t))
		put(t, e, "a", "2")
		var seen []string
		require.NoError(t, e.Update(t.Context(), batch, func(tx kv.Tx) error {
			bk := tx.Bucket(kvtest.Buckets[0])
			v := bk.Get([]byte("a"))
			seen = append(seen, string(v))
			return bk.Put([]byte("out"), v)
		}))
		assert.Equal(t, []string{"1", "2"}, seen)
		assert.Equal(t, "2", string(get(t, e, "out")))
	})

	t.Run("StaleLastOfADeletedKey", func(t *testing.T) {
		e := newEngine(t)
		put(t, e, "ev1", "x", "ev2", "x")
		lag.stale.Store(revision(t))
		require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			return tx.Bucket(kvtest.Buckets[0]).Delete([]byte("ev2"))
		}))
		var seen []string
		require.NoError(t, e.Update(t.Context(), batch, func(tx kv.Tx) error {
			bk := tx.Bucket(kvtest.Buckets[0])
			k, _ := bk.Last([]byte("ev"))
			seen = append(seen, string(k))
			return bk.Put([]byte("out"), k)
		}))
		assert.Equal(t, []string{"ev2", "ev1"}, seen)
		assert.Equal(t, "ev1", string(get(t, e, "out")))
	})

	t.Run("UncheckedOutcomesRunAgain", func(t *testing.T) {
		e := newEngine(t)
		errAbsent := errors.New("absent")
		for name, fn := range map[string]func(bk kv.Bucket, v []byte) error{
			"error": func(bk kv.Bucket, v []byte) error {
				if v == nil {
					return errAbsent
				}
				return nil
			},
			"no writes": func(bk kv.Bucket, v []byte) error { return nil },
		} {
			t.Run(name, func(t *testing.T) {
				require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
					return tx.Bucket(kvtest.Buckets[0]).Delete([]byte("a"))
				}))
				lag.stale.Store(revision(t)) // a stale member has no "a"
				put(t, e, "a", "1")
				var seen []string
				require.NoError(t, e.Update(t.Context(), batch, func(tx kv.Tx) error {
					bk := tx.Bucket(kvtest.Buckets[0])
					v := bk.Get([]byte("a"))
					seen = append(seen, string(v))
					return fn(bk, v)
				}))
				assert.Equal(t, []string{"", "1"}, seen)
			})
		}
	})

	t.Run("StaleCursorOverADeletedKey", func(t *testing.T) {
		// A range compare cannot see a key deleted from the range: a run that walked
		// a Cursor is never kept unless it read linearizably.
		e := newEngine(t)
		put(t, e, "c1", "x", "c2", "x")
		lag.stale.Store(revision(t))
		require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			return tx.Bucket(kvtest.Buckets[0]).Delete([]byte("c1"))
		}))
		var seen []string
		require.NoError(t, e.Update(t.Context(), batch, func(tx kv.Tx) error {
			bk := tx.Bucket(kvtest.Buckets[0])
			k, _ := bk.Cursor().First()
			seen = append(seen, string(k))
			return bk.Put([]byte("out"), k)
		}))
		assert.Equal(t, []string{"c1", "c2"}, seen)
		assert.Equal(t, "c2", string(get(t, e, "out")))
	})

	t.Run("FenceLost", func(t *testing.T) {
		e := newEngine(t)
		f, lose := leaseFence(t, e)
		lose()
		runs := 0
		err := e.Update(t.Context(), kv.Write{Fence: f, Batch: true}, func(tx kv.Tx) error {
			runs++
			tx.Bucket(kvtest.Buckets[0]).Get([]byte("a"))
			return tx.Bucket(kvtest.Buckets[0]).Put([]byte("a"), []byte("1"))
		})
		require.ErrorIs(t, err, kv.ErrFenced)
		assert.Equal(t, 1, runs)
		assert.Nil(t, get(t, e, "a"))
	})
}
