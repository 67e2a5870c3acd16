package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/examples"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An Opener returns a new, empty store for one test, closed when the test ends.
type Opener func(t *testing.T) storage.Store

// Caps are what an engine has beyond what every engine must. The zero Caps is an
// engine with one writer process (storage/bolt).
type Caps struct {
	// Fence, when not nil, returns a fence that holds on db and a function that
	// makes it stop holding (etcd: revoke the lease of the election key). Turns on
	// the lost-fence subtests. When nil, the suite writes with a made-up non-zero
	// fence, which an engine with one writer accepts: bolt's flock already makes its
	// process the only writer, so it has no other leader to fear and takes any
	// fence that is not zero.
	Fence func(t *testing.T, db storage.Store) (held kv.Fence, lose func())
}

// Run runs the conformance suite against the stores open returns: every engine
// must pass it unchanged (storage/bolt and storage/etcd run it in their tests).
// caps holds at most one Caps; none is the zero Caps.
func Run(t *testing.T, open Opener, caps ...Caps) {
	var c Caps
	if len(caps) > 0 {
		c = caps[0]
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
		skip string // why the subtest does not apply, if it does not
	}{
		{"Apply_IndexesAndCounts", testApply_IndexesAndCounts, ""},
		{"Apply_AttemptsAndAttention", testApply_AttemptsAndAttention, ""},
		{"Amounts", testAmounts, ""},
		{"Apply_CursorOnly", testApply_CursorOnly, ""},
		{"Terms", testTerms, ""},
		{"DB_ConsentIDsDifferingOnlyInCase", testDB_ConsentIDsDifferingOnlyInCase, ""},
		{"DB_Events", testDB_Events, ""},
		{"DB_Events_AtomicWithTheChange", testDB_Events_AtomicWithTheChange, ""},
		{"DB_Attention", testDB_Attention, ""},
		{"DB_DueValues", testDB_DueValues, ""},
		{"DB_AttemptsBetween", testDB_AttemptsBetween, ""},
		{"DB_DatesIndexFollowsTheDate", testDB_DatesIndexFollowsTheDate, ""},
		{"Versions_NewRecordsStartAtOne", testVersions_NewRecordsStartAtOne, ""},
		{"Versions_StaleWriteConflicts", testVersions_StaleWriteConflicts, ""},
		{"Versions_ConcurrentWriters", testVersions_ConcurrentWriters, ""},
		{"ApplyAll_Many", testApplyAll_Many, ""},
		{"ApplyAll_StopsAtTheFirstFailure", testApplyAll_StopsAtTheFirstFailure, ""},
		{"Fence_Held", func(t *testing.T, open Opener) { testFence_Held(t, open, c) }, ""},
		{"Fence_Lost", func(t *testing.T, open Opener) { testFence_Lost(t, open, c) }, ifNot(c.Fence != nil, "no fence can be lost: one writer")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip != "" {
				t.Skip(tt.skip)
			}
			tt.fn(t, open)
		})
	}
	for _, tt := range feedTests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
	for _, tt := range archiveTests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open) })
	}
}

func ifNot(ok bool, why string) string {
	if ok {
		return ""
	}
	return why
}

// T0 is the instant Record's records are added and updated at.
var T0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// Consent returns the example consent "monthly-31st" (monthly on the 31st, 99.90)
// with id id.
func Consent(t testing.TB, id string) *consent.Consent {
	t.Helper()
	data, err := examples.Consents.ReadFile("consents/monthly-31st.json")
	require.NoError(t, err)
	c, err := consent.Decode(data)
	require.NoError(t, err)
	c.ID = id
	return c
}

// Record returns a record of Consent(t, id) in state, added at T0 and billed from
// its date.
func Record(t testing.TB, id string, state storage.ConsentState) *storage.ConsentRecord {
	return &storage.ConsentRecord{Consent: Consent(t, id), State: state, AddedAt: T0, UpdatedAt: T0, BillFrom: cycle.DateOf(T0)}
}

// Attempt returns attempt n of cycle k of consent id, of 99.90, in state st, dated
// date, created and updated at at.
func Attempt(id string, k, n int, st storage.AttemptState, date cycle.Date, at time.Time) *storage.Attempt {
	return &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: id, Cycle: k, Attempt: n}, State: st, Date: date, Amount: 99_90,
		ClientRequestID: fmt.Sprintf("billingd-x-%d-%d", k, n), CreatedAt: at, UpdatedAt: at}
}

func testApply_IndexesAndCounts(t *testing.T, open Opener) {
	db := open(t)
	for i, st := range []storage.ConsentState{storage.ConsentActive, storage.ConsentActive, storage.ConsentAwaiting} {
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, fmt.Sprintf("urn:t:%d", i), st), NewConsent: true}))
	}
	err := db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:0", storage.ConsentActive), NewConsent: true})
	require.ErrorIs(t, err, storage.ErrExists)

	counts, err := db.Counts(context.Background())
	require.NoError(t, err)
	assert.Equal(t, map[storage.ConsentState]int{storage.ConsentActive: 2, storage.ConsentAwaiting: 1}, counts)

	// Due entries come back in time order, and only up to "now".
	k := func(id string, c, a int) storage.AttemptKey {
		return storage.AttemptKey{ConsentID: id, Cycle: c, Attempt: a}
	}
	due := []storage.DueItem{
		{At: T0.Add(3 * time.Hour), Key: k("urn:t:1", 2, 0)},
		{At: T0, Key: k("urn:t:0", 5, 0)},
		{At: T0.Add(time.Hour), Key: k("urn:t:0", 5, 1)},
		{At: T0.Add(48 * time.Hour), Key: k("urn:t:2", 0, 0)},
	}
	require.NoError(t, db.Apply(context.Background(), &storage.Change{PutDue: due}))
	got, err := db.DueBefore(context.Background(), T0.Add(3*time.Hour), 100)
	require.NoError(t, err)
	require.Len(t, got, 3)
	assert.Equal(t, []storage.AttemptKey{k("urn:t:0", 5, 0), k("urn:t:0", 5, 1), k("urn:t:1", 2, 0)}, []storage.AttemptKey{got[0].Key, got[1].Key, got[2].Key})
	assert.True(t, got[0].At.Equal(T0))
	got, err = db.DueBefore(context.Background(), T0.Add(3*time.Hour), 2)
	require.NoError(t, err)
	assert.Len(t, got, 2, "limit")

	oldest, next, err := db.DueBounds(context.Background(), T0.Add(90*time.Minute))
	require.NoError(t, err)
	assert.True(t, oldest.Equal(T0))
	assert.True(t, next.Equal(T0.Add(3*time.Hour)))

	// A consent moves state: counts follow.
	r := Record(t, "urn:t:2", storage.ConsentRevoked)
	r.Version = 1 // written once, by the add
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: r, DelDue: due[3:]}))
	counts, _ = db.Counts(context.Background())
	assert.Equal(t, map[storage.ConsentState]int{storage.ConsentActive: 2, storage.ConsentAwaiting: 0, storage.ConsentRevoked: 1}, counts)
	got, _ = db.DueBefore(context.Background(), T0.Add(1000*time.Hour), 100)
	assert.Len(t, got, 3)
	require.NoError(t, db.Check(context.Background()))
}

func testApply_AttemptsAndAttention(t *testing.T, open Opener) {
	db := open(t)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:a", storage.ConsentActive)}))
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:ab", storage.ConsentActive)}))
	a := &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 3}, State: storage.AttemptSubmitting, ClientRequestID: "billingd-x-3-0", Date: cycle.MustDate(2026, 3, 5), Amount: 9990}
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
	a2 := *a
	a2.State = storage.AttemptUnconfirmed
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{&a2}}))
	missed := &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: "urn:t:ab", Cycle: 1}, State: storage.AttemptMissed}
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{missed}}))

	un, err := db.Attention(context.Background(), storage.AttemptUnconfirmed, 10)
	require.NoError(t, err)
	require.Len(t, un, 1)
	assert.Equal(t, "billingd-x-3-0", un[0].ClientRequestID)

	// Resolving it removes it from the attention index.
	a3 := a2
	a3.State = storage.AttemptCompleted
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{&a3}}))
	un, _ = db.Attention(context.Background(), storage.AttemptUnconfirmed, 10)
	assert.Empty(t, un)
	ms, _ := db.Attention(context.Background(), storage.AttemptMissed, 10)
	assert.Len(t, ms, 1)

	// Attempts of "urn:t:a" do not include those of "urn:t:ab".
	list, err := db.Attempts(context.Background(), "urn:t:a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, storage.AttemptCompleted, list[0].State)

	_, err = db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 9})
	assert.ErrorIs(t, err, storage.ErrNotFound)
	rec, none, err := db.GetConsentAttempt(context.Background(), storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 9})
	require.NoError(t, err)
	assert.Equal(t, "urn:t:a", rec.ID())
	assert.Nil(t, none)
	rec, got, err := db.GetConsentAttempt(context.Background(), list[0].AttemptKey)
	require.NoError(t, err)
	assert.Equal(t, "urn:t:a", rec.ID())
	assert.Equal(t, list[0], got)
	_, _, err = db.GetConsentAttempt(context.Background(), storage.AttemptKey{ConsentID: "urn:t:none", Cycle: 0})
	assert.ErrorIs(t, err, storage.ErrNotFound, "no consent")

	// GetConsentAttempts: GetConsentAttempt's answer for each key, in order, in one
	// read; a key's failure is its own.
	keys := []storage.AttemptKey{list[0].AttemptKey, {ConsentID: "urn:t:none"}, {ConsentID: "urn:t:a", Cycle: 9}, list[0].AttemptKey}
	all, err := db.GetConsentAttempts(context.Background(), keys, make([]storage.ConsentAttempt, 7))
	require.NoError(t, err)
	require.Len(t, all, len(keys))
	for i, k := range keys {
		rec, a, err := db.GetConsentAttempt(context.Background(), k)
		assert.Equal(t, k, all[i].Key)
		assert.Equal(t, rec, all[i].Record, "%s", k)
		assert.Equal(t, a, all[i].Attempt, "%s", k)
		if err != nil {
			assert.EqualError(t, all[i].Err, err.Error(), "%s", k)
		} else {
			assert.NoError(t, all[i].Err, "%s", k)
		}
	}
	assert.ErrorIs(t, all[1].Err, storage.ErrNotFound)
	assert.Nil(t, all[2].Attempt)
	none2, err := db.GetConsentAttempts(context.Background(), nil, all)
	require.NoError(t, err)
	assert.Empty(t, none2)

	// A guarded change is written only while the consent is at the version read;
	// the guard itself writes nothing.
	rec, err = db.GetConsent(context.Background(), "urn:t:a")
	require.NoError(t, err)
	stale := *rec
	stale.Version--
	guarded := storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: "urn:t:a", Cycle: 20}, State: storage.AttemptSubmitting}
	err = db.Apply(context.Background(), &storage.Change{Guard: &stale, Attempts: []*storage.Attempt{&guarded}})
	assert.ErrorIs(t, err, storage.ErrConflict, "the consent moved on")
	_, err = db.GetAttempt(context.Background(), guarded.AttemptKey)
	assert.ErrorIs(t, err, storage.ErrNotFound, "nothing written")
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Guard: rec, Attempts: []*storage.Attempt{&guarded}}))
	again, err := db.GetConsent(context.Background(), "urn:t:a")
	require.NoError(t, err)
	assert.Equal(t, rec.Version, again.Version, "the guard writes nothing")
	missing := &storage.ConsentRecord{Consent: &consent.Consent{}}
	missing.Consent.ID = "urn:t:none"
	assert.ErrorIs(t, db.Apply(context.Background(), &storage.Change{Guard: missing}), storage.ErrNotFound)
}

func testAmounts(t *testing.T, open Opener) {
	db := open(t)
	require.ErrorIs(t, db.SetAmount(context.Background(), "urn:t:none", 1, 100), storage.ErrNotFound)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:v", storage.ConsentActive)}))
	require.NoError(t, db.SetAmount(context.Background(), "urn:t:v", 4, 123_45))
	c, ok, err := db.Amount(context.Background(), "urn:t:v", 4)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, klavi.Cents(123_45), c)
	_, ok, _ = db.Amount(context.Background(), "urn:t:v", 5)
	assert.False(t, ok)
	all, err := db.Amounts(context.Background(), "urn:t:v")
	require.NoError(t, err)
	assert.Equal(t, map[int]klavi.Cents{4: 123_45}, all)
}

func testApply_CursorOnly(t *testing.T, open Opener) {
	db := open(t)
	r := Record(t, "urn:t:c", storage.ConsentActive)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: r, NewConsent: true}))
	r.NextCycle, r.NextDue, r.State = 7, T0.Add(time.Hour), storage.ConsentExpired
	r.Consent.Billing.RemittanceInformation = "changed in memory only"
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Cursor: r}))
	got, err := db.GetConsent(context.Background(), "urn:t:c")
	require.NoError(t, err)
	assert.Equal(t, 7, got.NextCycle)
	assert.True(t, got.NextDue.Equal(T0.Add(time.Hour)))
	assert.Equal(t, "Plano Premium", got.Consent.Billing.RemittanceInformation, "a cursor write leaves the consent alone")
	counts, _ := db.Counts(context.Background())
	assert.Equal(t, map[storage.ConsentState]int{storage.ConsentActive: 0, storage.ConsentExpired: 1}, counts)
	require.NoError(t, db.Check(context.Background()))
	// A cursor for an unknown consent is refused.
	err = db.Apply(context.Background(), &storage.Change{Cursor: Record(t, "urn:t:none", storage.ConsentActive)})
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testDB_ConsentIDsDifferingOnlyInCase(t *testing.T, open Opener) {
	db := open(t)
	const id = "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, id, storage.ConsentActive), NewConsent: true}))
	err := db.Apply(context.Background(), &storage.Change{Consent: Record(t, strings.ToUpper(id), storage.ConsentActive), NewConsent: true})
	require.ErrorIs(t, err, storage.ErrExists, "the same UUID in capitals is the same consent")
	assert.Contains(t, err.Error(), "differ only in letter case")
	again := Record(t, id, storage.ConsentActive)
	again.Version = 1
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: again}), "rewriting the stored one is fine")
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:klavi:other", storage.ConsentActive), NewConsent: true}))
	n, err := db.ListConsents(context.Background(), "", 10, "")
	require.NoError(t, err)
	assert.Len(t, n, 2)
}

func testDB_Events(t *testing.T, open Opener) {
	db := open(t)
	rec := Record(t, "urn:t:a", storage.ConsentActive)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: rec, NewConsent: true,
		Events: []storage.Event{storage.ConsentEvent("added", T0, "urn:t:a", "alice", "stored active")}}))
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:b", storage.ConsentActive), NewConsent: true,
		Events: []storage.Event{storage.ConsentEvent("added", T0, "urn:t:b", "bob", "")}}))
	a := Attempt("urn:t:a", 0, 0, storage.AttemptSubmitted, cycle.MustDate(2026, 3, 31), T0)
	a.PaymentID = "pay-1"
	for i := range 5 {
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a},
			Events: []storage.Event{storage.AttemptEvent(fmt.Sprintf("e%d", i), T0.Add(time.Duration(i)*time.Minute), a, storage.ActorBillingd, "")}}))
	}

	t.Run("in order, one consent only", func(t *testing.T) {
		list, more, err := db.Events(context.Background(), "urn:t:a", 0, 100)
		require.NoError(t, err)
		assert.False(t, more)
		require.Len(t, list, 6)
		assert.Equal(t, "added", list[0].Kind)
		assert.Equal(t, "alice", list[0].Actor)
		assert.Nil(t, list[0].Cycle, "a consent-wide event has no cycle")
		for i, e := range list[1:] {
			assert.Equal(t, fmt.Sprintf("e%d", i), e.Kind)
			assert.Equal(t, 0, *e.Cycle)
			assert.Equal(t, "pay-1", e.PaymentID)
			assert.Equal(t, klavi.Cents(99_90), *e.Amount)
			assert.Greater(t, e.Seq, list[i].Seq)
		}
	})
	t.Run("paged", func(t *testing.T) {
		var all []string
		var after uint64
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			list, more, err := db.Events(context.Background(), "urn:t:a", after, 4)
			require.NoError(t, err)
			for _, e := range list {
				all = append(all, e.Kind)
			}
			if !more {
				break
			}
			after = list[len(list)-1].Seq
		}
		assert.Equal(t, []string{"added", "e0", "e1", "e2", "e3", "e4"}, all)
	})
	t.Run("unknown consent, and an id that prefixes another", func(t *testing.T) {
		list, more, err := db.Events(context.Background(), "urn:t:", 0, 10)
		require.NoError(t, err)
		assert.Empty(t, list)
		assert.False(t, more)
	})
}

// A change that fails writes none of its events: they share its transaction.

func testDB_Events_AtomicWithTheChange(t *testing.T, open Opener) {
	db := open(t)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true,
		Events: []storage.Event{storage.ConsentEvent("added", T0, "urn:t:a", "alice", "")}}))

	err := db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true,
		Events: []storage.Event{storage.ConsentEvent("added", T0, "urn:t:a", "mallory", "")}})
	require.ErrorIs(t, err, storage.ErrExists)
	err = db.Apply(context.Background(), &storage.Change{Amounts: []storage.CycleAmount{{ConsentID: "urn:t:none", Cycle: 1, Amount: 5_00}},
		Events: []storage.Event{storage.ConsentEvent("amount_set", T0, "urn:t:a", "mallory", "")}})
	require.ErrorIs(t, err, storage.ErrNotFound)
	err = db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{Attempt("urn:t:a", 0, 0, storage.AttemptMissed, cycle.MustDate(2026, 3, 31), T0)},
		Events: []storage.Event{{Kind: "missed", At: T0}}}) // no consent id: the whole change fails
	require.Error(t, err)

	list, _, err := db.Events(context.Background(), "urn:t:a", 0, 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "alice", list[0].Actor)
	_, err = db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: "urn:t:a"})
	assert.ErrorIs(t, err, storage.ErrNotFound, "the attempt of the failed change is not written either")
}

func testDB_Attention(t *testing.T, open Opener) {
	db := open(t)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true}))
	d := cycle.MustDate(2026, 3, 31)
	missed := Attempt("urn:t:a", 0, 0, storage.AttemptMissed, d, T0)
	stuck := Attempt("urn:t:a", 1, 0, storage.AttemptSubmitted, d.AddDays(30), T0)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{missed, stuck}}))

	stuck.State, stuck.UpdatedAt = storage.AttemptStuck, T0.Add(time.Hour)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{stuck}}))
	stuck.UpdatedAt = T0.Add(5 * time.Hour) // polled again, still STUCK: the item keeps its age
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{stuck}}))

	counts, err := db.AttentionCounts(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, counts[storage.AttemptMissed])
	assert.Equal(t, 1, counts[storage.AttemptStuck])
	oldest, err := db.AttentionOldest(context.Background())
	require.NoError(t, err)
	assert.True(t, oldest[storage.AttemptMissed].Equal(T0))
	assert.True(t, oldest[storage.AttemptStuck].Equal(T0.Add(time.Hour)), "since it entered STUCK, not its last update")
	assert.NotContains(t, oldest, storage.AttemptFailed)

	items, next, err := db.AttentionItems(context.Background(), "", "", 1)
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, storage.AttemptMissed, items[0].Attempt.State, "states in key order: MISSED before STUCK")
	require.NotEmpty(t, next)
	items, next, err = db.AttentionItems(context.Background(), "", next, 1)
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, storage.AttemptStuck, items[0].Attempt.State)
	assert.True(t, items[0].Since.Equal(T0.Add(time.Hour)))
	assert.Empty(t, next)
	_, _, err = db.AttentionItems(context.Background(), "", "!!", 1)
	assert.ErrorIs(t, err, storage.ErrBadCursor)

	t.Run("resolved leaves the index and keeps its state", func(t *testing.T) {
		missed.Resolved = &storage.Resolution{At: T0.Add(time.Hour), By: "alice", Note: "customer paid by boleto", State: storage.AttemptMissed}
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{missed}}))
		got, err := db.GetAttempt(context.Background(), missed.AttemptKey)
		require.NoError(t, err)
		assert.Equal(t, storage.AttemptMissed, got.State)
		assert.False(t, got.Open())
		counts, err := db.AttentionCounts(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 0, counts[storage.AttemptMissed])
		list, err := db.Attention(context.Background(), storage.AttemptMissed, 10)
		require.NoError(t, err)
		assert.Empty(t, list)
		_, ok, err := db.AttentionSince(context.Background(), missed.AttemptKey, storage.AttemptMissed)
		require.NoError(t, err)
		assert.False(t, ok)
	})
	t.Run("a resolved item that enters another attention state opens again", func(t *testing.T) {
		stuck.Resolved = &storage.Resolution{At: T0.Add(6 * time.Hour), By: "bob", Note: "asked Klavi", State: storage.AttemptStuck}
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{stuck}}))
		stuck.State, stuck.UpdatedAt = storage.AttemptUnconfirmed, T0.Add(7*time.Hour)
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{stuck}}))
		since, ok, err := db.AttentionSince(context.Background(), stuck.AttemptKey, storage.AttemptUnconfirmed)
		require.NoError(t, err)
		assert.True(t, ok)
		assert.True(t, since.Equal(T0.Add(7*time.Hour)))
	})
}

func testDB_DueValues(t *testing.T, open Opener) {
	db := open(t)
	fixed := Record(t, "urn:t:fixed", storage.ConsentActive) // 99.90 a month
	variable := Record(t, "urn:t:var", storage.ConsentActive)
	variable.Consent.PaymentMethodConfig.FixedAmount = nil
	at := T0.Add(24 * time.Hour)
	fixed.NextCycle, fixed.NextDue = 2, at
	variable.NextCycle, variable.NextDue = 2, at.Add(time.Hour)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: fixed, PutDue: []storage.DueItem{{At: at, Key: storage.AttemptKey{ConsentID: "urn:t:fixed", Cycle: 2}}}}))
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: variable, PutDue: []storage.DueItem{{At: at.Add(time.Hour), Key: storage.AttemptKey{ConsentID: "urn:t:var", Cycle: 2}}}}))
	retry := Attempt("urn:t:fixed", 1, 1, storage.AttemptPlanned, cycle.MustDate(2026, 3, 5), T0)
	retry.Amount, retry.DueAt = 50_00, at.Add(2*time.Hour)
	lookup := Attempt("urn:t:fixed", 0, 0, storage.AttemptUnconfirmed, cycle.MustDate(2026, 2, 5), T0)
	lookup.DueAt = at.Add(3 * time.Hour)
	resend := Attempt("urn:t:var", 1, 0, storage.AttemptSubmitting, cycle.MustDate(2026, 3, 9), T0)
	resend.Amount, resend.DueAt = 70_00, at.Add(4*time.Hour)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{retry, lookup, resend}, PutDue: []storage.DueItem{
		{At: retry.DueAt, Key: retry.AttemptKey}, {At: lookup.DueAt, Key: lookup.AttemptKey}, {At: resend.DueAt, Key: resend.AttemptKey}}}))

	entries, err := db.DueUntil(context.Background(), at.Add(24*time.Hour))
	require.NoError(t, err)
	type row struct {
		Kind   storage.DueKind
		Amount klavi.Cents
		Has    bool
	}
	var got []row
	for _, e := range entries {
		got = append(got, row{e.Kind, e.Amount, e.HasAmount})
	}
	assert.Equal(t, []row{{storage.DueOriginal, 99_90, true}, {storage.DueOriginal, 0, false}, {storage.DueRetry, 50_00, true}, {storage.DueLookup, 0, false}, {storage.DueResend, 70_00, true}}, got)

	totals, err := db.DueTotals(context.Background(), at, at.Add(24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, storage.DueTotal{Until: at, Charges: 1, Amount: 99_90}, totals[0])
	assert.Equal(t, storage.DueTotal{Until: at.Add(24 * time.Hour), Charges: 4, Amount: 99_90 + 50_00 + 70_00, NoAmount: 1}, totals[1])

	t.Run("setting the amount of the next cycle updates its entry", func(t *testing.T) {
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Amounts: []storage.CycleAmount{{ConsentID: "urn:t:var", Cycle: 2, Amount: 33_00}}}))
		require.NoError(t, db.SetAmount(context.Background(), "urn:t:var", 3, 44_00)) // a later cycle: no entry yet
		totals, err := db.DueTotals(context.Background(), at.Add(24*time.Hour))
		require.NoError(t, err)
		assert.Equal(t, storage.DueTotal{Until: at.Add(24 * time.Hour), Charges: 4, Amount: 99_90 + 33_00 + 50_00 + 70_00}, totals[0])
	})
}

func testDB_AttemptsBetween(t *testing.T, open Opener) {
	db := open(t)
	for _, id := range []string{"urn:t:a", "urn:t:b"} {
		require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, id, storage.ConsentActive), NewConsent: true}))
	}
	var atts []*storage.Attempt
	for k := range 4 {
		d := cycle.MustDate(2026, 1, 31).AddMonthsClamped(k)
		atts = append(atts, Attempt("urn:t:a", k, 0, storage.AttemptCompleted, d, T0), Attempt("urn:t:b", k, 0, storage.AttemptRejected, d.AddDays(1), T0))
	}
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: atts}))

	var keys []string
	require.NoError(t, db.EachAttemptBetween(context.Background(), cycle.MustDate(2026, 2, 1), cycle.MustDate(2026, 3, 31), func(a *storage.Attempt) error {
		keys = append(keys, a.Date.String()+" "+a.ConsentID)
		return nil
	}))
	assert.Equal(t, []string{"2026-02-01 urn:t:b", "2026-02-28 urn:t:a", "2026-03-01 urn:t:b", "2026-03-31 urn:t:a"}, keys)

	stop := errors.New("stop")
	assert.ErrorIs(t, db.EachAttemptBetween(context.Background(), cycle.MustDate(2026, 1, 1), cycle.MustDate(2026, 12, 31), func(*storage.Attempt) error { return stop }), stop)

	t.Run("paged, filtered by consent and state", func(t *testing.T) {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			list, next, err := db.AttemptsBetween(context.Background(), cycle.MustDate(2026, 1, 1), cycle.MustDate(2026, 12, 31), "urn:t:b", cursor, 1,
				func(a *storage.Attempt) bool { return a.State == storage.AttemptRejected })
			require.NoError(t, err)
			for _, a := range list {
				got = append(got, a.Date.String())
			}
			if next == "" {
				break
			}
			cursor = next
		}
		assert.Equal(t, []string{"2026-02-01", "2026-03-01", "2026-04-01", "2026-05-01"}, got)
	})
}

// An attempt's entry in the dates index follows its date: kept while the date stays
// (most writes only change its state), moved when the date changes.

func testDB_DatesIndexFollowsTheDate(t *testing.T, open Opener) {
	db := open(t)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Consent: Record(t, "urn:t:a", storage.ConsentActive), NewConsent: true}))
	march, april := cycle.MustDate(2026, 3, 31), cycle.MustDate(2026, 4, 2)
	a := Attempt("urn:t:a", 0, 0, storage.AttemptSubmitting, march, T0)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
	dates := func() []string {
		var out []string
		require.NoError(t, db.EachAttemptBetween(context.Background(), march.AddDays(-40), april.AddDays(40), func(a *storage.Attempt) error {
			out = append(out, a.Date.String()+" "+string(a.State))
			return nil
		}))
		return out
	}
	a.State, a.UpdatedAt = storage.AttemptSubmitted, T0.Add(time.Minute)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
	assert.Equal(t, []string{"2026-03-31 SUBMITTED"}, dates(), "same date: the entry stays")
	a.Date, a.UpdatedAt = april, T0.Add(2*time.Minute)
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
	assert.Equal(t, []string{"2026-04-02 SUBMITTED"}, dates(), "new date: the entry moves")
	a.Date = cycle.Date{}
	require.NoError(t, db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
	assert.Empty(t, dates(), "no date: no entry")
}

// A schema 1 file (no events or dates bucket, empty index values) is migrated when a
// writer opens it, and read as it is by a reader.
