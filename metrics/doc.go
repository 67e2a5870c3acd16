// Package metrics is billingd's Prometheus instrumentation: one private registry
// (never the global one), the Go and process collectors, billingd_build_info, and the
// collectors that answer an operator's questions.
//
// # Wiring
//
// The package records nothing by itself; the daemon hands its methods to the parts it
// observes, each of which declares its own hook type:
//
//	m := metrics.New(version, revision)                             // Go, process, build info
//	kc, _ := klavi.New(cfg, klavi.WithHooks(m.KlaviHooks()))         // API calls, tokens
//	s, _ := scheduler.New(cfg, db, kc, scheduler.WithObserver(m.Observe)) // payments, retries
//	s.Start(scan, poll, m.SchedulerHooks())                         // scan and poll runs
//	m.WatchStore(db, clk.Now)                                        // read at scrape
//	mux.Handle("GET /metrics", m.Handler())
//
// Recording methods are safe for concurrent use and never block on I/O. The store
// gauges are read from the StoreSource at scrape time, so they are never stale and
// cost nothing between scrapes.
//
// # Contract
//
// Metric names and label sets are a contract with the dashboard
// (deploy/grafana/billingd.json) and the alert rules (deploy/prometheus/alerts.yaml);
// a test checks that every billingd_ name those files use is registered here. Labels
// are low-cardinality only: interval (WEEKLY … YEARLY), retry mode (attach, local,
// off), outcome, consent state, Klavi endpoint, HTTP code and Klavi reason code or
// payment status. A consent id, payment id or clientRequestId is never a label.
// Label values outside their known set are recorded as "unknown" (interval, mode) or
// "OTHER" (rejection reason), so a bad input cannot grow the series count.
//
// Series whose label values are all known in advance (payments by interval and mode,
// token refresh outcomes, consent states) exist from the start at zero, so rate() and
// increase() see the first event.
//
// # Counting
//
// Payment counters count Klavi payments, not cycles: a local retry is a payment of
// its own and, when it settles or is rejected, is counted in completed or rejected
// like the original. billingd_payments_submitted_total counts original submissions
// only (one per cycle); local retries sent are billingd_retries_sent_total.
// billingd_amount_centavos_total{outcome="submitted"} is the sum charged by original
// submissions; "completed" and "rejected" sum every final payment, retries included.
//
// billingd_retries_planned_total{mode="local"} counts retries billingd scheduled
// itself; {mode="attach"} counts the retry dates attach-mode payments hand to Klavi
// in their autoRetryStrategy (Event.Retries), which Klavi runs if they fail.
package metrics
