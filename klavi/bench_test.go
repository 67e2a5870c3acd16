package klavi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// callers is the number of concurrent callers of the loopback benchmarks.
const callers = 64

// runCallers runs b.N calls of f spread over callers goroutines and reports req/s.
func runCallers(b *testing.B, f func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	for range callers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := f(i); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkCreatePayment_Sandbox: create-payment round trips through the client
// (validation, rate limiter, token, JSON) to the sandbox on a loopback TCP server,
// 64 callers, each payment under its own consent.
func BenchmarkCreatePayment_Sandbox(b *testing.B) {
	clk := clock.NewFake(cycle.MustDate(2026, 2, 25).At(10, 0))
	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: accessKey, SecretKey: secretKey})
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("urn:bench:consent-%d", i)
		if err := sb.AddConsent(sandbox.SampleConsent(ids[i], cycle.Monthly, cycle.MustDate(2026, 2, 5), 9990)); err != nil {
			b.Fatal(err)
		}
	}
	ts := httptest.NewServer(sb)
	defer ts.Close()
	cfg := config(ts.URL)
	cfg.MaxAttempts, cfg.RateLimit, cfg.RateBurst = 1, 1e9, 1<<30
	kc, err := klavi.New(cfg, klavi.WithClock(clk))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := kc.GetPaymentStatus(ctx, ids[0], "urn:bench:none"); err == nil { // buys the token
		b.Fatal("want a 404")
	}
	date := cycle.MustDate(2026, 3, 5)
	runCallers(b, func(i int) error {
		_, err := kc.CreatePayment(ctx, ids[i], &klavi.CreatePaymentRequest{
			ClientRequestID: fmt.Sprintf("bench-%d", i), Date: date, Amount: 9990, Currency: klavi.Currency,
		})
		return err
	})
	if n := sb.Stats().Accepted[sandbox.KindOriginal]; n != b.N {
		b.Fatalf("sandbox accepted %d payments, want %d", n, b.N)
	}
}

// BenchmarkTrivialHandler_Loopback: the same harness against a handler that only
// answers {}: the machine's ceiling for HTTP round trips on loopback.
func BenchmarkTrivialHandler_Loopback(b *testing.B) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
	}))
	defer ts.Close()
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = 128, 64
	hc := &http.Client{Transport: t, Timeout: 5 * time.Second}
	body := []byte(`{"clientRequestId":"bench-0","date":"2026-03-05","amount":"99.90","currency":"BRL"}`)
	runCallers(b, func(int) error {
		resp, err := hc.Post(ts.URL+"/x", "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	})
}

// BenchmarkCreatePayment_SandboxHandler: the sandbox's own cost per create, without
// the network or the client (ServeHTTP on a recorder), 64 callers.
func BenchmarkCreatePayment_SandboxHandler(b *testing.B) {
	clk := clock.NewFake(cycle.MustDate(2026, 2, 25).At(10, 0))
	sb := sandbox.New(sandbox.Options{Clock: clk})
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("urn:bench:consent-%d", i)
		if err := sb.AddConsent(sandbox.SampleConsent(ids[i], cycle.Monthly, cycle.MustDate(2026, 2, 5), 9990)); err != nil {
			b.Fatal(err)
		}
	}
	rec := httptest.NewRecorder()
	sb.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/payment/customer/v1/auth", strings.NewReader(`{"accessKey":"a","secretKey":"b"}`)))
	tok := strings.Split(rec.Body.String(), `"`)[3]
	runCallers(b, func(i int) error {
		req := httptest.NewRequest(http.MethodPost, "/payment/customer/v1/automatic/consents/"+ids[i]+"/payments",
			strings.NewReader(fmt.Sprintf(`{"clientRequestId":"bench-%d","date":"2026-03-05","amount":"99.90","currency":"BRL"}`, i)))
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		sb.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			return fmt.Errorf("status %d: %s", rec.Code, rec.Body)
		}
		return nil
	})
}

// BenchmarkDecodePayment: one create-payment answer (seed 004's example) read into a
// Payment (its UnmarshalJSON, where the client's decoding of a 2xx answer leads).
func BenchmarkDecodePayment(b *testing.B) {
	raw, err := os.ReadFile("testdata/seed004_payment.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var p klavi.Payment
		if err := p.UnmarshalJSON(raw); err != nil {
			b.Fatal(err)
		}
	}
}
