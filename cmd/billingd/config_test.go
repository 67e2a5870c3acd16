package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func noEnv(string) string { return "" }

func TestConfigExample_IsTheDefaults(t *testing.T) {
	cfg, err := LoadConfig("../../config.example.yaml", noEnv)
	require.NoError(t, err)
	want := DefaultConfig()
	cfg.src = nil
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
	t.Run("a blank after a variable whose value holds a newline is still refused", func(t *testing.T) {
		p := writeConfig(t, "klavi:\n  access_key: ${AK}\nstorage:\n  path:\n")
		_, err := LoadConfig(p, func(k string) string { return map[string]string{"AK": "\"abc\n\""}[k] })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "storage.path: no value")
	})
	t.Run("a blank in a file whose references only parse expanded is still refused", func(t *testing.T) {
		p := writeConfig(t, "billing:\n  extra_holidays: [${H}]\nstorage:\n  path:\n")
		_, err := LoadConfig(p, func(k string) string { return map[string]string{"H": "2026-12-24"}[k] })
		require.Error(t, err)
		assert.Contains(t, err.Error(), "storage.path: no value")
	})
	t.Run("a section with nothing under it keeps its defaults", func(t *testing.T) {
		p := writeConfig(t, "billing:\nstorage:\n  # path: /elsewhere\n")
		cfg, err := LoadConfig(p, noEnv)
		require.NoError(t, err)
		assert.Equal(t, DefaultConfig().Storage.Path, cfg.Storage.Path)
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
		{"a setting with no value", "storage:\n  path:\nklavi:\n  base_url: ~\nbilling:\n  lead_days: null\n  extra_holidays:\n", []string{
			"4 config problems:",
			"billingd.yaml:2: storage.path: no value: write one, or leave the key out for its default",
			"billingd.yaml:4: klavi.base_url: no value",
			"billingd.yaml:6: billing.lead_days: no value",
			"billingd.yaml:7: billing.extra_holidays: no value",
		}},
		{"unknown key", "billing:\n  lead_dayz: 3\n", []string{"billingd.yaml:2: billing.lead_dayz: unknown key (did you mean lead_days?)"}},
		{"wrong type", "billing:\n  lead_days: soon\n", []string{`billingd.yaml:2: billing.lead_days: "soon" is not a whole number`}},
		{"not yaml", "billing: [\n", []string{"billingd.yaml:1: not valid YAML: "}},
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
  mapped_budget_mib: -1
klavi:
  base_url: "ftp://x"
  max_attempts: 0
  rate_limit: 0
scheduler:
  scan_schedule: "every minute"
  workers: 0
  batch: 0
  record_batch: 20000
  record_window: 2s
http:
  listen: "8080"
  admin_token: short
log:
  level: loud
  format: xml
runtime:
  gc_percent: 5
`, []string{
			"billing.lead_days: 1 is outside 2..10", "billing.submit_time", "billing.retry_mode", "billing.due_date_adjust",
			"billing.extra_holidays[0]", "billing.retryable_reasons[0]: REVOKED_USER means the consent is revoked",
			"billing.retryable_reasons[1]", "storage.path: is empty", "storage.mapped_budget_mib: -1 is outside 0..1048576", "klavi.base_url", "klavi.max_attempts", "klavi.rate_limit",
			"scheduler.scan_schedule", "scheduler.workers", "scheduler.batch: 0 is outside 1..10000",
			"scheduler.record_batch: 20000 is outside 1..10000", "scheduler.record_window: 2s is outside 0s..1s", "http.listen", "http.admin_token", "log.level", "log.format",
			"runtime.gc_percent: 5 is outside 25..2000",
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
	t.Run("a bad URL's user information is not shown", func(t *testing.T) {
		_, err := LoadConfig(writeConfig(t, `
klavi:
  base_url: "ftp://user:secretpw@api.example.com"
storage:
  backend: etcd
  etcd:
    endpoints: ["unix://root:etcdpw@10.0.0.1:2379"]
webhooks:
  endpoints:
    - name: shop
      url: "ftp://hook:hookpw@hooks.example.com/in?token=tok3n"
      secret: "whsec_0123456789abcdef"
`), noEnv)
		require.Error(t, err)
		for _, s := range []string{"secretpw", "etcdpw", "hookpw", "tok3n"} {
			assert.NotContains(t, err.Error(), s)
		}
		assert.Contains(t, err.Error(), `klavi.base_url: "ftp://xxxxx@api.example.com" must be an absolute http(s) URL`)
		assert.Contains(t, err.Error(), `storage.etcd.endpoints[0]: "unix://xxxxx@10.0.0.1:2379" must be`)
		assert.Contains(t, err.Error(), `webhooks.endpoints[0].url: "ftp://xxxxx@hooks.example.com/in?token=xxxxx" must be`)
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"), noEnv)
		assert.ErrorContains(t, err, "no such file")
		assert.ErrorContains(t, err, "--config FILE", "says how to give one")
		assert.ErrorContains(t, err, "examples/local.yaml")
	})
}

// examples/local.yaml, the README's daemon on this machine, is a valid config that
// points at billingd sandbox's default address and keeps its database locally.
func TestLoadConfig_LocalExample(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "examples", "local.yaml"), noEnv)
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:8089", cfg.Klavi.BaseURL)
	assert.Equal(t, "local/billingd.db", cfg.Storage.Path)
	assert.NotEmpty(t, cfg.HTTP.AdminToken)
	assert.NotEmpty(t, cfg.Klavi.AccessKey)
}

// TestLoadConfig_Errors: every problem names its YAML key and the line the file sets
// it on, in the words of the file (never a Go type), once each and in file order.
func TestLoadConfig_Errors(t *testing.T) {
	tests := []struct {
		name, body string
		want       string // the whole message after the path
	}{
		{"unknown key with a near name", "billing:\n  lead_days: 3\n\n  lead_dayz: 4\n",
			":4: billing.lead_dayz: unknown key (did you mean lead_days?)"},
		{"unknown section", "biling:\n  lead_days: 3\n", ":1: biling: unknown key (did you mean billing?)"},
		{"unknown key with nothing near", "log:\n  colour: yes\n", ":2: log.colour: unknown key (known here: level, format)"},
		{"nested unknown key", "klavi:\n  canceller:\n    identifer: \"1\"\n",
			":3: klavi.canceller.identifer: unknown key (did you mean identifier?)"},
		{"not a duration", "scheduler:\n  workers: 4\n  resend_min_interval: five\n",
			`:3: scheduler.resend_min_interval: "five" is not a duration (e.g. 30s, 5m)`},
		{"a number without a unit", "klavi:\n  timeout: 30\n", `:2: klavi.timeout: "30" is not a duration (e.g. 30s, 5m)`},
		{"not a whole number", "klavi:\n  max_attempts: 2.5\n", `:2: klavi.max_attempts: "2.5" is not a whole number`},
		{"not a number", "klavi:\n  rate_limit: fast\n", `:2: klavi.rate_limit: "fast" is not a number`},
		{"not a bool", "storage:\n  verify_on_start: sometimes\n", `:2: storage.verify_on_start: "sometimes" is not true or false`},
		{"a compaction mode", "storage:\n  compact_at_start: weekly\n", `:2: storage.compact_at_start: "weekly" is not auto, always or never`},
		{"a list for a value", "log:\n  level: [debug]\n", ":2: log.level: a list is not a single value: want a text value"},
		{"a value for a list", "billing:\n  extra_holidays: 2026-12-24\n",
			`:2: billing.extra_holidays: "2026-12-24" is not a list: want [a, b] or one "- item" a line`},
		{"a value for a section", "billing: 3\n", `:1: billing: "3" is not a section: want keys under it (lead_days: …)`},
		{"a list element", "billing:\n  extra_holidays:\n    - 2026-12-24\n    - 2026-13-01\n",
			":4: billing.extra_holidays[1]: "},
		{"validate names the line", "# comment\nbilling:\n  retry_mode: attach\n  lead_days: 12\n",
			":4: billing.lead_days: 12 is outside 2..10: a payment must be created 2 to 10 days before its date"},
		{"the top is not a mapping", "- billing\n", ":1: want a mapping of sections (billing:, storage:, klavi:, …)"},
		// Values the daemon's parts would refuse only after the database file exists.
		{"a rate limit that is not a number", "klavi:\n  rate_limit: .nan\n",
			":2: klavi.rate_limit: NaN: want a number of requests per second above 0 and at most 1000000"},
		{"an infinite rate limit", "klavi:\n  rate_limit: .inf\n", ":2: klavi.rate_limit: +Inf: want a number"},
		{"a negative infinite rate limit", "klavi:\n  rate_limit: -.inf\n", ":2: klavi.rate_limit: -Inf: want a number"},
		{"a rate limit out of range", "klavi:\n  rate_limit: 1e300\n", ":2: klavi.rate_limit: 1e+300: want a number"},
		{"a schedule with its own time zone", "scheduler:\n  scan_schedule: \"CRON_TZ=UTC 0 9 * * *\"\n",
			`:2: scheduler.scan_schedule: "CRON_TZ=UTC 0 9 * * *" names a time zone (CRON_TZ=): billingd reads every schedule in Brasília time (America/Sao_Paulo)`},
		{"a schedule with TZ=", "scheduler:\n  poll_schedule: \"TZ=America/Sao_Paulo */5 * * * *\"\n",
			`:2: scheduler.poll_schedule: "TZ=America/Sao_Paulo */5 * * * *" names a time zone (TZ=)`},
		{"a schedule that never fires", "scheduler:\n  scan_schedule: \"0 0 30 2 *\"\n",
			`:2: scheduler.scan_schedule: "0 0 30 2 *" does not fire within a year`},
		{"a poll schedule that never fires", "scheduler:\n  poll_schedule: \"0 9 31 4,6,9,11 *\"\n",
			`:2: scheduler.poll_schedule: "0 9 31 4,6,9,11 *" does not fire within a year`},
		{"a refresh schedule on 29 February only", "scheduler:\n  refresh_schedule: \"0 9 29 2 *\"\n",
			`:2: scheduler.refresh_schedule: "0 9 29 2 *" does not fire within a year`},
		{"a refresh schedule with its own time zone", "scheduler:\n  refresh_schedule: \"CRON_TZ=UTC @every 5m\"\n",
			`:2: scheduler.refresh_schedule: "CRON_TZ=UTC @every 5m" names a time zone (CRON_TZ=)`},
		{"a schedule every two years", "scheduler:\n  poll_schedule: \"@every 17520h\"\n",
			`:2: scheduler.poll_schedule: "@every 17520h" does not fire within a year`},
		{"a base URL with a port out of range", "klavi:\n  base_url: \"http://127.0.0.1:99999\"\n",
			`:2: klavi.base_url: "http://127.0.0.1:99999": port "99999" is not a number in 1..65535`},
		{"a base URL with a query", "klavi:\n  base_url: \"https://api-sandbox.klavi.ai/?env=1\"\n",
			`:2: klavi.base_url: "https://api-sandbox.klavi.ai/?env=xxxxx" must not have a query or a fragment`},
		{"an app id the client refuses", "klavi:\n  app_id: \"..\"\n", `:2: klavi.app_id: id ".." is a relative path segment`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, tt.body)
			_, err := LoadConfig(p, noEnv)
			require.Error(t, err)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.True(t, strings.HasPrefix(err.Error(), p+tt.want), "got %q", err.Error())
			assert.Equal(t, 1, strings.Count(err.Error(), p), "the path once")
			assert.NotContains(t, err.Error(), "main.")
			assert.NotContains(t, err.Error(), "time.Duration")
			assert.NotContains(t, err.Error(), "!!")
			assert.NotContains(t, err.Error(), "note:", "no variable is referenced")
		})
	}

	t.Run("several problems in file order, then those of keys the file does not set", func(t *testing.T) {
		p := writeConfig(t, "scheduler:\n  workers: 0\nbilling:\n  lead_days: 1\n  submit_time: 9am\n")
		cfg := DefaultConfig()
		_, err := LoadConfig(p, noEnv)
		require.Error(t, err)
		assert.Equal(t, "3 config problems:\n"+
			"  "+p+":2: scheduler.workers: 0 is outside 1..1024\n"+
			"  "+p+":4: billing.lead_days: 1 is outside 2..10: a payment must be created 2 to 10 days before its date\n"+
			"  "+p+`:5: billing.submit_time: "9am" must be HH:MM (24-hour, Brasília time)`, err.Error())
		cfg.src = &configSource{path: p}
		cfg.Storage.Path = ""
		assert.Equal(t, p+": storage.path: is empty", cfg.Validate().Error(), "no line: the file does not set it")
	})
}

// TestConfig_Validate_EveryFloat: every float of the config, wherever it is, is
// refused when it is not a finite number (YAML's .nan, .inf, -.inf), naming its key.
func TestConfig_Validate_EveryFloat(t *testing.T) {
	var walk func(v reflect.Value, key string, found *int)
	walk = func(v reflect.Value, key string, found *int) {
		switch v.Kind() {
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				f := v.Type().Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "" || name == "-" {
					continue
				}
				walk(v.Field(i), joinKey(key, name), found)
			}
		case reflect.Float32, reflect.Float64:
			*found++
			for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
				cfg := DefaultConfig()
				field := reflect.ValueOf(&cfg).Elem()
				for _, part := range strings.Split(key, ".") {
					field = fieldByYAML(field, part)
				}
				field.SetFloat(bad)
				err := cfg.Validate()
				require.Error(t, err, "%s: %v", key, bad)
				assert.Contains(t, err.Error(), "config: "+key+": ", "%s: %v", key, bad)
			}
		}
	}
	found := 0
	walk(reflect.ValueOf(DefaultConfig()), "", &found)
	assert.Positive(t, found, "the config has floats (klavi.rate_limit)")
}

// fieldByYAML is the field of struct v whose yaml name is name.
func fieldByYAML(v reflect.Value, name string) reflect.Value {
	for i := 0; i < v.NumField(); i++ {
		if n, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ","); n == name {
			return v.Field(i)
		}
	}
	panic("no field " + name)
}

// TestLoadConfig_EnvNote: the note about unset variables names only ${NAME}s used in
// the file's values, not those in comments or with a default.
func TestLoadConfig_EnvNote(t *testing.T) {
	tests := []struct {
		name, body string
		note       string // "" for none
	}{
		{"a reference in a comment", "# set ${NAME} in the environment\nklavi:\n  access_key: k # or ${OTHER}\n", ""},
		{"a reference with a default", "klavi:\n  access_key: ${AK:-}\n", ""},
		{"a set variable", "klavi:\n  access_key: ${SET}\n", ""},
		{"one unset", "klavi:\n  access_key: ${AK}\n", "note: the environment variable AK, used in the file, is not set"},
		{"two unset, once each", "klavi:\n  access_key: ${AK}\n  secret_key: \"${SK}-${AK}\"\n",
			"note: the environment variables AK, SK, used in the file, are not set"},
	}
	getenv := func(k string) string {
		if k == "SET" {
			return "value"
		}
		return ""
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, tt.body+"billing:\n  lead_days: 1\n")
			_, err := LoadConfig(p, getenv)
			require.Error(t, err)
			if tt.note == "" {
				assert.NotContains(t, err.Error(), "note:")
			} else {
				assert.True(t, strings.HasSuffix(err.Error(), "\n"+tt.note), "got %q", err.Error())
			}
		})
	}
	t.Run("config.example.yaml has none", func(t *testing.T) {
		cfg, err := LoadConfig("../../config.example.yaml", noEnv)
		require.NoError(t, err)
		err = cfg.validateForRun()
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "note:", "its ${NAME:-} references have defaults; the one in a comment is not used")
		raw, rerr := os.ReadFile("../../config.example.yaml")
		require.NoError(t, rerr)
		line := 1 + slices.IndexFunc(strings.Split(string(raw), "\n"), func(l string) bool {
			return strings.HasPrefix(l, "  access_key:")
		})
		require.Positive(t, line-1, "the example names klavi.access_key")
		assert.Contains(t, err.Error(), fmt.Sprintf("config.example.yaml:%d: klavi.access_key: is empty", line))
	})
}
