package sandbox_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/retry"
)

func ptr(n int) *int { return &n }

// rejectAttempts scripts a rejection (NOT_INFORMED) of the given attempts of every
// consent; the others complete.
func rejectAttempts(attempts ...int) *sandbox.Scenario {
	s := &sandbox.Scenario{}
	for _, a := range attempts {
		s.Rules = append(s.Rules, sandbox.Rule{ConsentID: "*", Attempt: ptr(a), Outcome: sandbox.Rejected})
	}
	return s
}

// The two worked examples of klavi-api.md, run by the sandbox as Klavi-run retries:
// settlement Thu 5 March, days [1,2,3].
func TestServer_AutoRetry_WorkedExamples(t *testing.T) {
	t.Run("without skipWeekend: 6, 7, 8 March; all fail", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{Scenario: rejectAttempts(0, 1, 2, 3)})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
		orig := h.mustPay(monthly, "ex-1", "2026-03-05", 9990, &retry.Strategy{Days: []int{1, 2, 3}})

		h.setClock("2026-03-05", 7, 0)
		got := h.get(monthly, orig.ID)
		assert.Equal(t, klavi.PaymentScheduled, got.Status, "retries remain")
		require.NotNil(t, got.StatusReason)
		assert.Equal(t, klavi.ReasonNotInformed, got.StatusReason.Code, "the last failure's reason")
		assert.Equal(t, []string{"2026-03-06"}, dates(h.ledger(sandbox.KindAutoRetry)), "one retry at a time")

		h.setClock("2026-03-12", 0, 0)
		autos := h.ledger(sandbox.KindAutoRetry)
		assert.Equal(t, []string{"2026-03-06", "2026-03-07", "2026-03-08"}, dates(autos))
		for i, e := range autos {
			assert.Equal(t, orig.ID, e.OriginalPaymentID)
			assert.Equal(t, i+1, e.Attempt)
			assert.Equal(t, 1, e.Cycle)
			assert.Equal(t, klavi.PaymentRejected, e.Status)
			assert.Empty(t, e.ClientRequestID, "Klavi's own retries carry no clientRequestId of ours")
			assert.Equal(t, klavi.Cents(9990), e.Amount)
		}
		got = h.get(monthly, orig.ID)
		assert.Equal(t, klavi.PaymentRejected, got.Status, "the plan is used up")

		_, err := h.retry(monthly, orig.ID, "ex-1-r1", "2026-03-13")
		requireRule(t, err, 416, sandbox.RuleRetryAutoStrategy)
	})
	t.Run("with skipWeekend: 6, 9, 10 March; the second retry completes", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{Scenario: rejectAttempts(0, 1)})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
		orig := h.mustPay(monthly, "ex-2", "2026-03-05", 9990, &retry.Strategy{Days: []int{1, 2, 3}, SkipWeekend: true})

		h.setClock("2026-03-09", 5, 0)
		assert.Equal(t, []string{"2026-03-06", "2026-03-09"}, dates(h.ledger(sandbox.KindAutoRetry)))
		assert.Equal(t, klavi.PaymentScheduled, h.get(monthly, orig.ID).Status)

		h.setClock("2026-03-20", 0, 0)
		autos := h.ledger(sandbox.KindAutoRetry)
		assert.Equal(t, []string{"2026-03-06", "2026-03-09"}, dates(autos), "no retry after one completes")
		assert.Equal(t, klavi.PaymentCompleted, autos[1].Status)
		got := h.get(monthly, orig.ID)
		assert.Equal(t, klavi.PaymentCompleted, got.Status)
		assert.Nil(t, got.StatusReason)
	})
	t.Run("with skipWeekend and all failing: the third lands on 10 March", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{Scenario: rejectAttempts(0, 1, 2, 3)})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
		h.mustPay(monthly, "ex-3", "2026-03-05", 9990, &retry.Strategy{Days: []int{1, 2, 3}, SkipWeekend: true})
		h.setClock("2026-03-20", 0, 0)
		assert.Equal(t, []string{"2026-03-06", "2026-03-09", "2026-03-10"}, dates(h.ledger(sandbox.KindAutoRetry)))
	})
}

func TestServer_AutoRetry_Bounds(t *testing.T) {
	t.Run("never on or after the next cycle's start", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{Scenario: rejectAttempts(0, 1, 2, 3)})
		h.seed(weekly, cycle.Weekly, "2026-02-02", 2500)
		// Cycle of Fri 27 Feb runs to Sun 1 Mar; the next starts Mon 2 Mar.
		h.mustPay(weekly, "wk-1", "2026-02-27", 2500, &retry.Strategy{Days: []int{1, 3, 5}})
		h.setClock("2026-03-10", 0, 0)
		assert.Equal(t, []string{"2026-02-28"}, dates(h.ledger(sandbox.KindAutoRetry)))
	})
	t.Run("never after the consent's expiry", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{Scenario: rejectAttempts(0, 1, 2, 3)})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990, func(c *klavi.CreatedConsent) {
			c.ExpirationDateTime = &klavi.DateTime{Time: day("2026-03-07").At(12, 0)}
		})
		h.mustPay(monthly, "exp-1", "2026-03-05", 9990, &retry.Strategy{Days: []int{1, 2, 3}})
		h.setClock("2026-03-20", 0, 0)
		assert.Equal(t, []string{"2026-03-06", "2026-03-07"}, dates(h.ledger(sandbox.KindAutoRetry)))
	})
	t.Run("a live original holds its cycle", func(t *testing.T) {
		h := newHarness(t, sandbox.Options{Scenario: rejectAttempts(0, 1, 2, 3)})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
		h.mustPay(monthly, "hold-1", "2026-03-05", 9990, &retry.Strategy{Days: []int{1, 7}})
		h.setClock("2026-03-05", 7, 0) // original failed, retries pending
		_, err := h.pay(monthly, "hold-2", "2026-03-07", 9990, nil)
		requireRule(t, err, 416, sandbox.RuleOnePerCycle)
		h.setClock("2026-03-12", 7, 0) // plan used up: the cycle is free again
		_, err = h.pay(monthly, "hold-3", "2026-03-14", 9990, nil)
		require.NoError(t, err)
	})
}

func TestServer_RetryEndpoint(t *testing.T) {
	newH := func(t *testing.T, sc *sandbox.Scenario) (*harness, *klavi.Payment) {
		h := newHarness(t, sandbox.Options{Scenario: sc})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
		h.seed(weekly, cycle.Weekly, "2026-02-02", 2500)
		h.seed("urn:test:noretry", cycle.Monthly, "2026-02-05", 9990, func(c *klavi.CreatedConsent) {
			no := false
			c.PaymentMethodConfig.IsRetryAccepted = &no
		})
		return h, h.mustPay(monthly, "orig", "2026-03-05", 9990, nil)
	}

	t.Run("accepted: a payment of its own, settling on its date", func(t *testing.T) {
		h, orig := newH(t, rejectAttempts(0))
		h.setClock("2026-03-05", 9, 0)
		require.Equal(t, klavi.PaymentRejected, h.get(monthly, orig.ID).Status)
		r, err := h.retry(monthly, orig.ID, "orig-r1", "2026-03-06")
		require.NoError(t, err)
		assert.NotEqual(t, orig.ID, r.ID)
		assert.Equal(t, "orig-r1", r.ClientRequestID)
		got := h.get(monthly, r.ID)
		require.NotNil(t, got.PaymentMethodConfig)
		assert.Equal(t, orig.ID, got.PaymentMethodConfig.OriginalPaymentID)
		h.setClock("2026-03-06", 6, 0)
		assert.Equal(t, klavi.PaymentCompleted, h.get(monthly, r.ID).Status)
		assert.Equal(t, klavi.PaymentRejected, h.get(monthly, orig.ID).Status, "the original keeps its own status")
		e := h.ledger(sandbox.KindRetry)
		require.Len(t, e, 1)
		assert.Equal(t, sandbox.LedgerEntry{
			PaymentID: r.ID, ConsentID: monthly, ClientRequestID: "orig-r1", Kind: sandbox.KindRetry,
			OriginalPaymentID: orig.ID, Cycle: 1, Attempt: 1, Date: day("2026-03-06"), Amount: 9990,
			Status: klavi.PaymentCompleted, CreatedAt: day("2026-03-05").At(9, 0).UTC(),
		}, e[0])
		_, err = h.retry(monthly, orig.ID, "orig-r2", "2026-03-08")
		requireRule(t, err, 416, sandbox.RuleOnePerCycle)
	})
	t.Run("refused while the original is not rejected", func(t *testing.T) {
		h, orig := newH(t, rejectAttempts(0))
		_, err := h.retry(monthly, orig.ID, "orig-r1", "2026-03-06")
		requireRule(t, err, 416, sandbox.RuleRetryNotRejected)
	})
	t.Run("refused when the consent does not accept retries", func(t *testing.T) {
		h, _ := newH(t, rejectAttempts(0))
		p := h.mustPay("urn:test:noretry", "nr", "2026-03-05", 9990, nil)
		h.setClock("2026-03-05", 9, 0)
		_, err := h.retry("urn:test:noretry", p.ID, "nr-r1", "2026-03-06")
		requireRule(t, err, 416, sandbox.RuleRetryNotAccepted)
	})
	t.Run("refused when the original carried an autoRetryStrategy", func(t *testing.T) {
		h, _ := newH(t, rejectAttempts(0, 1, 2, 3))
		p := h.mustPay(weekly, "auto", "2026-03-02", 2500, &retry.Strategy{Days: []int{1}})
		h.setClock("2026-03-04", 9, 0)
		_, err := h.retry(weekly, p.ID, "auto-r1", "2026-03-05")
		requireRule(t, err, 416, sandbox.RuleRetryAutoStrategy)
	})
	t.Run("date rules", func(t *testing.T) {
		h, orig := newH(t, rejectAttempts(0, 1, 2, 3))
		h.setClock("2026-03-06", 9, 0)
		for _, tc := range []struct{ date, rule string }{
			{"2026-03-06", sandbox.RuleRetryTooSoon}, // today: must be requested the day before
			{"2026-03-05", sandbox.RuleRetryTooSoon}, // the past
			{"2026-03-13", sandbox.RuleRetryWindow},  // 8 days after 5 March
			{"2026-04-05", sandbox.RuleRetryWindow},  // next cycle, and far past the window
			{"2026-03-12", ""},                       // day 7: the window's last day
			{"2026-03-12", sandbox.RuleRetrySameDay}, // a second one that day
			{"2026-03-07", sandbox.RuleOnePerCycle},  // the first is still live
		} {
			_, err := h.retry(monthly, orig.ID, "dr-"+tc.date+tc.rule, tc.date)
			if tc.rule == "" {
				require.NoError(t, err, tc.date)
				continue
			}
			requireRule(t, err, 416, tc.rule)
		}
	})
	t.Run("weekly: 5-day window, and never into the next cycle", func(t *testing.T) {
		h, _ := newH(t, rejectAttempts(0, 1, 2, 3))
		p := h.mustPay(weekly, "wk", "2026-02-27", 2500, nil) // cycle Fri 27 Feb .. Sun 1 Mar
		h.setClock("2026-02-27", 9, 0)
		_, err := h.retry(weekly, p.ID, "wk-r1", "2026-03-02")
		requireRule(t, err, 416, sandbox.RuleRetryNextCycle)
		_, err = h.retry(weekly, p.ID, "wk-r1", "2026-02-28")
		require.NoError(t, err)
		h.seed("urn:test:weekly2", cycle.Weekly, "2026-02-27", 2500)
		p2 := h.mustPay("urn:test:weekly2", "wk2", "2026-03-06", 2500, nil)
		h.setClock("2026-03-06", 9, 0)
		_, err = h.retry("urn:test:weekly2", p2.ID, "wk2-r1", "2026-03-12")
		requireRule(t, err, 416, sandbox.RuleRetryWindow) // day 6 of a weekly payment
		_, err = h.retry("urn:test:weekly2", p2.ID, "wk2-r1", "2026-03-11")
		require.NoError(t, err) // day 5
	})
	t.Run("at most 3 retries", func(t *testing.T) {
		h, orig := newH(t, rejectAttempts(0, 1, 2, 3))
		for i, d := range []string{"2026-03-06", "2026-03-07", "2026-03-08"} {
			h.setClock(d, 0, 0)
			h.clk.Advance(-3 * time.Hour) // 21:00 the day before
			_, err := h.retry(monthly, orig.ID, "lim-"+d, d)
			require.NoError(t, err, "retry %d", i+1)
		}
		h.setClock("2026-03-09", 9, 0)
		_, err := h.retry(monthly, orig.ID, "lim-4", "2026-03-10")
		requireRule(t, err, 416, sandbox.RuleRetryLimit)
		autos := h.ledger(sandbox.KindRetry)
		require.Len(t, autos, 3)
		for i, e := range autos {
			assert.Equal(t, i+1, e.Attempt)
			assert.Equal(t, klavi.PaymentRejected, e.Status, "attempts 1..3 are rejected by the scenario")
		}
	})
	t.Run("a retry of a retry retries the original", func(t *testing.T) {
		h, orig := newH(t, rejectAttempts(0, 1))
		h.setClock("2026-03-05", 9, 0)
		r1, err := h.retry(monthly, orig.ID, "rr-1", "2026-03-06")
		require.NoError(t, err)
		h.setClock("2026-03-06", 9, 0)
		r2, err := h.retry(monthly, r1.ID, "rr-2", "2026-03-07")
		require.NoError(t, err)
		assert.Equal(t, orig.ID, h.get(monthly, r2.ID).PaymentMethodConfig.OriginalPaymentID)
	})
	t.Run("unknown payment, or one of another consent", func(t *testing.T) {
		h, orig := newH(t, rejectAttempts(0))
		_, err := h.retry(weekly, orig.ID, "x-1", "2026-03-06")
		requireRule(t, err, 404, sandbox.RuleNotFound)
		_, err = h.retry(monthly, "urn:sandbox:payment-99999999", "x-2", "2026-03-06")
		requireRule(t, err, 404, sandbox.RuleNotFound)
	})
}
