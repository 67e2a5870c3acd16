package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// blockingKlavi holds every CreatePayment until released or its context ends.
type blockingKlavi struct {
	*fakeKlavi
	entered chan struct{}
	release chan struct{}
}

func (b *blockingKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
		return b.fakeKlavi.CreatePayment(ctx, id, req)
	case <-ctx.Done():
		return nil, fmt.Errorf("create payment: %w: %w", klavi.ErrOutcomeUnknown, ctx.Err())
	}
}

func TestScheduler_GracefulStop(t *testing.T) {
	setup := func(t *testing.T) (*harness, *blockingKlavi, string) {
		h := newHarness(t, at("2026-01-07", 9, 30), nil)
		bk := &blockingKlavi{fakeKlavi: h.kl, entered: make(chan struct{}, 1), release: make(chan struct{})}
		s, err := New(h.s.cfg, h.db, bk, WithClock(h.clock))
		require.NoError(t, err)
		h.s = s
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10") // submit day: today
		h.add(c)
		require.NoError(t, h.s.Start(context.Background(), kv.Fence{}, "@every 1h", "@every 1h", Hooks{}))
		<-bk.entered // the catch-up scan is inside the POST
		return h, bk, c.ID
	}
	t.Run("in-flight submission finishes", func(t *testing.T) {
		h, bk, id := setup(t)
		stopped := make(chan error, 1)
		go func() { stopped <- h.s.Close(context.Background()) }()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) while a submission was in flight", err)
		default:
		}
		close(bk.release)
		require.NoError(t, <-stopped)
		assert.Equal(t, storage.AttemptSubmitted, h.attempt(id, 0, 0).State)
	})
	t.Run("deadline leaves it SUBMITTING for the next start", func(t *testing.T) {
		h, _, id := setup(t)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, h.s.Close(ctx), context.DeadlineExceeded)
		a := h.attempt(id, 0, 0)
		assert.Equal(t, storage.AttemptSubmitting, a.State, "safe: re-sent with the same key after restart")
		due, err := h.db.DueBefore(context.Background(), h.clock.Now(), 10) // ctx is done: etcd would refuse the read
		require.NoError(t, err)
		require.Len(t, due, 1, "and due at once")
		// The next start sends it again, with the same key.
		s2, err := New(h.s.cfg, h.db, h.kl, WithClock(h.clock))
		require.NoError(t, err)
		_, err = s2.Scan(context.Background())
		require.NoError(t, err)
		assert.Equal(t, storage.AttemptSubmitted, h.attempt(id, 0, 0).State)
		assert.Equal(t, 2, h.attempt(id, 0, 0).Sends)
	})
}
