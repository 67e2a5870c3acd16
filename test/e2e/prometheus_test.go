//go:build e2e

// Package e2e runs billingd as a process against the sandbox as a process, with a
// real Prometheus server (Debian's prometheus package) scraping billingd on loopback,
// and checks with PromQL over Prometheus's API that the payment counts are the ones
// billingd made.
//
//	go test -tags e2e -v -count=1 ./test/e2e/
package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/test/proc"
)

func TestPrometheusScrapesBillingd(t *testing.T) {
	for _, tool := range []string{"prometheus", "promtool"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is needed: apt-get install prometheus", tool)
	}
	dir := t.TempDir()
	bin := proc.Build(t, dir)

	// 40 consents with a cycle due in three days (submitted at once: lead 3, submit
	// time 00:00) and 7 whose cycle is due tomorrow (the window has closed: missed).
	const due, missed = 40, 7
	today := cycle.DateOf(time.Now())
	var cs []*consent.Consent
	for i := 0; i < due+missed; i++ {
		ref := today.AddDays(3)
		if i >= due {
			ref = today.AddDays(1)
		}
		c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(fmt.Sprintf("urn:e2e:consent-%03d", i), cycle.Intervals[i%5], ref, klavi.Cents(10_00+i))}
		c.Billing.RetryMode = consent.Off
		cs = append(cs, c)
	}
	consents := filepath.Join(dir, "consents.json")
	raw, _ := json.Marshal(cs)
	require.NoError(t, os.WriteFile(consents, raw, 0o600))

	sbAddr, apiAddr := proc.FreePort(t), proc.FreePort(t)
	sb := exec.Command(bin, "sandbox", "--addr", sbAddr, "--access-key", "ak", "--secret-key", "sk", "--consents", consents)
	sbLog, _ := os.Create(filepath.Join(dir, "sandbox.log"))
	sb.Stdout, sb.Stderr = sbLog, sbLog
	require.NoError(t, sb.Start())
	defer func() { _ = sb.Process.Kill(); _ = sb.Wait() }()
	proc.WaitHTTP(t, "http://"+sbAddr+"/_sandbox/stats", 30*time.Second)

	cfg := filepath.Join(dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`
billing:
  lead_days: 3
  submit_time: "00:00"
storage:
  path: %s/billingd.db
klavi:
  base_url: http://%s
  access_key: ak
  secret_key: sk
scheduler:
  scan_schedule: "@every 2s"
  poll_schedule: "@every 2s"
http:
  listen: %s
`, dir, sbAddr, apiAddr)), 0o600))
	out, err := exec.Command(bin, "consent", "import", "--config", cfg, consents).CombinedOutput()
	require.NoError(t, err, string(out))

	d := exec.Command(bin, "run", "--config", cfg)
	dLog, _ := os.Create(filepath.Join(dir, "billingd.log"))
	d.Stdout, d.Stderr = dLog, dLog
	require.NoError(t, d.Start())
	defer func() { _ = d.Process.Kill(); _ = d.Wait() }()
	proc.WaitHTTP(t, "http://"+apiAddr+"/readyz", 30*time.Second)

	check := exec.Command("../../deploy/prometheus/e2e.sh", apiAddr,
		fmt.Sprintf("sum(billingd_payments_submitted_total)=%d", due),
		fmt.Sprintf(`sum(billingd_klavi_requests_total{endpoint="create_payment",code="201"})=%d`, due),
		fmt.Sprintf("sum(billingd_payments_missed_total)=%d", missed),
		fmt.Sprintf(`billingd_consents{state="active"}=%d`, due+missed),
		"sum(billingd_payments_unconfirmed_total)=0",
		`billingd_build_info{job="billingd"} > bool 0=1`,
	)
	check.Env = append(os.Environ(), "E2E_PORT="+portOf(t, proc.FreePort(t)))
	check.Stdout, check.Stderr = os.Stdout, os.Stderr
	err = check.Run()
	if err != nil {
		logs, _ := os.ReadFile(filepath.Join(dir, "billingd.log"))
		t.Logf("billingd log:\n%s", logs)
	}
	require.NoError(t, err, "PromQL over the Prometheus API returns billingd's counts")
}

func portOf(t *testing.T, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return port
}
