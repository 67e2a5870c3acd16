package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func noEnv(string) string { return "" }

func TestConfigExample_IsTheDefaults(t *testing.T) {
	cfg, err := LoadConfig("../../config.example.yaml", noEnv)
	require.NoError(t, err)
	want := DefaultConfig()
	cfg.undefinedEnv = nil
	assert.Equal(t, want, cfg, "config.example.yaml must list every key with its default")
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "billingd.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestLoadConfig(t *testing.T) {
	t.Run("env expansion", func(t *testing.T) {
		p := writeConfig(t, "klavi:\n  access_key: ${AK}\n  secret_key: ${SK:-fallback}\nhttp:\n  admin_token: \"pa$$word-with-dollars\"\n")
		cfg, err := LoadConfig(p, func(k string) string { return map[string]string{"AK": "key-1"}[k] })
		require.NoError(t, err)
		assert.Equal(t, "key-1", cfg.Klavi.AccessKey)
		assert.Equal(t, "fallback", cfg.Klavi.SecretKey)
		assert.Equal(t, "pa$$word-with-dollars", cfg.HTTP.AdminToken, "a plain $ is left alone")
		assert.Equal(t, 3, cfg.Billing.LeadDays, "keys left out keep their defaults")
	})
	t.Run("undefined variable is named", func(t *testing.T) {
		p := writeConfig(t, "klavi:\n  access_key: ${KLAVI_ACCESS_KEY}\n")
		cfg, err := LoadConfig(p, noEnv)
		require.NoError(t, err)
		err = cfg.validateForRun()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "klavi.access_key: is empty")
		assert.Contains(t, err.Error(), "KLAVI_ACCESS_KEY")
	})
	tests := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "billing:\n  lead_dayz: 3\n", []string{"field lead_dayz not found"}},
		{"wrong type", "billing:\n  lead_days: soon\n", []string{"cannot unmarshal"}},
		{"not yaml", "billing: [\n", []string{"config"}},
		{"every bad value", `
billing:
  lead_days: 1
  submit_time: "9am"
  retry_mode: sometimes
  due_date_adjust: later
  extra_holidays: ["2025-02-30"]
  retryable_reasons: [REVOKED_USER, BOGUS]
storage:
  path: ""
klavi:
  base_url: "ftp://x"
  max_attempts: 0
  rate_limit: 0
scheduler:
  scan_schedule: "every minute"
  workers: 0
http:
  listen: "8080"
  admin_token: short
log:
  level: loud
  format: xml
`, []string{
			"billing.lead_days: 1 is outside 2..10", "billing.submit_time", "billing.retry_mode", "billing.due_date_adjust",
			"billing.extra_holidays[0]", "billing.retryable_reasons[0]: REVOKED_USER means the consent is revoked",
			"billing.retryable_reasons[1]", "storage.path: is empty", "klavi.base_url", "klavi.max_attempts", "klavi.rate_limit",
			"scheduler.scan_schedule", "scheduler.workers", "http.listen", "http.admin_token", "log.level", "log.format",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(writeConfig(t, tt.body), noEnv)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"), noEnv)
		assert.ErrorContains(t, err, "no such file")
	})
}
