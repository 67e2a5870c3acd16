package main

import (
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/internal/logtest"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
)

// The daemon's log holds neither a secret of its configuration nor an operator's
// free text: the reviewer's two cases, end to end.
func TestDaemon_LogsNoSecretsOrOperatorText(t *testing.T) {
	var logs logtest.Buffer
	de := startTestDaemonLogged(t, cycle.MustDate(2026, 1, 1).At(8, 0), nil, func(c *Config) {
		c.Klavi.BaseURL = strings.Replace(c.Klavi.BaseURL, "http://", "http://user:secretpw@", 1)
	}, slog.New(slog.NewTextHandler(&logs, nil)))

	t.Run("klavi.base_url's user and password", func(t *testing.T) {
		log := logs.String()
		assert.NotContains(t, log, "secretpw")
		assert.NotContains(t, log, "user:")
		assert.Contains(t, log, `msg="billingd started"`)
		assert.Regexp(t, `klavi=http://xxxxx@127\.0\.0\.1:\d+ `, log, "the URL is logged, its user information masked")
	})

	t.Run("a revoke's reason", func(t *testing.T) {
		file := "../../examples/consents/weekly-retries.json"
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		c, err := consent.Decode(data)
		require.NoError(t, err)
		require.NoError(t, de.sb.AddConsent(&c.CreatedConsent))
		code, _, stderr := de.cli("consent", "add", file)
		require.Equal(t, 0, code, stderr)

		reason := "payer CPF 39053344705 joao.xyzzy@example.com asked"
		code, _, stderr = de.cli("consent", "revoke", "--reason", reason, c.ID)
		require.Equal(t, 0, code, stderr)
		log := logs.String()
		for _, s := range []string{"39053344705", "joao.xyzzy", "asked"} {
			assert.NotContains(t, log, s)
		}
		assert.Contains(t, log, `msg="consent billing stopped" consent_id=`+c.ID+` state=revoked reason="[redacted: 50 characters]"`)

		code, stdout, stderr := de.cli("consent", "show", c.ID, "--format", "json")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, reason, "the timeline keeps the reason for the record")
	})
}
