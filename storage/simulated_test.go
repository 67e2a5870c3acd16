package storage_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/kv/mem"
	"github.com/klavi-billing/billingd/storage/storagetest"
)

// noWrites is an engine whose writes fail the test: what New does to a store it
// refuses.
type noWrites struct {
	kv.Engine
	t *testing.T
}

func (e noWrites) Update(context.Context, kv.Write, func(kv.Tx) error) error {
	e.t.Error("a write to a store that is refused")
	return nil
}

// TestNew_Simulated: a new store laid out with Options.Simulated is marked; an
// existing one is not; RefuseSimulated refuses a marked store before any write and
// opens any other; readers read a marked store.
func TestNew_Simulated(t *testing.T) {
	ctx := context.Background()
	simulated := func(t *testing.T) kv.Engine {
		e := mem.New(storage.Buckets)
		db, err := storage.New(ctx, e, storage.Options{Simulated: true})
		require.NoError(t, err)
		require.NoError(t, db.Apply(ctx, &storage.Change{Consent: storagetest.Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true}))
		return e
	}

	t.Run("a new store is marked", func(t *testing.T) {
		db, err := storage.New(ctx, simulated(t), storage.Options{})
		require.NoError(t, err)
		sim, err := db.Simulated(ctx)
		require.NoError(t, err)
		assert.True(t, sim)
	})
	t.Run("a store laid out without it is not", func(t *testing.T) {
		db, err := storage.New(ctx, mem.New(storage.Buckets), storage.Options{})
		require.NoError(t, err)
		sim, err := db.Simulated(ctx)
		require.NoError(t, err)
		assert.False(t, sim)
	})
	t.Run("an existing store is not marked", func(t *testing.T) {
		e := mem.New(storage.Buckets)
		_, err := storage.New(ctx, e, storage.Options{})
		require.NoError(t, err)
		db, err := storage.New(ctx, e, storage.Options{Simulated: true})
		require.NoError(t, err)
		sim, err := db.Simulated(ctx)
		require.NoError(t, err)
		assert.False(t, sim)
	})
	t.Run("RefuseSimulated refuses a marked store, writing nothing", func(t *testing.T) {
		_, err := storage.New(ctx, noWrites{Engine: simulated(t), t: t}, storage.Options{RefuseSimulated: true})
		require.ErrorIs(t, err, storage.ErrSimulated)
		assert.Contains(t, err.Error(), "the store was made by billingd simulate")
	})
	t.Run("RefuseSimulated opens any other store", func(t *testing.T) {
		e := mem.New(storage.Buckets)
		_, err := storage.New(ctx, e, storage.Options{})
		require.NoError(t, err)
		_, err = storage.New(ctx, e, storage.Options{RefuseSimulated: true})
		require.NoError(t, err)
	})
	t.Run("a reader reads a marked store", func(t *testing.T) {
		db, err := storage.New(ctx, noWrites{Engine: simulated(t), t: t}, storage.Options{ReadOnly: true})
		require.NoError(t, err)
		rec, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		assert.Equal(t, storage.ConsentActive, rec.State)
	})
	t.Run("a copy keeps the mark", func(t *testing.T) {
		dst := mem.New(storage.Buckets)
		_, err := kv.Copy(ctx, dst, simulated(t), storage.Buckets, nil)
		require.NoError(t, err)
		_, err = storage.New(ctx, dst, storage.Options{RefuseSimulated: true})
		require.ErrorIs(t, err, storage.ErrSimulated)
	})
}
