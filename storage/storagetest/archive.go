package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// archiveTests are the conformance tests of the archive (storage/archive.go): where
// settled attempts and older events are kept, and that every reader still sees
// them. Where a record is kept is read through the engine's kv buckets, by the
// layout's bucket names ("attempts" and "archive", "events" and "event_archive").
var archiveTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"Archive_SettledAttemptMoves", testArchive_SettledAttemptMoves},
	{"Archive_WhatCanStillChangeStaysLive", testArchive_WhatCanStillChangeStaysLive},
	{"Archive_ResolvedAttentionItem", testArchive_ResolvedAttentionItem},
	{"Archive_CursorMovedBack", testArchive_CursorMovedBack},
	{"Archive_OldStore", testArchive_OldStore},
	{"Archive_Compact", testArchive_Compact},
	{"Archive_SweepTooLargeForOneTransaction", testArchive_SweepTooLargeForOneTransaction},
}

// held counts the keys of consent id in each of the four buckets of attempts and
// events.
type held struct{ live, archived, events, archivedEvents int }

func where(t *testing.T, db storage.Store, id string) held {
	t.Helper()
	var h held
	prefix := append([]byte(id), 0)
	require.NoError(t, db.Engine().View(context.Background(), func(tx kv.Tx) error {
		for b, n := range map[string]*int{"attempts": &h.live, "archive": &h.archived, "events": &h.events, "event_archive": &h.archivedEvents} {
			c := tx.Bucket([]byte(b)).Cursor()
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				*n++
			}
		}
		return nil
	}))
	return h
}

// billed writes what the scheduler writes for cycle k of rec: SUBMITTING, SUBMITTED
// with the cursor moved past k, and COMPLETED, each with its event. It returns the
// attempt at the version the store holds.
func billed(t *testing.T, db storage.Store, rec *storage.ConsentRecord, k int, at time.Time) *storage.Attempt {
	t.Helper()
	ctx := context.Background()
	a := Attempt(rec.ID(), k, 0, storage.AttemptSubmitting, cycle.DateOf(at).AddDays(3), at)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}}))
	a.State, a.PaymentID, a.Status, a.NextPoll = storage.AttemptSubmitted, fmt.Sprintf("pay-%d", k), klavi.PaymentPending, at.Add(5*time.Minute)
	rec.NextCycle = k + 1
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}, Cursor: rec,
		PutPoll: []storage.PollItem{{At: a.NextPoll, Key: a.AttemptKey}},
		Events:  []storage.Event{storage.AttemptEvent("submitted", at, a, storage.ActorBillingd, "")}}))
	poll := a.NextPoll
	a.State, a.Status, a.NextPoll, a.UpdatedAt = storage.AttemptCompleted, klavi.PaymentCompleted, time.Time{}, at.Add(time.Hour)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}, DelPoll: []storage.PollItem{{At: poll, Key: a.AttemptKey}},
		Events: []storage.Event{storage.AttemptEvent("completed", a.UpdatedAt, a, storage.ActorBillingd, "")}}))
	return a
}

// getAttempt reads attempt k with GetAttempt, and checks that GetConsentAttempt,
// the decision's read, finds the same attempt (or none) in the archive's every case.
func getAttempt(t *testing.T, db storage.Store, k storage.AttemptKey) (*storage.Attempt, error) {
	t.Helper()
	a, err := db.GetAttempt(context.Background(), k)
	rec, b, err2 := db.GetConsentAttempt(context.Background(), k)
	require.NoError(t, err2)
	assert.Equal(t, k.ConsentID, rec.ID())
	if errors.Is(err, storage.ErrNotFound) {
		assert.Nil(t, b, "GetConsentAttempt found %s, GetAttempt did not", k)
	} else if err == nil {
		assert.Equal(t, a, b, "GetConsentAttempt and GetAttempt read %s differently", k)
	}
	return a, err
}

func kinds(t *testing.T, db storage.Store, id string) []string {
	t.Helper()
	evs, more, err := db.Events(context.Background(), id, 0, 100)
	require.NoError(t, err)
	require.False(t, more)
	var out []string
	for i, e := range evs {
		if i > 0 {
			require.Greater(t, e.Seq, evs[i-1].Seq, "in sequence order")
		}
		out = append(out, e.Kind)
	}
	return out
}

func testArchive_SettledAttemptMoves(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	rec := Record(t, "urn:t:a", storage.ConsentActive)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true, Events: []storage.Event{event("urn:t:a", "added", T0)}}))
	a := Attempt("urn:t:a", 0, 0, storage.AttemptSubmitting, cycle.MustDate(2026, 3, 5), T0)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}}))
	assert.Equal(t, held{live: 1, events: 1}, where(t, db, "urn:t:a"), "SUBMITTING is live")
	a.State, a.PaymentID, a.NextPoll = storage.AttemptSubmitted, "pay-0", T0.Add(time.Minute)
	rec.NextCycle = 1
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}, Cursor: rec, PutPoll: []storage.PollItem{{At: a.NextPoll, Key: a.AttemptKey}},
		Events: []storage.Event{storage.AttemptEvent("submitted", T0, a, storage.ActorBillingd, "")}}))
	assert.Equal(t, held{live: 1, events: 2}, where(t, db, "urn:t:a"), "SUBMITTED is live")

	poll := a.NextPoll
	a.State, a.Status, a.NextPoll = storage.AttemptCompleted, klavi.PaymentCompleted, time.Time{}
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}, DelPoll: []storage.PollItem{{At: poll, Key: a.AttemptKey}},
		Events: []storage.Event{storage.AttemptEvent("completed", T0.Add(time.Hour), a, storage.ActorBillingd, "")}}))
	assert.Equal(t, held{archived: 1, events: 1, archivedEvents: 2}, where(t, db, "urn:t:a"),
		"COMPLETED with the cursor past its cycle: archived, with the timeline but its newest event")

	got, err := getAttempt(t, db, a.AttemptKey)
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptCompleted, got.State)
	assert.Equal(t, uint64(3), got.Version)
	list, err := db.Attempts(ctx, "urn:t:a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	var ledger int
	require.NoError(t, db.EachAttemptBetween(ctx, a.Date, a.Date, func(*storage.Attempt) error { ledger++; return nil }))
	assert.Equal(t, 1, ledger, "the ledger reads the archive")
	page, _, err := db.AttemptsBetween(ctx, a.Date, a.Date, "urn:t:a", "", 10, nil)
	require.NoError(t, err)
	assert.Len(t, page, 1)
	assert.Equal(t, []string{"added", "submitted", "completed"}, kinds(t, db, "urn:t:a"))

	n, err := db.Publish(ctx, kv.Fence{}, 100)
	require.NoError(t, err)
	assert.Equal(t, 3, n, "events archived before they were published are published")
	feed, err := db.Feed(ctx, 0, 10)
	require.NoError(t, err)
	require.Len(t, feed, 3)
	assert.Equal(t, "added", feed[0].Event.Kind)
	assert.Equal(t, "completed", feed[2].Event.Kind)

	t.Run("an archived attempt is written at its version", func(t *testing.T) {
		stale := *a
		a.Reason = "noted"
		require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}}))
		assert.Equal(t, uint64(4), a.Version)
		assert.ErrorIs(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{&stale}}), storage.ErrConflict)
		got, err := getAttempt(t, db, a.AttemptKey)
		require.NoError(t, err)
		assert.Equal(t, "noted", got.Reason)
		assert.Equal(t, 1, where(t, db, "urn:t:a").archived)
	})
	t.Run("the next cycle is new, and its events follow the timeline", func(t *testing.T) {
		_, err := getAttempt(t, db, storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 1})
		require.ErrorIs(t, err, storage.ErrNotFound)
		billed(t, db, rec, 1, T0.Add(30*24*time.Hour))
		assert.Equal(t, held{archived: 2, events: 1, archivedEvents: 4}, where(t, db, "urn:t:a"))
		assert.Equal(t, []string{"added", "submitted", "completed", "submitted", "completed"}, kinds(t, db, "urn:t:a"))
		evs, more, err := db.Events(ctx, "urn:t:a", 2, 2)
		require.NoError(t, err)
		assert.True(t, more)
		require.Len(t, evs, 2, "a page that spans both buckets")
		assert.Equal(t, "completed", evs[0].Kind)
		assert.Equal(t, "submitted", evs[1].Kind)
	})
	require.NoError(t, db.Check(ctx))
}

func testArchive_WhatCanStillChangeStaysLive(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	rec := Record(t, "urn:t:a", storage.ConsentActive)
	rec.NextCycle = 3
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true}))
	d := cycle.MustDate(2026, 3, 5)
	unconfirmed := Attempt("urn:t:a", 0, 0, storage.AttemptUnconfirmed, d, T0)
	stuck := Attempt("urn:t:a", 1, 0, storage.AttemptStuck, d.AddDays(30), T0)
	stuck.PaymentID, stuck.NextPoll = "pay-1", T0.Add(time.Hour)
	polled := Attempt("urn:t:a", 1, 1, storage.AttemptRejected, d.AddDays(31), T0) // a poll still due
	polled.NextPoll = T0.Add(time.Hour)
	planned := Attempt("urn:t:a", 2, 1, storage.AttemptPlanned, d.AddDays(62), T0)
	planned.DueAt = T0.Add(time.Hour)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{unconfirmed, stuck, polled, planned}}))
	assert.Equal(t, 4, where(t, db, "urn:t:a").live)
	assert.Zero(t, where(t, db, "urn:t:a").archived, "UNCONFIRMED, STUCK, polled and planned attempts can still change")

	// A cycle's original settled before its consent's cursor moved past the cycle
	// stays live: the scan trusts a live miss for the cursor's next cycle.
	pinned := Attempt("urn:t:a", 3, 0, storage.AttemptCompleted, d.AddDays(90), T0)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{pinned}}))
	assert.Equal(t, 5, where(t, db, "urn:t:a").live)
	// Once the cursor has moved on, the next change that archives an attempt of the
	// consent takes it along (the others cannot move).
	rec.NextCycle = 4
	require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: rec}))
	dropped := Attempt("urn:t:a", 2, 2, storage.AttemptDropped, d.AddDays(63), T0)
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{dropped}}))
	assert.Equal(t, held{live: 4, archived: 2}, where(t, db, "urn:t:a"))
	got, err := getAttempt(t, db, pinned.AttemptKey)
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptCompleted, got.State)

	// UNCONFIRMED, once reconciled, settles.
	unconfirmed.State = storage.AttemptCompleted
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{unconfirmed}}))
	assert.Equal(t, held{live: 3, archived: 3}, where(t, db, "urn:t:a"))
	un, err := db.Attention(ctx, storage.AttemptUnconfirmed, 10)
	require.NoError(t, err)
	assert.Empty(t, un)
	list, err := db.Attempts(ctx, "urn:t:a")
	require.NoError(t, err)
	var keys []string
	for _, a := range list {
		keys = append(keys, a.AttemptKey.String())
	}
	assert.Equal(t, []string{"urn:t:a/0/0", "urn:t:a/1/0", "urn:t:a/1/1", "urn:t:a/2/1", "urn:t:a/2/2", "urn:t:a/3/0"}, keys,
		"live and archived attempts in key order")
	require.NoError(t, db.Check(ctx))
}

func testArchive_ResolvedAttentionItem(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	rec := Record(t, "urn:t:a", storage.ConsentActive)
	rec.NextCycle = 1
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true}))
	d := cycle.MustDate(2026, 3, 5)
	missed := Attempt("urn:t:a", 0, 0, storage.AttemptMissed, d, T0)
	failed := Attempt("urn:t:a", 0, 1, storage.AttemptFailed, d.AddDays(2), T0.Add(time.Hour))
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{missed, failed}}))
	assert.Equal(t, held{archived: 2}, where(t, db, "urn:t:a"), "MISSED and FAILED are settled: archived, and open items")

	counts, err := db.AttentionCounts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, counts[storage.AttemptMissed])
	assert.Equal(t, 1, counts[storage.AttemptFailed])
	items, _, err := db.AttentionItems(ctx, "", "", 10)
	require.NoError(t, err)
	require.Len(t, items, 2)
	assert.Equal(t, storage.AttemptFailed, items[0].Attempt.State)
	assert.True(t, items[1].Since.Equal(T0))
	ms, err := db.Attention(ctx, storage.AttemptMissed, 10)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	since, ok, err := db.AttentionSince(ctx, missed.AttemptKey, storage.AttemptMissed)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.True(t, since.Equal(T0))
	oldest, err := db.AttentionOldest(ctx)
	require.NoError(t, err)
	assert.True(t, oldest[storage.AttemptFailed].Equal(T0.Add(time.Hour)))

	missed.Resolved = &storage.Resolution{At: T0.Add(2 * time.Hour), By: "alice", Note: "paid by boleto", State: storage.AttemptMissed, Since: T0}
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{missed}}))
	assert.Equal(t, held{archived: 2}, where(t, db, "urn:t:a"), "a resolved item stays archived")
	got, err := getAttempt(t, db, missed.AttemptKey)
	require.NoError(t, err)
	require.NotNil(t, got.Resolved)
	assert.Equal(t, "alice", got.Resolved.By)
	assert.False(t, got.Open())
	counts, err = db.AttentionCounts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 0, counts[storage.AttemptMissed])
	assert.Equal(t, 1, counts[storage.AttemptFailed])
	_, ok, err = db.AttentionSince(ctx, missed.AttemptKey, storage.AttemptMissed)
	require.NoError(t, err)
	assert.False(t, ok)
	require.NoError(t, db.Check(ctx))
}

func testArchive_CursorMovedBack(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	rec := Record(t, "urn:t:a", storage.ConsentActive)
	rec.NextCycle = 2
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true}))
	a := billed(t, db, rec, 2, T0)
	assert.Equal(t, 1, where(t, db, "urn:t:a").archived)

	// Moved back to cycle 2 (active): its original is needed live, for the scan's
	// live miss to mean "not attempted".
	rec.NextCycle = 2
	require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: rec}))
	assert.Equal(t, held{live: 1, events: 1, archivedEvents: 1}, where(t, db, "urn:t:a"))
	got, err := getAttempt(t, db, a.AttemptKey)
	require.NoError(t, err, "the scan sees the cycle was attempted")
	assert.Equal(t, storage.AttemptCompleted, got.State)
	require.NoError(t, db.Check(ctx))

	// Stopped, then billed again from cycle 2: the same.
	rec.NextCycle, rec.State = 3, storage.ConsentExpired
	require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: rec}))
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{got}}))
	assert.Equal(t, 1, where(t, db, "urn:t:a").archived, "written again under a stopped consent: archived")
	rec.NextCycle, rec.State = 2, storage.ConsentActive
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec}))
	assert.Equal(t, 1, where(t, db, "urn:t:a").live)
	_, err = getAttempt(t, db, a.AttemptKey)
	require.NoError(t, err)
	require.NoError(t, db.Check(ctx))
}

// unarchive moves every archived record back to the live buckets, as a store
// written before the archive holds them (in Updates within the engine's limit).
func unarchive(t *testing.T, db storage.Store) {
	t.Helper()
	ctx := context.Background()
	e := db.Engine()
	type move struct{ from, to, k, v []byte }
	var moves []move
	require.NoError(t, e.View(ctx, func(tx kv.Tx) error {
		for _, pair := range [][2]string{{"archive", "attempts"}, {"event_archive", "events"}} {
			if err := tx.Bucket([]byte(pair[0])).ForEach(func(k, v []byte) error {
				moves = append(moves, move{[]byte(pair[0]), []byte(pair[1]), bytes.Clone(k), bytes.Clone(v)})
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	}))
	chunk := len(moves)
	if m := e.MaxOps(); m > 0 {
		chunk = max(m/2, 1)
	}
	for len(moves) > 0 {
		part := moves[:min(chunk, len(moves))]
		moves = moves[len(part):]
		require.NoError(t, e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			for _, m := range part {
				if err := tx.Bucket(m.to).Put(m.k, m.v); err != nil {
					return err
				}
				if err := tx.Bucket(m.from).Delete(m.k); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// historyOf stores consent id with three billed cycles (nine events with "added").
func historyOf(t *testing.T, db storage.Store, id string) *storage.ConsentRecord {
	t.Helper()
	rec := Record(t, id, storage.ConsentActive)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: rec, NewConsent: true, Events: []storage.Event{event(id, "added", T0)}}))
	for k := range 3 {
		billed(t, db, rec, k, T0.Add(time.Duration(k)*30*24*time.Hour))
	}
	return rec
}

func testArchive_OldStore(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	rec := historyOf(t, db, "urn:t:a")
	unarchive(t, db)
	require.Equal(t, held{live: 3, events: 7}, where(t, db, "urn:t:a"))
	want := []string{"added", "submitted", "completed", "submitted", "completed", "submitted", "completed"}

	// Read as it is.
	require.NoError(t, db.Check(ctx))
	list, err := db.Attempts(ctx, "urn:t:a")
	require.NoError(t, err)
	assert.Len(t, list, 3)
	assert.Equal(t, want, kinds(t, db, "urn:t:a"))
	var ledger int
	require.NoError(t, db.EachAttemptBetween(ctx, cycle.DateOf(T0), cycle.DateOf(T0).AddDays(100), func(*storage.Attempt) error { ledger++; return nil }))
	assert.Equal(t, 3, ledger)

	// Written: a settled attempt written again moves, and takes the consent's
	// older records along.
	a, err := getAttempt(t, db, storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 1})
	require.NoError(t, err)
	a.Reason = "noted"
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}}))
	assert.Equal(t, held{archived: 3, events: 1, archivedEvents: 6}, where(t, db, "urn:t:a"))
	assert.Equal(t, want, kinds(t, db, "urn:t:a"))

	// The next cycle is billed as in a new store, its events numbered after the
	// last.
	unarchive(t, db)
	_, err = getAttempt(t, db, storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 3})
	require.ErrorIs(t, err, storage.ErrNotFound)
	billed(t, db, rec, 3, T0.Add(90*24*time.Hour))
	assert.Equal(t, held{archived: 4, events: 1, archivedEvents: 8}, where(t, db, "urn:t:a"))
	assert.Equal(t, append(want, "submitted", "completed"), kinds(t, db, "urn:t:a"))
	n, err := db.Publish(ctx, kv.Fence{}, 100)
	require.NoError(t, err)
	assert.Equal(t, 9, n)
	require.NoError(t, db.Check(ctx))
}

func testArchive_Compact(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	for i := range 5 {
		historyOf(t, db, fmt.Sprintf("urn:t:%d", i))
	}
	// A consent whose original is pinned by its cursor keeps it live.
	rec := Record(t, "urn:t:p", storage.ConsentActive)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true,
		Attempts: []*storage.Attempt{Attempt("urn:t:p", 0, 0, storage.AttemptCompleted, cycle.DateOf(T0), T0)}}))
	unarchive(t, db)

	var calls int
	attempts, events, err := db.Compact(ctx, 4, func(int, int) { calls++ })
	require.NoError(t, err)
	assert.Equal(t, 15, attempts)
	assert.Equal(t, 5*6, events, "every event but each consent's newest")
	assert.GreaterOrEqual(t, calls, (15+30)/4, "in transactions of at most 4 moves")
	for i := range 5 {
		assert.Equal(t, held{archived: 3, events: 1, archivedEvents: 6}, where(t, db, fmt.Sprintf("urn:t:%d", i)))
	}
	assert.Equal(t, held{live: 1}, where(t, db, "urn:t:p"))
	attempts, events, err = db.Compact(ctx, 0, nil)
	require.NoError(t, err)
	assert.Zero(t, attempts+events, "nothing left to move")
	assert.Len(t, kinds(t, db, "urn:t:3"), 7)
	require.NoError(t, db.Check(ctx))
}

// A change that archives an attempt of a consent with many live events moves them
// along; an engine whose transaction cannot hold them too (etcd's operation limit,
// 32 in its suite) writes the change without them.
func testArchive_SweepTooLargeForOneTransaction(t *testing.T, open Opener) {
	ctx := context.Background()
	db := open(t)
	rec := Record(t, "urn:t:a", storage.ConsentActive)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true}))
	for i := range 20 {
		require.NoError(t, db.Apply(ctx, &storage.Change{Events: []storage.Event{event("urn:t:a", fmt.Sprintf("note%d", i), T0)}}))
	}
	a := Attempt("urn:t:a", 0, 0, storage.AttemptSubmitted, cycle.DateOf(T0), T0)
	rec.NextCycle = 1
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}, Cursor: rec}))
	a.State = storage.AttemptCompleted
	require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a},
		Events: []storage.Event{storage.AttemptEvent("completed", T0, a, storage.ActorBillingd, "")}}))
	h := where(t, db, "urn:t:a")
	assert.Equal(t, 1, h.archived)
	assert.Equal(t, 21, h.events+h.archivedEvents)
	assert.Contains(t, []int{0, sweepLimit}, h.archivedEvents, "all of a sweep, or none of it")
	evs := kinds(t, db, "urn:t:a")
	require.Len(t, evs, 21)
	assert.Equal(t, "completed", evs[20])
	require.NoError(t, db.Check(ctx))
}

// sweepLimit is storage's bound on what one change moves besides itself.
const sweepLimit = 16
