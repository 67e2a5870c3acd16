package scheduler

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage/kv"
)

// heldLeadership holds the fence it is set to.
type heldLeadership struct{ fence kv.Fence }

func (h *heldLeadership) Holds(f kv.Fence) bool { return f == h.fence }

var _ Leadership = (*heldLeadership)(nil)

// TestScheduler_FenceHeader: a replicated scheduler's payment requests carry its
// term's fence whether cron or an admin call (Scan) sent them; a replica that no
// longer holds the fence sends nothing.
func TestScheduler_FenceHeader(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := cycle.MustDate(2026, 3, 2).At(9, 0)
	clk := clock.NewFake(now)
	reqlog := filepath.Join(t.TempDir(), "requests.jsonl")
	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: "ak", SecretKey: "sk", Logger: quiet, RequestLog: reqlog})
	srv := httptest.NewServer(sb)
	t.Cleanup(srv.Close)
	kc, err := klavi.New(klavi.Config{BaseURL: srv.URL, AccessKey: "ak", SecretKey: "sk", Timeout: 10 * time.Second,
		MaxAttempts: 1, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond, RateLimit: 1e6, RateBurst: 1000},
		klavi.WithClock(clk), klavi.WithLogger(quiet))
	require.NoError(t, err)
	db := openStore(t)
	term := heldFence(t)
	lead := &heldLeadership{fence: term}
	s, err := New(Config{Policy: Policy{LeadDays: 3, RetryMode: consent.Off}, SubmitHour: 9, RefreshSchedule: "off", ClockTolerance: -1},
		db, kc, WithClock(clk), WithLogger(quiet), WithLeadership(lead))
	require.NoError(t, err)
	c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent("urn:test:fenced", cycle.Monthly, cycle.DateOf(now).AddDays(3), 99_90)}
	c.Billing.RetryMode = consent.Off
	require.NoError(t, sb.AddConsent(&c.CreatedConsent))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	scanned := make(chan struct{}, 1)
	hooks := Hooks{AfterScan: func(time.Duration, ScanResult, error) {
		select {
		case scanned <- struct{}{}:
		default:
		}
	}}
	require.NoError(t, s.Start(ctx, term, "@every 1h", "@every 1h", hooks))
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	<-scanned // the catch-up scan at start: nothing to do yet; cron's next run is an hour away
	_, _, err = s.AddConsents(context.Background(), []*consent.Consent{c}, cycle.DateOf(now))
	require.NoError(t, err)

	t.Run("admin scan while leading", func(t *testing.T) {
		res, err := s.Scan(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, res.Handled, "%+v", res)
		recs, err := sandbox.ReadRequestLog(reqlog)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		assert.Equal(t, term.Rev, recs[0].Fence, "the request carries the term's fence")
		assert.Equal(t, sandbox.OutcomeCreated, recs[0].Outcome)
	})
	t.Run("deposed", func(t *testing.T) {
		lead.fence = kv.Fence{Key: "/billingd/leader/2", Rev: 43} // another replica's term
		_, err := s.Scan(context.Background())
		require.ErrorIs(t, err, ErrNotLeader)
		_, err = s.Poll(context.Background())
		require.ErrorIs(t, err, ErrNotLeader)
	})
}
