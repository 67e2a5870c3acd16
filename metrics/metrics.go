package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
)

const namespace = "billingd"

// Label values for billingd_amount_centavos_total and billingd_klavi_token_refreshes_total.
const (
	outcomeSubmitted = "submitted"
	outcomeCompleted = "completed"
	outcomeRejected  = "rejected"
	outcomeOK        = "ok"
	outcomeError     = "error"
)

// Label values used when an input falls outside its known set.
const (
	unknownLabel  = "unknown"
	otherRejected = "OTHER"
)

// klaviBuckets spans 1 ms to 30 s: a healthy call takes tens of milliseconds, the
// client's per-request timeout is 15 s by default.
var klaviBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30}

// runBuckets spans 10 ms to 10 min: an idle scan reads one index page; the scan at a
// busy submit time sends thousands of payments under the client's rate limit.
var runBuckets = []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Metrics holds billingd's collectors and the private registry they live in. Build it
// with New. The recording methods (Observe, KlaviRequest, TokenRefresh, ScanDone,
// PollDone) are safe for concurrent use, and do nothing on a nil *Metrics, so a
// command that runs without metrics can pass a nil one.
type Metrics struct {
	reg *prometheus.Registry
	// leader is registered on the first role change: a single process has none.
	leader     leaderMetrics
	leaderOnce sync.Once
	clock      clock.Clock
	log        *slog.Logger

	submitted   *prometheus.CounterVec // interval, mode
	completed   *prometheus.CounterVec // interval
	rejected    *prometheus.CounterVec // interval, reason
	unconfirmed *prometheus.CounterVec // interval
	missed      *prometheus.CounterVec // interval
	skipped     *prometheus.CounterVec // interval
	failed      *prometheus.CounterVec // interval
	resent      prometheus.Counter
	stuck       *prometheus.CounterVec // interval
	canceled    prometheus.Counter
	mismatches  *prometheus.CounterVec // field
	lookups     *prometheus.CounterVec // lookup, outcome

	retriesPlanned *prometheus.CounterVec // mode
	retriesSent    *prometheus.CounterVec // mode
	retriesDropped prometheus.Counter

	amount *prometheus.CounterVec // outcome

	klaviRequests *prometheus.CounterVec   // endpoint, code
	klaviDuration *prometheus.HistogramVec // endpoint
	tokenRefresh  *prometheus.CounterVec   // outcome

	scanDuration    prometheus.Histogram
	pollDuration    prometheus.Histogram
	scanLastSuccess prometheus.Gauge
	pollLastSuccess prometheus.Gauge
	scanErrors      prometheus.Counter

	storeWriteErrors *prometheus.CounterVec // reason
	storeHealthy     prometheus.Gauge

	store       *storeCollector
	clockGauges *clockCollector
	// webhooks is registered by the first WatchWebhooks or WebhookHooks.
	webhooks     *webhookCollector
	webhooksOnce sync.Once
}

// An Option changes a Metrics built by New.
type Option func(*Metrics)

// WithClock sets the clock of the *_last_success_timestamp_seconds gauges (nil: the
// real clock). `billingd simulate` passes its virtual clock.
func WithClock(c clock.Clock) Option { return func(m *Metrics) { m.clock = clock.Or(c) } }

// WithLogger sets the logger of scrape errors (nil: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(m *Metrics) {
		if l != nil {
			m.log = l
		}
	}
}

// New returns billingd's metrics in a new private registry, with the Go and process
// collectors and billingd_build_info{version,revision,goversion}. version and
// revision are what `billingd version` prints; empty values are kept as empty labels.
func New(version, revision string, opts ...Option) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), clock: clock.Real{}, log: slog.Default()}
	for _, o := range opts {
		o(m)
	}
	f := factory{m.reg}

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "A constant 1, labeled with the version, VCS revision and Go version billingd was built with.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(buildInfo)

	m.submitted = f.counterVec("payments_submitted_total",
		"Original payments (one per cycle) accepted by Klavi, by interval and retry mode.", "interval", "mode")
	m.completed = f.counterVec("payments_completed_total",
		"Payments, original or local retry, that Klavi reports PAYMENT_COMPLETED.", "interval")
	m.rejected = f.counterVec("payments_rejected_total",
		"Payments, original or local retry, that ended rejected, canceled or in error, by Klavi reason code (or final status when Klavi gave no reason).", "interval", "reason")
	m.unconfirmed = f.counterVec("payments_unconfirmed_total",
		"Submissions left UNCONFIRMED: the outcome unknown and Klavi's orders list unreadable when the window closed; they are looked up again every scheduler.reconcile_every.", "interval")
	m.missed = f.counterVec("payments_missed_total",
		"Cycles whose submission window (D-10..D-2) closed before billingd could submit them.", "interval")
	m.skipped = f.counterVec("payments_skipped_total",
		"Cycles not submitted on purpose (a variable consent with no amount set for the cycle).", "interval")
	m.failed = f.counterVec("payments_failed_total",
		"Submissions Klavi refused (4xx other than 409): no payment was created.", "interval")
	m.resent = f.counter("submissions_resent_total",
		"Submissions whose outcome is unknown for now (timeout, 5xx) and will be re-sent with the same clientRequestId.")

	m.stuck = f.counterVec("payments_stuck_total",
		"Payments that became STUCK: their status stayed unknown (404 or an unknown status) past scheduler.stuck_after and Klavi's orders list did not settle it.", "interval")
	m.canceled = f.counter("payments_canceled_total",
		"Scheduled payments canceled at Klavi (a consent revoked, or an operator's cancel).")
	m.mismatches = f.counterVec("payment_mismatches_total",
		"Klavi answers whose payment is not the one billingd asked for, by what differs (field: amount, date, or amount_and_date): each create or retry answer, orders list entry or status poll that shows it counts once.", "field")
	m.lookups = f.counterVec("reconciliation_lookups_total",
		"Reads of Klavi's orders list for an attempt's clientRequestId, by what the list said (lookup: found, not_found, unavailable) and what the attempt became (outcome: adopted, refused, resent, confirm, lapsed, unresolved).", "lookup", "outcome")

	m.retriesPlanned = f.counterVec("retries_planned_total",
		"Retries planned: mode=local counts retries billingd scheduled itself; mode=attach counts the retry dates attach-mode payments hand to Klavi in their autoRetryStrategy.", "mode")
	m.retriesSent = f.counterVec("retries_sent_total",
		"Local retries accepted by Klavi.", "mode")
	m.retriesDropped = f.counter("retries_dropped_total",
		"Planned local retries that could not be sent (their request day passed, or the consent stopped).")

	m.amount = f.counterVec("amount_centavos_total",
		"Sum of payment amounts in centavos: submitted (original submissions), completed and rejected (every final payment, retries included).", "outcome")

	m.klaviRequests = f.counterVec("klavi_requests_total",
		"HTTP requests to the Klavi API, by endpoint and status code (\"error\" for a transport error).", "endpoint", "code")
	m.klaviDuration = f.histogramVec("klavi_request_duration_seconds",
		"Duration of HTTP requests to the Klavi API, by endpoint.", klaviBuckets, "endpoint")
	m.tokenRefresh = f.counterVec("klavi_token_refreshes_total",
		"Klavi access token requests, by outcome (ok or error).", "outcome")

	m.scanDuration = f.histogram("due_scan_duration_seconds",
		"Duration of due scans (submit what is due).", runBuckets)
	m.pollDuration = f.histogram("status_poll_duration_seconds",
		"Duration of status polls (fetch the status of payments not yet final).", runBuckets)
	m.scanLastSuccess = f.gauge("due_scan_last_success_timestamp_seconds",
		"Unix time the last due scan that read the whole due index ended.")
	m.pollLastSuccess = f.gauge("status_poll_last_success_timestamp_seconds",
		"Unix time the last status poll that read the whole poll index ended.")
	m.scanErrors = f.counter("due_scan_errors_total",
		"Due scans that failed, plus due entries a scan left for the next one because of an error.")

	m.storeWriteErrors = f.counterVec("store_write_errors_total",
		"Writes to the database that failed, by reason: enospc (no space left), replaced (the file was replaced or removed while open), readonly (read-only file system or no permission), other.", "reason")
	m.storeHealthy = f.gauge("store_healthy",
		"1 while the database takes writes, 0 from a failed write until a write succeeds again (the daemon is not ready meanwhile).")
	m.storeHealthy.Set(1)

	m.store = newStoreCollector()
	m.reg.MustRegister(m.store)
	m.clockGauges = &clockCollector{
		skew: prometheus.NewDesc(namespace+"_clock_skew_seconds",
			"The local clock minus Klavi's (the Date header of its last answer); positive: the local clock is ahead.", nil, nil),
		doubt: prometheus.NewDesc(namespace+"_clock_in_doubt",
			"1 while the clock disagrees with Klavi's or stepped back past the latest instant acted on: no submission, MISSED or FAILED is decided.", nil, nil),
	}
	m.reg.MustRegister(m.clockGauges)

	m.init()
	return m
}

// init creates the series whose label values are all known, at zero.
func (m *Metrics) init() {
	for _, iv := range cycle.Intervals {
		l := iv.String()
		for _, mode := range []consent.RetryMode{consent.Attach, consent.Local, consent.Off} {
			m.submitted.WithLabelValues(l, string(mode))
		}
		for _, v := range []*prometheus.CounterVec{m.completed, m.unconfirmed, m.missed, m.skipped, m.failed, m.stuck} {
			v.WithLabelValues(l)
		}
		// Rejections by every known reason (and the final statuses without one) exist
		// at zero, so a rate or an alert over them has data before the first one.
		for _, r := range klavi.ReasonCodes {
			m.rejected.WithLabelValues(l, string(r))
		}
		for _, st := range []klavi.PaymentStatus{klavi.PaymentRejected, klavi.PaymentCanceled, klavi.PaymentError} {
			m.rejected.WithLabelValues(l, string(st))
		}
	}
	m.retriesPlanned.WithLabelValues(string(consent.Attach))
	m.retriesPlanned.WithLabelValues(string(consent.Local))
	m.retriesSent.WithLabelValues(string(consent.Local))
	for _, o := range []string{outcomeSubmitted, outcomeCompleted, outcomeRejected} {
		m.amount.WithLabelValues(o)
	}
	for _, o := range []string{"found:adopted", "not_found:refused", "not_found:resent", "not_found:confirm", "not_found:lapsed", "unavailable:resent", "unavailable:unresolved"} {
		lookup, outcome, _ := strings.Cut(o, ":")
		m.lookups.WithLabelValues(lookup, outcome)
	}
	for _, f := range []string{"amount", "date", "amount_and_date"} {
		m.mismatches.WithLabelValues(f)
	}
	m.tokenRefresh.WithLabelValues(outcomeOK)
	m.tokenRefresh.WithLabelValues(outcomeError)
	for _, r := range storeWriteReasons {
		m.storeWriteErrors.WithLabelValues(r)
	}
}

// storeWriteReasons are the values of storage.FailureReason, the reason label of
// billingd_store_write_errors_total.
var storeWriteReasons = []string{"enospc", "replaced", "readonly", "other"}

// StoreWrite records the outcome of a write to the database (storage.Options.OnWrite
// hands it over): a failure counts in billingd_store_write_errors_total{reason} and
// sets billingd_store_healthy to 0; a success sets it back to 1.
func (m *Metrics) StoreWrite(err error) {
	if m == nil {
		return
	}
	if err == nil {
		m.storeHealthy.Set(1)
		return
	}
	m.storeWriteErrors.WithLabelValues(storage.FailureReason(err)).Inc()
	m.storeHealthy.Set(0)
}

// Registry returns the private registry, for tests that gather from it and for
// collectors a caller adds itself.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats (GET /metrics).
// A collector that fails (the store could not be read) is logged and left out of that
// scrape; the rest is still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slogPrintln{m.log},
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// Observe records one scheduler event. Pass it to scheduler.WithObserver.
func (m *Metrics) Observe(e scheduler.Event) {
	if m == nil {
		return
	}
	iv := intervalLabel(e.Interval)
	switch e.Kind {
	case scheduler.EventSubmitted:
		mode := modeLabel(e.Mode)
		m.submitted.WithLabelValues(iv, mode).Inc()
		m.amount.WithLabelValues(outcomeSubmitted).Add(float64(e.Amount))
		if e.Mode == consent.Attach && e.Retries > 0 {
			m.retriesPlanned.WithLabelValues(mode).Add(float64(e.Retries))
		}
	case scheduler.EventRetrySubmitted:
		mode := string(consent.Local) // only billingd's own retries are sent as retries
		if e.Mode != "" {
			mode = modeLabel(e.Mode)
		}
		m.retriesSent.WithLabelValues(mode).Inc()
	case scheduler.EventCompleted:
		m.completed.WithLabelValues(iv).Inc()
		m.amount.WithLabelValues(outcomeCompleted).Add(float64(e.Amount))
	case scheduler.EventRejected:
		m.rejected.WithLabelValues(iv, reasonLabel(e.Reason, e.Status)).Inc()
		m.amount.WithLabelValues(outcomeRejected).Add(float64(e.Amount))
	case scheduler.EventUnconfirmed:
		m.unconfirmed.WithLabelValues(iv).Inc()
	case scheduler.EventMissed:
		m.missed.WithLabelValues(iv).Inc()
	case scheduler.EventSkipped:
		m.skipped.WithLabelValues(iv).Inc()
	case scheduler.EventFailed:
		m.failed.WithLabelValues(iv).Inc()
	case scheduler.EventResend:
		m.resent.Inc()
	case scheduler.EventRetryPlanned:
		m.retriesPlanned.WithLabelValues(string(consent.Local)).Inc()
	case scheduler.EventRetryDropped:
		m.retriesDropped.Inc()
	case scheduler.EventStuck:
		m.stuck.WithLabelValues(iv).Inc()
	case scheduler.EventCanceled:
		m.canceled.Inc()
	case scheduler.EventMismatch:
		amount, date := strings.Contains(e.Reason, "amount: "), strings.Contains(e.Reason, "date: ")
		field := "amount"
		switch {
		case amount && date:
			field = "amount_and_date"
		case date:
			field = "date"
		}
		m.mismatches.WithLabelValues(field).Inc()
	case scheduler.EventLookup:
		lookup, outcome, ok := strings.Cut(e.Reason, ":")
		if !ok {
			lookup, outcome = "unknown", "unknown"
		}
		m.lookups.WithLabelValues(lookup, outcome).Inc()
	}
	// EventConsentStopped shows in billingd_consents{state} at the next scrape.
}

// KlaviRequest records one HTTP attempt to Klavi: its endpoint name ("create_payment"),
// status code ("201", or "error" for a transport error) and duration. It matches
// klavi.Hooks.OnRequest.
func (m *Metrics) KlaviRequest(endpoint, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.klaviRequests.WithLabelValues(endpoint, code).Inc()
	m.klaviDuration.WithLabelValues(endpoint).Observe(d.Seconds())
}

// TokenRefresh records one access token request and its error (nil: ok). It matches
// klavi.Hooks.OnTokenRefresh.
func (m *Metrics) TokenRefresh(err error) {
	if m == nil {
		return
	}
	o := outcomeOK
	if err != nil {
		o = outcomeError
	}
	m.tokenRefresh.WithLabelValues(o).Inc()
}

// KlaviHooks returns klavi client hooks that record into m.
func (m *Metrics) KlaviHooks() klavi.Hooks {
	return klavi.Hooks{OnRequest: m.KlaviRequest, OnTokenRefresh: m.TokenRefresh}
}

// ScanDone records one due scan: its duration; when err is nil, the time it ended
// (due_scan_last_success_timestamp_seconds); each failed scan and each entry left
// for the next scan (res.Errors) count in due_scan_errors_total. It matches
// scheduler.Hooks.AfterScan.
func (m *Metrics) ScanDone(d time.Duration, res scheduler.ScanResult, err error) {
	if m == nil {
		return
	}
	m.scanDuration.Observe(d.Seconds())
	n := res.Errors
	if err != nil {
		n++
	} else {
		m.scanLastSuccess.Set(unixSeconds(m.clock.Now()))
	}
	if n > 0 {
		m.scanErrors.Add(float64(n))
	}
}

// PollDone records one status poll: its duration and, when err is nil, the time it
// ended. A failed status fetch of one payment (res.Errors) is retried by the next
// poll with backoff and shows in billingd_klavi_requests_total. It matches
// scheduler.Hooks.AfterPoll.
func (m *Metrics) PollDone(d time.Duration, _ scheduler.PollResult, err error) {
	if m == nil {
		return
	}
	m.pollDuration.Observe(d.Seconds())
	if err == nil {
		m.pollLastSuccess.Set(unixSeconds(m.clock.Now()))
	}
}

// SchedulerHooks returns scheduler hooks that record into m.
func (m *Metrics) SchedulerHooks() scheduler.Hooks {
	return scheduler.Hooks{AfterScan: m.ScanDone, AfterPoll: m.PollDone}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// intervalLabel is the interval's API name (MONTHLY), or "unknown".
func intervalLabel(iv cycle.Interval) string {
	if !iv.Valid() {
		return unknownLabel
	}
	return iv.String()
}

// modeLabel is attach, local or off, or "unknown".
func modeLabel(m consent.RetryMode) string {
	switch m {
	case consent.Attach, consent.Local, consent.Off:
		return string(m)
	}
	return unknownLabel
}

// reasonLabel is the Klavi reason code of a rejection, else its final status, else
// "OTHER": the label never takes a free-text value.
func reasonLabel(reason string, status klavi.PaymentStatus) string {
	switch {
	case klavi.ReasonCode(reason).Valid():
		return reason
	case klavi.PaymentStatus(reason).Valid():
		return reason
	case reason == "" && status.Valid():
		return string(status)
	}
	return otherRejected
}

// factory registers collectors in the billingd namespace of one registry.
type factory struct{ reg prometheus.Registerer }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// slogPrintln adapts a slog.Logger to promhttp's error log.
type slogPrintln struct{ l *slog.Logger }

func (p slogPrintln) Println(v ...any) {
	p.l.Error("metrics scrape", "err", fmt.Sprint(v...))
}

// ClockReading is what the clock gauges show: the local clock minus Klavi's, and
// whether decisions are paused because of it.
type ClockReading func() (skew time.Duration, seen, doubt bool)

// WatchClock makes every scrape read fn: billingd_clock_skew_seconds (left out until
// Klavi's time has been read) and billingd_clock_in_doubt. A nil fn stops them. It
// does nothing on a nil *Metrics.
func (m *Metrics) WatchClock(fn ClockReading) {
	if m == nil {
		return
	}
	m.clockGauges.mu.Lock()
	m.clockGauges.fn = fn
	m.clockGauges.mu.Unlock()
}

type clockCollector struct {
	skew, doubt *prometheus.Desc
	mu          sync.Mutex
	fn          ClockReading
}

func (c *clockCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.skew; ch <- c.doubt }

func (c *clockCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	fn := c.fn
	c.mu.Unlock()
	if fn == nil {
		return
	}
	skew, seen, doubt := fn()
	if seen {
		ch <- prometheus.MustNewConstMetric(c.skew, prometheus.GaugeValue, skew.Seconds())
	}
	v := 0.0
	if doubt {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(c.doubt, prometheus.GaugeValue, v)
}
