package scheduler

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage"
)

// conflicting refuses the next n Applies as a concurrent writer would (another
// replica's scheduler wrote the record between our read and our write).
type conflicting struct {
	storage.Store
	n, applies int
}

func (c *conflicting) Apply(ctx context.Context, ch *storage.Change) error {
	c.applies++
	if c.n > 0 {
		c.n--
		return fmt.Errorf("store: %w", storage.ErrConflict)
	}
	return c.Store.Apply(ctx, ch)
}

func TestScheduler_OperatorChangesRetryConflicts(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	h.add(c)
	cs := &conflicting{Store: h.db, n: 2}
	s, err := New(h.s.cfg, cs, h.kl, WithClock(h.clock))
	require.NoError(t, err)

	rec, err := s.Revoke(c.ID, "moved away", "maria")
	require.NoError(t, err, "two conflicts in a row are read again and retried")
	assert.Equal(t, storage.ConsentRevoked, rec.State)
	assert.Equal(t, 3, cs.applies)

	cs.n, cs.applies = 3, 0
	_, err = s.Revoke(c.ID, "again", "maria")
	require.ErrorIs(t, err, ErrConflict, "a revoked consent is refused on the fresh read, not retried")
	assert.Zero(t, cs.applies)

	k := storage.AttemptKey{ConsentID: c.ID, Cycle: 0}
	_, err = s.Resolve(k, "note", "maria")
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func TestScheduler_OperatorChangesGiveUpAfterThreeConflicts(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	h.add(c)
	cs := &conflicting{Store: h.db, n: 3}
	s, err := New(h.s.cfg, cs, h.kl, WithClock(h.clock))
	require.NoError(t, err)
	_, err = s.Revoke(c.ID, "moved away", "maria")
	require.ErrorIs(t, err, storage.ErrConflict)
	assert.Equal(t, 3, cs.applies)
	got, err := h.db.GetConsent(context.Background(), c.ID)
	require.NoError(t, err)
	assert.Equal(t, storage.ConsentActive, got.State, "nothing was written")
}
