package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// scrape reads the daemon's /metrics: the raw text, and each sample by its series
// name with sorted labels, e.g. billingd_consents{state="active"}.
func scrape(t *testing.T, addr string) (string, map[string]float64) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	require.NoError(t, err)
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return string(raw), out
}

func TestDaemon_MetricsMoveWithTheScenario(t *testing.T) {
	load := func(name string) *consent.Consent {
		data, err := os.ReadFile("../../examples/consents/" + name)
		require.NoError(t, err)
		c, err := consent.Decode(data)
		require.NoError(t, err)
		return c
	}
	weekly := load("weekly-retries.json")    // Mondays, local [1,2,3] skipWeekend
	monthly := load("monthly-31st.json")     // attach [1,3,5]
	variable := load("variable-amount.json") // the 10th, no amount set → skipped
	late := load("yearly-leap-day.json")     // re-dated below: due tomorrow → missed
	weekly.PaymentMethodConfig.ReferenceStartDate = cycle.MustDate(2026, 3, 9)
	monthly.PaymentMethodConfig.ReferenceStartDate = cycle.MustDate(2026, 3, 10)
	late.PaymentMethodConfig.ReferenceStartDate = cycle.MustDate(2026, 3, 7)

	zero := 0
	sc := &sandbox.Scenario{Rules: []sandbox.Rule{
		{ConsentID: weekly.ID, Cycle: &zero, Attempt: &zero, Outcome: sandbox.Rejected, Reason: klavi.ReasonNotInformed},
	}}
	de := startTestDaemonWith(t, cycle.MustDate(2026, 3, 6).At(8, 0), sc, func(c *Config) {
		c.Scheduler.Workers = 1
		c.Scheduler.RefreshBeforeSubmit = false // the scripted fault is for the create
	})
	for _, c := range []*consent.Consent{weekly, monthly, variable, late} {
		require.NoError(t, de.sb.AddConsent(&c.CreatedConsent))
		body, _ := consentJSON(c)
		f := t.TempDir() + "/c.json"
		require.NoError(t, os.WriteFile(f, body, 0o600))
		code, _, stderr := de.cli("consent", "add", f)
		require.Equal(t, 0, code, stderr)
	}

	raw, before := scrape(t, de.d.Addr())
	assert.Equal(t, float64(4), before[`billingd_consents{state="active"}`])
	assert.Zero(t, before[`billingd_payments_submitted_total{interval="WEEKLY",mode="local"}`])
	assert.Positive(t, before["billingd_next_submission_timestamp_seconds"])
	assert.Contains(t, raw, "billingd_build_info{")

	// Fri 6 Mar 09:00: the weekly (due Mon 9) is submitted.
	de.clock.Set(cycle.MustDate(2026, 3, 6).At(9, 0))
	_, lag := scrape(t, de.d.Addr())
	assert.Positive(t, lag["billingd_scheduler_lag_seconds"], "due work not yet done is lag")
	de.tick(cycle.MustDate(2026, 3, 6).At(9, 0))
	// Sat 7 Mar 09:00: the monthly (due Tue 10) is submitted and its answer dropped after
	// the commit, so the client's re-send meets a 409; billingd looks the key up in
	// Klavi's orders list and adopts the payment. The variable consent (due 10 Mar) has
	// no amount set and is skipped. The scan makes the first request.
	de.sb.ScriptFaults(sandbox.FaultDrop)
	de.tick(cycle.MustDate(2026, 3, 7).At(9, 0))
	// Mon 9 Mar: the weekly payment is rejected; its first local retry (Tue 10) is
	// requested on Mon 9. Tue 10: the retry settles.
	de.tick(cycle.MustDate(2026, 3, 9).At(7, 0))
	de.tick(cycle.MustDate(2026, 3, 9).At(9, 0))
	de.tick(cycle.MustDate(2026, 3, 10).At(7, 0))

	raw, m := scrape(t, de.d.Addr())
	want := map[string]float64{
		`billingd_payments_submitted_total{interval="WEEKLY",mode="local"}`:         1,
		`billingd_payments_unconfirmed_total{interval="MONTHLY"}`:                   0,
		`billingd_payments_submitted_total{interval="MONTHLY",mode="attach"}`:       1,
		`billingd_reconciliation_lookups_total{lookup="found",outcome="adopted"}`:   1,
		`billingd_attention_items{state="UNCONFIRMED"}`:                             0,
		`billingd_payments_missed_total{interval="YEARLY"}`:                         1,
		`billingd_payments_skipped_total{interval="MONTHLY"}`:                       1,
		`billingd_payments_rejected_total{interval="WEEKLY",reason="NOT_INFORMED"}`: 1,
		`billingd_payments_completed_total{interval="WEEKLY"}`:                      1,
		`billingd_retries_planned_total{mode="local"}`:                              1,
		`billingd_retries_sent_total{mode="local"}`:                                 1,
		`billingd_amount_centavos_total{outcome="submitted"}`:                       2500 + 9990,
		`billingd_amount_centavos_total{outcome="completed"}`:                       2500 + 9990,
		`billingd_amount_centavos_total{outcome="rejected"}`:                        2500,
		`billingd_consents{state="active"}`:                                         4,
		`billingd_scheduler_lag_seconds`:                                            0,
	}
	for k, v := range want {
		assert.Equal(t, v, m[k], k)
	}
	assert.Positive(t, m[`billingd_klavi_requests_total{code="201",endpoint="create_payment"}`])
	assert.Positive(t, m[`billingd_klavi_requests_total{code="409",endpoint="create_payment"}`], "the re-send after the dropped answer")
	assert.Positive(t, m[`billingd_klavi_requests_total{code="error",endpoint="create_payment"}`])
	assert.Positive(t, m[`billingd_klavi_requests_total{code="200",endpoint="get_payment"}`])
	assert.Positive(t, m[`billingd_klavi_token_refreshes_total{outcome="ok"}`])
	assert.Positive(t, m["billingd_db_size_bytes"])
	assert.Positive(t, m["billingd_db_inuse_bytes"])
	assert.Positive(t, m["billingd_due_scan_duration_seconds_count"])
	assert.Positive(t, m["billingd_next_submission_timestamp_seconds"])

	// The revocation of a consent shows in the gauge.
	code, _, _ := de.cli("consent", "revoke", late.ID)
	require.Equal(t, 0, code)
	_, m = scrape(t, de.d.Addr())
	assert.Equal(t, float64(3), m[`billingd_consents{state="active"}`])
	assert.Equal(t, float64(1), m[`billingd_consents{state="revoked"}`])

	// promtool's own check of the exposition (CI installs promtool).
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: skipping promtool check metrics")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(raw)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics: %s", out)
}

func consentJSON(c *consent.Consent) ([]byte, error) {
	var b bytes.Buffer
	err := printJSON(&b, c)
	return b.Bytes(), err
}
