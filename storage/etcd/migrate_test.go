package etcd

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// TestCopy_Etcd: kv.Copy between two prefixes of one cluster, into a target that
// commits at most 20 puts at once (its first Update also reads every bucket: at
// least one compare each, 17); a non-empty target is refused untouched, and
// kv.Compare sees a value changed behind its back. (The bolt round trip with real
// records is storage/bolt's TestCopy_BoltEtcdBolt.)
func TestCopy_Etcd(t *testing.T) {
	ctx := t.Context()
	srv := etcdtest.Start(t)
	c := newClient(t, srv.Endpoints, time.Second)
	src := New(c, Options{Prefix: "/src/", Buckets: storage.Buckets})
	dst := New(c, Options{Prefix: "/dst/", Buckets: storage.Buckets, MaxOps: 20})

	// 300 consents, a binary key and an empty value: 305 keys in two buckets.
	for from := 0; from < 300; from += 100 {
		require.NoError(t, src.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			for i := from; i < from+100; i++ {
				if err := tx.Bucket([]byte("consents")).Put(fmt.Appendf(nil, "urn:t:%03d", i), fmt.Appendf(nil, `{"n":%d}`, i)); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.NoError(t, src.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		for _, k := range []string{"application", "schema", "a\x00b\xff"} {
			if err := meta.Put([]byte(k), []byte("v-"+k)); err != nil {
				return err
			}
		}
		if err := meta.Put([]byte("empty"), nil); err != nil {
			return err
		}
		return tx.Bucket([]byte("dates")).Put([]byte("d"), []byte{0, 1, 2})
	}))

	var commits []string
	n, err := kv.Copy(ctx, dst, src, storage.Buckets, func(b string, n int) { commits = append(commits, fmt.Sprintf("%s %d", b, n)) })
	require.NoError(t, err)
	assert.Equal(t, 305, n)
	assert.Contains(t, commits, "consents 20")
	assert.Contains(t, commits, "consents 300")
	assert.Contains(t, commits, "meta 4")
	assert.Contains(t, commits, "poll 0", "an empty bucket is reported too")
	assert.Len(t, commits, 1+15+15+1, "meta, 15 Updates of consents (300/20), 15 empty buckets, dates")
	require.NoError(t, kv.Compare(ctx, src, dst, storage.Buckets))
	require.NoError(t, dst.View(ctx, func(tx kv.Tx) error {
		assert.Equal(t, []byte{}, tx.Bucket([]byte("meta")).Get([]byte("empty")), "an empty value stays a present key")
		return nil
	}))

	t.Run("non-empty target refused", func(t *testing.T) {
		rev := revision(t, c)
		_, err := kv.Copy(ctx, dst, src, storage.Buckets, nil)
		require.ErrorIs(t, err, kv.ErrNotEmpty)
		assert.ErrorContains(t, err, "bucket meta holds keys")
		assert.Equal(t, rev, revision(t, c), "nothing written")
	})

	t.Run("changed value found", func(t *testing.T) {
		put := func(v string) {
			require.NoError(t, dst.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
				return tx.Bucket([]byte("consents")).Put([]byte("urn:t:150"), []byte(v))
			}))
		}
		put(`{"n":151}`)
		err := kv.Compare(ctx, src, dst, storage.Buckets)
		require.ErrorIs(t, err, kv.ErrDiffer)
		assert.EqualError(t, err, `stores differ: bucket consents, key "urn:t:150": value differs; 304 keys identical`)
		put(`{"n":150}`)
		require.NoError(t, kv.Compare(ctx, src, dst, storage.Buckets))
	})

	t.Run("canceled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		empty := New(c, Options{Prefix: "/canceled/", Buckets: storage.Buckets})
		_, err := kv.Copy(cctx, empty, src, storage.Buckets, nil)
		require.ErrorIs(t, err, context.Canceled)
	})
}

// revision is the cluster's current revision: it moves on every write.
func revision(t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	resp, err := c.Get(t.Context(), "/", clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	require.NoError(t, err)
	return resp.Header.Revision
}
