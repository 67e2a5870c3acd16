package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
)

// BenchmarkScanSubmit measures end-to-end submissions: each op is one consent's cycle
// submitted by a due scan (SUBMITTING synced, POST to the sandbox on loopback, answer
// recorded and synced), 64 workers, durable bbolt writes.
func BenchmarkScanSubmit(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := cycle.MustDate(2026, 3, 2).At(9, 0)
	clk := clock.NewFake(now)
	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: "ak", SecretKey: "sk", Logger: quiet})
	srv := httptest.NewServer(sb)
	defer srv.Close()
	// Klavi's Date headers reach the scheduler, as the daemon wires them: without
	// them its clock check finds no Klavi time and the scan pauses.
	var s *Scheduler
	hooks := klavi.Hooks{OnServerTime: func(server, local time.Time) {
		if s != nil {
			s.ObserveKlaviTime(server, local)
		}
	}}
	kc, err := klavi.New(klavi.Config{BaseURL: srv.URL, AccessKey: "ak", SecretKey: "sk", Timeout: 10 * time.Second,
		MaxAttempts: 3, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, RateLimit: 1e6, RateBurst: 10000},
		klavi.WithClock(clk), klavi.WithLogger(quiet), klavi.WithHooks(hooks))
	if err != nil {
		b.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(b.TempDir(), "b.db"), bolt.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	window, _ := time.ParseDuration(os.Getenv("BENCH_RECORD_WINDOW")) // 0: the default
	s, err = New(Config{Policy: Policy{LeadDays: 3, RetryMode: consent.Off}, SubmitHour: 0, Workers: 64, RecordWindow: window},
		db, kc, WithClock(clk), WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	due := cycle.DateOf(now).AddDays(3)
	var cs []*consent.Consent
	for i := 0; i < b.N; i++ {
		c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(fmt.Sprintf("urn:bench:c-%07d", i), cycle.Monthly, due, 99_90)}
		c.Billing.RetryMode = consent.Off
		if err := sb.AddConsent(&c.CreatedConsent); err != nil {
			b.Fatal(err)
		}
		cs = append(cs, c)
	}
	if _, _, err := s.AddConsents(context.Background(), cs, cycle.DateOf(now)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	ws := db.WriteStats()
	cpu := processCPU()
	start := time.Now()
	res, err := s.Scan(context.Background())
	if err != nil || res.Handled != b.N || res.Errors != 0 {
		b.Fatalf("scan: %+v %v", res, err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "submissions/s")
	// CPU time of the whole process (the sandbox's handlers included) per
	// submission: less moved than the rate by a machine that lends its CPUs.
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
	// The write path's shape: how many submissions share a write transaction (each
	// submission has two writes, SUBMITTING and its answer), and bbolt's page writes
	// (one pwrite each) per submission.
	we := db.WriteStats()
	b.ReportMetric(float64(b.N)/float64(max(1, we.Transactions-ws.Transactions)), "submissions/tx")
	b.ReportMetric(float64(we.PagesWritten-ws.PagesWritten)/float64(b.N), "pages/op")
	if got := sb.Stats().Accepted[sandbox.KindOriginal]; got != b.N {
		b.Fatalf("sandbox accepted %d of %d", got, b.N)
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUpcoming measures GET /v1/upcoming's work for the default 8 days over
// BENCH_CONSENTS monthly consents (default 100,000) whose due dates spread over 30
// days: the due index up to the range's end, then each consent found (record,
// attempts) and its plan.
func BenchmarkUpcoming(b *testing.B) {
	s, _, now, _ := benchScheduler(b)
	var err error
	b.ResetTimer()
	var up *Upcoming
	for b.Loop() {
		if up, err = s.Upcoming(cycle.DateOf(now), cycle.DateOf(now).AddDays(7)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(up.Items)), "items")
}

// BenchmarkRefreshIdle measures a run of the consent refresh job (every 5 minutes by
// default) when no consent needs reading at Klavi: BENCH_CONSENTS active consents, all
// refreshed recently, none awaiting authorization. sweep=1 forces the sweep of the
// active consents each run (what every run did before sweeps were spaced by
// RefreshEvery/24 and skipped when no consent awaits authorization).
func BenchmarkRefreshIdle(b *testing.B) {
	s, db, now, n := benchScheduler(b)
	// Every consent was read at Klavi a moment ago: nothing is stale.
	recs, err := db.ListConsents(context.Background(), "", n, storage.ConsentActive)
	if err != nil {
		b.Fatal(err)
	}
	var chs []*storage.Change
	for _, r := range recs {
		r.RefreshedAt = now
		chs = append(chs, &storage.Change{Cursor: r})
	}
	if _, err := db.ApplyAll(context.Background(), chs); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Refresh(context.Background()); err != nil { // the first run sweeps
		b.Fatal(err)
	}
	for _, sweep := range []bool{false, true} {
		b.Run(fmt.Sprintf("sweep=%t", sweep), func(b *testing.B) {
			for b.Loop() {
				if sweep {
					s.refreshMu.Lock()
					s.lastActiveSweep = time.Time{}
					s.refreshMu.Unlock()
				}
				if res, err := s.Refresh(context.Background()); err != nil || res.Read != 0 {
					b.Fatalf("refresh: %+v, %v", res, err)
				}
			}
		})
	}
}

// benchScheduler is a scheduler over a new bbolt file holding BENCH_CONSENTS (default
// 100,000) active monthly consents whose due dates spread over the 30 days after
// day 4 from now.
func benchScheduler(b *testing.B) (*Scheduler, *bolt.Store, time.Time, int) {
	b.Helper()
	n := 100_000
	if v := os.Getenv("BENCH_CONSENTS"); v != "" {
		fmt.Sscan(v, &n)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := cycle.MustDate(2026, 3, 2).At(8, 0)
	db, err := bolt.Open(filepath.Join(b.TempDir(), "b.db"), bolt.Options{Logger: quiet, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	s, err := New(Config{Policy: Policy{LeadDays: 3, RetryMode: consent.Off}, SubmitHour: 9}, db, nil, WithClock(clock.NewFake(now)), WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 50_000 {
		var cs []*consent.Consent
		for j := i; j < min(i+50_000, n); j++ {
			cs = append(cs, &consent.Consent{CreatedConsent: *sandbox.SampleConsent(fmt.Sprintf("urn:bench:c-%07d", j), cycle.Monthly, cycle.DateOf(now).AddDays(4+j%30), 99_90)})
		}
		if _, _, err := s.AddConsents(context.Background(), cs, cycle.DateOf(now)); err != nil {
			b.Fatal(err)
		}
	}
	return s, db, now, n
}
