package storagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// Record versions: a new record is written at version 0 and stored at 1; every
// committed change advances the caller's copy to what the store holds.
func testVersions_NewRecordsStartAtOne(t *testing.T, open Opener) {
	db := open(t)
	ctx := context.Background()
	rec := Record(t, "urn:t:v", storage.ConsentActive)
	a := Attempt("urn:t:v", 0, 0, storage.AttemptSubmitting, cycle.MustDate(2026, 3, 31), T0)
	require.Zero(t, rec.Version)
	require.Zero(t, a.Version)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true, Attempts: []*storage.Attempt{a}}))
	assert.Equal(t, uint64(1), rec.Version, "the committed change advances the caller's version")
	assert.Equal(t, uint64(1), a.Version)
	got, err := db.GetConsent(ctx, "urn:t:v")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), got.Version)
	gotA, err := db.GetAttempt(ctx, a.AttemptKey)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), gotA.Version)

	// The copies the caller holds write again without reading.
	rec.NextCycle, a.State = 1, storage.AttemptSubmitted
	require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: rec, Attempts: []*storage.Attempt{a}}))
	assert.Equal(t, uint64(2), rec.Version)
	assert.Equal(t, uint64(2), a.Version)
	rec.State = storage.ConsentRevoked
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec}))
	got, err = db.GetConsent(ctx, "urn:t:v")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), got.Version)
	assert.Equal(t, uint64(3), rec.Version)
	assert.Equal(t, storage.ConsentRevoked, got.State)
}

// A write at a version the store has moved past fails with ErrConflict and writes
// nothing of its change: not the record, not the other records, indexes and events
// it carries; and the caller's versions stay where they were.
func testVersions_StaleWriteConflicts(t *testing.T, open Opener) {
	db := open(t)
	ctx := context.Background()
	rec := Record(t, "urn:t:s", storage.ConsentActive)
	a := Attempt("urn:t:s", 0, 0, storage.AttemptSubmitted, cycle.MustDate(2026, 3, 31), T0)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true, Attempts: []*storage.Attempt{a}}))

	// Two readers of version 1; the first writes.
	first, err := db.GetConsent(ctx, "urn:t:s")
	require.NoError(t, err)
	stale, err := db.GetConsent(ctx, "urn:t:s")
	require.NoError(t, err)
	first.NextCycle = 4
	require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: first}))

	due := storage.DueItem{At: T0.Add(time.Hour), Key: storage.AttemptKey{ConsentID: "urn:t:s", Cycle: 9}}
	other := Attempt("urn:t:s", 9, 0, storage.AttemptPlanned, cycle.MustDate(2026, 12, 31), T0)
	nothingWritten := func(t *testing.T) {
		t.Helper()
		got, err := db.GetConsent(ctx, "urn:t:s")
		require.NoError(t, err)
		assert.Equal(t, 4, got.NextCycle, "the first writer's change stands")
		assert.Equal(t, storage.ConsentActive, got.State)
		assert.Equal(t, uint64(2), got.Version)
		_, err = db.GetAttempt(ctx, other.AttemptKey)
		assert.ErrorIs(t, err, storage.ErrNotFound, "the other records of the change are not written")
		dues, err := db.DueBefore(ctx, T0.Add(24*time.Hour), 10)
		require.NoError(t, err)
		assert.Empty(t, dues, "nor its index entries")
		evs, _, err := db.Events(ctx, "urn:t:s", 0, 10)
		require.NoError(t, err)
		assert.Empty(t, evs, "nor its events")
		counts, err := db.Counts(ctx)
		require.NoError(t, err)
		assert.Equal(t, map[storage.ConsentState]int{storage.ConsentActive: 1}, counts)
		assert.Zero(t, other.Version)
	}
	stale.NextCycle, stale.State = 7, storage.ConsentRevoked
	for name, ch := range map[string]*storage.Change{
		"cursor":              {Cursor: stale},
		"consent":             {Consent: stale},
		"unversioned consent": {Consent: Record(t, "urn:t:s", storage.ConsentRevoked)},
	} {
		t.Run(name, func(t *testing.T) {
			r := ch.Consent
			if r == nil {
				r = ch.Cursor
			}
			v := r.Version
			ch.Attempts = []*storage.Attempt{other}
			ch.PutDue = []storage.DueItem{due}
			ch.Events = []storage.Event{storage.ConsentEvent("revoked", T0, "urn:t:s", "mallory", "")}
			err := db.Apply(ctx, ch)
			require.ErrorIs(t, err, storage.ErrConflict)
			nothingWritten(t)
			assert.Equal(t, v, r.Version, "a failed change leaves the caller's version")
		})
	}

	t.Run("attempt", func(t *testing.T) {
		staleA := *a
		staleA.Version = 1
		a2 := staleA
		a2.State = storage.AttemptCompleted
		require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{&a2}}))
		staleA.State = storage.AttemptRejected
		fresh := *first
		err := db.Apply(ctx, &storage.Change{Cursor: &fresh, Attempts: []*storage.Attempt{&staleA}, PutDue: []storage.DueItem{due},
			Events: []storage.Event{storage.AttemptEvent("rejected", T0, &staleA, storage.ActorBillingd, "")}})
		require.ErrorIs(t, err, storage.ErrConflict)
		assert.Equal(t, first.Version, fresh.Version, "the cursor of the failed change is not advanced")
		got, err := db.GetAttempt(ctx, a.AttemptKey)
		require.NoError(t, err)
		assert.Equal(t, storage.AttemptCompleted, got.State)
		assert.Equal(t, uint64(2), got.Version)
		nothingWritten(t)
		// Written again from what is stored, it goes through.
		got.State = storage.AttemptRejected
		require.NoError(t, db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{got}}))
		assert.Equal(t, uint64(3), got.Version)
	})
}

// Two writers of the same record from the same read version, at the same time:
// exactly one wins, the other gets ErrConflict, and the store holds the winner's
// write. On bolt the two may share one group commit; on etcd they race to commit.
func testVersions_ConcurrentWriters(t *testing.T, open Opener) {
	db := open(t)
	ctx := context.Background()
	rec := Record(t, "urn:t:c", storage.ConsentActive)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true}))
	const rounds = 10
	race := func(t *testing.T, chs [2]*storage.Change) (winner int) {
		t.Helper()
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  [2]error
		)
		for i := range chs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = db.Apply(ctx, chs[i])
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		winner = -1
		for i, err := range errs {
			if err == nil {
				won++
				winner = i
				continue
			}
			require.ErrorIs(t, err, storage.ErrConflict, "writer %d", i)
		}
		require.Equal(t, 1, won, "exactly one writer wins: %v", errs)
		return winner
	}
	for k := range rounds {
		t.Run(fmt.Sprintf("new attempt %d", k), func(t *testing.T) {
			var chs [2]*storage.Change
			for i := range chs {
				a := Attempt("urn:t:c", k, 0, storage.AttemptSubmitting, cycle.MustDate(2026, 3, 31), T0)
				a.ClientRequestID = fmt.Sprintf("writer-%d", i)
				chs[i] = &storage.Change{Attempts: []*storage.Attempt{a},
					Events: []storage.Event{storage.AttemptEvent(fmt.Sprintf("writer-%d", i), T0, a, storage.ActorBillingd, "")}}
			}
			w := race(t, chs)
			got, err := db.GetAttempt(ctx, storage.AttemptKey{ConsentID: "urn:t:c", Cycle: k})
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("writer-%d", w), got.ClientRequestID)
			assert.Equal(t, uint64(1), got.Version)
			assert.Equal(t, uint64(1), chs[w].Attempts[0].Version)
			assert.Zero(t, chs[1-w].Attempts[0].Version)
		})
	}
	for k := range rounds {
		t.Run(fmt.Sprintf("stored attempt %d", k), func(t *testing.T) {
			read, err := db.GetAttempt(ctx, storage.AttemptKey{ConsentID: "urn:t:c", Cycle: k})
			require.NoError(t, err)
			var chs [2]*storage.Change
			for i, st := range []storage.AttemptState{storage.AttemptSubmitted, storage.AttemptUnconfirmed} {
				a := *read
				a.State = st
				chs[i] = &storage.Change{Attempts: []*storage.Attempt{&a}}
			}
			w := race(t, chs)
			got, err := db.GetAttempt(ctx, read.AttemptKey)
			require.NoError(t, err)
			assert.Equal(t, chs[w].Attempts[0].State, got.State)
			assert.Equal(t, read.Version+1, got.Version)
		})
	}
	t.Run("consent", func(t *testing.T) {
		for range rounds {
			read, err := db.GetConsent(ctx, "urn:t:c")
			require.NoError(t, err)
			var chs [2]*storage.Change
			for i := range chs {
				r, err := db.GetConsent(ctx, "urn:t:c")
				require.NoError(t, err)
				r.NextCycle = read.NextCycle + 1 + i
				chs[i] = &storage.Change{Cursor: r}
			}
			w := race(t, chs)
			got, err := db.GetConsent(ctx, "urn:t:c")
			require.NoError(t, err)
			assert.Equal(t, chs[w].Cursor.NextCycle, got.NextCycle)
			assert.Equal(t, read.Version+1, got.Version)
		}
	})
	events, _, err := db.Events(ctx, "urn:t:c", 0, 1000)
	require.NoError(t, err)
	assert.Len(t, events, rounds, "one event per new attempt: the losers' are not written")
	require.NoError(t, db.Check(ctx))
}

// ApplyAll commits every change of a bulk load, in as many transactions as the
// engine needs (etcd: chunks of at most MaxOps writes), each with its events.
func testApplyAll_Many(t *testing.T, open Opener) {
	db := open(t)
	ctx := context.Background()
	const n = 300
	chs := make([]*storage.Change, n)
	for i := range chs {
		id := fmt.Sprintf("urn:t:bulk-%03d", i)
		chs[i] = &storage.Change{Consent: Record(t, id, storage.ConsentActive), NewConsent: true,
			Events: []storage.Event{storage.ConsentEvent("added", T0, id, "import", fmt.Sprintf("line %d", i))}}
	}
	if m := db.Engine().MaxOps(); m > 0 {
		require.Greater(t, 4*n, 2*m, "more writes than one transaction holds: ApplyAll must commit in chunks")
	}
	applied, err := db.ApplyAll(ctx, chs)
	require.NoError(t, err)
	assert.Equal(t, n, applied)
	for _, ch := range chs {
		require.Equal(t, uint64(1), ch.Consent.Version, "every change's versions advanced")
	}
	counts, err := db.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[storage.ConsentState]int{storage.ConsentActive: n}, counts, "the counts add up across chunks")
	var ids []string
	for after := ""; ; {
		page, err := db.ListConsents(ctx, after, 64, "")
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			ids = append(ids, r.Consent.ID)
			require.Equal(t, uint64(1), r.Version)
		}
		after = page[len(page)-1].Consent.ID
	}
	require.Len(t, ids, n)
	assert.Equal(t, "urn:t:bulk-000", ids[0])
	assert.Equal(t, fmt.Sprintf("urn:t:bulk-%03d", n-1), ids[n-1])

	// A second load on the same store starts from the size the engine refused
	// before (the etcd engine's limit, learned), and commits every change too.
	more := make([]*storage.Change, n)
	for i := range more {
		id := fmt.Sprintf("urn:t:more-%03d", i)
		more[i] = &storage.Change{Consent: Record(t, id, storage.ConsentActive), NewConsent: true}
	}
	applied, err = db.ApplyAll(ctx, more)
	require.NoError(t, err)
	assert.Equal(t, n, applied)
	counts, err = db.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[storage.ConsentState]int{storage.ConsentActive: 2 * n}, counts)
	for _, i := range []int{0, 31, 32, 150, n - 1} {
		evs, _, err := db.Events(ctx, fmt.Sprintf("urn:t:bulk-%03d", i), 0, 10)
		require.NoError(t, err)
		require.Len(t, evs, 1)
		assert.Equal(t, fmt.Sprintf("line %d", i), evs[0].Reason)
	}
	require.NoError(t, db.Check(ctx))
}

// When a change of ApplyAll fails, the changes before it that were committed stay
// committed and applied counts them (all in one transaction: none; in chunks: the
// chunks before the failing one); no change from the failing one on is written,
// and only the committed changes' versions advanced.
func testApplyAll_StopsAtTheFirstFailure(t *testing.T, open Opener) {
	db := open(t)
	ctx := context.Background()
	const n, bad = 120, 90
	chs := make([]*storage.Change, n)
	for i := range chs {
		id := fmt.Sprintf("urn:t:bulk-%03d", i)
		if i == bad {
			id = "urn:t:bulk-010" // already added by change 10
		}
		chs[i] = &storage.Change{Consent: Record(t, id, storage.ConsentActive), NewConsent: true}
	}
	applied, err := db.ApplyAll(ctx, chs)
	require.ErrorIs(t, err, storage.ErrExists)
	require.LessOrEqual(t, applied, bad)
	for i, ch := range chs {
		if i == bad {
			continue
		}
		_, err := db.GetConsent(ctx, ch.Consent.Consent.ID)
		if i < applied {
			require.NoError(t, err, "change %d was committed", i)
			require.Equal(t, uint64(1), ch.Consent.Version)
		} else {
			require.ErrorIs(t, err, storage.ErrNotFound, "change %d is after the last committed one", i)
			require.Zero(t, ch.Consent.Version)
		}
	}
	counts, err := db.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, applied, counts[storage.ConsentActive])
}

// A change carrying a fence that holds is written, by Apply and by ApplyAll.
func testFence_Held(t *testing.T, open Opener, c Caps) {
	db := open(t)
	ctx := context.Background()
	f := kv.Fence{Key: "storagetest/leader", Rev: 1}
	if c.Fence != nil {
		f, _ = c.Fence(t, db)
	}
	rec := Record(t, "urn:t:f", storage.ConsentActive)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true, Fence: f}))
	applied, err := db.ApplyAll(ctx, []*storage.Change{
		{Consent: Record(t, "urn:t:g", storage.ConsentActive), NewConsent: true, Fence: f},
		{Consent: Record(t, "urn:t:h", storage.ConsentActive), NewConsent: true, Fence: f},
	})
	require.NoError(t, err)
	assert.Equal(t, 2, applied)
	counts, err := db.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, counts[storage.ConsentActive])
}

// Once its fence is lost, a change fails with ErrFenced and writes nothing, by
// Apply and by ApplyAll (every chunk carries the fence); a change with no fence
// still writes.
func testFence_Lost(t *testing.T, open Opener, c Caps) {
	db := open(t)
	ctx := context.Background()
	f, lose := c.Fence(t, db)
	rec := Record(t, "urn:t:f", storage.ConsentActive)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true, Fence: f}))
	lose()

	a := Attempt("urn:t:f", 0, 0, storage.AttemptSubmitting, cycle.MustDate(2026, 3, 31), T0)
	rec.NextCycle = 1
	err := db.Apply(ctx, &storage.Change{Cursor: rec, Attempts: []*storage.Attempt{a}, Fence: f,
		PutDue: []storage.DueItem{{At: T0, Key: a.AttemptKey}},
		Events: []storage.Event{storage.AttemptEvent("submitting", T0, a, storage.ActorBillingd, "")}})
	require.ErrorIs(t, err, storage.ErrFenced)
	assert.Equal(t, uint64(1), rec.Version, "the caller's versions stay")
	assert.Zero(t, a.Version)
	got, err := db.GetConsent(ctx, "urn:t:f")
	require.NoError(t, err)
	assert.Zero(t, got.NextCycle)
	_, err = db.GetAttempt(ctx, a.AttemptKey)
	assert.ErrorIs(t, err, storage.ErrNotFound)
	dues, err := db.DueBefore(ctx, T0.Add(time.Hour), 10)
	require.NoError(t, err)
	assert.Empty(t, dues)
	evs, _, err := db.Events(ctx, "urn:t:f", 0, 10)
	require.NoError(t, err)
	assert.Empty(t, evs)

	chs := make([]*storage.Change, 100)
	for i := range chs {
		id := fmt.Sprintf("urn:t:bulk-%03d", i)
		chs[i] = &storage.Change{Consent: Record(t, id, storage.ConsentActive), NewConsent: true, Fence: f,
			Events: []storage.Event{storage.ConsentEvent("added", T0, id, "import", "")}}
	}
	applied, err := db.ApplyAll(ctx, chs)
	require.ErrorIs(t, err, storage.ErrFenced)
	assert.Zero(t, applied)
	counts, err := db.Counts(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[storage.ConsentState]int{storage.ConsentActive: 1}, counts, "no consent of the fenced bulk load is written")
	_, err = db.GetConsent(ctx, "urn:t:bulk-099")
	assert.ErrorIs(t, err, storage.ErrNotFound)

	require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: rec}), "a change with no fence still writes")
}
