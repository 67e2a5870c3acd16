package sandbox_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// BenchmarkCreatePayment measures POST .../payments through the handler (no
// network), one payment per consent, in memory and with a journal (one fsync per
// answer when serial; shared fsyncs when parallel).
//
//	go test -run '^$' -bench CreatePayment -benchtime 2000x ./klavi/sandbox/
func BenchmarkCreatePayment(b *testing.B) {
	for _, journal := range []bool{false, true} {
		for _, parallel := range []bool{false, true} {
			name := map[bool]string{false: "memory", true: "journal"}[journal] + map[bool]string{false: "", true: "/parallel"}[parallel]
			b.Run(name, func(b *testing.B) {
				opts := sandbox.Options{Clock: clock.NewFake(start), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				if journal {
					opts.Journal = filepath.Join(b.TempDir(), "j")
				}
				sb, err := sandbox.Open(opts)
				if err != nil {
					b.Fatal(err)
				}
				defer sb.Close()
				cs := make([]*klavi.CreatedConsent, b.N)
				for i := range cs {
					cs[i] = sandbox.SampleConsent(fmt.Sprintf("urn:bench:c%d", i), cycle.Monthly, day("2026-02-05"), 9990)
				}
				if err := sb.AddConsent(cs...); err != nil {
					b.Fatal(err)
				}
				tok := benchToken(b, sb)
				var next atomic.Int64
				create := func() {
					i := next.Add(1) - 1
					req := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/payment/customer/v1/automatic/consents/urn:bench:c%d/payments", i),
						strings.NewReader(fmt.Sprintf(`{"clientRequestId":"b-%d","date":"2026-03-05","amount":"99.90","currency":"BRL"}`, i)))
					req.Header.Set("Authorization", "Bearer "+tok)
					w := httptest.NewRecorder()
					sb.ServeHTTP(w, req)
					if w.Code != 201 {
						b.Fatalf("create: %d %s", w.Code, w.Body)
					}
				}
				b.ResetTimer()
				if parallel {
					b.SetParallelism(8)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							create()
						}
					})
				} else {
					for range b.N {
						create()
					}
				}
			})
		}
	}
}

func benchToken(b *testing.B, sb *sandbox.Server) string {
	req := httptest.NewRequest(http.MethodPost, "/payment/customer/v1/auth", strings.NewReader(`{"accessKey":"a","secretKey":"s"}`))
	w := httptest.NewRecorder()
	sb.ServeHTTP(w, req)
	var out struct{ AccessToken string }
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		b.Fatal(err)
	}
	return out.AccessToken
}

// BenchmarkStats measures Stats (what GET /_sandbox/stats serves) with ledgers of
// different sizes: its cost does not grow with the ledger.
//
//	go test -run '^$' -bench Stats ./klavi/sandbox/
func BenchmarkStats(b *testing.B) {
	for _, n := range []int{1_000, 50_000} {
		b.Run(fmt.Sprintf("ledger=%d", n), func(b *testing.B) {
			clk := clock.NewFake(start)
			sb := sandbox.New(sandbox.Options{Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			defer sb.Close()
			cs := make([]*klavi.CreatedConsent, n)
			for i := range cs {
				cs[i] = sandbox.SampleConsent(fmt.Sprintf("urn:bench:c%d", i), cycle.Monthly, day("2026-02-05"), 9990)
			}
			if err := sb.AddConsent(cs...); err != nil {
				b.Fatal(err)
			}
			tok := benchToken(b, sb)
			for i := range n {
				req := httptest.NewRequest(http.MethodPost, fmt.Sprintf("/payment/customer/v1/automatic/consents/urn:bench:c%d/payments", i),
					strings.NewReader(fmt.Sprintf(`{"clientRequestId":"b-%d","date":"2026-03-05","amount":"99.90","currency":"BRL"}`, i)))
				req.Header.Set("Authorization", "Bearer "+tok)
				w := httptest.NewRecorder()
				sb.ServeHTTP(w, req)
				if w.Code != 201 {
					b.Fatalf("create: %d %s", w.Code, w.Body)
				}
			}
			clk.Advance(time.Second)
			b.ResetTimer()
			for range b.N {
				if st := sb.Stats(); st.Accepted[sandbox.KindOriginal] != n {
					b.Fatalf("accepted %d, want %d", st.Accepted[sandbox.KindOriginal], n)
				}
			}
		})
	}
}
