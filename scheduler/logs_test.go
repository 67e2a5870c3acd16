package scheduler

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logBuffer is a log a test reads back: slog's text handler into a buffer that
// several goroutines may write.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

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
	var logs logBuffer
	s, err := New(h.s.cfg, h.db, h.kl, WithClock(h.clock), WithLogger(logs.logger()))
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
