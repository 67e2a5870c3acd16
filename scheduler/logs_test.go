package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/internal/logtest"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
)

// The personal data of the tests below: what an operator or Klavi may write.
const (
	payerCPF     = "39053344705"
	payerEmail   = "joao.xyzzy@example.com"
	payerName    = "Maria da Silva"
	payerAccount = "0001-123456789"
)

// assertNoPersonalData fails for each piece of personal data the log holds.
func assertNoPersonalData(t *testing.T, log string) {
	t.Helper()
	for _, s := range []string{payerCPF, payerEmail, "joao.xyzzy", payerName, "123456789"} {
		assert.NotContains(t, log, s, "the log holds personal data")
	}
}

func TestScheduler_RevokeReasonNotLogged(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	h.add(c)
	var logs logtest.Buffer
	s, err := New(h.s.cfg, h.db, h.kl, WithClock(h.clock), WithLogger(logs.Logger()))
	require.NoError(t, err)

	reason := "payer CPF " + payerCPF + " " + payerEmail + " asked"
	_, err = s.Revoke(c.ID, reason, "maria")
	require.NoError(t, err)

	log := logs.String()
	assertNoPersonalData(t, log)
	assert.NotContains(t, log, "asked", "no word of the operator's reason")
	assert.Contains(t, log, `msg="consent billing stopped"`)
	assert.Contains(t, log, "consent_id="+c.ID)
	assert.Contains(t, log, "state=revoked")
	assert.Contains(t, log, `reason="[redacted: 50 characters]"`, "the log says a reason was given, and its length")

	evs, _, err := h.db.Events(context.Background(), c.ID, 0, 100)
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	assert.Equal(t, string(EventRevoked), last.Kind)
	assert.Equal(t, reason, last.Reason, "the timeline keeps the reason as written")
	assert.Equal(t, "maria", last.Actor)

	t.Run("no reason: billingd's own words are logged", func(t *testing.T) {
		c2 := loadExample(t, "weekly-retries.json")
		h.add(c2)
		_, err := s.Revoke(c2.ID, "", "")
		require.NoError(t, err)
		assert.Contains(t, logs.String(), `reason="revoked by the operator"`)
	})
}

// klaviAnswering is a scheduler on the real Klavi client against the sandbox, whose
// payment creates get answer instead; both log into logs.
func klaviAnswering(t *testing.T, logs *logtest.Buffer, status int, answer string) (*Scheduler, storage.Store, *consent.Consent) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	due := cycle.MustDate(2026, 3, 12)
	clk := clock.NewFake(due.AddDays(-3).At(9, 0)) // its submission instant (lead days 3)
	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: "ak", SecretKey: "sk", Logger: quiet})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/payments") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, answer)
			return
		}
		sb.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	sleep := func(ctx context.Context, d time.Duration) error { clk.Advance(d); return ctx.Err() }
	kc, err := klavi.New(klavi.Config{BaseURL: srv.URL, AccessKey: "ak", SecretKey: "sk", Timeout: 10 * time.Second,
		MaxAttempts: 2, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond, RateLimit: 1e6, RateBurst: 1000},
		klavi.WithClock(clk), klavi.WithLogger(logs.Logger()), klavi.WithSleep(sleep), klavi.WithRetryAfterSleep(sleep))
	require.NoError(t, err)
	db := openStore(t)
	s, err := New(Config{Policy: Policy{LeadDays: 3, RetryMode: consent.Off}, SubmitHour: 9, RefreshSchedule: "off", ClockTolerance: -1},
		db, kc, WithClock(clk), WithLogger(logs.Logger()))
	require.NoError(t, err)
	c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent("urn:test:logs", cycle.Monthly, due, 99_90)}
	c.Billing.RetryMode = consent.Off
	require.NoError(t, sb.AddConsent(&c.CreatedConsent))
	_, _, err = s.AddConsents(context.Background(), []*consent.Consent{c}, cycle.DateOf(clk.Now()))
	require.NoError(t, err)
	return s, db, c
}

// Klavi's free text (an error answer's message) may name the payer: the log has the
// status, the endpoint and the attempt, never Klavi's words; the attempt's record
// keeps them (digits and e-mails masked) for the operator; the timeline, which
// webhooks deliver, does not.
func TestScheduler_KlaviMessageNotLogged(t *testing.T) {
	msg := `{"statusCode":%d,"error":"%s","message":"payer ` + payerName + `, CPF ` + payerCPF + `, ` + payerEmail +
		`, account ` + payerAccount + `: amount above the consent's limit"}`
	for _, tt := range []struct {
		name   string
		status int
		title  string
		state  storage.AttemptState
		line   string
	}{
		{"422: refused", 422, "Unprocessable Entity", storage.AttemptFailed, `msg="submission refused"`},
		{"500: outcome unknown", 500, "Internal Server Error", storage.AttemptSubmitting, `msg="submission outcome unknown; will look again"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs logtest.Buffer
			s, db, c := klaviAnswering(t, &logs, tt.status, fmt.Sprintf(msg, tt.status, tt.title))
			_, err := s.Scan(context.Background())
			require.NoError(t, err)

			log := logs.String()
			assertNoPersonalData(t, log)
			assert.NotContains(t, log, "consent's limit", "no word of Klavi's message")
			assert.Contains(t, log, tt.line)
			assert.Contains(t, log, "consent_id="+c.ID)
			assert.Contains(t, log, fmt.Sprintf("klavi create_payment: %d %s", tt.status, tt.title), "the endpoint, the status and its title")
			assert.Contains(t, log, "client_request_id=")

			a, err := db.GetAttempt(context.Background(), storage.AttemptKey{ConsentID: c.ID})
			require.NoError(t, err)
			assert.Equal(t, tt.state, a.State, a.Reason)
			assert.Contains(t, a.Reason, "(Klavi: payer "+payerName, "the record keeps Klavi's words for the operator")
			assert.Contains(t, a.Reason, "amount above the consent's limit")
			assert.NotContains(t, a.Reason, payerCPF, "digits masked in the record")
			assert.NotContains(t, a.Reason, payerEmail, "e-mails masked in the record")

			evs, _, err := db.Events(context.Background(), c.ID, 0, 100)
			require.NoError(t, err)
			for _, e := range evs {
				assert.NotContains(t, e.Reason, payerName, "the timeline (webhooks' feed) has no Klavi words: %s", e.Kind)
			}
		})
	}
}
