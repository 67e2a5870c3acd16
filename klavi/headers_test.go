package klavi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWithHeader(t *testing.T) {
	got := make(chan http.Header, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"t","expires_in":3600,"data":[]}`))
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, AccessKey: "ak", SecretKey: "sk", Timeout: 5 * time.Second, MaxAttempts: 1,
		BackoffMin: time.Millisecond, BackoffMax: time.Millisecond, RateLimit: 100, RateBurst: 10})
	require.NoError(t, err)
	ctx := WithHeader(WithHeader(context.Background(), "X-Billingd-Fence", "41"), "X-Billingd-Fence", "42")
	a := c.send(ctx, endpoint{}, "GET", "/x", nil, "")
	require.NoError(t, a.err)
	h := <-got
	assert.Equal(t, "42", h.Get("X-Billingd-Fence"), "the innermost value wins")
	a = c.send(context.Background(), endpoint{}, "GET", "/x", nil, "")
	require.NoError(t, a.err)
	assert.Empty(t, (<-got).Get("X-Billingd-Fence"), "a context without headers adds none")
}

// TestWithSendBefore: an attempt the client would make at or after the instant is
// not made, and the call says the outcome is unknown when an earlier one was sent.
func TestWithSendBefore(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 3, 5, 2, 59, 0, 0, time.UTC))
	var posts int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == pathAuth {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"accessToken":"t","expireIn":3600}`))
			return
		}
		posts++
		clk.Advance(2 * time.Minute) // the attempt ends after the deadline
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, AccessKey: "ak", SecretKey: "sk", Timeout: 5 * time.Second, MaxAttempts: 4,
		BackoffMin: time.Millisecond, BackoffMax: time.Millisecond, RateLimit: 100, RateBurst: 10},
		WithClock(clk), WithSleep(func(ctx context.Context, _ time.Duration) error { return ctx.Err() }))
	require.NoError(t, err)
	ctx := WithSendBefore(context.Background(), time.Date(2026, 3, 5, 3, 0, 0, 0, time.UTC))
	_, err = c.CreatePayment(ctx, "urn:c", &CreatePaymentRequest{ClientRequestID: "k", Date: cycle.MustDate(2026, 3, 7), Amount: 100, Currency: Currency})
	require.ErrorIs(t, err, ErrWindowClosed)
	require.ErrorIs(t, err, ErrOutcomeUnknown, "the first attempt may have reached Klavi")
	assert.Equal(t, 1, posts, "no attempt after the window closed")

	posts = 0
	_, err = c.CreatePayment(ctx, "urn:c", &CreatePaymentRequest{ClientRequestID: "k", Date: cycle.MustDate(2026, 3, 7), Amount: 100, Currency: Currency})
	require.ErrorIs(t, err, ErrWindowClosed)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown, "nothing was sent")
	assert.Zero(t, posts)
}
