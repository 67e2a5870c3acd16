package webhook_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/webhook"
)

// logBuffer is a log a test reads back, written by several goroutines.
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

func TestDispatcher_LogsNoPersonalData(t *testing.T) {
	ctx := context.Background()
	const (
		name  = "Maria da Silva"
		cpf   = "39053344705"
		email = "joao.xyzzy@example.com"
	)

	t.Run("a dead letter's resolve: the operator's note and name are not logged", func(t *testing.T) {
		var logs logBuffer
		f := setupLogged(t, func(c *webhook.Config) { c.MaxAge = time.Minute }, slog.New(slog.NewTextHandler(&logs, nil)))
		require.NoError(t, f.d.Tick(ctx))
		f.rcv.setFail("*", true)
		f.write(t, 1, "urn:a")
		require.NoError(t, f.d.Tick(ctx))
		f.clk.Advance(2 * time.Minute)
		require.NoError(t, f.d.Tick(ctx))
		note := "payer " + name + " CPF " + cpf + " asked; " + email
		_, err := f.d.Resolve(ctx, "shop", "urn:a", note, email)
		require.NoError(t, err)

		log := logs.String()
		for _, s := range []string{name, cpf, email, "joao.xyzzy", "asked"} {
			assert.NotContains(t, log, s)
		}
		assert.Contains(t, log, `msg="webhooks: dead letter resolved: its first event is given up"`)
		assert.Contains(t, log, "endpoint=shop consent_id=urn:a position=1")
		assert.Contains(t, log, `note="[redacted: 66 characters]"`, "the log says a note was given, and its length")
		assert.Contains(t, log, "actor=j*********************", "the operator's name masked")
	})
}
