package storage_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/kv/mem"
	"github.com/klavi-billing/billingd/storage/storagetest"
)

// The original of the cycle an active consent bills next is never in the archive,
// so neither GetAttempt nor the write of a new attempt looks there for it (on bolt
// that read would page in a leaf of the whole history). A store that breaks the
// rule, planted here by moving a cursor back behind the store's back, shows that
// they do not look: the archived record is not found, and Check names the breach.
func TestArchive_PinnedMissSkipsTheArchive(t *testing.T) {
	ctx := context.Background()
	db, err := storage.New(ctx, mem.New(storage.Buckets), storage.Options{})
	require.NoError(t, err)
	rec := storagetest.Record(t, "urn:t:a", storage.ConsentActive)
	rec.NextCycle = 6
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true}))
	a := storagetest.Attempt("urn:t:a", 5, 0, storage.AttemptCompleted, cycle.MustDate(2026, 3, 5), storagetest.T0)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}}))
	_, err = db.GetAttempt(ctx, a.AttemptKey)
	require.NoError(t, err, "archived, and found while the cursor is past it")
	require.NoError(t, db.Check(ctx))

	require.NoError(t, db.Engine().Update(ctx, kv.Write{}, func(tx kv.Tx) error {
		b := tx.Bucket([]byte("cursors"))
		var cur map[string]any
		require.NoError(t, json.Unmarshal(b.Get([]byte("urn:t:a")), &cur))
		cur["nextCycle"] = 5
		raw, err := json.Marshal(cur)
		require.NoError(t, err)
		return b.Put([]byte("urn:t:a"), raw)
	}))
	_, err = db.GetAttempt(ctx, a.AttemptKey)
	assert.ErrorIs(t, err, storage.ErrNotFound, "a live miss of the next cycle's original is a miss")
	assert.ErrorContains(t, db.Check(ctx), "archived attempt urn:t:a/5/0 is the next cycle of its active consent")
	fresh := storagetest.Attempt("urn:t:a", 5, 0, storage.AttemptSubmitting, cycle.MustDate(2026, 3, 5), storagetest.T0)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{fresh}}), "written as new: the archive was not read")
	assert.ErrorContains(t, db.Check(ctx), "attempt urn:t:a/5/0 is both live and archived")
}
