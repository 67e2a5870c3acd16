package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/webhook"
)

// contract lists every billingd_ metric family, as the dashboard, the alert rules and
// docs/OPERATIONS.md know them.
var contract = []string{
	"billingd_build_info",
	"billingd_payments_submitted_total",
	"billingd_payments_completed_total",
	"billingd_payments_rejected_total",
	"billingd_payments_unconfirmed_total",
	"billingd_payments_missed_total",
	"billingd_payments_skipped_total",
	"billingd_payments_failed_total",
	"billingd_submissions_resent_total",
	"billingd_retries_planned_total",
	"billingd_retries_sent_total",
	"billingd_retries_dropped_total",
	"billingd_amount_centavos_total",
	"billingd_klavi_requests_total",
	"billingd_klavi_request_duration_seconds",
	"billingd_klavi_token_refreshes_total",
	"billingd_consents",
	"billingd_scheduler_lag_seconds",
	"billingd_next_submission_timestamp_seconds",
	"billingd_due_scan_duration_seconds",
	"billingd_status_poll_duration_seconds",
	"billingd_due_scan_last_success_timestamp_seconds",
	"billingd_status_poll_last_success_timestamp_seconds",
	"billingd_due_scan_errors_total",
	"billingd_store_write_errors_total",
	"billingd_store_healthy",
	"billingd_db_size_bytes",
	"billingd_db_inuse_bytes",
	"billingd_attention_items",
	"billingd_attention_oldest_seconds",
	"billingd_upcoming_charges",
	"billingd_upcoming_amount_centavos",
	"billingd_variable_amount_missing",
	"billingd_payments_stuck_total",
	"billingd_payments_canceled_total",
	"billingd_payment_mismatches_total",
	"billingd_reconciliation_lookups_total",
	"billingd_clock_skew_seconds",
	"billingd_clock_in_doubt",
	"billingd_webhook_backlog",
	"billingd_webhook_oldest_undelivered_seconds",
	"billingd_webhook_deliveries_total",
	"billingd_webhook_dead_letters",
}

var t0 = time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)

// fakeStore is a StoreSource with set answers.
type fakeStore struct {
	counts         map[storage.ConsentState]int
	oldest, next   time.Time
	stats          storage.Stats
	countsErr      error
	boundsErr      error
	statsErr       error
	attention      map[storage.AttemptState]int
	attentionSince map[storage.AttemptState]time.Time
	due            []storage.DueEntry
	mu             sync.Mutex // scrapes may run at once, as on a *bolt.Store
	boundsCalledAt []time.Time
}

var _ StoreSource = (*fakeStore)(nil)

func (f *fakeStore) Counts(ctx context.Context) (map[storage.ConsentState]int, error) {
	return f.counts, f.countsErr
}

func (f *fakeStore) DueBounds(ctx context.Context, now time.Time) (time.Time, time.Time, error) {
	f.mu.Lock()
	f.boundsCalledAt = append(f.boundsCalledAt, now)
	f.mu.Unlock()
	return f.oldest, f.next, f.boundsErr
}

func (f *fakeStore) Stats(ctx context.Context) (storage.Stats, error) { return f.stats, f.statsErr }

func (f *fakeStore) AttentionCounts(ctx context.Context) (map[storage.AttemptState]int, error) {
	return f.attention, nil
}

func (f *fakeStore) AttentionOldest(ctx context.Context) (map[storage.AttemptState]time.Time, error) {
	return f.attentionSince, nil
}

// DueTotals sums f.due as storage.DB does.
func (f *fakeStore) DueTotals(ctx context.Context, untils ...time.Time) ([]storage.DueTotal, error) {
	out := make([]storage.DueTotal, len(untils))
	for i, u := range untils {
		out[i].Until = u
		for _, e := range f.due {
			if !e.Kind.Charges() || e.At.After(u) {
				continue
			}
			out[i].Charges++
			if e.HasAmount {
				out[i].Amount += e.Amount
			} else if e.Kind == storage.DueOriginal {
				out[i].NoAmount++
			}
		}
	}
	return out, nil
}

func event(kind scheduler.EventKind, iv cycle.Interval, mode consent.RetryMode) scheduler.Event {
	return scheduler.Event{
		Kind: kind, At: t0, ConsentID: "urn:klavi:consent-0001", Interval: iv, Mode: mode,
		Amount: 9990, ClientRequestID: "billingd-abc-1-0", PaymentID: "pay-1",
	}
}

// nonZero gathers reg and returns every billingd_ counter or gauge sample that is not
// zero, and the sample count of every histogram, keyed name{label="value",...}.
// billingd_build_info is left out: it is always 1; so is billingd_store_healthy,
// which is 1 from the start (TestMetrics_StoreWrite covers it).
func nonZero(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "billingd_") || name == "billingd_build_info" || name == "billingd_store_healthy" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var v float64
			key := name
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				v, key = float64(m.GetHistogram().GetSampleCount()), name+"_count"
			}
			if v == 0 {
				continue
			}
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = v
		}
	}
	return out
}

func TestMetrics_Observe(t *testing.T) {
	rejected := func(reason string, status klavi.PaymentStatus) scheduler.Event {
		e := event(scheduler.EventRejected, cycle.Monthly, consent.Local)
		e.Reason, e.Status = reason, status
		return e
	}
	tests := []struct {
		name  string
		event scheduler.Event
		want  map[string]float64
	}{
		{"submitted attach", withRetries(event(scheduler.EventSubmitted, cycle.Monthly, consent.Attach), 3), map[string]float64{
			`billingd_payments_submitted_total{interval="MONTHLY",mode="attach"}`: 1,
			`billingd_amount_centavos_total{outcome="submitted"}`:                 9990,
			`billingd_retries_planned_total{mode="attach"}`:                       3,
		}},
		{"submitted attach without a strategy", event(scheduler.EventSubmitted, cycle.Monthly, consent.Attach), map[string]float64{
			`billingd_payments_submitted_total{interval="MONTHLY",mode="attach"}`: 1,
			`billingd_amount_centavos_total{outcome="submitted"}`:                 9990,
		}},
		{"submitted local", event(scheduler.EventSubmitted, cycle.Weekly, consent.Local), map[string]float64{
			`billingd_payments_submitted_total{interval="WEEKLY",mode="local"}`: 1,
			`billingd_amount_centavos_total{outcome="submitted"}`:               9990,
		}},
		{"submitted off", event(scheduler.EventSubmitted, cycle.Yearly, consent.Off), map[string]float64{
			`billingd_payments_submitted_total{interval="YEARLY",mode="off"}`: 1,
			`billingd_amount_centavos_total{outcome="submitted"}`:             9990,
		}},
		{"retry submitted", event(scheduler.EventRetrySubmitted, cycle.Monthly, consent.Local), map[string]float64{
			`billingd_retries_sent_total{mode="local"}`: 1,
		}},
		{"retry submitted without mode", event(scheduler.EventRetrySubmitted, cycle.Monthly, ""), map[string]float64{
			`billingd_retries_sent_total{mode="local"}`: 1,
		}},
		{"completed", event(scheduler.EventCompleted, cycle.Quarterly, consent.Attach), map[string]float64{
			`billingd_payments_completed_total{interval="QUARTERLY"}`: 1,
			`billingd_amount_centavos_total{outcome="completed"}`:     9990,
		}},
		{"rejected with reason code", rejected("USER_REJECTED", klavi.PaymentRejected), map[string]float64{
			`billingd_payments_rejected_total{interval="MONTHLY",reason="USER_REJECTED"}`: 1,
			`billingd_amount_centavos_total{outcome="rejected"}`:                          9990,
		}},
		{"rejected with status as reason", rejected("CANCELED", klavi.PaymentCanceled), map[string]float64{
			`billingd_payments_rejected_total{interval="MONTHLY",reason="CANCELED"}`: 1,
			`billingd_amount_centavos_total{outcome="rejected"}`:                     9990,
		}},
		{"rejected without reason", rejected("", klavi.PaymentError), map[string]float64{
			`billingd_payments_rejected_total{interval="MONTHLY",reason="ERROR"}`: 1,
			`billingd_amount_centavos_total{outcome="rejected"}`:                  9990,
		}},
		{"rejected with free text", rejected("consent is revoked for urn:klavi:consent-0001", klavi.PaymentRejected), map[string]float64{
			`billingd_payments_rejected_total{interval="MONTHLY",reason="OTHER"}`: 1,
			`billingd_amount_centavos_total{outcome="rejected"}`:                  9990,
		}},
		{"rejected with an unknown code", rejected("SOME_NEW_CODE", klavi.PaymentRejected), map[string]float64{
			`billingd_payments_rejected_total{interval="MONTHLY",reason="OTHER"}`: 1,
			`billingd_amount_centavos_total{outcome="rejected"}`:                  9990,
		}},
		{"unconfirmed", event(scheduler.EventUnconfirmed, cycle.Semiannual, consent.Attach), map[string]float64{
			`billingd_payments_unconfirmed_total{interval="SEMIANNUAL"}`: 1,
		}},
		{"missed", event(scheduler.EventMissed, cycle.Monthly, consent.Attach), map[string]float64{
			`billingd_payments_missed_total{interval="MONTHLY"}`: 1,
		}},
		{"skipped", event(scheduler.EventSkipped, cycle.Monthly, consent.Attach), map[string]float64{
			`billingd_payments_skipped_total{interval="MONTHLY"}`: 1,
		}},
		{"failed", event(scheduler.EventFailed, cycle.Weekly, consent.Off), map[string]float64{
			`billingd_payments_failed_total{interval="WEEKLY"}`: 1,
		}},
		{"resend pending", event(scheduler.EventResend, cycle.Monthly, consent.Attach), map[string]float64{
			`billingd_submissions_resent_total`: 1,
		}},
		{"retry planned", event(scheduler.EventRetryPlanned, cycle.Monthly, consent.Local), map[string]float64{
			`billingd_retries_planned_total{mode="local"}`: 1,
		}},
		{"retry dropped", event(scheduler.EventRetryDropped, cycle.Monthly, consent.Local), map[string]float64{
			`billingd_retries_dropped_total`: 1,
		}},
		{"consent stopped", event(scheduler.EventConsentStopped, cycle.Monthly, ""), map[string]float64{}},
		{"unknown kind", event("something_new", cycle.Monthly, consent.Attach), map[string]float64{}},
		{"invalid interval and mode", event(scheduler.EventSubmitted, cycle.Interval(0), "sideways"), map[string]float64{
			`billingd_payments_submitted_total{interval="unknown",mode="unknown"}`: 1,
			`billingd_amount_centavos_total{outcome="submitted"}`:                  9990,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New("v1.2.3", "abc123")
			require.Empty(t, nonZero(t, m.Registry()), "a new registry starts at zero")
			m.Observe(tt.event)
			assert.Equal(t, tt.want, nonZero(t, m.Registry()))
		})
	}
}

func TestMetrics_Observe_accumulates(t *testing.T) {
	m := New("v1", "r")
	for range 3 {
		m.Observe(event(scheduler.EventSubmitted, cycle.Monthly, consent.Attach))
	}
	e := event(scheduler.EventCompleted, cycle.Monthly, consent.Attach)
	e.Amount = 10
	m.Observe(e)
	m.Observe(e)
	assert.Equal(t, 3.0, testutil.ToFloat64(m.submitted.WithLabelValues("MONTHLY", "attach")))
	assert.Equal(t, 3*9990.0, testutil.ToFloat64(m.amount.WithLabelValues("submitted")))
	assert.Equal(t, 20.0, testutil.ToFloat64(m.amount.WithLabelValues("completed")))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.completed.WithLabelValues("MONTHLY")))
}

func TestMetrics_New(t *testing.T) {
	m := New("v1.2.3", "abc123")

	t.Run("build info", func(t *testing.T) {
		want := fmt.Sprintf(`
# HELP billingd_build_info A constant 1, labeled with the version, VCS revision and Go version billingd was built with.
# TYPE billingd_build_info gauge
billingd_build_info{goversion=%q,revision="abc123",version="v1.2.3"} 1
`, runtime.Version())
		require.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "billingd_build_info"))
	})

	t.Run("known series start at zero", func(t *testing.T) {
		assert.Equal(t, 15, testutil.CollectAndCount(m.submitted), "5 intervals x 3 modes")
		assert.Equal(t, 5, testutil.CollectAndCount(m.missed))
		assert.Equal(t, 5, testutil.CollectAndCount(m.unconfirmed))
		assert.Equal(t, 3, testutil.CollectAndCount(m.amount))
		assert.Equal(t, 2, testutil.CollectAndCount(m.tokenRefresh))
		assert.Equal(t, 2, testutil.CollectAndCount(m.retriesPlanned))
		assert.Equal(t, 5*(len(klavi.ReasonCodes)+3), testutil.CollectAndCount(m.rejected),
			"every interval × every known reason and final status, at zero before the first rejection")
	})

	t.Run("go and process collectors", func(t *testing.T) {
		names := gatheredNames(t, m.Registry())
		assert.Contains(t, names, "go_goroutines")
		assert.Contains(t, names, "go_memstats_heap_inuse_bytes")
		assert.Contains(t, names, "process_resident_memory_bytes")
		assert.Contains(t, names, "process_cpu_seconds_total")
	})

	t.Run("registries are private", func(t *testing.T) {
		a, b := New("v1", "r"), New("v1", "r")
		a.Observe(event(scheduler.EventMissed, cycle.Monthly, consent.Attach))
		assert.Equal(t, 1.0, testutil.ToFloat64(a.missed.WithLabelValues("MONTHLY")))
		assert.Equal(t, 0.0, testutil.ToFloat64(b.missed.WithLabelValues("MONTHLY")))
		for _, name := range gatheredNames(t, prometheus.DefaultGatherer) {
			assert.NotContains(t, name, "billingd_", "nothing goes to the global registry")
		}
	})
}

func TestMetrics_KlaviRequest(t *testing.T) {
	m := New("v1", "r")
	m.KlaviRequest("create_payment", "201", 120*time.Millisecond)
	m.KlaviRequest("create_payment", "201", 80*time.Millisecond)
	m.KlaviRequest("create_payment", "503", 2*time.Second)
	m.KlaviRequest("get_payment", "error", 15*time.Second)

	want := `
# HELP billingd_klavi_requests_total HTTP requests to the Klavi API, by endpoint and status code ("error" for a transport error).
# TYPE billingd_klavi_requests_total counter
billingd_klavi_requests_total{code="201",endpoint="create_payment"} 2
billingd_klavi_requests_total{code="503",endpoint="create_payment"} 1
billingd_klavi_requests_total{code="error",endpoint="get_payment"} 1
`
	require.NoError(t, testutil.CollectAndCompare(m.klaviRequests, strings.NewReader(want)))

	hist := map[string]*dto.Histogram{}
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "billingd_klavi_request_duration_seconds" {
			for _, s := range mf.GetMetric() {
				hist[s.GetLabel()[0].GetValue()] = s.GetHistogram()
			}
		}
	}
	require.Len(t, hist, 2)
	assert.Equal(t, uint64(3), hist["create_payment"].GetSampleCount())
	assert.InDelta(t, 2.2, hist["create_payment"].GetSampleSum(), 1e-9)
	assert.Equal(t, uint64(1), hist["get_payment"].GetSampleCount())
	assert.InDelta(t, 15.0, hist["get_payment"].GetSampleSum(), 1e-9)
	// Buckets cover 1 ms to 30 s.
	b := hist["get_payment"].GetBucket()
	assert.Equal(t, 0.001, b[0].GetUpperBound())
	assert.Equal(t, 30.0, b[len(b)-1].GetUpperBound())
	for _, bk := range b {
		want := uint64(0)
		if bk.GetUpperBound() >= 15 {
			want = 1
		}
		assert.Equal(t, want, bk.GetCumulativeCount(), "bucket le=%v", bk.GetUpperBound())
	}
}

func TestMetrics_TokenRefresh(t *testing.T) {
	m := New("v1", "r")
	m.TokenRefresh(nil)
	m.TokenRefresh(nil)
	m.TokenRefresh(errors.New("klavi: get token: 401"))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.tokenRefresh.WithLabelValues("ok")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.tokenRefresh.WithLabelValues("error")))
}

func TestMetrics_KlaviHooks(t *testing.T) {
	m := New("v1", "r")
	h := m.KlaviHooks()
	h.OnRequest("auth", "200", time.Millisecond)
	h.OnTokenRefresh(nil)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.klaviRequests.WithLabelValues("auth", "200")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.tokenRefresh.WithLabelValues("ok")))
}

func TestMetrics_ScanDone(t *testing.T) {
	fc := clock.NewFake(t0)
	m := New("v1", "r", WithClock(fc))

	t.Run("success", func(t *testing.T) {
		m.ScanDone(3*time.Second, scheduler.ScanResult{Handled: 40}, nil)
		assert.Equal(t, float64(t0.Unix()), testutil.ToFloat64(m.scanLastSuccess))
		assert.Equal(t, 0.0, testutil.ToFloat64(m.scanErrors))
		assert.Equal(t, 1, histCount(t, m, "billingd_due_scan_duration_seconds"))
	})
	t.Run("entries left for the next scan", func(t *testing.T) {
		fc.Advance(time.Minute)
		m.ScanDone(time.Second, scheduler.ScanResult{Handled: 5, Errors: 2}, nil)
		assert.Equal(t, float64(t0.Add(time.Minute).Unix()), testutil.ToFloat64(m.scanLastSuccess))
		assert.Equal(t, 2.0, testutil.ToFloat64(m.scanErrors))
	})
	t.Run("failed scan", func(t *testing.T) {
		fc.Advance(time.Minute)
		m.ScanDone(time.Millisecond, scheduler.ScanResult{}, errors.New("due scan: storage: corrupt"))
		assert.Equal(t, float64(t0.Add(time.Minute).Unix()), testutil.ToFloat64(m.scanLastSuccess), "unchanged")
		assert.Equal(t, 3.0, testutil.ToFloat64(m.scanErrors))
		assert.Equal(t, 3, histCount(t, m, "billingd_due_scan_duration_seconds"))
	})
}

func TestMetrics_PollDone(t *testing.T) {
	fc := clock.NewFake(t0)
	m := New("v1", "r", WithClock(fc))
	m.PollDone(2*time.Second, scheduler.PollResult{Polled: 3}, nil)
	assert.Equal(t, float64(t0.Unix()), testutil.ToFloat64(m.pollLastSuccess))
	fc.Advance(time.Hour)
	m.PollDone(time.Second, scheduler.PollResult{}, errors.New("status poll: storage: corrupt"))
	assert.Equal(t, float64(t0.Unix()), testutil.ToFloat64(m.pollLastSuccess), "a failed poll leaves it")
	assert.Equal(t, 2, histCount(t, m, "billingd_status_poll_duration_seconds"))
	assert.Equal(t, 0, histCount(t, m, "billingd_due_scan_duration_seconds"))
}

func TestMetrics_SchedulerHooks(t *testing.T) {
	m := New("v1", "r", WithClock(clock.NewFake(t0)))
	h := m.SchedulerHooks()
	h.AfterScan(time.Second, scheduler.ScanResult{}, nil)
	h.AfterPoll(time.Second, scheduler.PollResult{}, nil)
	assert.Equal(t, 1, histCount(t, m, "billingd_due_scan_duration_seconds"))
	assert.Equal(t, 1, histCount(t, m, "billingd_status_poll_duration_seconds"))
}

func TestMetrics_nil(t *testing.T) {
	var m *Metrics
	assert.NotPanics(t, func() {
		m.Observe(event(scheduler.EventSubmitted, cycle.Monthly, consent.Attach))
		m.KlaviRequest("auth", "200", time.Second)
		m.TokenRefresh(nil)
		m.ScanDone(time.Second, scheduler.ScanResult{}, nil)
		m.PollDone(time.Second, scheduler.PollResult{}, nil)
		m.WatchStore(&fakeStore{}, nil)
		m.StoreWrite(errors.New("disk full"))
		m.KlaviHooks().OnRequest("auth", "200", time.Second)
		m.SchedulerHooks().AfterScan(time.Second, scheduler.ScanResult{}, nil)
	})
}

func TestMetrics_WatchStore(t *testing.T) {
	t.Run("not watched", func(t *testing.T) {
		m := New("v1", "r")
		assert.Equal(t, 0, testutil.CollectAndCount(m.store))
	})

	t.Run("readings", func(t *testing.T) {
		m := New("v1", "r")
		src := &fakeStore{
			counts: map[storage.ConsentState]int{storage.ConsentActive: 120, storage.ConsentRevoked: 3},
			oldest: t0.Add(-90 * time.Second),
			next:   t0.Add(2 * time.Hour),
			stats:  storage.Stats{SizeBytes: 8 << 20, InUseBytes: 6 << 20, FreePages: 512},
		}
		m.WatchStore(src, func() time.Time { return t0 })
		want := fmt.Sprintf(`
# HELP billingd_consents Consents in the store, by state (active, awaiting_authorization, revoked, rejected, expired).
# TYPE billingd_consents gauge
billingd_consents{state="active"} 120
billingd_consents{state="awaiting_authorization"} 0
billingd_consents{state="expired"} 0
billingd_consents{state="rejected"} 0
billingd_consents{state="revoked"} 3
# HELP billingd_db_inuse_bytes Bytes of the bbolt database file in use (size minus free pages).
# TYPE billingd_db_inuse_bytes gauge
billingd_db_inuse_bytes 6.291456e+06
# HELP billingd_db_size_bytes Size of the bbolt database file.
# TYPE billingd_db_size_bytes gauge
billingd_db_size_bytes 8.388608e+06
# HELP billingd_next_submission_timestamp_seconds Unix time of the next due-index entry (submission, retry or re-send); 0 when none is scheduled.
# TYPE billingd_next_submission_timestamp_seconds gauge
billingd_next_submission_timestamp_seconds %d
# HELP billingd_scheduler_lag_seconds Age of the oldest due-index entry (submission, retry or re-send) not yet acted on; 0 when nothing is overdue.
# TYPE billingd_scheduler_lag_seconds gauge
billingd_scheduler_lag_seconds 90
`, t0.Add(2*time.Hour).Unix())
		require.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
			"billingd_consents", "billingd_db_inuse_bytes", "billingd_db_size_bytes",
			"billingd_next_submission_timestamp_seconds", "billingd_scheduler_lag_seconds"))
		assert.Equal(t, []time.Time{t0}, src.boundsCalledAt, "DueBounds is asked at the watch clock's now")
	})

	t.Run("read at every scrape", func(t *testing.T) {
		m := New("v1", "r")
		now := t0
		src := &fakeStore{oldest: t0.Add(-time.Minute)}
		m.WatchStore(src, func() time.Time { return now })
		assert.Equal(t, map[string]float64{"billingd_scheduler_lag_seconds": 60}, storeGauges(t, m))
		now = now.Add(10 * time.Minute)
		src.counts = map[storage.ConsentState]int{storage.ConsentExpired: 2}
		assert.Equal(t, map[string]float64{
			"billingd_scheduler_lag_seconds":     660,
			`billingd_consents{state="expired"}`: 2,
		}, storeGauges(t, m))
	})

	t.Run("nothing due", func(t *testing.T) {
		m := New("v1", "r")
		m.WatchStore(&fakeStore{}, func() time.Time { return t0 })
		assert.Empty(t, storeGauges(t, m), "lag and next submission are 0")
		assert.Equal(t, 24, testutil.CollectAndCount(m.store),
			"5 states, lag, next, size, in use, 5 attention states, 5 oldest ages, 2 upcoming windows of count and amount, amount missing")
	})

	t.Run("oldest in the future reads as no lag", func(t *testing.T) {
		m := New("v1", "r")
		m.WatchStore(&fakeStore{oldest: t0.Add(time.Second)}, func() time.Time { return t0 })
		assert.Empty(t, storeGauges(t, m))
	})

	t.Run("a state this build does not know", func(t *testing.T) {
		m := New("v1", "r")
		m.WatchStore(&fakeStore{counts: map[storage.ConsentState]int{"paused": 4}}, func() time.Time { return t0 })
		assert.Equal(t, map[string]float64{`billingd_consents{state="paused"}`: 4}, storeGauges(t, m))
		assert.Equal(t, 25, testutil.CollectAndCount(m.store))
	})

	t.Run("replaced and stopped", func(t *testing.T) {
		m := New("v1", "r")
		m.WatchStore(&fakeStore{stats: storage.Stats{SizeBytes: 1}}, nil)
		m.WatchStore(&fakeStore{stats: storage.Stats{SizeBytes: 2}}, nil)
		assert.Equal(t, 2.0, storeGauges(t, m)["billingd_db_size_bytes"])
		m.WatchStore(nil, nil)
		assert.Equal(t, 0, testutil.CollectAndCount(m.store))
	})

	t.Run("read errors", func(t *testing.T) {
		tests := []struct {
			name    string
			src     *fakeStore
			missing []string
		}{
			{"counts", &fakeStore{countsErr: errors.New("boom")}, []string{"billingd_consents"}},
			{"due bounds", &fakeStore{boundsErr: errors.New("boom")},
				[]string{"billingd_scheduler_lag_seconds", "billingd_next_submission_timestamp_seconds"}},
			{"stats", &fakeStore{statsErr: errors.New("boom")}, []string{"billingd_db_size_bytes", "billingd_db_inuse_bytes"}},
		}
		all := []string{"billingd_consents", "billingd_scheduler_lag_seconds", "billingd_next_submission_timestamp_seconds",
			"billingd_db_size_bytes", "billingd_db_inuse_bytes"}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m := New("v1", "r", WithLogger(slog.New(slog.DiscardHandler)))
				m.WatchStore(tt.src, func() time.Time { return t0 })
				_, err := m.Registry().Gather()
				require.ErrorContains(t, err, "boom")

				// The handler still serves everything else.
				body := scrape(t, m)
				assert.Contains(t, body, "billingd_build_info{")
				for _, name := range all {
					if slices.Contains(tt.missing, name) {
						assert.NotContains(t, body, "\n"+name, name)
					} else {
						assert.Contains(t, body, "\n"+name, name)
					}
				}
			})
		}
	})
}

func TestMetrics_Handler(t *testing.T) {
	m := New("v1.2.3", "abc123")
	m.Observe(event(scheduler.EventSubmitted, cycle.Monthly, consent.Attach))
	m.WatchStore(&fakeStore{counts: map[storage.ConsentState]int{storage.ConsentActive: 7}}, nil)
	body := scrape(t, m)
	for _, want := range []string{
		`billingd_payments_submitted_total{interval="MONTHLY",mode="attach"} 1`,
		`billingd_consents{state="active"} 7`,
		`# HELP billingd_scheduler_lag_seconds `,
		`go_goroutines `,
	} {
		assert.Contains(t, body, want)
	}
}

// TestMetrics_lint runs promlint over a registry where every family has samples.
func TestMetrics_lint(t *testing.T) {
	m := populated(t)
	problems, err := testutil.GatherAndLint(m.Registry())
	require.NoError(t, err)
	assert.Empty(t, problems)
	for _, c := range []prometheus.Collector{m.submitted, m.rejected, m.amount, m.klaviDuration, m.scanDuration, m.store} {
		problems, err := testutil.CollectAndLint(c)
		require.NoError(t, err)
		assert.Empty(t, problems)
	}
}

// TestMetrics_contract checks the registered billingd_ families are exactly the
// contract, each with HELP text.
func TestMetrics_contract(t *testing.T) {
	m := populated(t)
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	var got []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "billingd_") {
			got = append(got, mf.GetName())
			assert.NotEmpty(t, mf.GetHelp(), mf.GetName())
			for _, s := range mf.GetMetric() {
				for _, l := range s.GetLabel() {
					assert.NotContains(t, []string{"consent_id", "payment_id", "client_request_id"}, l.GetName())
					assert.NotContains(t, l.GetValue(), "urn:", "%s: a consent id leaked into a label", mf.GetName())
				}
			}
		}
	}
	want := slices.Clone(contract)
	sort.Strings(want)
	sort.Strings(got)
	assert.Equal(t, want, got)
}

func TestMetrics_StoreWrite(t *testing.T) {
	m := New("", "")
	healthy := func() float64 { return testutil.ToFloat64(m.storeHealthy) }
	errs := func(reason string) float64 { return testutil.ToFloat64(m.storeWriteErrors.WithLabelValues(reason)) }
	assert.Equal(t, 1.0, healthy(), "healthy until a write fails")
	for _, r := range []string{"enospc", "replaced", "readonly", "other"} {
		assert.Zero(t, errs(r), "%s exists at zero from the start", r)
	}
	m.StoreWrite(fmt.Errorf("store: write: %w", syscall.ENOSPC))
	m.StoreWrite(fmt.Errorf("store: write: %w", syscall.ENOSPC))
	m.StoreWrite(fmt.Errorf("store: %w: /x", storage.ErrReplaced))
	m.StoreWrite(fmt.Errorf("store: %w", syscall.EROFS))
	m.StoreWrite(errors.New("store: something"))
	assert.Equal(t, 0.0, healthy())
	assert.Equal(t, 2.0, errs("enospc"))
	assert.Equal(t, 1.0, errs("replaced"))
	assert.Equal(t, 1.0, errs("readonly"))
	assert.Equal(t, 1.0, errs("other"))
	m.StoreWrite(nil)
	assert.Equal(t, 1.0, healthy(), "a write that succeeds makes it healthy again")
	assert.Equal(t, 2.0, errs("enospc"), "counters only rise")
}

// populated returns a Metrics in which every family has at least one sample.
func populated(t *testing.T) *Metrics {
	t.Helper()
	m := New("v1.2.3", "abc123", WithClock(clock.NewFake(t0)))
	for _, k := range []scheduler.EventKind{
		scheduler.EventSubmitted, scheduler.EventRetrySubmitted, scheduler.EventCompleted, scheduler.EventRejected,
		scheduler.EventUnconfirmed, scheduler.EventMissed, scheduler.EventSkipped, scheduler.EventFailed,
		scheduler.EventResend, scheduler.EventRetryPlanned, scheduler.EventRetryDropped, scheduler.EventConsentStopped,
	} {
		e := event(k, cycle.Monthly, consent.Local)
		if k == scheduler.EventRejected {
			e.Reason = "USER_REJECTED"
		}
		m.Observe(e)
	}
	m.KlaviRequest("create_payment", "201", 100*time.Millisecond)
	m.TokenRefresh(nil)
	m.ScanDone(time.Second, scheduler.ScanResult{Errors: 1}, nil)
	m.PollDone(time.Second, scheduler.PollResult{}, nil)
	m.StoreWrite(fmt.Errorf("store: %w", syscall.ENOSPC))
	m.WatchStore(&fakeStore{
		counts: map[storage.ConsentState]int{storage.ConsentActive: 1},
		oldest: t0.Add(-time.Second), next: t0.Add(time.Hour),
		stats: storage.Stats{SizeBytes: 1 << 20, InUseBytes: 1 << 19},
	}, func() time.Time { return t0 })
	m.WatchClock(func() (time.Duration, bool, bool) { return time.Second, true, false })
	m.WatchWebhooks(&fakeWebhooks{st: []webhook.EndpointStatus{{Name: "shop"}}})
	return m
}

// gatheredNames returns the names of every family m's registry gathers.
func gatheredNames(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

// storeGauges returns the non-zero store readings.
func storeGauges(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m.store))
	return nonZero(t, reg)
}

func histCount(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	return int(nonZero(t, m.Registry())[name+"_count"])
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestMetrics_concurrent records from many goroutines while scraping and re-pointing
// the store; -race checks the locking, the totals check nothing is lost.
func TestMetrics_concurrent(t *testing.T) {
	m := New("v1", "r", WithLogger(slog.New(slog.DiscardHandler)))
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m.Observe(event(scheduler.EventSubmitted, cycle.Monthly, consent.Local))
				m.KlaviRequest("create_payment", "201", time.Millisecond)
				if i%50 == 0 {
					m.WatchStore(&fakeStore{stats: storage.Stats{SizeBytes: int64(w)}}, func() time.Time { return t0 })
					_, err := m.Registry().Gather()
					assert.NoError(t, err)
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, float64(workers*each), testutil.ToFloat64(m.submitted.WithLabelValues("MONTHLY", "local")))
	assert.Equal(t, float64(workers*each), testutil.ToFloat64(m.klaviRequests.WithLabelValues("create_payment", "201")))
}

func withRetries(e scheduler.Event, n int) scheduler.Event {
	e.Retries = n
	return e
}

func TestMetrics_ReconciliationAndStuck(t *testing.T) {
	m := New("test", "")
	m.Observe(scheduler.Event{Kind: scheduler.EventLookup, Interval: cycle.Monthly, Reason: "found:adopted"})
	m.Observe(scheduler.Event{Kind: scheduler.EventLookup, Interval: cycle.Monthly, Reason: "found:adopted"})
	m.Observe(scheduler.Event{Kind: scheduler.EventLookup, Interval: cycle.Monthly, Reason: "unavailable:unresolved"})
	m.Observe(scheduler.Event{Kind: scheduler.EventStuck, Interval: cycle.Weekly})
	m.Observe(scheduler.Event{Kind: scheduler.EventCanceled, Interval: cycle.Weekly})
	assert.Equal(t, 2.0, testutil.ToFloat64(m.lookups.WithLabelValues("found", "adopted")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.lookups.WithLabelValues("unavailable", "unresolved")))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.lookups.WithLabelValues("not_found", "refused")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.stuck.WithLabelValues("WEEKLY")))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.canceled))

	m.WatchStore(&fakeStore{attention: map[storage.AttemptState]int{storage.AttemptStuck: 3}}, nil)
	mfs, err := m.Registry().Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "billingd_attention_items" {
			for _, s := range mf.GetMetric() {
				got[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
			}
		}
	}
	assert.Equal(t, map[string]float64{"UNCONFIRMED": 0, "STUCK": 3, "MISSED": 0, "FAILED": 0, "SKIPPED": 0}, got)
}

func TestMetrics_WatchClock(t *testing.T) {
	m := New("test", "")
	assert.Equal(t, 0, testutil.CollectAndCount(m.clockGauges), "nothing until watched")
	m.WatchClock(func() (time.Duration, bool, bool) { return 0, false, true })
	assert.Equal(t, 1, testutil.CollectAndCount(m.clockGauges), "no skew before Klavi's time is read")
	m.WatchClock(func() (time.Duration, bool, bool) { return 90 * time.Second, true, false })
	assert.Equal(t, 2, testutil.CollectAndCount(m.clockGauges))
	require.NoError(t, testutil.CollectAndCompare(m.clockGauges, strings.NewReader(`
# HELP billingd_clock_in_doubt 1 while the clock disagrees with Klavi's or stepped back past the latest instant acted on: no submission, MISSED or FAILED is decided.
# TYPE billingd_clock_in_doubt gauge
billingd_clock_in_doubt 0
# HELP billingd_clock_skew_seconds The local clock minus Klavi's (the Date header of its last answer); positive: the local clock is ahead.
# TYPE billingd_clock_skew_seconds gauge
billingd_clock_skew_seconds 90
`)))
}

func TestMetrics_WatchStore_AttentionAndUpcoming(t *testing.T) {
	due := func(at time.Duration, kind storage.DueKind, amount klavi.Cents, ok bool) storage.DueEntry {
		return storage.DueEntry{Entry: storage.Entry{At: t0.Add(at)}, Kind: kind, Amount: amount, HasAmount: ok}
	}
	m := New("v1", "r")
	m.WatchStore(&fakeStore{
		attention:      map[storage.AttemptState]int{storage.AttemptMissed: 2},
		attentionSince: map[storage.AttemptState]time.Time{storage.AttemptMissed: t0.Add(-90 * time.Minute)},
		due: []storage.DueEntry{
			due(-time.Hour, storage.DueOriginal, 10_00, true),            // overdue: goes at the next scan
			due(time.Hour, storage.DueRetry, 20_00, true),                // a planned local retry
			due(2*time.Hour, storage.DueLookup, 0, false),                // a lookup charges nothing
			due(30*time.Hour, storage.DueOriginal, 0, false),             // variable, no amount set
			due(6*24*time.Hour, storage.DueResend, 40_00, true),          // a re-send
			due(8*24*time.Hour, storage.DueOriginal, 1000_00, true),      // beyond 7 days
			due(47*time.Hour, storage.DueOriginal, 0, false),             // variable, within 2 days
			due(3*24*time.Hour+time.Hour, storage.DueOriginal, 0, false), // variable, beyond 2 days
		},
	}, func() time.Time { return t0 })
	got := storeGauges(t, m)
	assert.Equal(t, 2.0, got[`billingd_attention_items{state="MISSED"}`])
	assert.Equal(t, 5400.0, got[`billingd_attention_oldest_seconds{state="MISSED"}`])
	assert.NotContains(t, got, `billingd_attention_oldest_seconds{state="FAILED"}`, "0 when none")
	assert.Equal(t, 2.0, got[`billingd_upcoming_charges{window="24h"}`])
	assert.Equal(t, 30_00.0, got[`billingd_upcoming_amount_centavos{window="24h"}`])
	assert.Equal(t, 6.0, got[`billingd_upcoming_charges{window="7d"}`])
	assert.Equal(t, 70_00.0, got[`billingd_upcoming_amount_centavos{window="7d"}`])
	assert.Equal(t, 2.0, got["billingd_variable_amount_missing"], "default horizon 2 days")

	m.SetAmountWarningDays(5)
	assert.Equal(t, 3.0, storeGauges(t, m)["billingd_variable_amount_missing"])
}
