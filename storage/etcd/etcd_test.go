package etcd

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/kv/kvtest"
	"github.com/klavi-billing/billingd/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestEngine runs every test on one embedded etcd server; each engine has a key
// prefix of its own.
func TestEngine(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, srv.Endpoints, time.Second)
	newEngine := func(t *testing.T, o Options) *Engine {
		o.Prefix = "/test/" + t.Name() + "/"
		if o.Buckets == nil {
			o.Buckets = kvtest.Buckets
		}
		return New(c, o)
	}

	t.Run("kvtest", func(t *testing.T) {
		kvtest.Run(t, func(t *testing.T, buckets [][]byte) kv.Engine {
			return newEngine(t, Options{Buckets: buckets})
		}, kvtest.Caps{Concurrent: true, ContextReads: true, Fence: leaseFence})
	})

	t.Run("storagetest", func(t *testing.T) {
		// A small MaxOps: bulk loads (ApplyAll) commit in many chunks.
		storagetest.Run(t, func(t *testing.T) storage.Store {
			db, err := NewStore(t.Context(), c, Options{Prefix: "/test/" + t.Name() + "/", MaxOps: storeMaxOps}, storage.Options{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			return db
		}, storagetest.Caps{Fence: func(t *testing.T, db storage.Store) (kv.Fence, func()) {
			return leaseFence(t, db.Engine())
		}})
	})

	t.Run("Open", func(t *testing.T) {
		e, err := Open(t.Context(), Options{Endpoints: srv.Endpoints, Prefix: "/test/open/", Buckets: kvtest.Buckets})
		require.NoError(t, err)
		assert.Equal(t, "etcd", e.Name())
		assert.Equal(t, DefaultMaxOps, e.MaxOps())
		st, err := e.Status(t.Context())
		require.NoError(t, err)
		assert.Equal(t, 1, st.Members)
		assert.NotZero(t, st.Leader)
		assert.Positive(t, st.DBSizeBytes)
		require.NoError(t, e.Close())
		assert.Error(t, e.Client().Ctx().Err(), "Close closed the client Open made")
	})

	t.Run("OpenFails", func(t *testing.T) {
		dead := "http://127.0.0.1:1"
		_, err := Open(t.Context(), Options{Endpoints: []string{dead}, DialTimeout: 200 * time.Millisecond})
		require.ErrorContains(t, err, dead)
		_, err = Open(t.Context(), Options{})
		require.Error(t, err)
		_, err = Open(t.Context(), Options{Endpoints: srv.Endpoints, Buckets: [][]byte{[]byte("a\x00b")}})
		require.Error(t, err)
		assert.Panics(t, func() { New(c, Options{Buckets: [][]byte{{}}}) })
	})

	t.Run("NewKeepsClient", func(t *testing.T) {
		require.NoError(t, newEngine(t, Options{}).Close())
		require.NoError(t, c.Ctx().Err())
	})

	t.Run("Layout", func(t *testing.T) {
		e := newEngine(t, Options{})
		require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			return tx.Bucket([]byte("kv2")).Put([]byte("k\x00\xff"), []byte("v"))
		}))
		resp, err := c.Get(t.Context(), e.o.Prefix+"kv2\x00k\x00\xff")
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1)
		assert.Equal(t, "v", string(resp.Kvs[0].Value))
	})

	t.Run("NoFalseConflict", func(t *testing.T) {
		e := newEngine(t, Options{})
		put(t, e, "a", "1", "m", "1", "z", "1")
		runs := 0
		require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			runs++
			b := tx.Bucket(kvtest.Buckets[0])
			b.Get([]byte("a"))
			b.Cursor().Seek([]byte("m")) // walks [m, m\x00)
			b.Last([]byte("z"))
			if runs == 1 { // keys fn read nothing of
				put(t, e, "b", "2", "n", "2", "y", "2")
			}
			return b.Put([]byte("out"), []byte("1"))
		}))
		assert.Equal(t, 1, runs)
	})

	t.Run("ReadOnlyUpdateNeverConflicts", func(t *testing.T) {
		e := newEngine(t, Options{})
		runs := 0
		require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			runs++
			tx.Bucket(kvtest.Buckets[0]).Get([]byte("a"))
			put(t, e, "a", strconv.Itoa(runs))
			return nil
		}))
		assert.Equal(t, 1, runs)
	})

	t.Run("ErrConflict", func(t *testing.T) {
		e := newEngine(t, Options{})
		e.jitter = func(int) time.Duration { return 0 }
		runs := 0
		err := e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			runs++
			b := tx.Bucket(kvtest.Buckets[0])
			b.Get([]byte("a"))
			put(t, e, "a", strconv.Itoa(runs))
			return b.Put([]byte("b"), []byte("1"))
		})
		require.ErrorIs(t, err, ErrConflict)
		assert.Equal(t, maxAttempts, runs)
		assert.Nil(t, get(t, e, "b"))
	})

	t.Run("ReadSetOverMaxOps", func(t *testing.T) {
		e := newEngine(t, Options{MaxOps: 4})
		put(t, e, "a", "1", "b", "1", "c", "1", "d", "1")
		put(t, e, "e", "1", "f", "1", "g", "1")
		update := func(read func(b kv.Bucket), poke func()) (runs int, err error) {
			err = e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
				runs++
				b := tx.Bucket(kvtest.Buckets[0])
				read(b)
				if runs == 1 && poke != nil {
					poke()
				}
				return b.Put([]byte("out"), []byte("1"))
			})
			return runs, err
		}
		seeks := func(b kv.Bucket) { // 7 walked ranges: one per key
			for _, k := range "abcdefg" {
				b.Cursor().Seek([]byte{byte(k)})
			}
		}
		// Merged into one range over the bucket, which sees a write between keys.
		runs, err := update(seeks, func() { put(t, e, "cc", "1") })
		require.NoError(t, err)
		assert.Equal(t, 2, runs)
		// Absent keys inside a walked range need no compare of their own.
		runs, err = update(func(b kv.Bucket) {
			b.ForEach(func(k, v []byte) error { return nil })
			for i := range 10 {
				b.Get([]byte("x" + strconv.Itoa(i)))
			}
		}, nil)
		require.NoError(t, err)
		assert.Equal(t, 1, runs)
		// Present keys do.
		_, err = update(func(b kv.Bucket) {
			for _, k := range "abcdefg" {
				b.Get([]byte{byte(k)})
			}
		}, nil)
		require.ErrorIs(t, err, kv.ErrTooLarge)
	})

	t.Run("MalformedFence", func(t *testing.T) {
		e := newEngine(t, Options{})
		err := e.Update(t.Context(), kv.Write{Fence: kv.Fence{Key: "leader"}}, func(tx kv.Tx) error {
			return tx.Bucket(kvtest.Buckets[0]).Put([]byte("a"), []byte("1"))
		})
		require.ErrorIs(t, err, kv.ErrFenced)
	})

	t.Run("FenceWithoutWrites", func(t *testing.T) {
		e := newEngine(t, Options{})
		f, lose := leaseFence(t, e)
		lose()
		require.ErrorIs(t, e.Update(t.Context(), kv.Write{Fence: f}, func(kv.Tx) error { return nil }), kv.ErrFenced)
	})

	t.Run("DeadServer", func(t *testing.T) {
		dead := newClient(t, []string{"http://127.0.0.1:1"}, 100*time.Millisecond)
		e := New(dead, Options{RequestTimeout: 200 * time.Millisecond, Buckets: kvtest.Buckets})
		runs := 0
		err := e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			runs++
			assert.Nil(t, tx.Bucket(kvtest.Buckets[0]).Get([]byte("a")))
			return tx.Bucket(kvtest.Buckets[0]).Put([]byte("a"), []byte("1"))
		})
		require.ErrorContains(t, err, "etcd: read")
		assert.Equal(t, 1, runs)
		require.Error(t, e.View(t.Context(), func(tx kv.Tx) error {
			k, _ := tx.Bucket(kvtest.Buckets[0]).Last(nil)
			assert.Nil(t, k)
			return nil
		}))
	})
}

// storeMaxOps is the MaxOps of the stores the conformance suite runs on.
const storeMaxOps = 32

// leaseFence puts a key under a lease, as an election does, and returns it as a
// fence; lose revokes the lease, which deletes the key.
func leaseFence(t *testing.T, e kv.Engine) (kv.Fence, func()) {
	c := e.(*Engine).Client()
	lease, err := c.Grant(t.Context(), 60)
	require.NoError(t, err)
	key := "/test-fence/" + t.Name()
	resp, err := c.Put(t.Context(), key, "leader", clientv3.WithLease(lease.ID))
	require.NoError(t, err)
	return kv.Fence{Key: key, Rev: resp.Header.Revision}, func() {
		_, err := c.Revoke(context.WithoutCancel(t.Context()), lease.ID)
		require.NoError(t, err)
	}
}

func newClient(t testing.TB, endpoints []string, dial time.Duration) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dial, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func put(t testing.TB, e kv.Engine, pairs ...string) {
	require.NoError(t, e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
		for i := 0; i < len(pairs); i += 2 {
			if err := tx.Bucket(kvtest.Buckets[0]).Put([]byte(pairs[i]), []byte(pairs[i+1])); err != nil {
				return err
			}
		}
		return nil
	}))
}

func get(t testing.TB, e kv.Engine, k string) (v []byte) {
	require.NoError(t, e.View(context.Background(), func(tx kv.Tx) error {
		v = tx.Bucket(kvtest.Buckets[0]).Get([]byte(k))
		return nil
	}))
	return v
}

// BenchmarkUpdate measures one Update of 3 gets and 8 puts against a one-member
// embedded etcd, serially and from parallel goroutines (no conflicts: each Update
// writes keys of its own).
func BenchmarkUpdate(b *testing.B) {
	srv := etcdtest.Start(b)
	c := newClient(b, srv.Endpoints, time.Second)
	e := New(c, Options{Prefix: "/bench/", Buckets: kvtest.Buckets})
	put(b, e, "g0", "x", "g1", "x", "g2", "x")
	var seq atomic.Int64
	update := func() error {
		n := seq.Add(1)
		return e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
			bk := tx.Bucket(kvtest.Buckets[0])
			for i := range 3 {
				bk.Get([]byte("g" + strconv.Itoa(i)))
			}
			for i := range 8 {
				if err := bk.Put(fmt.Appendf(nil, "p%d/%d", n, i), []byte("value of some forty bytes, like a record")); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := update(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8) // 8 x GOMAXPROCS goroutines: etcd waits on raft and fsync, not CPU
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := update(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// An endpoint's user and password never reach an error (which the daemon logs, or
// prints as it exits).
func TestOpen_ErrorHidesEndpointSecrets(t *testing.T) {
	for _, ep := range []string{"http://root:secretpw@127.0.0.1:1", "root:secretpw@127.0.0.1:1"} {
		_, err := Open(context.Background(), Options{Endpoints: []string{ep}, Prefix: "/x/", DialTimeout: 100 * time.Millisecond})
		require.Error(t, err, ep)
		assert.NotContains(t, err.Error(), "secretpw")
		assert.NotContains(t, err.Error(), "root:")
		assert.Contains(t, err.Error(), "xxxxx@127.0.0.1:1", "the endpoint is named, its user information masked")
	}
}
