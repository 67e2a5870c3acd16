package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/examples"
	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/leader"
)

// TestDaemon_Replicas runs two daemons on one etcd store: exactly one leads and
// schedules, the other serves the admin API (its writes land in the shared store)
// and refuses to schedule; when the leader stops, the other takes over and bills.
func TestDaemon_Replicas(t *testing.T) {
	srv := etcdtest.Start(t)
	clk := clock.NewFake(cycle.MustDate(2026, 1, 1).At(8, 0))
	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: "ak", SecretKey: "sk", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	hs := httptest.NewServer(sb)
	t.Cleanup(hs.Close)
	start := func(name string) *daemon {
		cfg := DefaultConfig()
		cfg.Storage.Backend = "etcd"
		cfg.Storage.Etcd.Endpoints = srv.Endpoints
		cfg.Storage.Etcd.Prefix = "/test-replicas/"
		cfg.Leader.LeaseTTL, cfg.Leader.Identity = 2*time.Second, name
		cfg.Klavi.BaseURL, cfg.Klavi.AccessKey, cfg.Klavi.SecretKey = hs.URL, "ak", "sk"
		cfg.Klavi.BackoffMin, cfg.Klavi.BackoffMax = time.Millisecond, 5*time.Millisecond
		cfg.HTTP.Listen, cfg.HTTP.AdminToken = "127.0.0.1:0", testToken
		cfg.Scheduler.ScanSchedule, cfg.Scheduler.PollSchedule = "@every 1h", "@every 1h"
		cfg.Scheduler.ShutdownTimeout = 5 * time.Second
		require.NoError(t, cfg.Validate())
		d, err := startDaemon(cfg, runFlags{}, slog.New(slog.NewTextHandler(io.Discard, nil)), clk)
		require.NoError(t, err)
		t.Cleanup(func() { _ = d.Close(context.Background()) })
		return d
	}
	a, b := start("a"), start("b")
	var lead, follow *daemon
	require.Eventually(t, func() bool {
		switch {
		case a.elector.Status().Role == leader.Leader:
			lead, follow = a, b
		case b.elector.Status().Role == leader.Leader:
			lead, follow = b, a
		}
		return lead != nil && follow.elector.Status().Leader != ""
	}, 20*time.Second, 10*time.Millisecond)
	assert.Contains(t, get(t, lead, "/readyz"), "leader, fence")
	assert.Contains(t, get(t, follow, "/readyz"), "follower; leader "+lead.elector.Identity())

	// The follower takes the consent: admin writes work on every replica.
	data, err := examples.Consents.ReadFile("consents/weekly-retries.json")
	require.NoError(t, err)
	c, err := consent.Decode(data)
	require.NoError(t, err)
	require.NoError(t, sb.AddConsent(&c.CreatedConsent))
	code, body := call(t, follow, "POST", "/v1/consents", string(data))
	require.Equal(t, http.StatusCreated, code, body)

	// Only the leader schedules.
	clk.Set(cycle.MustDate(2026, 1, 2).At(9, 0))
	code, body = call(t, follow, "POST", "/v1/scheduler/scan", "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, "not the leader")
	code, body = call(t, lead, "POST", "/v1/scheduler/scan", "")
	require.Equal(t, http.StatusOK, code, body)
	code, body = call(t, follow, "GET", "/v1/consents/"+c.ID+"/attempts", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "SUBMITTED", "the follower reads what the leader wrote")

	// The leader stops: the follower takes over within the lease and bills the next cycle.
	first := lead.elector.Status().Fence
	require.NoError(t, lead.Close(context.Background()))
	require.Eventually(t, func() bool { return follow.elector.Status().Role == leader.Leader }, 20*time.Second, 10*time.Millisecond)
	assert.Greater(t, follow.elector.Status().Fence.Rev, first.Rev)
	clk.Set(cycle.MustDate(2026, 1, 9).At(9, 0))
	code, body = call(t, follow, "POST", "/v1/scheduler/scan", "")
	require.Equal(t, http.StatusOK, code, body)
	code, body = call(t, follow, "GET", "/v1/consents/"+c.ID+"/attempts", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 2, strings.Count(body, `"clientRequestId"`), body)
	n := 0
	for _, e := range sb.Ledger() {
		if e.ConsentID == c.ID && e.ClientRequestID != "" {
			n++
		}
	}
	assert.Equal(t, 2, n, "one payment per cycle at Klavi")
}

func get(t *testing.T, d *daemon, path string) string {
	t.Helper()
	_, body := call(t, d, "GET", path, "")
	return body
}

func call(t *testing.T, d *daemon, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+d.Addr()+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
