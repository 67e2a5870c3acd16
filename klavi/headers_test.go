package klavi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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
