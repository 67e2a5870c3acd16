package simulation

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage/bolt"
)

// run simulates days from 1 Feb 2026 with the demo scenario plus random rejections,
// and opens the store it leaves, read-only, with a scheduler on a clock at its end.
func run(t *testing.T, days int) (*Result, *bolt.Store, *scheduler.Scheduler) {
	t.Helper()
	cs, err := Examples()
	require.NoError(t, err)
	from := cycle.MustDate(2026, 2, 1)
	cfg := scheduler.Config{Policy: scheduler.Policy{LeadDays: 3, RetryMode: consent.Attach, Calendar: cycle.NewCalendar()}, SubmitHour: 9}
	sc, amounts := Demo(cs, from, cfg.Policy)
	sc.RejectFraction, sc.RejectReason, sc.Seed = 0.3, klavi.ReasonNotInformed, 7
	dir := t.TempDir()
	res, err := Run(context.Background(), Options{Consents: cs, From: from, Days: days, Scheduler: cfg, Scenario: sc, Amounts: amounts, Dir: dir})
	require.NoError(t, err)
	require.Zero(t, res.Duplicates)
	db, err := bolt.Open(filepath.Join(dir, "billingd.db"), bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	sch, err := scheduler.New(cfg, db, nil, scheduler.WithClock(clock.NewFake(res.To.AddDays(1).At(0, 0))))
	require.NoError(t, err)
	return res, db, sch
}

// The month's ledger, read from the store, has the counts and sums of the
// simulation's own event stream, grouped by the payment's date.
func TestSimulation_ReportAgreesWithEvents(t *testing.T) {
	res, _, sch := run(t, 150)
	type key struct {
		month    string
		interval cycle.Interval
		outcome  scheduler.Outcome
	}
	want := map[key]scheduler.Sum{}
	for _, e := range res.Events {
		o, ok := OutcomeOf(e.Event)
		if e.Event == "retry_dropped" {
			require.False(t, ok, "a dropped retry has no payment: no ledger outcome")
			continue
		}
		require.True(t, ok, e.Event)
		k := key{e.Date.String()[:7], e.Interval, o}
		s := want[k]
		s.Count++
		if e.Amount != nil {
			s.Amount += *e.Amount
		}
		want[k] = s
	}
	months := map[string]bool{}
	for k := range want {
		months[k.month] = true
	}
	require.GreaterOrEqual(t, len(months), 5)
	var outcomes = map[scheduler.Outcome]bool{}
	got := map[key]scheduler.Sum{}
	for m := range months {
		l, err := sch.Report(m)
		require.NoError(t, err)
		for _, r := range l.Rows {
			if r.Count > 0 {
				got[key{m, r.Interval, r.Outcome}] = scheduler.Sum{Count: r.Count, Amount: r.Amount}
				outcomes[r.Outcome] = true
			}
		}
	}
	t.Logf("%d ledger cells over %d months from %d events", len(want), len(months), len(res.Events))
	assert.Equal(t, want, got)
	for _, o := range []scheduler.Outcome{scheduler.OutcomeSubmitted, scheduler.OutcomeRetried, scheduler.OutcomeCompleted,
		scheduler.OutcomeRejected, scheduler.OutcomeSkipped} {
		assert.True(t, outcomes[o], "the run exercises %s", o)
	}
}

// Upcoming read from the store at the end of a run lists what a longer run of the same
// simulation then does: every original it submits (or skips, when no amount was set),
// at the same instant, for the same amount, and every retry already planned. The
// 38-day run ends on 10 March with a local retry of the demo scenario's rejection
// planned, so the retry half of the check has something to check.
func TestSimulation_UpcomingAgreesWithEvents(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cut       int
		wantRetry bool
	}{
		{"75 days", 75, false},
		{"38 days, a retry planned", 38, true},
	} {
		t.Run(tc.name, func(t *testing.T) { checkUpcoming(t, tc.cut, tc.wantRetry) })
	}
}

func checkUpcoming(t *testing.T, cut int, wantRetry bool) {
	const window = 30
	short, _, sch := run(t, cut)
	long, _, _ := run(t, cut+window)
	from := short.To.AddDays(1)
	to := from.AddDays(window - 1)
	up, err := sch.Upcoming(from, to)
	require.NoError(t, err)
	require.NotEmpty(t, up.Items)

	line := func(kind string, id string, k, n int, at time.Time, date cycle.Date, amount *klavi.Cents) string {
		a := "-"
		if amount != nil {
			a = amount.String()
		}
		return fmt.Sprintf("%s %s %d/%d %s %s %s", kind, id, k, n, at.UTC().Format(time.RFC3339), date, a)
	}
	var predicted, predictedRetries []string
	for _, c := range up.Items {
		switch {
		case c.Kind == scheduler.ChargeOriginal && c.Amount == nil:
			predicted = append(predicted, line("skipped", c.ConsentID, c.Cycle, c.Attempt, c.SubmitAt, c.DueDate, nil))
		case c.Kind == scheduler.ChargeOriginal:
			predicted = append(predicted, line("submitted", c.ConsentID, c.Cycle, c.Attempt, c.SubmitAt, c.DueDate, c.Amount))
		case c.Kind == scheduler.ChargeRetry:
			predictedRetries = append(predictedRetries, line("retry_submitted", c.ConsentID, c.Cycle, c.Attempt, c.SubmitAt, c.DueDate, c.Amount))
		}
	}
	var happened, retries []string
	var total klavi.Cents
	for _, e := range long.Events {
		if d := cycle.DateOf(e.At); d.Before(from) || d.After(to) {
			continue
		}
		switch e.Event {
		case "submitted", "skipped":
			happened = append(happened, line(e.Event, e.ConsentID, e.Cycle, e.Attempt, e.At, e.Date, e.Amount))
			if e.Amount != nil {
				total += *e.Amount
			}
		case "retry_submitted":
			retries = append(retries, line(e.Event, e.ConsentID, e.Cycle, e.Attempt, e.At, e.Date, e.Amount))
		}
	}
	sort.Strings(predicted)
	sort.Strings(happened)
	t.Logf("predicted %d originals (%d retries), happened %d (%d retries)", len(predicted), len(predictedRetries), len(happened), len(retries))
	assert.Equal(t, predicted, happened)
	if wantRetry {
		require.NotEmpty(t, predictedRetries, "upcoming lists no retry from %s to %s", from, to)
	}
	assert.Subset(t, retries, predictedRetries)
	var originals klavi.Cents
	for _, c := range up.Items {
		if c.Kind == scheduler.ChargeOriginal && c.Amount != nil {
			originals += *c.Amount
		}
	}
	assert.Equal(t, total, originals, "the same sum")
}

// A stored consent's preview after a run agrees, cycle by cycle, with what the run
// did: every cycle the run submitted, skipped or missed shows as decided with the
// same original state's event, the same clientRequestId and amount; the cycles after
// the run are the plan.
func TestSimulation_PreviewStoredAgreesWithTheRun(t *testing.T) {
	res, db, sch := run(t, 120)
	type key struct {
		consent string
		cycle   int
	}
	did := map[key][]Event{}
	for _, e := range res.Events {
		did[key{e.ConsentID, e.Cycle}] = append(did[key{e.ConsentID, e.Cycle}], e)
	}
	recs, err := db.ListConsents(context.Background(), "", 100, "")
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	checked := 0
	for _, rec := range recs {
		atts, err := db.Attempts(context.Background(), rec.ID())
		require.NoError(t, err)
		amounts, err := db.Amounts(context.Background(), rec.ID())
		require.NoError(t, err)
		pv := sch.Policy().PreviewStored(rec, atts, res.From, 1000, amounts)
		for _, cp := range pv.Cycles {
			evs := did[key{rec.ID(), cp.Index}]
			if cp.Due.After(res.To.AddDays(scheduler.WindowOpensDays)) {
				assert.Empty(t, evs, "%s cycle %d is after the run", rec.ID(), cp.Index)
				continue
			}
			if len(evs) == 0 {
				assert.NotEqual(t, scheduler.StateDecided, cp.State, "%s cycle %d: the run did nothing, the preview says decided", rec.ID(), cp.Index)
				continue
			}
			checked++
			require.Equal(t, scheduler.StateDecided, cp.State, "%s cycle %d: the run did %v", rec.ID(), cp.Index, evs)
			require.NotEmpty(t, cp.Stored)
			orig := cp.Stored[0]
			assert.Equal(t, 0, orig.Attempt)
			first := evs[0] // the original's first event: submitted, skipped or missed
			assert.Equal(t, first.ClientRequestID, orig.ClientRequestID, "%s cycle %d", rec.ID(), cp.Index)
			switch first.Event {
			case "submitted":
				assert.Contains(t, []string{"SUBMITTED", "COMPLETED", "REJECTED"}, string(orig.State), "%s cycle %d", rec.ID(), cp.Index)
				require.NotNil(t, first.Amount)
				assert.Equal(t, *first.Amount, orig.Amount)
			case "skipped":
				assert.Equal(t, "SKIPPED", string(orig.State))
			case "missed":
				assert.Equal(t, "MISSED", string(orig.State))
			}
			last := evs[len(evs)-1]
			if last.Attempt == 0 && last.Event == "completed" {
				assert.Equal(t, "COMPLETED", string(orig.State), "%s cycle %d", rec.ID(), cp.Index)
			}
			retries := 0
			for _, e := range evs {
				if e.Event == "retry_submitted" {
					retries++
				}
			}
			sent := 0
			for _, a := range cp.Stored[1:] {
				if a.PaymentID != "" {
					sent++
				}
			}
			assert.Equal(t, retries, sent, "%s cycle %d: local retries sent", rec.ID(), cp.Index)
		}
	}
	t.Logf("%d decided cycles checked against the run's events", checked)
	assert.Greater(t, checked, 20)
}
