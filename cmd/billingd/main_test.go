package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage/bolt"
)

// runCLI runs billingd's command line in-process and returns the exit code, stdout
// and stderr.
func runCLI(t *testing.T, getenv func(string) string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	e := &env{stdout: &out, stderr: &errb, getenv: getenv, clock: clock.NewFake(cycle.MustDate(2026, 11, 26).At(10, 0))}
	code := Main(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func TestMain_Usage(t *testing.T) {
	code, _, stderr := runCLI(t, nil)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "Usage:\n  billingd <command> [flags]", "no command: the help on stderr, exit 2")
	code, _, stderr = runCLI(t, nil, "frobnicate")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `unknown command "frobnicate"`)
	code, _, _ = runCLI(t, nil, "help")
	assert.Equal(t, 0, code)
	code, _, stderr = runCLI(t, nil, "preview", "--bogus")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "billingd: preview: unknown flag: --bogus\nRun 'billingd preview --help' for usage.")
	code, _, _ = runCLI(t, nil, "preview", "-h")
	assert.Equal(t, 0, code)
	code, stdout, _ := runCLI(t, nil, "version")
	assert.Equal(t, 0, code)
	assert.Contains(t, stdout, "billingd ")
}

func TestPreview_Command(t *testing.T) {
	t.Run("json contract", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, nil, "preview", "--consent-file", "../../examples/consents/monthly-31st.json",
			"--from", "2025-10-25", "--cycles", "5", "--format", "json")
		require.Equal(t, 0, code, stderr)
		var pv struct {
			ConsentID string `json:"consentId"`
			Interval  string `json:"interval"`
			RetryMode string `json:"retryMode"`
			Cycles    []struct {
				Index          int               `json:"index"`
				Start          string            `json:"start"`
				End            string            `json:"end"`
				DueDate        string            `json:"dueDate"`
				SubmitOn       string            `json:"submitOn"`
				State          string            `json:"state"`
				Amount         *string           `json:"amount"`
				Retries        []json.RawMessage `json:"retries"`
				DroppedRetries []json.RawMessage `json:"droppedRetries"`
			} `json:"cycles"`
		}
		dec := json.NewDecoder(strings.NewReader(stdout))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&pv))
		assert.Equal(t, "MONTHLY", pv.Interval)
		assert.Equal(t, "attach", pv.RetryMode)
		require.Len(t, pv.Cycles, 5)
		var got []string
		for _, c := range pv.Cycles {
			got = append(got, c.Start[8:]+"/"+c.Start[5:7]+"–"+c.End[8:]+"/"+c.End[5:7])
			assert.Equal(t, "99.90", *c.Amount)
			assert.Len(t, c.Retries, 3)
			assert.NotNil(t, c.DroppedRetries)
		}
		assert.Equal(t, []string{"31/10–29/11", "30/11–30/12", "31/12–30/01", "31/01–27/02", "28/02–30/03"}, got)
		assert.Equal(t, "2025-10-28", pv.Cycles[0].SubmitOn)
	})
	t.Run("table with weekdays", func(t *testing.T) {
		code, stdout, _ := runCLI(t, nil, "preview", "--consent-file", "../../examples/consents/weekly-retries.json", "--cycles", "2")
		require.Equal(t, 0, code)
		assert.Contains(t, stdout, "Mon 2026-11-30")
		assert.Contains(t, stdout, "seen from Thu 2026-11-26")
	})
	t.Run("late and missed states", func(t *testing.T) {
		code, stdout, _ := runCLI(t, nil, "preview", "--consent-file", "../../examples/consents/monthly-31st.json", "--from", "2025-10-29", "--cycles", "1", "--format", "json")
		require.Equal(t, 0, code)
		assert.Contains(t, stdout, `"state": "late"`)
		assert.Contains(t, stdout, `"submitOn": "2025-10-29"`)
		_, stdout, _ = runCLI(t, nil, "preview", "--consent-file", "../../examples/consents/monthly-31st.json", "--from", "2025-10-30", "--cycles", "1", "--format", "json")
		assert.Contains(t, stdout, `"state": "missed"`)
	})
	bad := []struct {
		name string
		args []string
		msg  string
	}{
		{"no file", []string{}, "want --consent-file FILE or --consent ID\n"},
		{"file and id", []string{"--consent-file", "../../examples/consents/monthly-31st.json", "--consent", "urn:x"}, "want --consent-file FILE or --consent ID, not both"},
		{"missing file", []string{"--consent-file", "nope.json"}, "no such file"},
		{"invalid consent", []string{"--consent-file", "../../consent/testdata/broken.json"}, "27 problems"},
		{"bad from", []string{"--consent-file", "../../examples/consents/monthly-31st.json", "--from", "2025-2-3"}, "want YYYY-MM-DD"},
		{"bad lead", []string{"--consent-file", "../../examples/consents/monthly-31st.json", "--lead-days", "11"}, "want 2..10"},
		{"bad format", []string{"--consent-file", "../../examples/consents/monthly-31st.json", "--format", "xml"}, "want table or json"},
		{"bad cycles", []string{"--consent-file", "../../examples/consents/monthly-31st.json", "--cycles", "0"}, "want 1..10000"},
		{"stray argument", []string{"--consent-file", "../../examples/consents/monthly-31st.json", "extra"}, "unexpected argument"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, append([]string{"preview"}, tt.args...)...)
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr, tt.msg)
		})
	}
	t.Run("broken config", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		require.NoError(t, os.WriteFile(p, []byte("billing:\n  lead_days: 12\n"), 0o600))
		code, _, stderr := runCLI(t, func(k string) string {
			if k == "BILLINGD_CONFIG" {
				return p
			}
			return ""
		}, "preview", "--consent-file", "../../examples/consents/monthly-31st.json")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "billing.lead_days: 12 is outside 2..10")
	})
}

func TestSimulate_Command(t *testing.T) {
	t.Run("default run", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, nil, "simulate", "--days", "60")
		require.Equal(t, 0, code, stderr)
		for _, want := range []string{"submitted", "completed", "rejected", "retry_submitted", "skipped", "klavi_retry", "summary", "0 cycles charged more than once",
			"nothing was stored (--db FILE keeps the run's database)"} {
			assert.Contains(t, stdout, want)
		}
	})
	t.Run("a missing --consents is named", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, "simulate", "--consents", filepath.Join(t.TempDir(), "none"))
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "simulate: --consents: ")
		assert.Contains(t, stderr, "no such file")
	})
	t.Run("the text run says where its database went", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sim.db")
		code, stdout, stderr := runCLI(t, nil, "simulate", "--days", "10", "--db", path)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "the run's database: "+path)
	})
	t.Run("json events", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, nil, "simulate", "--days", "70", "--format", "json", "--from", "2026-11-26")
		require.Equal(t, 0, code, stderr)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		require.NotEmpty(t, lines)
		kinds := map[string]int{}
		var last time.Time
		for _, l := range lines {
			var ev map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
			for _, k := range []string{"day", "event", "consentId", "cycle", "attempt", "date", "amount", "clientRequestId", "status", "reason", "at", "interval"} {
				assert.Contains(t, ev, k)
			}
			kinds[ev["event"].(string)]++
			at, err := time.Parse(time.RFC3339, ev["at"].(string))
			require.NoError(t, err)
			assert.False(t, at.Before(last), "events in the order of their instants: %s", l)
			last = at
			if ev["event"] == "klavi_retry" {
				assert.Equal(t, "urn:klavi:consent-monthly-31st-0001", ev["consentId"])
				assert.Equal(t, "2026-12-31", ev["day"])
				assert.Equal(t, "MONTHLY", ev["interval"])
				assert.EqualValues(t, 1, ev["attempt"])
			}
		}
		assert.Positive(t, kinds["submitted"])
		assert.Positive(t, kinds["completed"])
		// The text timeline's and the JSON's events are the same, the retry Klavi ran
		// itself for the attach-mode consent included.
		assert.Equal(t, 1, kinds["klavi_retry"])
		code, text, stderr := runCLI(t, nil, "simulate", "--days", "70", "--from", "2026-11-26")
		require.Equal(t, 0, code, stderr)
		for kind, n := range kinds {
			assert.Equal(t, n, strings.Count(text, "  "+fmt.Sprintf("%-15s", kind)+" "), kind)
		}
	})
	t.Run("database kept with --db, never an existing one", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sim.db")
		code, _, stderr := runCLI(t, nil, "simulate", "--days", "30", "--from", "2026-11-26", "--format", "json", "--db", path)
		require.Equal(t, 0, code, stderr)
		db, err := bolt.Open(path, bolt.Options{ReadOnly: true})
		require.NoError(t, err)
		recs, err := db.ListConsents(context.Background(), "", 100, "")
		require.NoError(t, err)
		assert.Len(t, recs, 6, "the example consents, as the run left them")
		atts, err := db.Attempts(context.Background(), "urn:klavi:consent-weekly-0002")
		require.NoError(t, err)
		assert.NotEmpty(t, atts)
		require.NoError(t, db.Close())
		before, err := os.ReadFile(path)
		require.NoError(t, err)

		code, _, stderr = runCLI(t, nil, "simulate", "--days", "5", "--db", path)
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "--db "+path+": the file exists")
		after, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, before, after, "the existing database is untouched")
	})
	t.Run("bad input", func(t *testing.T) {
		code, _, stderr := runCLI(t, nil, "simulate", "--days", "0")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "--days 0")
		code, _, stderr = runCLI(t, nil, "simulate", "--consents", "../../consent/testdata/broken.json")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "problems")
		code, _, _ = runCLI(t, nil, "simulate", "--scenario", "nope.json")
		assert.Equal(t, 2, code)
	})
}

func TestMain_TestClock(t *testing.T) {
	real0 := cycle.MustDate(2026, 11, 26).At(10, 0) // the Fake runCLI would give
	newEnv := func(spec string) (*env, *bytes.Buffer, *bytes.Buffer) {
		var out, errb bytes.Buffer
		getenv := func(k string) string {
			if k == testClockEnv {
				return spec
			}
			return ""
		}
		return &env{stdout: &out, stderr: &errb, getenv: getenv, clock: clock.NewFake(real0)}, &out, &errb
	}

	t.Run("unset keeps the clock", func(t *testing.T) {
		e, _, errb := newEnv("")
		require.Equal(t, 0, Main(context.Background(), e, []string{"version"}))
		assert.IsType(t, &clock.Fake{}, e.clock)
		assert.NotContains(t, errb.String(), testClockEnv)
	})
	t.Run("set replaces the clock of every command", func(t *testing.T) {
		// The start is far from the real date, the rate 1: preview's "today" is the
		// test clock's date, not the real one.
		e, out, errb := newEnv(fmt.Sprintf("start=2031-01-20T12:00:00Z,epoch=%d,rate=1", time.Now().UnixMilli()))
		code := Main(context.Background(), e, []string{"preview", "--consent-file", "../../examples/consents/monthly-31st.json",
			"--cycles", "1", "--format", "json"})
		require.Equal(t, 0, code, errb.String())
		sc, ok := e.clock.(*clock.Scaled)
		require.True(t, ok, "clock is %T", e.clock)
		assert.Equal(t, 1.0, sc.Rate)
		assert.Contains(t, errb.String(), testClockEnv+" is set: test clock reading 2031-01-20T12:")
		var pv struct {
			Cycles []struct {
				DueDate string `json:"dueDate"`
			} `json:"cycles"`
		}
		require.NoError(t, json.Unmarshal(out.Bytes(), &pv))
		require.Len(t, pv.Cycles, 1)
		assert.Equal(t, "2031-01-31", pv.Cycles[0].DueDate, "first cycle due on or after the test clock's date")
	})
	for _, tc := range []struct{ name, spec, want string }{
		{"not key=value", "fast", `"fast" is not key=value`},
		{"missing rate", "start=2026-12-01T03:00:00Z,epoch=1764558000000", "rate is missing"},
		{"bad start", "start=tomorrow,epoch=1764558000000,rate=3600", "want an RFC 3339 instant"},
		{"zero rate", "start=2026-12-01T03:00:00Z,epoch=1764558000000,rate=0", "more than 0"},
	} {
		t.Run("malformed "+tc.name+" exits 2", func(t *testing.T) {
			e, out, errb := newEnv(tc.spec)
			assert.Equal(t, 2, Main(context.Background(), e, []string{"version"}))
			assert.Empty(t, out.String(), "the command did not run")
			assert.Contains(t, errb.String(), "billingd: "+testClockEnv+": ")
			assert.Contains(t, errb.String(), tc.want)
			assert.Contains(t, errb.String(), "test-only")
			assert.IsType(t, &clock.Fake{}, e.clock)
		})
	}
	t.Run("help documents it as test-only", func(t *testing.T) {
		code, stdout, _ := runCLI(t, nil, "help")
		require.Equal(t, 0, code)
		assert.Contains(t, stdout, testClockEnv)
		assert.Contains(t, stdout, "tests only, never in production")
	})
}
