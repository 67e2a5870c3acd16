package sandbox_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

func TestParseScenario(t *testing.T) {
	s, err := sandbox.ParseScenario([]byte(`{
		"rules": [
			{"consentId": "urn:klavi:consent-monthly-31st-0001", "cycle": 2, "attempt": 0, "outcome": "rejected", "reason": "NOT_INFORMED"},
			{"consentId": "*", "attempt": 1, "outcome": "rejected", "reason": "insufficient funds"}
		],
		"rejectFraction": 1.5,
		"default": "lost",
		"typo": true
	}`))
	require.Error(t, err)
	var l problem.List
	require.True(t, errors.As(err, &l))
	assert.Equal(t, "typo: unknown field", l.Error(), "decoding problems come first")

	_, err = sandbox.ParseScenario([]byte(`{
		"rules": [
			{"consentId": "urn:klavi:c1", "cycle": -1, "attempt": 4, "outcome": "maybe", "reason": "insufficient funds"},
			{"consentId": "c 2", "outcome": "completed"},
			{"outcome": "completed"}
		],
		"rejectFraction": 1.5,
		"default": "lost"
	}`))
	require.Error(t, err)
	for _, want := range []string{
		"rules[0].cycle: must not be negative",
		"rules[0].attempt: must be 0",
		"rules[0].outcome: must be completed, rejected or canceled",
		`rules[0].reason: "INSUFFICIENT_FUNDS" is not a Klavi status reason code`,
		"rules[1].consentId: is not a consent id",
		"rules[2].consentId: is required",
		"default: must be",
		"rejectFraction: must be between 0 and 1",
	} {
		assert.Contains(t, err.Error(), want)
	}

	// A member name twice: refused, not the last one taken.
	_, err = sandbox.ParseScenario([]byte(`{"rules":[{"consentId":"*","outcome":"rejected","reason":"NOT_INFORMED","outcome":"completed"}]}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `rules[0].outcome: duplicate member name "outcome"`)
	_, err = sandbox.ParseScenario([]byte(`{"rejectFraction":0,"rejectFraction":1}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `rejectFraction: duplicate member name "rejectFraction"`)

	s, err = sandbox.ParseScenario([]byte(`{"rules":[{"consentId":"*","cycle":2,"attempt":0,"outcome":"rejected","reason":"not informed"}]}`))
	require.NoError(t, err)
	o, r := s.Decide("urn:a:b", 2, 0)
	assert.Equal(t, sandbox.Rejected, o)
	assert.Equal(t, klavi.ReasonNotInformed, r, "reasons decode tolerantly")
}

func TestScenario_Decide(t *testing.T) {
	var none *sandbox.Scenario
	o, r := none.Decide("urn:a:b", 0, 0)
	assert.Equal(t, sandbox.Completed, o)
	assert.Empty(t, r)

	one := 1
	s := &sandbox.Scenario{
		Rules: []sandbox.Rule{
			{ConsentID: "urn:a:b", Cycle: &one, Outcome: sandbox.Canceled},
			{ConsentID: "urn:a:b", Outcome: sandbox.Rejected, Reason: klavi.ReasonUserRejected},
		},
		Default: sandbox.Rejected,
	}
	o, _ = s.Decide("urn:a:b", 1, 2)
	assert.Equal(t, sandbox.Canceled, o)
	o, r = s.Decide("urn:a:b", 3, 0)
	assert.Equal(t, sandbox.Rejected, o)
	assert.Equal(t, klavi.ReasonUserRejected, r)
	o, r = s.Decide("urn:a:c", 0, 0)
	assert.Equal(t, sandbox.Rejected, o, "default outcome")
	assert.Equal(t, klavi.ReasonNotInformed, r, "default reason")
}

func TestScenario_RejectFraction(t *testing.T) {
	s := &sandbox.Scenario{RejectFraction: 0.1, RejectReason: klavi.ReasonInfrastructureFailure, Seed: 3}
	rejected := 0
	first := map[string]sandbox.Outcome{}
	for i := 0; i < 2000; i++ {
		id := "urn:sim:" + strings.Repeat("c", 1+i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
		for a := 0; a < 5; a++ {
			o, r := s.Decide(id, 4, a)
			if o == sandbox.Rejected {
				rejected++
				assert.Equal(t, klavi.ReasonInfrastructureFailure, r)
			}
			if a == 0 {
				first[id] = o
			}
		}
	}
	assert.InDelta(t, 1000, rejected, 150, "about 10%% of 10000")
	for id, o := range first {
		again, _ := s.Decide(id, 4, 0)
		require.Equal(t, o, again, "deterministic")
	}
	other := &sandbox.Scenario{RejectFraction: 0.1, Seed: 4}
	differ := 0
	for id, o := range first {
		if got, _ := other.Decide(id, 4, 0); got != o {
			differ++
		}
	}
	assert.Greater(t, differ, 50, "another seed, other rejections")
}

func TestServer_SeedAndLedgerEndpoints(t *testing.T) {
	h := newHarness(t, sandbox.Options{})
	files, err := filepath.Glob("../../examples/consents/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var all []json.RawMessage
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		all = append(all, data)
	}
	arr, err := json.Marshal(all)
	require.NoError(t, err)

	bad := strings.Replace(string(all[0]), `"id": "urn:`, `"id": "no pe-`, 1)
	code, body := h.raw(http.MethodPost, "/_sandbox/consents", `[`+string(all[1])+`,`+bad+`]`)
	require.Equal(t, 400, code)
	assert.Equal(t, "[1].id", body["problems"].([]any)[0].(map[string]any)["path"])
	assert.Equal(t, 0, h.sb.Stats().Consents, "all or nothing")

	twice := strings.Replace(string(all[0]), `"currency": "BRL"`, `"currency": "BRL", "currency": "BRL"`, 1)
	require.NotEqual(t, string(all[0]), twice)
	code, body = h.raw(http.MethodPost, "/_sandbox/consents", `[`+string(all[1])+`,`+twice+`]`)
	require.Equal(t, 400, code)
	assert.Equal(t, "[1].paymentMethodConfig.currency", body["problems"].([]any)[0].(map[string]any)["path"])
	assert.Equal(t, 0, h.sb.Stats().Consents, "a member name twice: nothing added")

	code, body = h.raw(http.MethodPost, "/_sandbox/consents", string(arr))
	require.Equal(t, 201, code, "%v", body)
	assert.Equal(t, float64(len(files)), body["added"])
	code, _ = h.raw(http.MethodPost, "/_sandbox/consents", string(all[0]))
	assert.Equal(t, 409, code, "already known")

	code, body = h.raw(http.MethodGet, "/_sandbox/consents/urn:klavi:consent-monthly-31st-0001", "")
	require.Equal(t, 200, code)
	assert.Equal(t, "CONSENT_AUTHORIZED", body["status"])

	// The monthly-31st example bills 99.90 from 31 Oct 2025: its cycle of 28 Feb 2026.
	p := h.mustPay("urn:klavi:consent-monthly-31st-0001", "seeded-1", "2026-02-28", 9990, nil)
	resp, err := http.Get(h.ts.URL + "/_sandbox/ledger")
	require.NoError(t, err)
	defer resp.Body.Close()
	var ledger []sandbox.LedgerEntry
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ledger))
	require.Len(t, ledger, 1)
	assert.Equal(t, p.ID, ledger[0].PaymentID)
	assert.Equal(t, 4, ledger[0].Cycle)

	resp2, err := http.Get(h.ts.URL + "/_sandbox/stats")
	require.NoError(t, err)
	defer resp2.Body.Close()
	var st sandbox.Stats
	require.NoError(t, json.NewDecoder(resp2.Body).Decode(&st))
	assert.Equal(t, len(files), st.Consents)
	assert.Equal(t, 1, st.Accepted[sandbox.KindOriginal])
}
