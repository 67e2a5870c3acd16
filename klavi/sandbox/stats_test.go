package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/retry"
)

// requireStatsAgree checks the counters Stats keeps against a walk of the ledger
// (Ledger shows each payment's status at the clock's now).
func requireStatsAgree(t *testing.T, sb *sandbox.Server, when string) sandbox.Stats {
	t.Helper()
	st := sb.Stats()
	statuses, kinds := map[klavi.PaymentStatus]int{}, map[sandbox.Kind]int{}
	for _, e := range sb.Ledger() {
		statuses[e.Status]++
		kinds[e.Kind]++
	}
	require.Equal(t, statuses, st.Statuses, "%s: statuses", when)
	require.Equal(t, kinds, st.Accepted, "%s: accepted by kind", when)
	return st
}

// TestServer_StatsAgreeWithLedger runs a mixed workload (originals in attach and
// local mode, rejections, a holder's cancel, an operator's cancel, local retries and
// Klavi-run ones, instant payments, refusals, injected 5xx and dropped answers, the
// clock moving past creation and settle instants) and checks at every step that the
// counters Stats keeps agree with a walk of the ledger, then again on a sandbox
// replayed from the journal.
func TestServer_StatsAgreeWithLedger(t *testing.T) {
	const n = 24
	id := func(i int) string { return fmt.Sprintf("urn:stats:consent-%02d", i) }
	scenario := &sandbox.Scenario{}
	for i := 0; i < n; i++ {
		switch {
		case i%3 == 0: // the original is rejected; its retries complete
			scenario.Rules = append(scenario.Rules, sandbox.Rule{ConsentID: id(i), Attempt: ptr(0), Outcome: sandbox.Rejected})
		case i == 7: // the holder cancels it
			scenario.Rules = append(scenario.Rules, sandbox.Rule{ConsentID: id(i), Outcome: sandbox.Canceled})
		case i == 9: // every attempt is rejected
			scenario.Rules = append(scenario.Rules, sandbox.Rule{ConsentID: id(i), Outcome: sandbox.Rejected})
		}
	}
	journal := filepath.Join(t.TempDir(), "sandbox.journal")
	h := newHarness(t, sandbox.Options{Scenario: scenario, Journal: journal,
		Faults: sandbox.Faults{Err5xx: 0.15, Drop: 0.1, Seed: 7}})
	ctx := context.Background()
	for i := 0; i < n; i++ {
		h.seed(id(i), cycle.Monthly, "2026-02-05", 9990)
	}
	requireStatsAgree(t, h.sb, "no payment yet")

	// Originals of cycle 1 (5 March), half of them in attach mode; each is sent
	// until it is answered, with the same clientRequestId (a dropped answer makes
	// the next send a 409).
	payments := map[int]string{}
	for i := 0; i < n; i++ {
		var strategy *retry.Strategy
		if i%2 == 0 {
			strategy = &retry.Strategy{Days: []int{1, 2, 3}}
		}
		for try := 0; try < 10; try++ {
			p, err := h.pay(id(i), fmt.Sprintf("stats-%02d", i), "2026-03-05", 9990, strategy)
			if err == nil {
				payments[i] = p.ID
				break
			}
		}
	}
	// Refusals: a wrong amount, a date outside the window (each sent until the
	// sandbox answers rather than a fault).
	for _, r := range []struct {
		date   string
		amount klavi.Cents
		rule   string
	}{{"2026-03-05", 100, sandbox.RuleFixedAmount}, {"2026-04-05", 9990, sandbox.RuleWindow}} {
		var err error
		for try := 0; try < 10; try++ {
			var ae *klavi.APIError
			if _, err = h.pay(id(1), "stats-refused-"+r.rule, r.date, r.amount, nil); errors.As(err, &ae) && ae.StatusCode == 416 {
				break
			}
		}
		requireRule(t, err, 416, r.rule)
	}
	// Instant payments: one left awaiting authorization, one authorized for a later date.
	instant := func(crid string, date cycle.Date) *klavi.InstantPayment {
		p, err := h.kc.CreateInstantPayment(ctx, &klavi.InstantPaymentRequest{
			ClientRequestID: crid, InstitutionID: "bank", InitType: klavi.PixDict, Proxy: "+5511999998888",
			Customer: &klavi.Customer{IdentifierType: klavi.CPF, Identifier: "52998224725"},
			Date:     date, Amount: 1500, Currency: klavi.Currency, RedirectURL: "https://m.example/r",
			ClientMetadata: &klavi.ClientMetadata{Platform: klavi.Browser, OS: klavi.Linux, OSVersion: "6"},
		})
		if err != nil {
			return nil
		}
		return p
	}
	var later *klavi.InstantPayment
	for try := 0; try < 10 && later == nil; try++ {
		instant(fmt.Sprintf("stats-awaiting-%d", try), cycle.Date{})
		later = instant(fmt.Sprintf("stats-instant-%d", try), day("2026-03-02"))
	}
	require.NotNil(t, later)
	st := requireStatsAgree(t, h.sb, "created, the clock not moved")
	assert.Positive(t, st.Statuses[klavi.PaymentPending], "created at the clock's now: PENDING")

	h.clk.Advance(1)
	requireStatsAgree(t, h.sb, "the clock past their creation")
	resp, err := http.Get(later.ConsentRedirectURL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	// The operator cancels one original before its date.
	_, err = h.kc.CancelPayment(ctx, id(23), payments[23], &klavi.CancelPaymentRequest{CancelledBy: "52998224725", IdentifierType: klavi.CPF})
	require.NoError(t, err)
	requireStatsAgree(t, h.sb, "an instant payment authorized, an original canceled")

	// 5 March, after settlement: rejected originals in attach mode have their
	// first Klavi-run retry; those in local mode are retried by the caller.
	h.setClock("2026-03-05", 7, 0)
	requireStatsAgree(t, h.sb, "settled on 5 March")
	for i := 1; i < n; i += 2 {
		if p := payments[i]; p != "" && (i%3 == 0 || i == 9) {
			for try := 0; try < 10; try++ {
				if _, err := h.retry(id(i), p, fmt.Sprintf("stats-%02d-r1", i), "2026-03-06"); err == nil {
					break
				}
			}
		}
	}
	requireStatsAgree(t, h.sb, "local retries sent")

	h.setClock("2026-03-12", 0, 0)
	st = requireStatsAgree(t, h.sb, "everything settled")
	for _, s := range []klavi.PaymentStatus{klavi.PaymentCompleted, klavi.PaymentRejected, klavi.PaymentCanceled, "CONSENT_AWAITING_AUTHORIZATION"} {
		assert.Positive(t, st.Statuses[s], "the workload has a %s payment", s)
	}
	for _, k := range []sandbox.Kind{sandbox.KindOriginal, sandbox.KindRetry, sandbox.KindAutoRetry, sandbox.KindInstant} {
		assert.Positive(t, st.Accepted[k], "the workload has a %s payment", k)
	}
	assert.Positive(t, st.Faults[sandbox.Fault5xx])
	assert.Positive(t, st.Faults[sandbox.FaultDrop])
	assert.Positive(t, st.Refusals[sandbox.RuleDuplicate], "a dropped answer's payment sent again")
	assert.Positive(t, st.Refusals[sandbox.RuleFixedAmount])

	// A sandbox replayed from the journal counts the same.
	data, err := os.ReadFile(journal)
	require.NoError(t, err)
	replayed := filepath.Join(t.TempDir(), "replayed.journal")
	require.NoError(t, os.WriteFile(replayed, data, 0o600))
	sb, err := sandbox.Open(sandbox.Options{Clock: h.clk, Journal: replayed, Scenario: scenario})
	require.NoError(t, err)
	defer sb.Close()
	again := requireStatsAgree(t, sb, "replayed from the journal")
	assert.Equal(t, st.Statuses, again.Statuses)
	assert.Equal(t, st.Accepted, again.Accepted)
}

// TestServer_StatsPendingUntilTheClockMoves: a payment created at the clock's now
// shows PENDING in the ledger and in Stats until the clock moves past its creation,
// then SCHEDULED in both, replayed or not.
func TestServer_StatsPendingUntilTheClockMoves(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "sandbox.journal")
	h := newHarness(t, sandbox.Options{Journal: journal})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	h.mustPay(monthly, "pending-1", "2026-03-05", 9990, nil)
	st := requireStatsAgree(t, h.sb, "created")
	assert.Equal(t, map[klavi.PaymentStatus]int{klavi.PaymentPending: 1}, st.Statuses)

	data, err := os.ReadFile(journal)
	require.NoError(t, err)
	replayed := filepath.Join(t.TempDir(), "replayed.journal")
	require.NoError(t, os.WriteFile(replayed, data, 0o600))
	sb, err := sandbox.Open(sandbox.Options{Clock: h.clk, Journal: replayed})
	require.NoError(t, err)
	defer sb.Close()
	assert.Equal(t, map[klavi.PaymentStatus]int{klavi.PaymentPending: 1}, requireStatsAgree(t, sb, "replayed").Statuses)

	h.clk.Advance(1)
	assert.Equal(t, map[klavi.PaymentStatus]int{klavi.PaymentScheduled: 1}, requireStatsAgree(t, h.sb, "the clock moved").Statuses)
	assert.Equal(t, map[klavi.PaymentStatus]int{klavi.PaymentScheduled: 1}, requireStatsAgree(t, sb, "replayed, the clock moved").Statuses)
}
