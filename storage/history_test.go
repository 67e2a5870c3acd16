package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

func attempt(id string, k, n int, st AttemptState, date cycle.Date, at time.Time) *Attempt {
	return &Attempt{AttemptKey: AttemptKey{ConsentID: id, Cycle: k, Attempt: n}, State: st, Date: date, Amount: 99_90,
		ClientRequestID: fmt.Sprintf("billingd-x-%d-%d", k, n), CreatedAt: at, UpdatedAt: at}
}

func TestDB_Events(t *testing.T) {
	db, _ := openTemp(t)
	rec := record(t, "urn:t:a", ConsentActive)
	require.NoError(t, db.Apply(&Change{Consent: rec, NewConsent: true,
		Events: []Event{ConsentEvent("added", t0, "urn:t:a", "alice", "stored active")}}))
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:b", ConsentActive), NewConsent: true,
		Events: []Event{ConsentEvent("added", t0, "urn:t:b", "bob", "")}}))
	a := attempt("urn:t:a", 0, 0, AttemptSubmitted, cycle.MustDate(2026, 3, 31), t0)
	a.PaymentID = "pay-1"
	for i := range 5 {
		require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{a},
			Events: []Event{AttemptEvent(fmt.Sprintf("e%d", i), t0.Add(time.Duration(i)*time.Minute), a, ActorBillingd, "")}}))
	}

	t.Run("in order, one consent only", func(t *testing.T) {
		list, more, err := db.Events("urn:t:a", 0, 100)
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
			list, more, err := db.Events("urn:t:a", after, 4)
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
		list, more, err := db.Events("urn:t:", 0, 10)
		require.NoError(t, err)
		assert.Empty(t, list)
		assert.False(t, more)
	})
}

// A change that fails writes none of its events: they share its transaction.
func TestDB_Events_AtomicWithTheChange(t *testing.T) {
	db, _ := openTemp(t)
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive), NewConsent: true,
		Events: []Event{ConsentEvent("added", t0, "urn:t:a", "alice", "")}}))

	err := db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive), NewConsent: true,
		Events: []Event{ConsentEvent("added", t0, "urn:t:a", "mallory", "")}})
	require.ErrorIs(t, err, ErrExists)
	err = db.Apply(&Change{Amounts: []CycleAmount{{ConsentID: "urn:t:none", Cycle: 1, Amount: 5_00}},
		Events: []Event{ConsentEvent("amount_set", t0, "urn:t:a", "mallory", "")}})
	require.ErrorIs(t, err, ErrNotFound)
	err = db.Apply(&Change{Attempts: []*Attempt{attempt("urn:t:a", 0, 0, AttemptMissed, cycle.MustDate(2026, 3, 31), t0)},
		Events: []Event{{Kind: "missed", At: t0}}}) // no consent id: the whole change fails
	require.Error(t, err)

	list, _, err := db.Events("urn:t:a", 0, 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "alice", list[0].Actor)
	_, err = db.GetAttempt(AttemptKey{ConsentID: "urn:t:a"})
	assert.ErrorIs(t, err, ErrNotFound, "the attempt of the failed change is not written either")
}

func TestDB_Attention(t *testing.T) {
	db, _ := openTemp(t)
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive), NewConsent: true}))
	d := cycle.MustDate(2026, 3, 31)
	missed := attempt("urn:t:a", 0, 0, AttemptMissed, d, t0)
	stuck := attempt("urn:t:a", 1, 0, AttemptSubmitted, d.AddDays(30), t0)
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{missed, stuck}}))

	stuck.State, stuck.UpdatedAt = AttemptStuck, t0.Add(time.Hour)
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{stuck}}))
	stuck.UpdatedAt = t0.Add(5 * time.Hour) // polled again, still STUCK: the item keeps its age
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{stuck}}))

	counts, err := db.AttentionCounts()
	require.NoError(t, err)
	assert.Equal(t, 1, counts[AttemptMissed])
	assert.Equal(t, 1, counts[AttemptStuck])
	oldest, err := db.AttentionOldest()
	require.NoError(t, err)
	assert.True(t, oldest[AttemptMissed].Equal(t0))
	assert.True(t, oldest[AttemptStuck].Equal(t0.Add(time.Hour)), "since it entered STUCK, not its last update")
	assert.NotContains(t, oldest, AttemptFailed)

	items, next, err := db.AttentionItems("", "", 1)
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, AttemptMissed, items[0].Attempt.State, "states in key order: MISSED before STUCK")
	require.NotEmpty(t, next)
	items, next, err = db.AttentionItems("", next, 1)
	require.NoError(t, err)
	require.Len(t, items, 1)
	assert.Equal(t, AttemptStuck, items[0].Attempt.State)
	assert.True(t, items[0].Since.Equal(t0.Add(time.Hour)))
	assert.Empty(t, next)
	_, _, err = db.AttentionItems("", "!!", 1)
	assert.ErrorIs(t, err, ErrBadCursor)

	t.Run("resolved leaves the index and keeps its state", func(t *testing.T) {
		missed.Resolved = &Resolution{At: t0.Add(time.Hour), By: "alice", Note: "customer paid by boleto", State: AttemptMissed}
		require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{missed}}))
		got, err := db.GetAttempt(missed.AttemptKey)
		require.NoError(t, err)
		assert.Equal(t, AttemptMissed, got.State)
		assert.False(t, got.Open())
		counts, err := db.AttentionCounts()
		require.NoError(t, err)
		assert.Equal(t, 0, counts[AttemptMissed])
		list, err := db.Attention(AttemptMissed, 10)
		require.NoError(t, err)
		assert.Empty(t, list)
		_, ok, err := db.AttentionSince(missed.AttemptKey, AttemptMissed)
		require.NoError(t, err)
		assert.False(t, ok)
	})
	t.Run("a resolved item that enters another attention state opens again", func(t *testing.T) {
		stuck.Resolved = &Resolution{At: t0.Add(6 * time.Hour), By: "bob", Note: "asked Klavi", State: AttemptStuck}
		require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{stuck}}))
		stuck.State, stuck.UpdatedAt = AttemptUnconfirmed, t0.Add(7*time.Hour)
		require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{stuck}}))
		since, ok, err := db.AttentionSince(stuck.AttemptKey, AttemptUnconfirmed)
		require.NoError(t, err)
		assert.True(t, ok)
		assert.True(t, since.Equal(t0.Add(7*time.Hour)))
	})
}

func TestDB_DueValues(t *testing.T) {
	db, _ := openTemp(t)
	fixed := record(t, "urn:t:fixed", ConsentActive) // 99.90 a month
	variable := record(t, "urn:t:var", ConsentActive)
	variable.Consent.PaymentMethodConfig.FixedAmount = nil
	at := t0.Add(24 * time.Hour)
	fixed.NextCycle, fixed.NextDue = 2, at
	variable.NextCycle, variable.NextDue = 2, at.Add(time.Hour)
	require.NoError(t, db.Apply(&Change{Consent: fixed, PutDue: []DueItem{{At: at, Key: AttemptKey{ConsentID: "urn:t:fixed", Cycle: 2}}}}))
	require.NoError(t, db.Apply(&Change{Consent: variable, PutDue: []DueItem{{At: at.Add(time.Hour), Key: AttemptKey{ConsentID: "urn:t:var", Cycle: 2}}}}))
	retry := attempt("urn:t:fixed", 1, 1, AttemptPlanned, cycle.MustDate(2026, 3, 5), t0)
	retry.Amount, retry.DueAt = 50_00, at.Add(2*time.Hour)
	lookup := attempt("urn:t:fixed", 0, 0, AttemptUnconfirmed, cycle.MustDate(2026, 2, 5), t0)
	lookup.DueAt = at.Add(3 * time.Hour)
	resend := attempt("urn:t:var", 1, 0, AttemptSubmitting, cycle.MustDate(2026, 3, 9), t0)
	resend.Amount, resend.DueAt = 70_00, at.Add(4*time.Hour)
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{retry, lookup, resend}, PutDue: []DueItem{
		{At: retry.DueAt, Key: retry.AttemptKey}, {At: lookup.DueAt, Key: lookup.AttemptKey}, {At: resend.DueAt, Key: resend.AttemptKey}}}))

	entries, err := db.DueUntil(at.Add(24 * time.Hour))
	require.NoError(t, err)
	type row struct {
		Kind   DueKind
		Amount klavi.Cents
		Has    bool
	}
	var got []row
	for _, e := range entries {
		got = append(got, row{e.Kind, e.Amount, e.HasAmount})
	}
	assert.Equal(t, []row{{DueOriginal, 99_90, true}, {DueOriginal, 0, false}, {DueRetry, 50_00, true}, {DueLookup, 0, false}, {DueResend, 70_00, true}}, got)

	totals, err := db.DueTotals(at, at.Add(24*time.Hour))
	require.NoError(t, err)
	assert.Equal(t, DueTotal{Until: at, Charges: 1, Amount: 99_90}, totals[0])
	assert.Equal(t, DueTotal{Until: at.Add(24 * time.Hour), Charges: 4, Amount: 99_90 + 50_00 + 70_00, NoAmount: 1}, totals[1])

	t.Run("setting the amount of the next cycle updates its entry", func(t *testing.T) {
		require.NoError(t, db.Apply(&Change{Amounts: []CycleAmount{{ConsentID: "urn:t:var", Cycle: 2, Amount: 33_00}}}))
		require.NoError(t, db.SetAmount("urn:t:var", 3, 44_00)) // a later cycle: no entry yet
		totals, err := db.DueTotals(at.Add(24 * time.Hour))
		require.NoError(t, err)
		assert.Equal(t, DueTotal{Until: at.Add(24 * time.Hour), Charges: 4, Amount: 99_90 + 33_00 + 50_00 + 70_00}, totals[0])
	})
}

func TestDB_AttemptsBetween(t *testing.T) {
	db, _ := openTemp(t)
	for _, id := range []string{"urn:t:a", "urn:t:b"} {
		require.NoError(t, db.Apply(&Change{Consent: record(t, id, ConsentActive), NewConsent: true}))
	}
	var atts []*Attempt
	for k := range 4 {
		d := cycle.MustDate(2026, 1, 31).AddMonthsClamped(k)
		atts = append(atts, attempt("urn:t:a", k, 0, AttemptCompleted, d, t0), attempt("urn:t:b", k, 0, AttemptRejected, d.AddDays(1), t0))
	}
	require.NoError(t, db.Apply(&Change{Attempts: atts}))

	var keys []string
	require.NoError(t, db.EachAttemptBetween(cycle.MustDate(2026, 2, 1), cycle.MustDate(2026, 3, 31), func(a *Attempt) error {
		keys = append(keys, a.Date.String()+" "+a.ConsentID)
		return nil
	}))
	assert.Equal(t, []string{"2026-02-01 urn:t:b", "2026-02-28 urn:t:a", "2026-03-01 urn:t:b", "2026-03-31 urn:t:a"}, keys)

	stop := errors.New("stop")
	assert.ErrorIs(t, db.EachAttemptBetween(cycle.MustDate(2026, 1, 1), cycle.MustDate(2026, 12, 31), func(*Attempt) error { return stop }), stop)

	t.Run("paged, filtered by consent and state", func(t *testing.T) {
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			list, next, err := db.AttemptsBetween(cycle.MustDate(2026, 1, 1), cycle.MustDate(2026, 12, 31), "urn:t:b", cursor, 1,
				func(a *Attempt) bool { return a.State == AttemptRejected })
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
func TestDB_DatesIndexFollowsTheDate(t *testing.T) {
	db, _ := openTemp(t)
	require.NoError(t, db.Apply(&Change{Consent: record(t, "urn:t:a", ConsentActive), NewConsent: true}))
	march, april := cycle.MustDate(2026, 3, 31), cycle.MustDate(2026, 4, 2)
	a := attempt("urn:t:a", 0, 0, AttemptSubmitting, march, t0)
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{a}}))
	dates := func() []string {
		var out []string
		require.NoError(t, db.EachAttemptBetween(march.AddDays(-40), april.AddDays(40), func(a *Attempt) error {
			out = append(out, a.Date.String()+" "+string(a.State))
			return nil
		}))
		return out
	}
	a.State, a.UpdatedAt = AttemptSubmitted, t0.Add(time.Minute)
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{a}}))
	assert.Equal(t, []string{"2026-03-31 SUBMITTED"}, dates(), "same date: the entry stays")
	a.Date, a.UpdatedAt = april, t0.Add(2*time.Minute)
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{a}}))
	assert.Equal(t, []string{"2026-04-02 SUBMITTED"}, dates(), "new date: the entry moves")
	a.Date = cycle.Date{}
	require.NoError(t, db.Apply(&Change{Attempts: []*Attempt{a}}))
	assert.Empty(t, dates(), "no date: no entry")
}

// A schema 1 file (no events or dates bucket, empty index values) is migrated when a
// writer opens it, and read as it is by a reader.
func TestOpen_MigratesSchema1(t *testing.T) {
	db, path := openTemp(t)
	rec := record(t, "urn:t:a", ConsentActive)
	at := t0.Add(48 * time.Hour)
	rec.NextCycle, rec.NextDue = 1, at
	missed := attempt("urn:t:a", 0, 0, AttemptMissed, cycle.MustDate(2026, 3, 31), t0)
	require.NoError(t, db.Apply(&Change{Consent: rec, NewConsent: true, Attempts: []*Attempt{missed},
		PutDue: []DueItem{{At: at, Key: AttemptKey{ConsentID: "urn:t:a", Cycle: 1}}}}))
	// Turn it back into what schema 1 wrote.
	require.NoError(t, db.bolt.Update(func(tx *bolt.Tx) error {
		for _, b := range v2Buckets {
			require.NoError(t, tx.DeleteBucket(b))
		}
		for _, b := range [][]byte{bucketDue, bucketAttention} {
			c := tx.Bucket(b).Cursor()
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				require.NoError(t, tx.Bucket(b).Put(append([]byte{}, k...), nil))
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, 1))
	}))
	require.NoError(t, db.Close())

	ro, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err, "a reader opens schema 1 as it is")
	totals, err := ro.DueTotals(at)
	require.NoError(t, err)
	assert.Equal(t, 99_90, int(totals[0].Amount), "an empty due value is worked out from the records")
	oldest, err := ro.AttentionOldest()
	require.NoError(t, err)
	assert.True(t, oldest[AttemptMissed].Equal(t0))
	evs, _, err := ro.Events("urn:t:a", 0, 10)
	require.NoError(t, err)
	assert.Empty(t, evs)
	require.NoError(t, ro.Close())

	db, err = Open(path, Options{})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.bolt.View(func(tx *bolt.Tx) error {
		assert.Equal(t, uint32(SchemaVersion), binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keySchema)))
		k, v := tx.Bucket(bucketDue).Cursor().First()
		require.NotNil(t, k)
		assert.Equal(t, encodeDue(DueOriginal, 99_90, true), v)
		_, v = tx.Bucket(bucketAttention).Cursor().First()
		assert.Len(t, v, 8)
		return nil
	}))
	var n int
	require.NoError(t, db.EachAttemptBetween(cycle.MustDate(2026, 3, 1), cycle.MustDate(2026, 3, 31), func(*Attempt) error { n++; return nil }))
	assert.Equal(t, 1, n, "the dates index was built")
	require.NoError(t, db.Check())
	err = db.Apply(&Change{Consent: record(t, "URN:T:A", ConsentActive), NewConsent: true})
	require.ErrorIs(t, err, ErrExists, "the letter-case index was built from the stored consents")
}

// BenchmarkDueTotals measures the scrape-time read of the upcoming and
// amount-missing gauges: one walk of the due index's keys and values up to now + 7
// days, no record decoded. The index holds one entry per consent (BENCH_CONSENTS,
// default 1,000,000), their submit instants spread over 30 days as monthly consents'
// are, so about 233,000 entries fall in the 7-day window.
func BenchmarkDueTotals(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("BENCH_CONSENTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	db, _ := openTemp(b)
	now := t0
	const batch = 100_000
	for i := 0; i < n; i += batch {
		require.NoError(b, db.bolt.Update(func(tx *bolt.Tx) error {
			due := tx.Bucket(bucketDue)
			for j := i; j < min(i+batch, n); j++ {
				at := now.Add(time.Duration(j) * (30 * 24 * time.Hour / time.Duration(n)))
				k := AttemptKey{ConsentID: fmt.Sprintf("urn:bench:%08d", j), Cycle: 3}
				v := encodeDue(DueOriginal, 99_90, true)
				if j%50 == 0 {
					v = encodeDue(DueOriginal, 0, false) // variable, no amount set
				}
				if err := due.Put(timeKey(at, k), v); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	b.ResetTimer()
	var totals []DueTotal
	for b.Loop() {
		var err error
		totals, err = db.DueTotals(now.Add(48*time.Hour), now.Add(24*time.Hour), now.Add(7*24*time.Hour))
		require.NoError(b, err)
	}
	b.ReportMetric(float64(totals[2].Charges), "entries_7d")
}
