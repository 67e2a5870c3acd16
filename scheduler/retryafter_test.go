package scheduler

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
)

// TestScanDue_RetryAfterPastTheWindow: the due scan's pass, on the real Klavi
// client, catches up at 23:59 of D−2 with a first send Klavi answers 429,
// Retry-After one hour. The client does not wait the hour (the window closes at
// midnight): the pass returns at once, having asked the clock to sleep nothing
// and sent the POST once. The attempt is handled as any send whose answer was
// lost: it stays SUBMITTING with its key, looked up in Klavi's orders list (not
// found: the 429 was not handled), and it is never re-sent after midnight; the
// next looks find nothing and the cycle ends MISSED, with one POST in all.
func TestScanDue_RetryAfterPastTheWindow(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	due := cycle.MustDate(2026, 3, 12)
	clk := clock.NewFake(due.AddDays(-WindowClosesDays).At(23, 59))
	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: "ak", SecretKey: "sk", Logger: quiet})
	var (
		mu    sync.Mutex
		posts []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/payments") {
			mu.Lock()
			posts = append(posts, clk.Now().Format(time.RFC3339))
			mu.Unlock()
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		sb.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	var slept atomic.Int64 // what the client asked the clock to sleep, in all
	sleep := func(ctx context.Context, d time.Duration) error {
		slept.Add(int64(d))
		clk.Advance(d)
		return ctx.Err()
	}
	kc, err := klavi.New(klavi.Config{BaseURL: srv.URL, AccessKey: "ak", SecretKey: "sk", Timeout: 10 * time.Second,
		MaxAttempts: 4, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond, RateLimit: 1e6, RateBurst: 1000},
		klavi.WithClock(clk), klavi.WithLogger(quiet), klavi.WithSleep(sleep), klavi.WithRetryAfterSleep(sleep))
	require.NoError(t, err)
	db := openStore(t)
	s, err := New(Config{Policy: Policy{LeadDays: 3, RetryMode: consent.Off}, SubmitHour: 9, RefreshSchedule: "off", ClockTolerance: -1},
		db, kc, WithClock(clk), WithLogger(quiet))
	require.NoError(t, err)
	c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent("urn:test:retry-after", cycle.Monthly, due, 99_90)}
	c.Billing.RetryMode = consent.Off
	require.NoError(t, sb.AddConsent(&c.CreatedConsent))
	_, _, err = s.AddConsents(context.Background(), []*consent.Consent{c}, cycle.DateOf(clk.Now()))
	require.NoError(t, err)
	key := storage.AttemptKey{ConsentID: c.ID, Cycle: 0, Attempt: 0}

	res, err := s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, res.Handled, "%+v", res)
	assert.Zero(t, time.Duration(slept.Load()), "the clock was asked to sleep nothing")
	assert.Equal(t, due.AddDays(-WindowClosesDays).At(23, 59), clk.Now(), "the pass took no time on the clock")
	a, err := db.GetAttempt(context.Background(), key)
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptSubmitting, a.State, "the outcome is unknown: kept, with its key")
	assert.Equal(t, 1, a.Sends)
	assert.Equal(t, 1, a.Lookups, "looked up, not guessed")

	// Past midnight: the window is closed. The attempt is looked up until its
	// absence is confirmed, never sent again.
	end := due.AddDays(-WindowClosesDays+1).At(2, 0)
	for clk.Now().Before(end) {
		clk.Advance(time.Minute)
		_, err := s.Scan(context.Background())
		require.NoError(t, err)
	}
	a, err = db.GetAttempt(context.Background(), key)
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptMissed, a.State, a.Reason)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{due.AddDays(-WindowClosesDays).At(23, 59).Format(time.RFC3339)}, posts, "one POST, before midnight")
}
