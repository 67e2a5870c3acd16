package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

func (h *harness) timeline(id string) []storage.Event {
	h.t.Helper()
	evs, more, err := h.db.Events(context.Background(), id, 0, 10000)
	require.NoError(h.t, err)
	require.False(h.t, more)
	return evs
}

func kinds(evs []storage.Event) []string {
	var out []string
	for _, e := range evs {
		s := e.Kind
		if e.Cycle != nil {
			s += fmt.Sprintf(" %d", *e.Cycle)
		}
		if e.Attempt != nil {
			s += fmt.Sprintf("/%d", *e.Attempt)
		}
		out = append(out, s)
	}
	return out
}

// Every event the scheduler tells its observer about a consent is in the consent's
// stored timeline, in the same order (lookups only when they adopt a payment).
func TestScheduler_TimelineIsTheObservedEvents(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "weekly-retries.json") // Mondays from 5 Jan, local [1,2,3] skipWeekend
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if p.Original == "" && p.Date.Day() < 15 {
			return klavi.PaymentRejected, klavi.ReasonNotInformed // cycles 0 and 1: retried
		}
		return klavi.PaymentCompleted, ""
	}
	lost := 0
	h.kl.inject = func(op, crid string) (error, bool) {
		if op == "create" && crid == consent.ClientRequestID(c.ID, 2, 0) && lost == 0 {
			lost++
			return klavi.ErrOutcomeUnknown, true // created, answer lost: adopted from the orders list
		}
		return nil, false
	}
	h.add(c)
	h.runUntil(at("2026-02-01", 0, 0))

	var want []string
	for _, e := range h.eventsOf(EventSubmitted, EventRetrySubmitted, EventCompleted, EventRejected, EventMissed, EventSkipped,
		EventUnconfirmed, EventFailed, EventResend, EventRetryPlanned, EventRetryDropped, EventConsentStopped, EventLookup,
		EventStuck, EventCanceled) {
		k := string(e.Kind)
		if e.Kind == EventLookup {
			if e.Reason != "found:adopted" {
				continue
			}
			k = "adopted"
		}
		want = append(want, fmt.Sprintf("%s %d/%d", k, e.Cycle, e.Attempt))
	}
	var got []string
	for _, e := range h.timeline(c.ID)[1:] { // after "added"
		assert.Equal(t, storage.ActorBillingd, e.Actor)
		got = append(got, kinds([]storage.Event{e})...)
	}
	assert.Equal(t, want, got)
	assert.Contains(t, got, "retry_submitted 0/1")
	assert.Contains(t, got, "adopted 2/0")
	assert.Subset(t, got, []string{"submitted 0/0", "rejected 0/0", "retry_planned 0/1", "completed 0/1"})
}

func TestScheduler_OperatorActionsInTheTimeline(t *testing.T) {
	h := newHarness(t, at("2026-02-01", 8, 0), nil)
	c := loadExample(t, "variable-amount.json") // monthly from 10 Feb, 10.00..500.00
	c.Status = klavi.ConsentAwaitingAuthorization
	_, err := h.s.AddConsent(c, cycle.Date{}, "alice")
	require.NoError(t, err)
	_, err = h.s.Authorize(c.ID, "bob")
	require.NoError(t, err)
	require.NoError(t, h.s.SetAmount(c.ID, 0, 123_45, "carol"))
	require.ErrorIs(t, h.s.SetAmount(c.ID, 1, 999_99, "carol"), ErrInvalid)
	_, err = h.s.Revoke(c.ID, "customer moved away", "")

	require.NoError(t, err)
	evs := h.timeline(c.ID)
	require.Len(t, evs, 4, "the refused amount is not recorded")
	assert.Equal(t, []string{"added", "authorized", "amount_set 0", "revoked"}, kinds(evs))
	assert.Equal(t, []string{"alice", "bob", "carol", ActorOperator}, []string{evs[0].Actor, evs[1].Actor, evs[2].Actor, evs[3].Actor})
	assert.Equal(t, "stored awaiting_authorization", evs[0].Reason)
	assert.Equal(t, "billed from cycle 0", evs[1].Reason)
	assert.Equal(t, klavi.Cents(123_45), *evs[2].Amount)
	assert.Equal(t, d("2026-02-10"), evs[2].Date)
	assert.Equal(t, "customer moved away", evs[3].Reason)
	for _, e := range evs {
		assert.True(t, e.At.Equal(at("2026-02-01", 8, 0)))
	}
}

func TestScheduler_Resolve(t *testing.T) {
	h := newHarness(t, at("2026-03-30", 10, 0), nil)
	c := loadExample(t, "monthly-31st.json") // due 31 Mar: its window closed on 29 Mar
	_, err := h.s.AddConsent(c, d("2026-03-01"), "")
	require.NoError(t, err)
	_, err = h.s.Scan(context.Background())
	require.NoError(t, err)
	key := storage.AttemptKey{ConsentID: c.ID, Cycle: 5}
	require.Equal(t, storage.AttemptMissed, h.attempt(c.ID, 5, 0).State)
	missing, err := h.db.AttentionCounts(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, missing[storage.AttemptMissed])

	h.clock.Advance(2 * time.Hour)
	_, err = h.s.Resolve(storage.AttemptKey{ConsentID: c.ID, Cycle: 9}, "x", "alice")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = h.s.Resolve(key, "", "alice")
	assert.ErrorIs(t, err, ErrInvalid)

	a, err := h.s.Resolve(key, "charged by boleto instead", "alice")
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptMissed, a.State, "the attempt keeps its state")
	require.NotNil(t, a.Resolved)
	assert.Equal(t, "alice", a.Resolved.By)
	assert.Equal(t, "charged by boleto instead", a.Resolved.Note)
	assert.Equal(t, storage.AttemptMissed, a.Resolved.State)
	assert.True(t, a.Resolved.At.Equal(at("2026-03-30", 12, 0)))
	assert.True(t, a.Resolved.Since.Equal(at("2026-03-30", 10, 0)), "the item opened when the scan recorded it")
	counts, err := h.db.AttentionCounts(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 0, counts[storage.AttemptMissed])

	_, err = h.s.Resolve(key, "again", "bob")
	assert.ErrorIs(t, err, ErrConflict)
	assert.ErrorIs(t, err, ErrNotOpen)
	_, err = h.s.Resolve(storage.AttemptKey{ConsentID: c.ID, Cycle: 6}, "x", "bob")
	assert.ErrorIs(t, err, storage.ErrNotFound)

	evs := h.timeline(c.ID)
	assert.Equal(t, []string{"added", "missed 5/0", "resolved 5/0"}, kinds(evs))
	assert.Equal(t, "alice", evs[2].Actor)
	assert.Equal(t, "charged by boleto instead", evs[2].Reason)
}

func TestPolicy_UpcomingOf(t *testing.T) {
	pol := Policy{LeadDays: 3, RetryMode: consent.Attach}
	submitAt := func(d cycle.Date) time.Time { return d.At(9, 0) }
	monthly := func(t *testing.T, mod func(*storage.ConsentRecord)) *storage.ConsentRecord {
		c := loadExample(t, "monthly-31st.json") // 99.90; cycle 5 due 31 Mar 2026, 6 due 30 Apr, 7 due 31 May
		r := &storage.ConsentRecord{Consent: c, State: storage.ConsentActive, NextCycle: 5, NextDue: at("2026-03-28", 9, 0)}
		if mod != nil {
			mod(r)
		}
		return r
	}
	att := func(k, n int, st storage.AttemptState, date string, dueAt time.Time) *storage.Attempt {
		return &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: "urn:klavi:consent-monthly-31st-0001", Cycle: k, Attempt: n},
			State: st, Date: d(date), Amount: 99_90, DueAt: dueAt}
	}
	tests := []struct {
		name     string
		rec      func(t *testing.T) *storage.ConsentRecord
		atts     []*storage.Attempt
		amounts  map[int]klavi.Cents
		now      time.Time
		from, to string
		want     []string // kind cycle/attempt submitAt dueDate amount
	}{
		{name: "queued cycle then every cycle on its submit day", rec: func(t *testing.T) *storage.ConsentRecord { return monthly(t, nil) },
			now: at("2026-03-20", 10, 0), from: "2026-03-20", to: "2026-05-31",
			want: []string{"original 5/0 2026-03-28T09:00:00-03:00 2026-03-31 99.90", "original 6/0 2026-04-27T09:00:00-03:00 2026-04-30 99.90",
				"original 7/0 2026-05-28T09:00:00-03:00 2026-05-31 99.90"}},
		{name: "queued under an earlier submit time on its submit day: at the current one, where the scan moves it",
			rec: func(t *testing.T) *storage.ConsentRecord {
				return monthly(t, func(r *storage.ConsentRecord) { r.NextDue = at("2026-03-28", 8, 0) })
			},
			now: at("2026-03-28", 7, 0), from: "2026-03-28", to: "2026-03-28",
			want: []string{"original 5/0 2026-03-28T09:00:00-03:00 2026-03-31 99.90"}},
		{name: "the range cuts", rec: func(t *testing.T) *storage.ConsentRecord { return monthly(t, nil) },
			now: at("2026-03-20", 10, 0), from: "2026-03-29", to: "2026-04-27",
			want: []string{"original 6/0 2026-04-27T09:00:00-03:00 2026-04-30 99.90"}},
		{name: "overdue, window open: at the next scan", rec: func(t *testing.T) *storage.ConsentRecord { return monthly(t, nil) },
			now: at("2026-03-29", 10, 0), from: "2026-03-29", to: "2026-04-30",
			want: []string{"original 5/0 2026-03-29T10:00:00-03:00 2026-03-31 99.90", "original 6/0 2026-04-27T09:00:00-03:00 2026-04-30 99.90"}},
		{name: "overdue, window closed: it will be missed, not charged", rec: func(t *testing.T) *storage.ConsentRecord { return monthly(t, nil) },
			now: at("2026-03-30", 10, 0), from: "2026-03-30", to: "2026-04-30",
			want: []string{"original 6/0 2026-04-27T09:00:00-03:00 2026-04-30 99.90"}},
		{name: "a re-send at its DueAt instead of the original", rec: func(t *testing.T) *storage.ConsentRecord { return monthly(t, nil) },
			atts: []*storage.Attempt{att(5, 0, storage.AttemptSubmitting, "2026-03-31", at("2026-03-28", 9, 30))},
			now:  at("2026-03-28", 9, 1), from: "2026-03-28", to: "2026-04-27",
			want: []string{"resend 5/0 2026-03-28T09:30:00-03:00 2026-03-31 99.90", "original 6/0 2026-04-27T09:00:00-03:00 2026-04-30 99.90"}},
		{name: "a second look sends nothing", rec: func(t *testing.T) *storage.ConsentRecord { return monthly(t, nil) },
			atts: []*storage.Attempt{func() *storage.Attempt {
				a := att(5, 0, storage.AttemptSubmitting, "2026-03-31", at("2026-03-28", 9, 30))
				a.Confirm = storage.ConfirmRefused
				return a
			}()},
			now: at("2026-03-28", 9, 1), from: "2026-03-28", to: "2026-04-01", want: nil},
		{name: "a planned local retry", rec: func(t *testing.T) *storage.ConsentRecord { return monthly(t, nil) },
			atts: []*storage.Attempt{att(4, 0, storage.AttemptRejected, "2026-02-28", time.Time{}),
				att(4, 1, storage.AttemptPlanned, "2026-03-21", at("2026-03-20", 9, 0))},
			now: at("2026-03-19", 10, 0), from: "2026-03-19", to: "2026-03-28",
			want: []string{"retry 4/1 2026-03-20T09:00:00-03:00 2026-03-21 99.90", "original 5/0 2026-03-28T09:00:00-03:00 2026-03-31 99.90"}},
		{name: "revoked: nothing, not even a planned retry", rec: func(t *testing.T) *storage.ConsentRecord {
			return monthly(t, func(r *storage.ConsentRecord) { r.State, r.NextDue = storage.ConsentRevoked, time.Time{} })
		},
			atts: []*storage.Attempt{att(4, 1, storage.AttemptPlanned, "2026-03-21", at("2026-03-20", 9, 0))},
			now:  at("2026-03-19", 10, 0), from: "2026-03-19", to: "2026-05-01", want: nil},
		{name: "awaiting authorization: nothing", rec: func(t *testing.T) *storage.ConsentRecord {
			return monthly(t, func(r *storage.ConsentRecord) { r.State, r.NextDue = storage.ConsentAwaiting, time.Time{} })
		},
			now: at("2026-03-19", 10, 0), from: "2026-03-19", to: "2026-05-01", want: nil},
		{name: "variable: the amount set, or none", rec: func(t *testing.T) *storage.ConsentRecord {
			return monthly(t, func(r *storage.ConsentRecord) { r.Consent.PaymentMethodConfig.FixedAmount = nil })
		},
			amounts: map[int]klavi.Cents{6: 12_34},
			now:     at("2026-03-20", 10, 0), from: "2026-03-20", to: "2026-04-30",
			want: []string{"original 5/0 2026-03-28T09:00:00-03:00 2026-03-31 -", "original 6/0 2026-04-27T09:00:00-03:00 2026-04-30 12.34"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pol.UpcomingOf(tt.rec(t), tt.atts, tt.amounts, submitAt, tt.now, d(tt.from).At(0, 0), d(tt.to).AddDays(1).At(0, 0).Add(-1))
			SortCharges(got)
			var lines []string
			for _, c := range got {
				amt := "-"
				if c.Amount != nil {
					amt = c.Amount.String()
				}
				lines = append(lines, fmt.Sprintf("%s %d/%d %s %s %s", c.Kind, c.Cycle, c.Attempt, c.SubmitAt.Format(time.RFC3339), c.DueDate, amt))
				assert.Equal(t, cycle.Monthly, c.Interval)
			}
			assert.Equal(t, tt.want, lines)
		})
	}
}

func TestScheduler_Upcoming(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	h.add(loadExample(t, "weekly-retries.json")) // 25.00 Mondays from 5 Jan: submitted Fridays
	h.add(loadExample(t, "monthly-31st.json"))   // 99.90: 28 Jan for 31 Jan
	v := loadExample(t, "variable-amount.json")  // 10 Feb: submitted 7 Feb
	h.add(v)
	require.NoError(t, h.s.SetAmount(v.ID, 0, 50_00, ""))

	up, err := h.s.Upcoming(d("2026-01-01"), d("2026-02-07"))
	require.NoError(t, err)
	assert.Equal(t, 8, up.Total.Count, "6 Fridays, 28 Jan, 7 Feb")
	assert.Equal(t, klavi.Cents(6*25_00+99_90+50_00), up.Total.Amount)
	require.Len(t, up.Days, 8)
	assert.Equal(t, d("2026-01-02"), up.Days[0].Date)
	assert.Equal(t, d("2026-01-28"), up.Days[4].Date)
	for i := 1; i < len(up.Items); i++ {
		assert.False(t, up.Items[i].SubmitAt.Before(up.Items[i-1].SubmitAt))
	}
	_, offset := up.Items[0].SubmitAt.Zone()
	assert.Equal(t, -3*3600, offset)

	_, err = h.s.Upcoming(d("2026-01-01"), d("2026-04-02"))
	assert.NoError(t, err, "92 days")
	_, err = h.s.Upcoming(d("2026-01-01"), d("2026-04-03"))
	assert.ErrorIs(t, err, ErrRange, "93 days")
	_, err = h.s.Upcoming(d("2026-01-02"), d("2026-01-01"))
	assert.ErrorIs(t, err, ErrRange)
}

func TestScheduler_MissingAmounts(t *testing.T) {
	h := newHarness(t, at("2026-02-04", 8, 0), nil)
	v := loadExample(t, "variable-amount.json") // cycle 0 due 10 Feb: submitted 7 Feb 09:00
	h.add(v)
	list, err := h.s.MissingAmounts()
	require.NoError(t, err)
	assert.Empty(t, list, "more than 2 days before its submission")

	h.clock.Set(at("2026-02-05", 9, 0))
	list, err = h.s.MissingAmounts()
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, MissingAmount{ConsentID: v.ID, Cycle: 0, DueDate: d("2026-02-10"), SubmitAt: at("2026-02-07", 9, 0),
		ClientRequestID: consent.ClientRequestID(v.ID, 0, 0), Since: at("2026-02-05", 9, 0)}, list[0])

	require.NoError(t, h.s.SetAmount(v.ID, 0, 50_00, ""))
	list, err = h.s.MissingAmounts()
	require.NoError(t, err)
	assert.Empty(t, list, "set: no longer missing")
}

func TestOutcomesOf(t *testing.T) {
	tests := []struct {
		attempt int
		state   storage.AttemptState
		payment string
		want    []Outcome
	}{
		{0, storage.AttemptSubmitted, "p", []Outcome{OutcomeSubmitted}},
		{0, storage.AttemptCompleted, "p", []Outcome{OutcomeSubmitted, OutcomeCompleted}},
		{0, storage.AttemptRejected, "p", []Outcome{OutcomeSubmitted, OutcomeRejected}},
		{1, storage.AttemptCompleted, "p", []Outcome{OutcomeRetried, OutcomeCompleted}},
		{0, storage.AttemptStuck, "p", []Outcome{OutcomeSubmitted, OutcomeStuck}},
		{0, storage.AttemptMissed, "", []Outcome{OutcomeMissed}},
		{0, storage.AttemptSkipped, "", []Outcome{OutcomeSkipped}},
		{0, storage.AttemptFailed, "", []Outcome{OutcomeFailed}},
		{0, storage.AttemptUnconfirmed, "", []Outcome{OutcomeUnconfirmed}},
		{0, storage.AttemptSubmitting, "", nil},
		{1, storage.AttemptPlanned, "", nil},
		{1, storage.AttemptDropped, "", nil},
	}
	for _, tt := range tests {
		a := &storage.Attempt{AttemptKey: storage.AttemptKey{Attempt: tt.attempt}, State: tt.state, PaymentID: tt.payment}
		assert.Equal(t, tt.want, OutcomesOf(a), "%d %s", tt.attempt, tt.state)
	}
}

func TestScheduler_Report(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "weekly-retries.json") // 25.00 Mondays 5, 12, 19, 26 Jan; local retries
	h.kl.outcome = func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode) {
		if p.Original == "" && p.Date == d("2026-01-12") {
			return klavi.PaymentRejected, klavi.ReasonNotInformed
		}
		return klavi.PaymentCompleted, ""
	}
	h.add(c)
	h.runUntil(at("2026-02-10", 0, 0))

	l, err := h.s.Report("2026-01")
	require.NoError(t, err)
	assert.Equal(t, d("2026-01-01"), l.From)
	assert.Equal(t, d("2026-01-31"), l.To)
	assert.Equal(t, Sum{Count: 4, Amount: 100_00}, l.Totals[OutcomeSubmitted])
	assert.Equal(t, Sum{Count: 1, Amount: 25_00}, l.Totals[OutcomeRetried], "12 Jan retried on 13 Jan")
	assert.Equal(t, Sum{Count: 4, Amount: 100_00}, l.Totals[OutcomeCompleted], "3 originals and the retry")
	assert.Equal(t, Sum{Count: 1, Amount: 25_00}, l.Totals[OutcomeRejected])
	assert.Equal(t, Sum{}, l.Totals[OutcomeMissed])
	assert.Len(t, l.Rows, len(Outcomes), "one interval, every outcome")
	assert.Equal(t, LedgerRow{Interval: cycle.Weekly, Outcome: OutcomeSubmitted, Count: 4, Amount: 100_00}, l.Rows[0])

	_, err = h.s.Report("2026-13")
	assert.ErrorIs(t, err, ErrInvalid)
}
