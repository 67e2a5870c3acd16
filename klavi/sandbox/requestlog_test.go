package sandbox_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// fenced sends a request carrying X-Billingd-Fence: fence, and returns its status.
func (b *rawBox) fenced(fence, method, path, body string) int {
	b.t.Helper()
	req, err := http.NewRequest(method, b.ts.URL+path, strings.NewReader(body))
	require.NoError(b.t, err)
	req.Header.Set("Authorization", "Bearer "+b.token())
	req.Header.Set(klavi.FenceHeader, fence)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0 // a dropped answer
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestServer_RequestLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "requests.jsonl")
	b := newRaw(t, sandbox.Options{RequestLog: path})
	b.seed(monthly, "2026-02-05", 9990)
	const other = "urn:test:other"
	b.seed(other, "2026-02-05", 9990)
	pay := func(crid, date string) string {
		return `{"clientRequestId":"` + crid + `","date":"` + date + `","amount":"99.90","currency":"BRL"}`
	}

	require.Equal(t, 201, b.fenced("7", http.MethodPost, paymentsPath(monthly), pay("m-0", "2026-03-05")))
	require.Equal(t, 409, b.fenced("7", http.MethodPost, paymentsPath(monthly), pay("m-0", "2026-03-05")))
	require.Equal(t, 200, b.fenced("9", http.MethodGet, "/payment/customer/v1/automatic/consents/"+monthly, "")) // a newer term reads
	require.Equal(t, 416, b.fenced("7", http.MethodPost, paymentsPath(monthly), pay("m-9", "2026-04-05")))       // a deposed one sends
	b.sb.ScriptFaults(sandbox.Fault5xx)
	require.Equal(t, 503, b.fenced("9", http.MethodPost, paymentsPath(other), pay("o-0", "2026-03-05")))
	b.sb.ScriptFaults(sandbox.FaultDrop)
	require.Equal(t, 0, b.fenced("9", http.MethodPost, paymentsPath(other), pay("o-0", "2026-03-05")))
	require.Equal(t, 200, b.do(http.MethodGet, "/_sandbox/stats", "").code, "other requests are not logged")

	// Lines are written once the outcome is decided; a dropped answer's client may
	// see the connection close a moment before.
	var recs []sandbox.RequestRecord
	require.Eventually(t, func() bool {
		var err error
		recs, err = sandbox.ReadRequestLog(path)
		require.NoError(t, err)
		return len(recs) == 5
	}, 5*time.Second, 5*time.Millisecond)
	type row struct {
		Kind            sandbox.Kind
		CRID, Outcome   string
		Fence, Seen     int64
		Status          int
		Dropped, HasPay bool
	}
	var got []row
	for _, r := range recs {
		assert.False(t, r.Wall.IsZero() || r.At.IsZero() || r.Answered.Before(r.Wall), "%+v", r)
		got = append(got, row{r.Kind, r.ClientRequestID, r.Outcome, r.Fence, r.FenceSeen, r.Status, r.Dropped, r.PaymentID != ""})
	}
	assert.Equal(t, []row{
		{sandbox.KindOriginal, "m-0", sandbox.OutcomeCreated, 7, 0, 201, false, true},
		{sandbox.KindOriginal, "m-0", sandbox.OutcomeDuplicate, 7, 7, 409, false, false},
		{sandbox.KindOriginal, "m-9", sandbox.OutcomeRefused, 7, 9, 416, false, false},
		{sandbox.KindOriginal, "o-0", sandbox.OutcomeFault, 9, 9, 503, false, false},
		{sandbox.KindOriginal, "o-0", sandbox.OutcomeCreated, 9, 9, 0, true, true},
	}, got)
	assert.Equal(t, monthly, recs[0].ConsentID)
	assert.Equal(t, other, recs[4].ConsentID)
	assert.Equal(t, sandbox.RuleDuplicate, recs[1].Rule)
	assert.Equal(t, sandbox.Fault5xx, recs[3].Fault)
}
