package klavi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/klavi"
)

// newWindowClient returns a client of f whose Retry-After sleep is recorded in ra
// and moves the fake clock by what it is asked, as a real wait would: the check
// made on waking then reads the instant the wait ended. The backoff after attempt n
// is n seconds (newClient), shorter than every Retry-After below.
func newWindowClient(t *testing.T, f *fakeKlavi) (c *klavi.Client, ra, backoff *sleeps) {
	t.Helper()
	var clk *clock.Fake
	ra = &sleeps{}
	c, clk, backoff = newClient(t, f, nil, klavi.WithRetryAfterSleep(func(ctx context.Context, d time.Duration) error {
		clk.Advance(d)
		return ra.sleep(ctx, d)
	}))
	return c, ra, backoff
}

// TestClient_RetryAfterPastTheWindow: a 429 or 503 whose Retry-After would end as or
// after the send window closes (klavi.WithSendBefore, on the client's clock) ends
// the call at once, with the error the check on waking gave when the client still
// slept first: ErrWindowClosed, and an unknown outcome for a create (its first
// attempt was sent). The clock is asked to sleep nothing and nothing is re-sent.
func TestClient_RetryAfterPastTheWindow(t *testing.T) {
	closes := t0.Add(5 * time.Second)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		get        bool // GetPayment, not CreatePayment
	}{
		{name: "429, Retry-After longer than what is left", status: 429, retryAfter: "7"},
		{name: "503, Retry-After longer than what is left", status: 503, retryAfter: "7"},
		{name: "Retry-After ending as the window closes", status: 429, retryAfter: "5"},
		{name: "Retry-After as an HTTP date after the window", status: 429, retryAfter: t0.Add(time.Hour).Format(http.TimeFormat)},
		{name: "a GET", status: 503, retryAfter: "7", get: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, seq(answer(tt.status, ``, "Retry-After", tt.retryAfter), answer(201, created)))
			c, ra, backoff := newWindowClient(t, f)
			ctx := klavi.WithSendBefore(context.Background(), closes)
			var err error
			if tt.get {
				_, err = c.GetPayment(ctx, consentID, paymentID)
			} else {
				_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
			}
			require.ErrorIs(t, err, klavi.ErrWindowClosed)
			want := "create payment: the window to send this request has closed (at 2026-02-25T13:00:05Z) " +
				"(outcome unknown: an earlier attempt was sent and its answer lost)"
			if tt.get {
				want = "get payment: the window to send this request has closed (at 2026-02-25T13:00:05Z)"
			}
			assert.Equal(t, want, err.Error(), "the error the check on waking gives")
			assert.Equal(t, !tt.get, klavi.IsOutcomeUnknown(err), "a create's first attempt was sent")
			assert.Len(t, f.apiCalls(), 1, "nothing sent after the first answer")
			assert.Empty(t, ra.got(), "the clock was asked to sleep nothing")
			assert.Empty(t, backoff.got(), "no backoff either")
		})
	}
}

// TestClient_RetryAfterInsideTheWindow: a Retry-After that ends before the window
// closes, even by a millisecond, is still waited, on the Retry-After sleep, and the
// request re-sent with the same body once it ends.
func TestClient_RetryAfterInsideTheWindow(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string
		closes     time.Time
		wait       time.Duration
	}{
		{name: "429, well inside", status: 429, retryAfter: "3", closes: t0.Add(5 * time.Second), wait: 3 * time.Second},
		{name: "503, well inside", status: 503, retryAfter: "3", closes: t0.Add(5 * time.Second), wait: 3 * time.Second},
		{name: "ending a millisecond before the window closes", status: 429, retryAfter: "5",
			closes: t0.Add(5*time.Second + time.Millisecond), wait: 5 * time.Second},
		{name: "as an HTTP date inside the window", status: 429, retryAfter: t0.Add(30 * time.Second).Format(http.TimeFormat),
			closes: t0.Add(time.Minute), wait: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t, seq(answer(tt.status, ``, "Retry-After", tt.retryAfter), answer(201, created)))
			c, ra, backoff := newWindowClient(t, f)
			p, err := c.CreatePayment(klavi.WithSendBefore(context.Background(), tt.closes), consentID, paymentReq("crid-1"))
			require.NoError(t, err)
			assert.Equal(t, paymentID, p.ID)
			assert.Equal(t, []time.Duration{tt.wait}, ra.got(), "Klavi's wait, waited")
			assert.Empty(t, backoff.got())
			requireSameBodies(t, f.apiCalls(), 2)
		})
	}
}
