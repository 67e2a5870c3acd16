package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/internal/logtest"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/webhook"
)

// What an operator writes (a note, the X-Billingd-Actor name) and what Klavi says
// reach the operator's answers and the records, never the log.
func TestAdmin_LogsNoPersonalData(t *testing.T) {
	const (
		name  = "Maria da Silva"
		cpf   = "39053344705"
		email = "joao.xyzzy@example.com"
	)
	e := newEnv(t)
	var logs logtest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusBadGateway)
	}))
	t.Cleanup(down.Close)
	d, err := webhook.New(webhook.Config{Endpoints: []webhook.Endpoint{{Name: "shop", URL: down.URL, Secret: "whsec_0123456789abcdef"}}, MaxAge: time.Minute},
		e.db, webhook.WithClock(e.clk), webhook.WithLogger(log))
	require.NoError(t, err)
	srv := httptest.NewServer(New(token, e.db, e.sch, WithKlavi(e.kl), WithClock(e.clk), WithWebhooks(d), WithLogger(log)).Handler())
	t.Cleanup(srv.Close)
	e.srv = srv
	assertClean := func(t *testing.T) {
		t.Helper()
		for _, s := range []string{name, cpf, email, "joao.xyzzy"} {
			assert.NotContains(t, logs.String(), s)
		}
	}

	t.Run("Klavi's words: in the operator's answer, not in the log", func(t *testing.T) {
		e.kl.err = fmt.Errorf("create consent: %w", &klavi.APIError{StatusCode: 503, Code: "Service Unavailable", Endpoint: "create_consent",
			Retryable: true, Message: "payer " + name + " (CPF ***********05) is not known"})
		t.Cleanup(func() { e.kl.err = nil })
		var file map[string]any
		require.NoError(t, json.Unmarshal([]byte(example(t, "weekly-retries.json")), &file))
		delete(file, "id")
		delete(file, "status")
		req, _ := json.Marshal(file)
		code, out := e.do("POST", "/v1/klavi/consents", string(req))
		require.Equal(t, http.StatusGatewayTimeout, code, out)
		assert.Contains(t, out["error"], "(Klavi: payer "+name+" (CPF ***********05) is not known)", "the operator reads what Klavi said")
		assertClean(t)
		assert.Contains(t, logs.String(), `msg="admin request failed" method=POST path=/v1/klavi/consents err="create consent at Klavi: create consent: klavi create_consent: 503 Service Unavailable"`)
	})

	t.Run("an operator's name and note", func(t *testing.T) {
		ctx := context.Background()
		require.NoError(t, d.Tick(ctx))
		e.missed()
		require.NoError(t, d.Tick(ctx))
		e.clk.Advance(2 * time.Minute)
		require.NoError(t, d.Tick(ctx)) // dead

		code, body := e.do("POST", "/v1/webhooks/shop/replay", `{"dead": true}`, ActorHeader, email)
		require.Equal(t, http.StatusOK, code, body)
		e.clk.Advance(2 * time.Minute)
		require.NoError(t, d.Tick(ctx))
		require.NoError(t, d.Tick(ctx)) // dead again
		code, body = e.do("POST", "/v1/attention/resolve", `{"webhook": "shop", "consentId": "`+monthlyID+`", "note": "payer `+name+` CPF `+cpf+` has it"}`,
			ActorHeader, email)
		require.Equal(t, http.StatusOK, code, body)

		assertClean(t)
		assert.Contains(t, logs.String(), `msg="webhook replay requested" endpoint=shop actor=j*********************`)
		assert.Contains(t, logs.String(), `actor=j********************* note="[redacted: 43 characters]"`)
	})
}
