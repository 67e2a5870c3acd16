package mem_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/kv/kvtest"
	"github.com/klavi-billing/billingd/storage/kv/mem"
	"github.com/klavi-billing/billingd/storage/storagetest"
)

func TestEngine_Conformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T, buckets [][]byte) kv.Engine { return mem.New(buckets) })
}

// The storage contract holds on the engine as it does on bolt and etcd.
func TestEngine_Storage(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		db, err := storage.New(t.Context(), mem.New(storage.Buckets), storage.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		return db
	})
}

func TestEngine_Closed(t *testing.T) {
	e := mem.New(kvtest.Buckets)
	require.NoError(t, e.Close())
	require.ErrorIs(t, e.View(t.Context(), func(kv.Tx) error { return nil }), mem.ErrClosed)
	require.ErrorIs(t, e.Update(t.Context(), kv.Write{}, func(kv.Tx) error { return nil }), mem.ErrClosed)
}
