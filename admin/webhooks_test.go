package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/webhook"
)

func TestAdmin_Webhooks(t *testing.T) {
	e := newEnv(t)
	code, _ := e.do("GET", "/v1/events", "")
	assert.Equal(t, http.StatusServiceUnavailable, code, "no webhooks wired")

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	t.Cleanup(down.Close)
	d, err := webhook.New(webhook.Config{Endpoints: []webhook.Endpoint{{Name: "shop", URL: down.URL, Secret: "whsec_0123456789abcdef"}}, MaxAge: time.Minute},
		e.db, webhook.WithClock(e.clk), webhook.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	require.NoError(t, err)
	s := New(token, e.db, e.sch, WithClock(e.clk), WithWebhooks(d))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e.srv = srv

	ctx := context.Background()
	require.NoError(t, d.Tick(ctx))
	e.missed() // the consent's timeline: added, missed
	require.NoError(t, d.Tick(ctx))

	code, body := e.do("GET", "/v1/events?after=0&limit=1", "")
	require.Equal(t, http.StatusOK, code)
	evs := body["events"].([]any)
	require.Len(t, evs, 1)
	first := evs[0].(map[string]any)
	assert.Equal(t, "added", first["type"])
	assert.Equal(t, monthlyID, first["consentId"])
	assert.Equal(t, "1", body["next"])
	assert.Equal(t, true, body["more"])
	code, _ = e.do("GET", "/v1/events?after=x", "")
	assert.Equal(t, http.StatusBadRequest, code)

	e.clk.Advance(2 * time.Minute)
	require.NoError(t, d.Tick(ctx)) // failing for longer than max_age: dead

	code, body = e.do("GET", "/v1/webhooks", "")
	require.Equal(t, http.StatusOK, code)
	ep := body["endpoints"].([]any)[0].(map[string]any)
	assert.Equal(t, "shop", ep["name"])
	assert.Equal(t, float64(1), ep["deadLetters"])

	code, body = e.do("GET", "/v1/attention?state=WEBHOOK_DEAD", "")
	require.Equal(t, http.StatusOK, code)
	items := body["items"].([]any)
	require.Len(t, items, 1)
	it := items[0].(map[string]any)
	assert.Equal(t, "WEBHOOK_DEAD", it["state"])
	assert.Equal(t, "shop", it["endpoint"])
	assert.Equal(t, first["id"], it["eventId"])
	assert.Equal(t, float64(1), body["counts"].(map[string]any)["WEBHOOK_DEAD"])
	code, body = e.do("GET", "/v1/attention", "")
	require.Equal(t, http.StatusOK, code)
	states := map[string]int{}
	for _, x := range body["items"].([]any) {
		states[x.(map[string]any)["state"].(string)]++
	}
	assert.Equal(t, map[string]int{"MISSED": 1, "WEBHOOK_DEAD": 1}, states, "dead letters come after the stored items")
	code, body = e.do("GET", "/v1/attention?limit=1", "")
	require.Equal(t, http.StatusOK, code)
	next := body["next"].(string)
	code, body = e.do("GET", "/v1/attention?limit=1&after="+next, "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["items"], 1)
	assert.Equal(t, "WEBHOOK_DEAD", body["items"].([]any)[0].(map[string]any)["state"])

	code, _ = e.do("POST", "/v1/webhooks/nope/replay", `{"dead": true}`)
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = e.do("POST", "/v1/webhooks/shop/replay", `{}`)
	assert.Equal(t, http.StatusBadRequest, code)
	code, body = e.do("POST", "/v1/webhooks/shop/replay", `{"dead": true}`)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, float64(1), body["revived"])
	code, _ = e.do("POST", "/v1/attention/resolve", `{"webhook": "shop", "consentId": "`+monthlyID+`", "note": "x"}`)
	assert.Equal(t, http.StatusBadRequest, code, "revived: no longer dead")

	e.clk.Advance(2 * time.Minute)
	require.NoError(t, d.Tick(ctx))
	require.NoError(t, d.Tick(ctx))
	code, body = e.do("POST", "/v1/attention/resolve", `{"webhook": "shop", "consentId": "`+monthlyID+`", "note": "merchant has it"}`, ActorHeader, "bob")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "WEBHOOK_DEAD", body["state"])
}
