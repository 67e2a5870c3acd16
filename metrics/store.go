package metrics

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
)

// StoreSource is what the store gauges read at scrape time. *storage.DB implements
// it (and storage.Sizer, when the engine has size figures); all three are cheap reads (no scan of the consents).
type StoreSource interface {
	// Counts returns the number of consents in each state.
	Counts(ctx context.Context) (map[storage.ConsentState]int, error)
	// DueBounds returns the oldest due entry at or before now and the first one
	// after now; either is zero when there is none.
	DueBounds(ctx context.Context, now time.Time) (oldest, next time.Time, err error)
	// AttentionCounts returns the open attention items by attempt state.
	AttentionCounts(ctx context.Context) (map[storage.AttemptState]int, error)
	// AttentionOldest returns when the oldest open item of each state opened.
	AttentionOldest(ctx context.Context) (map[storage.AttemptState]time.Time, error)
	// DueTotals sums the due index up to each instant (keys and values only).
	DueTotals(ctx context.Context, untils ...time.Time) ([]storage.DueTotal, error)
}

var _ StoreSource = (*storage.DB)(nil)

// WatchStore makes every scrape read src: billingd_consents{state},
// billingd_scheduler_lag_seconds (now minus the oldest due entry not yet acted on, 0
// when none), billingd_next_submission_timestamp_seconds (the next due entry, 0 when
// none), billingd_db_size_bytes, billingd_db_inuse_bytes, billingd_attention_items{state},
// billingd_attention_oldest_seconds{state}, billingd_upcoming_charges{window},
// billingd_upcoming_amount_centavos{window} and billingd_variable_amount_missing. now is the clock of the
// lag (nil: time.Now). A later call replaces src; a nil src stops the readings. A
// read that fails leaves its gauges out of that scrape and is logged. It does
// nothing on a nil *Metrics.
func (m *Metrics) WatchStore(src StoreSource, now func() time.Time) {
	if m == nil {
		return
	}
	if now == nil {
		now = time.Now
	}
	m.store.mu.Lock()
	m.store.src, m.store.now = src, now
	m.store.mu.Unlock()
}

// storeCollector reads a StoreSource at scrape time.
type storeCollector struct {
	consents, lag, next, size, inUse, attention, oldest *prometheus.Desc
	upcoming, upcomingAmount, amountMissing             *prometheus.Desc

	mu  sync.Mutex
	src StoreSource
	now func() time.Time
	// amountWarning is the horizon of billingd_variable_amount_missing.
	amountWarning time.Duration
}

// upcomingWindows are the windows of billingd_upcoming_charges and
// billingd_upcoming_amount_centavos.
var upcomingWindows = []struct {
	label string
	d     time.Duration
}{{"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}}

// SetAmountWarningDays sets the horizon of billingd_variable_amount_missing: variable
// cycles with no amount set whose submission is at most days away (the scheduler's
// amount_warning_days; default scheduler.DefaultAmountWarningDays). It does nothing
// on a nil *Metrics or for days < 1.
func (m *Metrics) SetAmountWarningDays(days int) {
	if m == nil || days < 1 {
		return
	}
	m.store.mu.Lock()
	m.store.amountWarning = time.Duration(days) * 24 * time.Hour
	m.store.mu.Unlock()
}

func newStoreCollector() *storeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	return &storeCollector{
		consents: d("consents", "Consents in the store, by state (active, awaiting_authorization, revoked, rejected, expired).", "state"),
		lag: d("scheduler_lag_seconds",
			"Age of the oldest due-index entry (submission, retry or re-send) not yet acted on; 0 when nothing is overdue."),
		next: d("next_submission_timestamp_seconds",
			"Unix time of the next due-index entry (submission, retry or re-send); 0 when none is scheduled."),
		size:  d("db_size_bytes", "Size of the bbolt database file."),
		inUse: d("db_inuse_bytes", "Bytes of the bbolt database file in use (size minus free pages)."),
		attention: d("attention_items",
			"Open attention items: attempts in state UNCONFIRMED, STUCK, MISSED, FAILED or SKIPPED that no operator has resolved (a level, not a count of events).", "state"),
		oldest: d("attention_oldest_seconds",
			"Age of the oldest open attention item of each state (since it entered the state); 0 when none.", "state"),
		upcoming: d("upcoming_charges",
			"Payment requests queued within the window from now (each consent's next cycle, planned local retries, re-sends; overdue ones included).", "window"),
		upcomingAmount: d("upcoming_amount_centavos",
			"Known amount, in centavos, of the payment requests queued within the window from now.", "window"),
		amountMissing: d("variable_amount_missing",
			"Variable cycles with no amount set whose submission is within the warning days (they will be SKIPPED unless one is set)."),
		amountWarning: time.Duration(scheduler.DefaultAmountWarningDays) * 24 * time.Hour,
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.consents, c.lag, c.next, c.size, c.inUse, c.attention, c.oldest, c.upcoming, c.upcomingAmount, c.amountMissing} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	src, now, warn := c.src, c.now, c.amountWarning
	c.mu.Unlock()
	if src == nil {
		return
	}
	// A scrape never waits long on the store: an unreachable etcd makes the store
	// gauges invalid for this scrape, not the scrape hang.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if counts, err := src.Counts(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.consents, err)
	} else {
		states := slices.Clone(storage.ConsentStates)
		for s := range counts { // a state this build does not know still shows
			if !slices.Contains(states, s) {
				states = append(states, s)
			}
		}
		slices.Sort(states)
		for _, s := range states {
			ch <- prometheus.MustNewConstMetric(c.consents, prometheus.GaugeValue, float64(counts[s]), string(s))
		}
	}

	t := now()
	if oldest, next, err := src.DueBounds(ctx, t); err != nil {
		ch <- prometheus.NewInvalidMetric(c.lag, err)
		ch <- prometheus.NewInvalidMetric(c.next, err)
	} else {
		lag := 0.0
		if !oldest.IsZero() && t.After(oldest) {
			lag = t.Sub(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag)
		ts := 0.0
		if !next.IsZero() {
			ts = unixSeconds(next)
		}
		ch <- prometheus.MustNewConstMetric(c.next, prometheus.GaugeValue, ts)
	}

	if counts, err := src.AttentionCounts(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.attention, err)
	} else {
		for _, s := range storage.AttentionStates {
			ch <- prometheus.MustNewConstMetric(c.attention, prometheus.GaugeValue, float64(counts[s]), string(s))
		}
	}

	if oldest, err := src.AttentionOldest(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.oldest, err)
	} else {
		for _, s := range storage.AttentionStates {
			age := 0.0
			if o, ok := oldest[s]; ok && t.After(o) {
				age = t.Sub(o).Seconds()
			}
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, string(s))
		}
	}

	untils := []time.Time{t.Add(warn)}
	for _, w := range upcomingWindows {
		untils = append(untils, t.Add(w.d))
	}
	if totals, err := src.DueTotals(ctx, untils...); err != nil {
		ch <- prometheus.NewInvalidMetric(c.upcoming, err)
		ch <- prometheus.NewInvalidMetric(c.upcomingAmount, err)
		ch <- prometheus.NewInvalidMetric(c.amountMissing, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.amountMissing, prometheus.GaugeValue, float64(totals[0].NoAmount))
		for i, w := range upcomingWindows {
			ch <- prometheus.MustNewConstMetric(c.upcoming, prometheus.GaugeValue, float64(totals[i+1].Charges), w.label)
			ch <- prometheus.MustNewConstMetric(c.upcomingAmount, prometheus.GaugeValue, float64(totals[i+1].Amount), w.label)
		}
	}

	sizer, ok := src.(storage.Sizer)
	if !ok {
		return
	}
	if st, err := sizer.Stats(ctx); err != nil {
		ch <- prometheus.NewInvalidMetric(c.size, err)
		ch <- prometheus.NewInvalidMetric(c.inUse, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(st.SizeBytes))
		ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(st.InUseBytes))
	}
}
