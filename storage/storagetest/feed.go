package storagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// feedTests are the conformance tests of the feed and the webhooks' delivery state
// (storage/feed.go); Run runs them with the others.
var feedTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"Feed_Publish", testFeed_Publish},
	{"Feed_FailedChangeQueuesNothing", testFeed_FailedChangeQueuesNothing},
	{"Feed_ConcurrentWritersAndPublisher", testFeed_ConcurrentWritersAndPublisher},
	{"Webhook_CursorAndBacklogs", testWebhook_CursorAndBacklogs},
}

func event(id, kind string, at time.Time) storage.Event {
	return storage.ConsentEvent(kind, at, id, storage.ActorBillingd, "")
}

func testFeed_Publish(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	st, err := db.FeedStatus(ctx)
	require.NoError(t, err)
	assert.Equal(t, storage.FeedStatus{}, st)

	for i := range 3 {
		at := T0.Add(time.Duration(i) * time.Minute)
		require.NoError(t, db.Apply(ctx, &storage.Change{Events: []storage.Event{event("urn:t:b", fmt.Sprintf("b%d", i), at), event("urn:t:a", fmt.Sprintf("a%d", i), at)}}))
	}
	st, err = db.FeedStatus(ctx)
	require.NoError(t, err)
	assert.Equal(t, 6, st.Outbox)
	assert.Equal(t, uint64(0), st.Head)
	assert.True(t, st.OutboxOldest.Equal(T0))
	none, err := db.Feed(ctx, 0, 10)
	require.NoError(t, err)
	assert.Empty(t, none, "nothing is in the feed before it is published")

	n, err := db.Publish(ctx, kv.Fence{}, 4)
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	n, err = db.Publish(ctx, kv.Fence{}, 100)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	n, err = db.Publish(ctx, kv.Fence{}, 100)
	require.NoError(t, err)
	assert.Equal(t, 0, n)
	st, err = db.FeedStatus(ctx)
	require.NoError(t, err)
	assert.Equal(t, storage.FeedStatus{Head: 6}, st)

	all, err := db.Feed(ctx, 0, 100)
	require.NoError(t, err)
	require.Len(t, all, 6)
	ids := map[string]bool{}
	last := map[string]uint64{}
	for i, fe := range all {
		assert.Equal(t, uint64(i+1), fe.Pos, "positions are dense from 1")
		assert.Greater(t, fe.Event.Seq, last[fe.Event.ConsentID], "each consent's events in timeline order")
		last[fe.Event.ConsentID] = fe.Event.Seq
		assert.Equal(t, storage.EventID(fe.Event.ConsentID, fe.Event.Seq, fe.Event.At), fe.ID)
		assert.False(t, ids[fe.ID], "ids are unique")
		ids[fe.ID] = true
		pos, err := db.FeedPosition(ctx, fe.ID)
		require.NoError(t, err)
		assert.Equal(t, fe.Pos, pos)
	}
	page, err := db.Feed(ctx, 4, 1)
	require.NoError(t, err)
	assert.Equal(t, all[4:5], page)
	at, err := db.FeedAt(ctx, []uint64{6, 2})
	require.NoError(t, err)
	assert.Equal(t, []storage.FeedEvent{all[5], all[1]}, at)
	_, err = db.FeedAt(ctx, []uint64{7})
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = db.FeedPosition(ctx, "evt_nope")
	require.ErrorIs(t, err, storage.ErrNotFound)

	// A later event of a consent comes after its earlier ones.
	require.NoError(t, db.Apply(ctx, &storage.Change{Events: []storage.Event{event("urn:t:a", "a3", T0.Add(time.Hour))}}))
	_, err = db.Publish(ctx, kv.Fence{}, 100)
	require.NoError(t, err)
	more, err := db.Feed(ctx, 6, 100)
	require.NoError(t, err)
	require.Len(t, more, 1)
	assert.Equal(t, uint64(4), more[0].Event.Seq)
	assert.Equal(t, "a3", more[0].Event.Kind)
}

func testFeed_FailedChangeQueuesNothing(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	err := db.Apply(ctx, &storage.Change{Amounts: []storage.CycleAmount{{ConsentID: "urn:t:none", Cycle: 1, Amount: 100}},
		Events: []storage.Event{event("urn:t:none", "amount_set", T0)}})
	require.ErrorIs(t, err, storage.ErrNotFound)
	st, err := db.FeedStatus(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, st.Outbox, "a change that fails queues no event")
}

// testFeed_ConcurrentWritersAndPublisher: writers of several consents and the
// publisher at once (on etcd, optimistic transactions that may conflict): every
// event is published once, and each consent's in order.
func testFeed_ConcurrentWritersAndPublisher(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	const writers, each = 4, 15
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				assert.NoError(t, db.Apply(ctx, &storage.Change{Events: []storage.Event{event(fmt.Sprintf("urn:t:%d", w), fmt.Sprintf("e%d", i), T0.Add(time.Duration(i)*time.Second))}}))
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			_, err := db.Publish(ctx, kv.Fence{}, 7)
			assert.NoError(t, err)
			select {
			case <-time.After(time.Millisecond):
			case <-stop(&wg):
				return
			}
		}
	}()
	<-done
	for {
		n, err := db.Publish(ctx, kv.Fence{}, 100)
		require.NoError(t, err)
		if n == 0 {
			break
		}
	}
	all, err := db.Feed(ctx, 0, 1000)
	require.NoError(t, err)
	require.Len(t, all, writers*each)
	next := map[string]uint64{}
	for i, fe := range all {
		assert.Equal(t, uint64(i+1), fe.Pos)
		next[fe.Event.ConsentID]++
		assert.Equal(t, next[fe.Event.ConsentID], fe.Event.Seq, "consent %s in order", fe.Event.ConsentID)
		assert.Equal(t, fmt.Sprintf("e%d", fe.Event.Seq-1), fe.Event.Kind)
	}
}

// stop returns a channel closed when wg is done.
func stop(wg *sync.WaitGroup) <-chan struct{} {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	return c
}

func testWebhook_CursorAndBacklogs(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	for i := range 3 {
		require.NoError(t, db.Apply(ctx, &storage.Change{Events: []storage.Event{event("urn:t:a", fmt.Sprintf("e%d", i), T0)}}))
	}
	_, err := db.Publish(ctx, kv.Fence{}, 100)
	require.NoError(t, err)

	_, ok, err := db.WebhookCursor(ctx, "shop")
	require.NoError(t, err)
	assert.False(t, ok)
	cur, err := db.StartWebhook(ctx, kv.Fence{}, "shop")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), cur, "a new endpoint starts at the head")
	cur, err = db.StartWebhook(ctx, kv.Fence{}, "shop")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), cur, "and keeps its cursor")

	// The cursor moves only from where the writer read it.
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "shop", MoveCursor: true, From: 3, To: 1}))
	err = db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "shop", MoveCursor: true, From: 3, To: 2})
	require.ErrorIs(t, err, storage.ErrConflict)
	cur, _, err = db.WebhookCursor(ctx, "shop")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), cur)

	// Backlogs: versioned, found by their retry time, dead ones listed.
	a := &storage.WebhookBacklog{Endpoint: "shop", ConsentID: "urn:t:a", Parked: []uint64{2, 3}, Since: T0, Attempts: 1, FirstFailure: T0, NextTry: T0.Add(time.Minute)}
	b := &storage.WebhookBacklog{Endpoint: "shop", ConsentID: "urn:t:b", Parked: []uint64{9}, Since: T0, Attempts: 1, FirstFailure: T0, NextTry: T0.Add(time.Hour)}
	other := &storage.WebhookBacklog{Endpoint: "crm", ConsentID: "urn:t:a", Parked: []uint64{2}, FirstFailure: T0, NextTry: T0}
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "shop", Put: []*storage.WebhookBacklog{a, b}}))
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "crm", Put: []*storage.WebhookBacklog{other}}))
	assert.Equal(t, uint64(1), a.Version)
	stale := *a
	stale.Version = 0
	require.ErrorIs(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "shop", Put: []*storage.WebhookBacklog{&stale}}), storage.ErrConflict)

	due, err := db.WebhookDue(ctx, "shop", T0.Add(30*time.Minute), 10)
	require.NoError(t, err)
	require.Len(t, due, 1)
	assert.Equal(t, "urn:t:a", due[0].ConsentID)
	assert.Equal(t, []uint64{2, 3}, due[0].Parked)
	got, err := db.WebhookBacklog(ctx, "shop", "urn:t:b")
	require.NoError(t, err)
	assert.Equal(t, []uint64{9}, got.Parked)
	_, err = db.WebhookBacklog(ctx, "shop", "urn:t:c")
	require.ErrorIs(t, err, storage.ErrNotFound)
	list, err := db.WebhookBacklogs(ctx, "shop")
	require.NoError(t, err)
	require.Len(t, list, 2)

	// Dead: out of the timers, into the dead letters; alive again: the reverse.
	a.Dead = true
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "shop", Put: []*storage.WebhookBacklog{a}}))
	other.Dead = true
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "crm", Put: []*storage.WebhookBacklog{other}}))
	due, err = db.WebhookDue(ctx, "shop", T0.Add(2*time.Hour), 10)
	require.NoError(t, err)
	require.Len(t, due, 1)
	assert.Equal(t, "urn:t:b", due[0].ConsentID)
	dead, next, err := db.WebhookDeadLetters(ctx, "", 1)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "crm", dead[0].Endpoint)
	require.NotEmpty(t, next)
	dead, next, err = db.WebhookDeadLetters(ctx, next, 1)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "shop", dead[0].Endpoint)
	assert.Equal(t, "urn:t:a", dead[0].ConsentID)
	assert.Empty(t, next)

	a.Dead, a.NextTry = false, T0
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "shop", Put: []*storage.WebhookBacklog{a}}))
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "crm", Del: []*storage.WebhookBacklog{other}}))
	dead, _, err = db.WebhookDeadLetters(ctx, "", 10)
	require.NoError(t, err)
	assert.Empty(t, dead)
	require.NoError(t, db.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: "shop", Del: []*storage.WebhookBacklog{a, b}}))
	due, err = db.WebhookDue(ctx, "shop", T0.Add(24*time.Hour), 10)
	require.NoError(t, err)
	assert.Empty(t, due, "a deleted backlog leaves no timer")
	list, err = db.WebhookBacklogs(ctx, "shop")
	require.NoError(t, err)
	assert.Empty(t, list)
}
