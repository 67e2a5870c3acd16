package klavi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// recorder remembers the body of every create-payment request on its way to the
// sandbox.
type recorder struct {
	next   http.Handler
	mu     sync.Mutex
	bodies []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/payments") {
		b, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(b))
		r.mu.Lock()
		r.bodies = append(r.bodies, string(b))
		r.mu.Unlock()
	}
	r.next.ServeHTTP(w, req)
}

func (r *recorder) sent() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

type sandboxRig struct {
	sb  *sandbox.Server
	rec *recorder
	kc  *klavi.Client
	clk *clock.Fake
}

// newSandboxRig serves a sandbox (fake clock on Wed 2026-02-25 10:00 Brasília) with
// one authorized monthly consent (R$ 99,90 from 5 Feb) on a loopback server.
func newSandboxRig(t *testing.T, opts sandbox.Options, edit func(*klavi.Config)) *sandboxRig {
	t.Helper()
	clk := clock.NewFake(cycle.MustDate(2026, 2, 25).At(10, 0))
	opts.Clock, opts.AccessKey, opts.SecretKey = clk, accessKey, secretKey
	sb := sandbox.New(opts)
	require.NoError(t, sb.AddConsent(sandbox.SampleConsent(consentID, cycle.Monthly, cycle.MustDate(2026, 2, 5), 9990)))
	rec := &recorder{next: sb}
	ts := httptest.NewServer(rec)
	t.Cleanup(func() { sb.Close(); ts.Close() })
	cfg := config(ts.URL)
	if edit != nil {
		edit(&cfg)
	}
	kc, err := klavi.New(cfg, klavi.WithClock(clk), klavi.WithSleep((&sleeps{}).sleep))
	require.NoError(t, err)
	return &sandboxRig{sb: sb, rec: rec, kc: kc, clk: clk}
}

func (r *sandboxRig) pay(crid string) (*klavi.Payment, error) {
	return r.kc.CreatePayment(context.Background(), consentID, paymentReq(crid))
}

// requireOnePayment asserts the sandbox holds exactly one payment, for crid.
func requireOnePayment(t *testing.T, r *sandboxRig, crid string) sandbox.LedgerEntry {
	t.Helper()
	l := r.sb.Ledger()
	require.Len(t, l, 1, "a re-send never makes a second payment")
	assert.Equal(t, crid, l[0].ClientRequestID)
	return l[0]
}

// requireSameKey asserts every recorded request carried the same bytes, and so the
// same clientRequestId.
func requireSameKey(t *testing.T, bodies []string, n int, crid string) {
	t.Helper()
	require.Len(t, bodies, n)
	for _, b := range bodies {
		var v struct{ ClientRequestID string }
		require.NoError(t, json.Unmarshal([]byte(b), &v))
		assert.Equal(t, crid, v.ClientRequestID)
		assert.Equal(t, bodies[0], b)
	}
}

func TestClient_ResendKeepsTheKey_Sandbox(t *testing.T) {
	t.Run("commit, then drop: the re-send meets a 409", func(t *testing.T) {
		r := newSandboxRig(t, sandbox.Options{}, nil)
		r.sb.ScriptFaults(sandbox.FaultDrop)
		_, err := r.pay("crid-1")
		require.ErrorIs(t, err, klavi.ErrOutcomeUnknown, "attempt 2 meets attempt 1's key: unknown until looked up")
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.Equal(t, 2, ae.Attempt)
		e := requireOnePayment(t, r, "crid-1")
		assert.True(t, e.ResponseDropped)
		requireSameKey(t, r.rec.sent(), 2, "crid-1")
	})
	t.Run("every answer lost: outcome unknown, and a later re-send is a duplicate", func(t *testing.T) {
		r := newSandboxRig(t, sandbox.Options{}, nil)
		r.sb.ScriptFaults(sandbox.FaultDrop, sandbox.FaultDrop, sandbox.FaultDrop)
		_, err := r.pay("crid-1")
		require.True(t, klavi.IsOutcomeUnknown(err), "%v", err)
		assert.False(t, errors.Is(err, klavi.ErrRefused))
		_, err = r.pay("crid-1") // the scheduler's re-send of a SUBMITTING attempt
		require.ErrorIs(t, err, klavi.ErrDuplicateRequest)
		requireOnePayment(t, r, "crid-1")
		requireSameKey(t, r.rec.sent(), 4, "crid-1")
	})
	t.Run("5xx, 5xx, then created", func(t *testing.T) {
		r := newSandboxRig(t, sandbox.Options{}, nil)
		r.sb.ScriptFaults(sandbox.Fault5xx, sandbox.Fault5xx)
		p, err := r.pay("crid-1")
		require.NoError(t, err)
		e := requireOnePayment(t, r, "crid-1")
		assert.Equal(t, p.ID, e.PaymentID)
		requireSameKey(t, r.rec.sent(), 3, "crid-1")
	})
	t.Run("a timed-out attempt, then created", func(t *testing.T) {
		r := newSandboxRig(t, sandbox.Options{}, func(c *klavi.Config) { c.Timeout = 50 * time.Millisecond })
		r.sb.ScriptFaults(sandbox.FaultTimeout)
		_, err := r.pay("crid-1")
		require.NoError(t, err)
		requireOnePayment(t, r, "crid-1")
		requireSameKey(t, r.rec.sent(), 2, "crid-1")
	})
	t.Run("random faults, many payments: one payment per key", func(t *testing.T) {
		r := newSandboxRig(t, sandbox.Options{Faults: sandbox.Faults{Err5xx: 0.15, Err429: 0.1, Drop: 0.15, Seed: 11}},
			func(c *klavi.Config) { c.MaxAttempts = 6 })
		keys := map[string]bool{}
		for i := range 40 {
			id := "urn:klavi:consent-rnd-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
			require.NoError(t, r.sb.AddConsent(sandbox.SampleConsent(id, cycle.Monthly, cycle.MustDate(2026, 2, 5), 9990)))
			crid := "rnd-" + id[len(id)-2:]
			keys[crid] = true
			for try := 0; ; try++ {
				_, err := r.kc.CreatePayment(context.Background(), id, paymentReq(crid))
				if err == nil || errors.Is(err, klavi.ErrDuplicateRequest) {
					break
				}
				require.True(t, klavi.IsOutcomeUnknown(err) || errors.Is(err, klavi.ErrUnavailable), "%v", err)
				require.Less(t, try, 10)
			}
		}
		seen := map[string]int{}
		for _, e := range r.sb.Ledger() {
			seen[e.ClientRequestID]++
		}
		for k := range keys {
			assert.Equal(t, 1, seen[k], k)
		}
		assert.Len(t, seen, len(keys))
		st := r.sb.Stats()
		assert.Positive(t, st.Faults[sandbox.FaultDrop])
		assert.Positive(t, st.Faults[sandbox.Fault5xx])
	})
}

func TestClient_Sandbox_FullFlow(t *testing.T) {
	r := newSandboxRig(t, sandbox.Options{TokenTTL: 10 * time.Minute}, nil)
	ctx := context.Background()
	p, err := r.pay("crid-1")
	require.NoError(t, err)
	assert.Equal(t, klavi.PaymentPending, p.Status)
	assert.Equal(t, klavi.Cents(9990), p.Amount)

	r.clk.Set(cycle.MustDate(2026, 3, 5).At(7, 0)) // the token expired long ago: renewed
	got, err := r.kc.GetPayment(ctx, consentID, p.ID)
	require.NoError(t, err)
	assert.Equal(t, klavi.PaymentCompleted, got.Status)
	st, err := r.kc.GetPaymentStatus(ctx, consentID, p.ID)
	require.NoError(t, err)
	assert.Equal(t, klavi.PaymentCompleted, st.Status)
	assert.Equal(t, 2, r.sb.Stats().TokensIssued)
}

func TestClient_Sandbox_TokenExpiresEarlierThanTheClientThinks(t *testing.T) {
	// The sandbox's clock runs ahead of the client's: its tokens expire while the
	// client still trusts them. The 401 renews the token once and re-sends.
	serverClock := clock.NewFake(cycle.MustDate(2026, 2, 25).At(10, 0))
	sb := sandbox.New(sandbox.Options{Clock: serverClock, AccessKey: accessKey, SecretKey: secretKey, TokenTTL: 10 * time.Minute})
	require.NoError(t, sb.AddConsent(sandbox.SampleConsent(consentID, cycle.Monthly, cycle.MustDate(2026, 2, 5), 9990)))
	ts := httptest.NewServer(sb)
	t.Cleanup(func() { sb.Close(); ts.Close() })
	kc, err := klavi.New(config(ts.URL), klavi.WithClock(clock.NewFake(t0)), klavi.WithSleep((&sleeps{}).sleep))
	require.NoError(t, err)

	_, err = kc.CreatePayment(context.Background(), consentID, paymentReq("crid-1"))
	require.NoError(t, err)
	serverClock.Advance(11 * time.Minute)
	_, err = kc.CreatePayment(context.Background(), consentID, paymentReq("crid-2"))
	require.ErrorIs(t, err, klavi.ErrBusinessRule, "reached the rules (one per cycle), so authenticated")
	st := sb.Stats()
	assert.Equal(t, 2, st.TokensIssued)
	assert.Equal(t, 1, st.Refusals[sandbox.RuleUnauthorized])
	assert.Equal(t, 1, st.Refusals[sandbox.RuleOnePerCycle])
}
