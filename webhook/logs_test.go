package webhook_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/internal/logtest"

	"github.com/klavi-billing/billingd/webhook"
)

// rawEndpoint answers every request with the status line and body given, as a
// receiver's own server may: its reason phrase is its own words.
func rawEndpoint(t *testing.T, status, body string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				_, _ = io.WriteString(conn, "HTTP/1.1 "+status+"\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "+
					strconv.Itoa(len(body))+"\r\n\r\n"+body)
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/hook"
}

func TestDispatcher_LogsNoPersonalData(t *testing.T) {
	ctx := context.Background()
	const (
		name  = "Maria da Silva"
		cpf   = "39053344705"
		email = "joao.xyzzy@example.com"
	)

	t.Run("a dead letter's resolve: the operator's note and name are not logged", func(t *testing.T) {
		var logs logtest.Buffer
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

	t.Run("an endpoint's answer: its reason phrase and body are not logged", func(t *testing.T) {
		var logs logtest.Buffer
		url := rawEndpoint(t, "503 "+name, name+" "+cpf)
		f := setupLogged(t, func(c *webhook.Config) { c.Endpoints[0].URL = url }, slog.New(slog.NewTextHandler(&logs, nil)))
		require.NoError(t, f.d.Tick(ctx))
		f.write(t, 1, "urn:a")
		require.NoError(t, f.d.Tick(ctx))

		log := logs.String()
		assert.NotContains(t, log, name)
		assert.NotContains(t, log, cpf)
		assert.Contains(t, log, `msg="webhooks: delivery failed; the consent's events wait"`)
		assert.Contains(t, log, "endpoint=shop consent_id=urn:a")
		assert.Contains(t, log, `err="answered 503 Service Unavailable"`, "the status code and its standard text")
		dead, err := f.db.WebhookBacklog(ctx, "shop", "urn:a")
		require.NoError(t, err)
		assert.Equal(t, "answered 503 Service Unavailable", dead.LastError, "nor are they kept for the attention list")
	})

	t.Run("an endpoint's URL: its user and password are not in the error", func(t *testing.T) {
		_, err := webhook.New(webhook.Config{Endpoints: []webhook.Endpoint{{Name: "shop", URL: "ftp://user:secretpw@hooks.example.com/in", Secret: secret}}}, nil)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "secretpw")
		assert.NotContains(t, err.Error(), "user:")
		assert.Contains(t, err.Error(), `endpoint shop: url "ftp://xxxxx@hooks.example.com/in"`)
	})
}
