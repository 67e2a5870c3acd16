package klavi_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/klavi"
)

// Klavi's answers are its own words and may name the payer: what the client logs,
// and the text of the errors it returns (which every caller logs), carry the
// status, the endpoint and the title, never those words.
func TestClient_LogsNoKlaviText(t *testing.T) {
	ctx := context.Background()
	personal := []string{"Maria da Silva", "39053344705", "390.533.447-05", "joao.xyzzy@example.com", "joao.xyzzy", "123456789"}
	message := `"payer Maria da Silva, CPF 390.533.447-05, joao.xyzzy@example.com, account 0001-123456789"`

	for _, tt := range []struct {
		name   string
		status int
		title  string
	}{
		{"422", 422, "Unprocessable Entity"},
		{"500", 500, "Internal Server Error"},
	} {
		t.Run(tt.name+" with a message", func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			f := newFake(t, seq(answer(tt.status, fmt.Sprintf(`{"statusCode":%d,"error":"%s","message":%s}`, tt.status, tt.title, message))))
			c, _, _ := newClient(t, f, nil, klavi.WithLogger(log))
			_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
			require.Error(t, err)
			log.Error("submission failed", "err", err) // as every caller logs it

			for _, s := range personal {
				assert.NotContains(t, logs.String(), s)
			}
			assert.Contains(t, logs.String(), fmt.Sprintf("klavi create_payment: %d %s", tt.status, tt.title), "the endpoint, the status, its title")
			d := klavi.Describe(err)
			assert.Contains(t, d, "(Klavi: payer Maria da Silva, CPF ************05, j*********@e******.com, account ************89)",
				"Klavi's words, masked, for the records an operator reads")
		})
	}

	t.Run("a code that is not a title", func(t *testing.T) {
		f := newFake(t, seq(answer(422, `{"statusCode":422,"error":"Maria da Silva","message":"x"}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.GetPayment(ctx, consentID, paymentID)
		require.Error(t, err)
		assert.Equal(t, "get payment: klavi get_payment: 422 Unprocessable Entity", err.Error())
		assert.Contains(t, klavi.Describe(err), "(Klavi: Maria da Silva: x)")
	})

	t.Run("a malformed answer: its values are not quoted", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"id":"`+paymentID+`","status":"PAYMENT_PENDING","amount":"Maria da Silva 39053344705","currency":"BRL"}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.GetPayment(ctx, consentID, paymentID)
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		for _, s := range personal {
			assert.NotContains(t, err.Error(), s)
		}
		assert.Contains(t, err.Error(), `invalid amount [redacted: 26 characters]: want digits, a dot and two decimals, like "99.90"`,
			"what was wrong, and the value's length")
	})

	t.Run("BaseURL's user information is not in the config error", func(t *testing.T) {
		cfg := config("ftp://user:secretpw@api.example.com")
		_, err := klavi.New(cfg)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "secretpw")
		assert.Contains(t, err.Error(), `"ftp://xxxxx@api.example.com" must be an absolute http(s) URL`)
	})
}
