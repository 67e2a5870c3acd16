package sandbox_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

func TestParseFaults(t *testing.T) {
	f, err := sandbox.ParseFaults("latency=20ms,5xx=0.05,429=0.02,timeout=0.01,drop=0.01,seed=42")
	require.NoError(t, err)
	assert.Equal(t, sandbox.Faults{Latency: 20 * time.Millisecond, Err5xx: 0.05, Err429: 0.02, Timeout: 0.01, Drop: 0.01, Seed: 42}, f)
	again, err := sandbox.ParseFaults(f.String())
	require.NoError(t, err)
	assert.Equal(t, f, again)

	f, err = sandbox.ParseFaults(" 429=1 , retry-after=3s ")
	require.NoError(t, err)
	assert.Equal(t, sandbox.Faults{Err429: 1, RetryAfter: 3 * time.Second}, f)

	none, err := sandbox.ParseFaults("")
	require.NoError(t, err)
	assert.Equal(t, sandbox.Faults{}, none)

	for spec, msg := range map[string]string{
		"5xx":                 "not key=value",
		"jitter=1":            "unknown key",
		"5xx=lots":            "5xx",
		"drop=1.5":            "between 0 and 1",
		"5xx=0.6,timeout=0.5": "add up to",
		"latency=-1s":         "negative",
		"seed=-1":             "seed",
	} {
		_, err := sandbox.ParseFaults(spec)
		require.Error(t, err, spec)
		assert.Contains(t, err.Error(), msg, spec)
	}
}

// status sends n GETs of the ledger-less API endpoint and returns the statuses.
func statuses(t *testing.T, sb *sandbox.Server, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/payment/customer/v1/auth", strings.NewReader(`{"accessKey":"a","secretKey":"b"}`))
		sb.ServeHTTP(rec, req)
		out[i] = rec.Code
	}
	return out
}

func TestFaults_DeterministicBySeed(t *testing.T) {
	a := statuses(t, sandbox.New(sandbox.Options{Faults: sandbox.Faults{Err5xx: 0.3, Err429: 0.2, Seed: 7}}), 200)
	b := statuses(t, sandbox.New(sandbox.Options{Faults: sandbox.Faults{Err5xx: 0.3, Err429: 0.2, Seed: 7}}), 200)
	c := statuses(t, sandbox.New(sandbox.Options{Faults: sandbox.Faults{Err5xx: 0.3, Err429: 0.2, Seed: 8}}), 200)
	assert.Equal(t, a, b, "same seed, same faults")
	assert.NotEqual(t, a, c)
	count := map[int]int{}
	for _, s := range a {
		count[s]++
	}
	assert.InDelta(t, 60, count[503], 25)
	assert.InDelta(t, 40, count[429], 20)
	assert.Equal(t, 200, count[503]+count[429]+count[200])
}

func TestFaults_Kinds(t *testing.T) {
	t.Run("5xx", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{Faults: sandbox.Faults{Err5xx: 1}})
		_, err := h.kc.GetPayment(context.Background(), monthly, "urn:x:1")
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.Equal(t, 503, ae.StatusCode)
		assert.Equal(t, 1, h.sb.Stats().Faults[sandbox.Fault5xx], "the auth request met it")
	})
	t.Run("429 with Retry-After", func(t *testing.T) {
		sb := sandbox.New(sandbox.Options{Faults: sandbox.Faults{Err429: 1, RetryAfter: 2500 * time.Millisecond}})
		rec := httptest.NewRecorder()
		sb.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/payment/customer/v1/auth", strings.NewReader(`{}`)))
		assert.Equal(t, 429, rec.Code)
		assert.Equal(t, "3", rec.Header().Get("Retry-After"), "whole seconds, rounded up")
		assert.JSONEq(t, `{"statusCode":429,"error":"Too Many Requests","message":"fault: sandbox fault: too many requests","rule":"fault"}`, rec.Body.String())
	})
	t.Run("timeout hangs until the client gives up", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
		p := h.mustPay(monthly, "to-1", "2026-03-05", 9990, nil)
		h.sb.ScriptFaults(sandbox.FaultTimeout)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := h.kc.GetPayment(ctx, monthly, p.ID)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, klavi.PaymentPending, h.get(monthly, p.ID).Status, "the next request is served")
	})
	t.Run("drop commits, then closes the connection", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
		h.sb.ScriptFaults(sandbox.FaultDrop)
		_, err := h.pay(monthly, "drop-1", "2026-03-05", 9990, nil)
		require.Error(t, err)
		assert.True(t, klavi.IsOutcomeUnknown(err), "%v", err)
		assert.False(t, errors.Is(err, klavi.ErrRefused))
		e := h.sb.Ledger()
		require.Len(t, e, 1, "committed")
		assert.True(t, e[0].ResponseDropped)
		assert.Equal(t, "drop-1", e[0].ClientRequestID)
		assert.Equal(t, 1, h.sb.Stats().Faults[sandbox.FaultDrop])
	})
	t.Run("latency is counted", func(t *testing.T) {
		sb := sandbox.New(sandbox.Options{Faults: sandbox.Faults{Latency: time.Millisecond}})
		statuses(t, sb, 3)
		assert.Equal(t, 3, sb.Stats().Faults[sandbox.FaultLatency])
	})
	t.Run("never on /_sandbox/", func(t *testing.T) {
		sb := sandbox.New(sandbox.Options{Faults: sandbox.Faults{Err5xx: 1}})
		for _, p := range []string{"/_sandbox/ledger", "/_sandbox/stats"} {
			rec := httptest.NewRecorder()
			sb.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
			assert.Equal(t, 200, rec.Code, p)
		}
		assert.Equal(t, 0, sb.Stats().Requests)
	})
}
