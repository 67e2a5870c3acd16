package admin

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
)

const monthlyID = "urn:klavi:consent-monthly-31st-0001"

func (e *env) raw(method, path string, hdr ...string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// missed stores the monthly consent billed from 1 Dec 2025: its 31 Dec cycle's window
// closed on 29 Dec, so the scan at 2 Jan 10:00 records it MISSED.
func (e *env) missed() {
	e.t.Helper()
	code, body := e.do("POST", "/v1/consents?billFrom=2025-12-01", example(e.t, "monthly-31st.json"), ActorHeader, "alice")
	require.Equal(e.t, http.StatusCreated, code, body)
	_, err := e.sch.Scan(context.Background())
	require.NoError(e.t, err)
}

func TestAdmin_Events(t *testing.T) {
	e := newEnv(t)
	code, _ := e.do("POST", "/v1/consents", example(t, "monthly-31st.json"), ActorHeader, " alice\t\u200b smith ")
	require.Equal(t, http.StatusCreated, code)
	code, _ = e.do("POST", "/v1/consents/"+monthlyID+"/revoke", `{"reason":"plan cancelled"}`, ActorHeader, strings.Repeat("b", 100))
	require.Equal(t, http.StatusOK, code)

	code, body := e.do("GET", "/v1/consents/"+monthlyID+"/events", "")
	require.Equal(t, http.StatusOK, code)
	evs := body["events"].([]any)
	require.Len(t, evs, 2)
	first, second := evs[0].(map[string]any), evs[1].(map[string]any)
	assert.Equal(t, "added", first["kind"])
	assert.Equal(t, "alice smith", first["actor"], "sanitized: printable only")
	assert.Equal(t, "2026-01-02T10:00:00-03:00", first["at"])
	assert.NotContains(t, first, "cycle")
	assert.Equal(t, "revoked", second["kind"])
	assert.Equal(t, strings.Repeat("b", MaxActorLen), second["actor"])
	assert.Equal(t, "plan cancelled", second["reason"])
	assert.Equal(t, "", body["next"])

	code, body = e.do("GET", "/v1/consents/"+monthlyID+"/events?limit=1", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["events"], 1)
	next := body["next"].(string)
	require.NotEmpty(t, next)
	code, body = e.do("GET", "/v1/consents/"+monthlyID+"/events?limit=1&after="+next, "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "revoked", body["events"].([]any)[0].(map[string]any)["kind"])
	assert.Equal(t, "", body["next"])

	for _, tt := range []struct {
		path string
		code int
	}{
		{"/v1/consents/urn:t:none/events", http.StatusNotFound},
		{"/v1/consents/" + monthlyID + "/events?after=x", http.StatusBadRequest},
		{"/v1/consents/" + monthlyID + "/events?limit=0", http.StatusBadRequest},
	} {
		code, _ := e.do("GET", tt.path, "")
		assert.Equal(t, tt.code, code, tt.path)
	}
}

func TestAdmin_Attention(t *testing.T) {
	e := newEnv(t)
	e.missed()
	e.clk.Advance(time.Hour)

	code, body := e.do("GET", "/v1/attention", "")
	require.Equal(t, http.StatusOK, code)
	items := body["items"].([]any)
	require.Len(t, items, 1)
	it := items[0].(map[string]any)
	assert.Equal(t, map[string]any{
		"consentId": monthlyID, "cycle": float64(2), "attempt": float64(0), "state": "MISSED", "date": "2025-12-31",
		"amount": "99.90", "reason": it["reason"], "clientRequestId": it["clientRequestId"],
		"since": "2026-01-02T10:00:00-03:00", "ageSeconds": float64(3600),
	}, it)
	assert.Equal(t, map[string]any{"MISSED": float64(1), "FAILED": float64(0), "SKIPPED": float64(0), "STUCK": float64(0),
		"UNCONFIRMED": float64(0), "AMOUNT_MISSING": float64(0)}, body["counts"])
	assert.Equal(t, "", body["next"])

	code, body = e.do("GET", "/v1/attention?state=failed", "")
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, body["items"])
	code, _ = e.do("GET", "/v1/attention?state=PLANNED", "")
	assert.Equal(t, http.StatusBadRequest, code)

	resolve := func(body string) (int, map[string]any) {
		return e.do("POST", "/v1/attention/resolve", body, ActorHeader, "bob")
	}
	for _, tt := range []struct {
		name, body string
		code       int
	}{
		{"no note", `{"consentId":"` + monthlyID + `","cycle":2,"attempt":0}`, http.StatusBadRequest},
		{"blank note", `{"consentId":"` + monthlyID + `","cycle":2,"attempt":0,"note":"  "}`, http.StatusBadRequest},
		{"note too long", `{"consentId":"` + monthlyID + `","cycle":2,"attempt":0,"note":"` + strings.Repeat("x", 501) + `"}`, http.StatusBadRequest},
		{"no cycle", `{"consentId":"` + monthlyID + `","note":"x"}`, http.StatusBadRequest},
		{"bad JSON", `{"consentId":`, http.StatusBadRequest},
		{"unknown attempt", `{"consentId":"` + monthlyID + `","cycle":7,"attempt":0,"note":"x"}`, http.StatusNotFound},
		{"unknown consent", `{"consentId":"urn:t:none","cycle":2,"attempt":0,"note":"x"}`, http.StatusNotFound},
	} {
		code, body := resolve(tt.body)
		assert.Equal(t, tt.code, code, "%s: %v", tt.name, body)
	}

	code, body = resolve(`{"consentId":"` + monthlyID + `","cycle":2,"attempt":0,"note":"charged by boleto"}`)
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "MISSED", body["state"])
	assert.Equal(t, "2026-01-02T10:00:00-03:00", body["since"])
	res := body["resolved"].(map[string]any)
	assert.Equal(t, "bob", res["by"])
	assert.Equal(t, "charged by boleto", res["note"])
	assert.Equal(t, "2026-01-02T11:00:00-03:00", res["at"])

	code, body = resolve(`{"consentId":"` + monthlyID + `","cycle":2,"attempt":0,"note":"again"}`)
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, body["error"], "resolved by bob")

	code, body = e.do("GET", "/v1/attention", "")
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, body["items"])
	assert.Equal(t, float64(0), body["counts"].(map[string]any)["MISSED"])
	code, body = e.do("GET", "/v1/attempts?state=MISSED", "")
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, body["attempts"], "the old listing shows open items too")

	code, body = e.do("GET", "/v1/consents/"+monthlyID+"/attempts", "")
	require.Equal(t, http.StatusOK, code)
	atts := body["attempts"].([]any)
	require.NotEmpty(t, atts)
	att := atts[0].(map[string]any)
	assert.Equal(t, "MISSED", att["state"])
	assert.Positive(t, att["version"], "an attempt shows its stored version, for a compare-and-swap")
	assert.Equal(t, "bob", att["resolved"].(map[string]any)["by"])

	code, body = e.do("GET", "/v1/consents/"+monthlyID, "")
	require.Equal(t, http.StatusOK, code)
	assert.Positive(t, body["version"], "a consent shows its stored version, for a compare-and-swap")
	assert.NotContains(t, body, "nextDue", "the due entry's instant is nextSubmitAt")
	assert.Contains(t, body, "nextSubmitAt")

	code, body = e.do("GET", "/v1/consents/"+monthlyID+"/events", "")
	require.Equal(t, http.StatusOK, code)
	evs := body["events"].([]any)
	last := evs[len(evs)-1].(map[string]any)
	assert.Equal(t, "resolved", last["kind"])
	assert.Equal(t, "bob", last["actor"])
	assert.Equal(t, "charged by boleto", last["reason"])
}

func TestAdmin_AttentionAmountMissing(t *testing.T) {
	e := newEnv(t)
	e.clk.Set(cycle.MustDate(2026, 2, 5).At(10, 0))
	code, _ := e.do("POST", "/v1/consents", example(t, "variable-amount.json")) // due 10 Feb, submitted 7 Feb 09:00
	require.Equal(t, http.StatusCreated, code)
	e.missed() // the monthly's 31 Dec and 31 Jan cycles: their windows closed on 29 Dec and 29 Jan

	code, body := e.do("GET", "/v1/attention?limit=2", "")
	require.Equal(t, http.StatusOK, code)
	items := body["items"].([]any)
	require.Len(t, items, 2)
	assert.Equal(t, "MISSED", items[0].(map[string]any)["state"])
	assert.Equal(t, "MISSED", items[1].(map[string]any)["state"])
	assert.Equal(t, float64(1), body["counts"].(map[string]any)["AMOUNT_MISSING"])
	next := body["next"].(string)
	require.NotEmpty(t, next, "the AMOUNT_MISSING item is on the next page")

	code, body = e.do("GET", "/v1/attention?limit=1&after="+next, "")
	require.Equal(t, http.StatusOK, code)
	items = body["items"].([]any)
	require.Len(t, items, 1)
	it := items[0].(map[string]any)
	assert.Equal(t, "AMOUNT_MISSING", it["state"])
	assert.Equal(t, "urn:klavi:consent-variable-0004", it["consentId"])
	assert.Equal(t, "2026-02-10", it["date"])
	assert.Nil(t, it["amount"])
	assert.Equal(t, "2026-02-05T09:00:00-03:00", it["since"], "2 days before its submission")
	assert.Equal(t, float64(3600), it["ageSeconds"])
	assert.Equal(t, "", body["next"])

	code, body = e.do("GET", "/v1/attention?state=AMOUNT_MISSING", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, body["items"], 1)

	code, _ = e.do("PUT", "/v1/consents/urn:klavi:consent-variable-0004/cycles/0/amount", `{"amount":"42.00"}`)
	require.Equal(t, http.StatusOK, code)
	code, body = e.do("GET", "/v1/attention?state=AMOUNT_MISSING", "")
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, body["items"])
	assert.Equal(t, float64(0), body["counts"].(map[string]any)["AMOUNT_MISSING"])
}

func TestAdmin_Upcoming(t *testing.T) {
	e := newEnv(t) // 2 Jan 2026 10:00
	for _, f := range []string{"monthly-31st.json", "weekly-retries.json"} {
		code, _ := e.do("POST", "/v1/consents", example(t, f))
		require.Equal(t, http.StatusCreated, code)
	}

	code, body := e.do("GET", "/v1/upcoming", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "2026-01-02", body["from"])
	assert.Equal(t, "2026-01-09", body["to"])
	items := body["items"].([]any)
	require.Len(t, items, 2)
	assert.Equal(t, "2026-01-02T10:00:00-03:00", items[0].(map[string]any)["submitAt"],
		"the weekly's 5 Jan cycle: its submit day (2 Jan 09:00) passed an hour before it was added; it goes at the next scan")
	assert.Equal(t, map[string]any{"consentId": "urn:klavi:consent-weekly-0002", "cycle": float64(1), "attempt": float64(0),
		"kind": "original", "submitAt": "2026-01-09T09:00:00-03:00", "dueDate": "2026-01-12", "amount": "25.00",
		"interval": "WEEKLY", "mode": "local"}, items[1])
	assert.Equal(t, []any{map[string]any{"date": "2026-01-02", "count": float64(1), "amount": "25.00", "noAmount": float64(0)},
		map[string]any{"date": "2026-01-09", "count": float64(1), "amount": "25.00", "noAmount": float64(0)}}, body["days"])

	code, body = e.do("GET", "/v1/upcoming?from=2026-01-20&to=2026-01-31", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, map[string]any{"count": float64(3), "amount": "149.90", "noAmount": float64(0)}, body["total"], "23 and 30 Jan, 28 Jan")

	for _, q := range []string{"from=2026-01-31&to=2026-01-30", "from=2026-01-01&to=2026-04-03", "from=x", "to=2026-02-30"} {
		code, _ := e.do("GET", "/v1/upcoming?"+q, "")
		assert.Equal(t, http.StatusBadRequest, code, q)
	}
}

// ledgerFixture stores attempts of the monthly consent as the scheduler would have.
func (e *env) ledgerFixture() {
	e.t.Helper()
	code, _ := e.do("POST", "/v1/consents", example(e.t, "monthly-31st.json"))
	require.Equal(e.t, http.StatusCreated, code)
	at := cycle.MustDate(2026, 1, 2).At(9, 0)
	mk := func(k, n int, st storage.AttemptState, date cycle.Date, pid string) *storage.Attempt {
		return &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: monthlyID, Cycle: k, Attempt: n}, State: st, Date: date,
			Amount: 99_90, PaymentID: pid, ClientRequestID: fmt.Sprintf("billingd-x-%d-%d", k, n), CreatedAt: at, UpdatedAt: at, SubmittedAt: at}
	}
	require.NoError(e.t, e.db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{
		mk(0, 0, storage.AttemptCompleted, cycle.MustDate(2025, 10, 31), "p0"),
		mk(1, 0, storage.AttemptRejected, cycle.MustDate(2025, 11, 30), "p1"),
		mk(1, 1, storage.AttemptCompleted, cycle.MustDate(2025, 12, 1), "p2"),
		mk(2, 0, storage.AttemptMissed, cycle.MustDate(2025, 12, 31), ""),
	}}))
}

func TestAdmin_Report(t *testing.T) {
	e := newEnv(t)
	e.ledgerFixture()
	code, body := e.do("GET", "/v1/report?month=2025-12", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "2025-12", body["month"])
	rows := body["rows"].([]any)
	require.Len(t, rows, 9)
	assert.Equal(t, map[string]any{"interval": "MONTHLY", "outcome": "submitted", "count": float64(0), "amount": "0.00"}, rows[0])
	assert.Equal(t, map[string]any{"interval": "MONTHLY", "outcome": "retried", "count": float64(1), "amount": "99.90"}, rows[1])
	totals := body["totals"].(map[string]any)
	assert.Equal(t, map[string]any{"count": float64(1), "amount": "99.90"}, totals["completed"])
	assert.Equal(t, map[string]any{"count": float64(1), "amount": "99.90"}, totals["missed"])
	assert.Equal(t, map[string]any{"count": float64(0), "amount": "0.00"}, totals["rejected"], "the 30 Nov payment is November's")

	code, body = e.do("GET", "/v1/report", "")
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "2026-01", body["month"], "the current month")
	assert.Empty(t, body["rows"])
	for _, m := range []string{"2025-13", "2025-1", "december"} {
		code, _ := e.do("GET", "/v1/report?month="+m, "")
		assert.Equal(t, http.StatusBadRequest, code, m)
	}
}

func TestAdmin_Payments(t *testing.T) {
	e := newEnv(t)
	e.ledgerFixture()

	code, body := e.do("GET", "/v1/payments?from=2025-10-01&to=2025-12-31", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Len(t, body["payments"], 4)
	assert.Equal(t, "", body["next"])

	var dates []string
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		code, body = e.do("GET", "/v1/payments?from=2025-10-01&to=2025-12-31&limit=1&consent="+monthlyID+"&cursor="+cursor, "")
		require.Equal(t, http.StatusOK, code)
		for _, p := range body["payments"].([]any) {
			dates = append(dates, p.(map[string]any)["date"].(string))
		}
		if cursor = body["next"].(string); cursor == "" {
			break
		}
	}
	assert.Equal(t, []string{"2025-10-31", "2025-11-30", "2025-12-01", "2025-12-31"}, dates)

	code, body = e.do("GET", "/v1/payments?from=2025-10-01&to=2025-12-31&state=completed", "")
	require.Equal(t, http.StatusOK, code)
	assert.Len(t, body["payments"], 2)
	code, body = e.do("GET", "/v1/payments?from=2025-10-01&to=2025-12-31&consent=urn:t:other", "")
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, body["payments"])

	code, hdr, text := e.raw("GET", "/v1/payments?from=2025-12-01&to=2025-12-31&format=csv")
	require.Equal(t, http.StatusOK, code, text)
	assert.Equal(t, "text/csv; charset=utf-8", hdr.Get("Content-Type"))
	recs, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	require.NoError(t, err)
	require.Len(t, recs, 3)
	assert.Equal(t, CSVHeader, recs[0])
	assert.Equal(t, []string{monthlyID, "1", "1", "COMPLETED", "2025-12-01", "99.90", "", "p2", "billingd-x-1-1", "", "",
		"2026-01-02T09:00:00-03:00", "2026-01-02T09:00:00-03:00", "2026-01-02T09:00:00-03:00", ""}, recs[1])
	assert.NotContains(t, text, "Maria", "no personal data")

	for _, q := range []string{"format=xml", "state=BOGUS", "cursor=!!", "from=2025-12-31&to=2025-12-01", "from=2024-01-01&to=2025-12-31", "limit=0"} {
		code, _ := e.do("GET", "/v1/payments?"+q, "")
		assert.Equal(t, http.StatusBadRequest, code, q)
	}
}

func TestAdmin_ConsentNextSubmission(t *testing.T) {
	e := newEnv(t)
	code, body := e.do("POST", "/v1/consents", example(t, "monthly-31st.json"))
	require.Equal(t, http.StatusCreated, code)
	assert.Equal(t, "2026-01-28T09:00:00-03:00", body["nextSubmitAt"])
	assert.Equal(t, "2026-01-31", body["nextDueDate"])
	assert.NotContains(t, body, "nextDue", "the misleading name is gone")

	c := example(t, "weekly-retries.json")
	c = strings.Replace(c, `"CONSENT_AUTHORIZED"`, `"CONSENT_AWAITING_AUTHORIZATION"`, 1)
	code, body = e.do("POST", "/v1/consents", c)
	require.Equal(t, http.StatusCreated, code, body)
	assert.Equal(t, "awaiting_authorization", body["state"])

	code, body = e.do("GET", "/v1/consents", "")
	require.Equal(t, http.StatusOK, code)
	for _, x := range body["consents"].([]any) {
		s := x.(map[string]any)
		assert.NotContains(t, s, "nextDue")
		if s["state"] == "active" {
			assert.Equal(t, "2026-01-28T09:00:00-03:00", s["nextSubmitAt"])
			assert.Equal(t, "2026-01-31", s["nextDueDate"])
			continue
		}
		assert.NotContains(t, s, "nextSubmitAt")
		assert.NotContains(t, s, "nextDueDate")
		assert.NotContains(t, s, "nextDue")
	}
	code, _, text := e.raw("GET", "/v1/consents/urn:klavi:consent-weekly-0002")
	require.Equal(t, http.StatusOK, code)
	assert.NotContains(t, text, "0001-01-01")
	assert.NotContains(t, text, "nextSubmitAt")
}
