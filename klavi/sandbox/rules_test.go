package sandbox_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/retry"
)

const (
	monthly = "urn:test:monthly"
	weekly  = "urn:test:weekly"
)

func TestServer_Auth(t *testing.T) {
	h := newHarness(t, sandbox.Options{TokenTTL: 10 * time.Minute})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	paymentPath := "/payment/customer/v1/automatic/consents/" + monthly + "/payments/urn:sandbox:payment-00000001"

	do := func(auth string) int {
		req, err := http.NewRequest(http.MethodGet, h.ts.URL+paymentPath, nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("missing token", func(t *testing.T) { assert.Equal(t, 401, do("")) })
	t.Run("unknown token", func(t *testing.T) { assert.Equal(t, 401, do("Bearer sbx-nope")) })
	t.Run("not a bearer token", func(t *testing.T) { assert.Equal(t, 401, do("Basic YWs6c2s=")) })
	t.Run("wrong keys", func(t *testing.T) {
		code, body := h.raw(http.MethodPost, "/payment/customer/v1/auth", `{"accessKey":"access-key-1","secretKey":"wrong"}`)
		assert.Equal(t, 401, code)
		assert.Equal(t, "Unauthorized", body["error"])
		assert.NotContains(t, body["message"], "wrong", "the answer never echoes a key")
	})
	t.Run("valid token, then expired", func(t *testing.T) {
		tok := h.token()
		assert.Equal(t, 404, do("Bearer "+tok), "authorized: the payment simply does not exist")
		h.clk.Advance(10 * time.Minute)
		assert.Equal(t, 401, do("Bearer "+tok))
	})
	assert.Equal(t, 5, h.sb.Stats().Refusals[sandbox.RuleUnauthorized])
}

func TestServer_ConsentCreationAndAuthorization(t *testing.T) {
	h := newHarness(t, sandbox.Options{})
	yes := true
	fixed := klavi.Cents(5000)
	base := sandbox.SampleConsent("urn:x:unused", cycle.Monthly, day("2026-02-05"), fixed).CreateConsentRequest
	base.PaymentMethodConfig.IsRetryAccepted = &yes
	create := func(crid string) *klavi.Consent {
		r := base
		r.ClientRequestID = crid
		c, err := h.kc.CreateConsent(context.Background(), &r)
		require.NoError(t, err)
		return c
	}

	c := create("signup-a")
	assert.Equal(t, klavi.ConsentAwaitingAuthorization, c.Status)
	assert.True(t, klavi.ValidResourceID(c.ID), c.ID)
	assert.Equal(t, h.ts.URL+"/_sandbox/authorize/"+c.ID, c.ConsentRedirectURL)

	_, err := h.pay(c.ID, "p-a-1", "2026-03-05", fixed, nil)
	requireRule(t, err, 416, sandbox.RuleConsentNotAuthorized)

	_, err = h.kc.CreateConsent(context.Background(), &klavi.CreateConsentRequest{
		ClientRequestID: "signup-a", InstitutionID: base.InstitutionID, CreditorAccount: base.CreditorAccount,
		ClientMetadata: base.ClientMetadata, PaymentMethodConfig: base.PaymentMethodConfig,
	})
	require.ErrorIs(t, err, klavi.ErrDuplicateRequest, "a consent's clientRequestId is used up too")

	resp, err := http.Get(c.ConsentRedirectURL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	h.mustPay(c.ID, "p-a-1", "2026-03-05", fixed, nil)

	resp, err = http.Post(c.ConsentRedirectURL, "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 409, resp.StatusCode, "already authorized")

	late := create("signup-b")
	h.clk.Advance(61 * time.Minute)
	resp, err = http.Get(late.ConsentRedirectURL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 410, resp.StatusCode, "60 minutes to authorize")
	code, body := h.raw(http.MethodGet, "/_sandbox/consents/"+late.ID, "")
	require.Equal(t, 200, code)
	assert.Equal(t, "CONSENT_REJECTED", body["status"])
	assert.Equal(t, "AUTHORIZATION_EXPIRED_TIME", body["statusReason"].(map[string]any)["code"])
}

func TestServer_CreatePaymentRules(t *testing.T) {
	h := newHarness(t, sandbox.Options{})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	h.seed(weekly, cycle.Weekly, "2026-02-02", 2500)
	h.seed("urn:test:variable", cycle.Monthly, "2026-02-05", 0, func(c *klavi.CreatedConsent) {
		lo := klavi.Cents(1000)
		c.PaymentMethodConfig.MinimumVariableAmount = &lo
	})
	h.seed("urn:test:noretry", cycle.Monthly, "2026-02-05", 9990, func(c *klavi.CreatedConsent) {
		no := false
		c.PaymentMethodConfig.IsRetryAccepted = &no
	})
	h.seed("urn:test:expiring", cycle.Monthly, "2026-02-05", 9990, func(c *klavi.CreatedConsent) {
		c.ExpirationDateTime = &klavi.DateTime{Time: day("2026-03-04").At(23, 0)}
	})
	h.seed("urn:test:expired", cycle.Monthly, "2026-02-05", 9990, func(c *klavi.CreatedConsent) {
		c.ExpirationDateTime = &klavi.DateTime{Time: day("2026-02-25").At(9, 0)} // an hour ago
	})
	h.seed("urn:test:future", cycle.Monthly, "2026-03-06", 9990)
	h.seed("urn:test:revoked", cycle.Monthly, "2026-02-05", 9990, func(c *klavi.CreatedConsent) {
		c.Status = klavi.ConsentRevoked
	})

	n := 0
	key := func() string { n++; return "rule-" + strings.Repeat("x", n) }
	cases := []struct {
		name     string
		consent  string
		date     string
		amount   klavi.Cents
		strategy *retry.Strategy
		status   int
		rule     string
	}{
		{"D-1 is too late", "urn:test:future", "2026-02-26", 9990, nil, 416, sandbox.RuleWindow},
		{"D-11 is too early", monthly, "2026-03-08", 9990, nil, 416, sandbox.RuleWindow},
		{"before the reference date", "urn:test:future", "2026-03-05", 9990, nil, 416, sandbox.RuleBeforeReference},
		{"after expiry", "urn:test:expiring", "2026-03-05", 9990, nil, 416, sandbox.RuleExpiry},
		{"fixed amount differs", monthly, "2026-03-05", 9991, nil, 416, sandbox.RuleFixedAmount},
		{"above maximumVariableAmount", "urn:test:variable", "2026-03-05", 100001, nil, 416, sandbox.RuleVariableAmount},
		{"below minimumVariableAmount", "urn:test:variable", "2026-03-05", 999, nil, 416, sandbox.RuleVariableAmount},
		{"strategy past the weekly 5-day window", weekly, "2026-03-02", 2500, &retry.Strategy{Days: []int{1, 6}}, 416, sandbox.RuleAutoRetryStrategy},
		{"strategy without isRetryAccepted", "urn:test:noretry", "2026-03-05", 9990, &retry.Strategy{Days: []int{1}}, 416, sandbox.RuleAutoRetryStrategy},
		{"revoked consent", "urn:test:revoked", "2026-03-05", 9990, nil, 416, sandbox.RuleConsentNotAuthorized},
		{"consent past its expirationDateTime", "urn:test:expired", "2026-02-28", 9990, nil, 416, sandbox.RuleConsentNotAuthorized},
		{"unknown consent", "urn:test:nobody", "2026-03-05", 9990, nil, 404, sandbox.RuleNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.pay(tc.consent, key(), tc.date, tc.amount, tc.strategy)
			requireRule(t, err, tc.status, tc.rule)
			assert.ErrorIs(t, err, klavi.ErrRefused)
			assert.False(t, klavi.IsOutcomeUnknown(err))
		})
	}
	require.Empty(t, h.sb.Ledger(), "no refused request created a payment")

	t.Run("window edges D-10 and D-2 are accepted", func(t *testing.T) {
		h.mustPay("urn:test:future", "edge-d10", "2026-03-07", 9990, nil) // cycle 0 of the 6 Mar reference
		h.mustPay(weekly, "edge-d2", "2026-02-27", 2500, nil)
	})
	t.Run("variable amount within bounds", func(t *testing.T) {
		h.mustPay("urn:test:variable", "var-ok", "2026-03-05", 100000, nil)
	})
	t.Run("one payment per cycle", func(t *testing.T) {
		p := h.mustPay(monthly, "cycle1-a", "2026-03-05", 9990, nil)
		assert.Equal(t, klavi.PaymentPending, p.Status)
		_, err := h.pay(monthly, "cycle1-b", "2026-03-06", 9990, nil)
		requireRule(t, err, 416, sandbox.RuleOnePerCycle)
		_, err = h.pay(monthly, "cycle0-late", "2026-03-04", 9990, nil)
		require.NoError(t, err, "4 March is still cycle 0, which has no payment")
	})
	t.Run("a clientRequestId is used once, across consents", func(t *testing.T) {
		_, err := h.pay(weekly, "cycle1-a", "2026-03-02", 2500, nil)
		require.ErrorIs(t, err, klavi.ErrDuplicateRequest)
		requireRule(t, err, 409, sandbox.RuleDuplicate)
		_, err = h.pay(weekly, sandbox.SampleConsent(monthly, cycle.Monthly, day("2026-02-05"), 9990).ClientRequestID, "2026-03-02", 2500, nil)
		require.ErrorIs(t, err, klavi.ErrDuplicateRequest, "a seeded consent's clientRequestId is taken")
	})
	st := h.sb.Stats()
	assert.Equal(t, 2, st.Refusals[sandbox.RuleWindow])
	assert.Equal(t, 2, st.Refusals[sandbox.RuleDuplicate])
	assert.Equal(t, 5, st.Accepted[sandbox.KindOriginal])
}

func TestServer_RejectsUnreadableRequests(t *testing.T) {
	h := newHarness(t, sandbox.Options{})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	code, body := h.raw(http.MethodPost, "/payment/customer/v1/automatic/consents/"+monthly+"/payments",
		`{"clientRequestId":"x","date":"2026-3-5","amount":99.9,"currency":"BRL","bogus":1}`)
	require.Equal(t, 400, code)
	assert.Equal(t, sandbox.RuleInvalidRequest, body["rule"])
	paths := map[string]bool{}
	for _, p := range body["problems"].([]any) {
		paths[p.(map[string]any)["path"].(string)] = true
	}
	assert.Equal(t, map[string]bool{"date": true, "amount": true, "bogus": true}, paths, "every problem, each with its path")

	code, _ = h.raw(http.MethodGet, "/payment/customer/v1/automatic/consents/not-a-urn/payments/urn:x:1", "")
	assert.Equal(t, 404, code, "ids are opaque: a well-formed id that is unknown")
	code, _ = h.raw(http.MethodGet, "/payment/customer/v1/automatic/consents/a%20b/payments/urn:x:1", "")
	assert.Equal(t, 400, code, "white space")
	code, _ = h.raw(http.MethodGet, "/payment/customer/v1/automatic/consents/a%2Fb/payments/urn:x:1", "")
	assert.Equal(t, 400, code, "an escaped slash")
	code, _ = h.raw(http.MethodGet, "/payment/customer/v1/nowhere", "")
	assert.Equal(t, 404, code)
	assert.Empty(t, h.sb.Ledger())
}

func TestServer_PaymentLifecycle(t *testing.T) {
	h := newHarness(t, sandbox.Options{})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	p := h.mustPay(monthly, "life-1", "2026-03-05", 9990, nil)
	assert.Equal(t, klavi.PaymentPending, p.Status)
	assert.Equal(t, "life-1", p.ClientRequestID)
	assert.Equal(t, klavi.PaymentPending, h.get(monthly, p.ID).Status, "the clock has not moved")

	h.clk.Advance(time.Second)
	assert.Equal(t, klavi.PaymentScheduled, h.get(monthly, p.ID).Status)

	h.setClock("2026-03-05", 5, 59)
	assert.Equal(t, klavi.PaymentScheduled, h.get(monthly, p.ID).Status, "settles at 06:00")
	h.setClock("2026-03-05", 6, 0)
	got := h.get(monthly, p.ID)
	assert.Equal(t, klavi.PaymentCompleted, got.Status)
	assert.Len(t, got.EndToEndID, 32)
	assert.True(t, strings.HasPrefix(got.EndToEndID, "E12345678"), got.EndToEndID)
	assert.Equal(t, monthly, got.ConsentID)
	assert.Equal(t, day("2026-03-05"), got.Date)
	assert.Equal(t, klavi.Cents(9990), got.Amount)
	assert.Equal(t, "AUTOMATIC_PIX", got.PaymentMethod)

	st, err := h.kc.GetPaymentStatus(context.Background(), monthly, p.ID)
	require.NoError(t, err)
	assert.Equal(t, klavi.PaymentCompleted, st.Status)

	_, err = h.kc.GetPayment(context.Background(), weekly, p.ID)
	requireRule(t, err, 404, sandbox.RuleNotFound)

	e := h.sb.Ledger()
	require.Len(t, e, 1)
	assert.Equal(t, sandbox.LedgerEntry{
		PaymentID: p.ID, ConsentID: monthly, ClientRequestID: "life-1", Kind: sandbox.KindOriginal,
		Cycle: 1, Attempt: 0, Date: day("2026-03-05"), Amount: 9990, Status: klavi.PaymentCompleted,
		CreatedAt: start.UTC(),
	}, e[0])
}

func TestServer_SettleHour(t *testing.T) {
	h := newHarness(t, sandbox.Options{SettleHour: 14})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	p := h.mustPay(monthly, "late-settle", "2026-03-05", 9990, nil)
	h.setClock("2026-03-05", 13, 59)
	assert.Equal(t, klavi.PaymentScheduled, h.get(monthly, p.ID).Status)
	h.setClock("2026-03-05", 14, 0)
	assert.Equal(t, klavi.PaymentCompleted, h.get(monthly, p.ID).Status)
}

func TestServer_ScenarioOutcomes(t *testing.T) {
	two, zero := 2, 0
	h := newHarness(t, sandbox.Options{Scenario: &sandbox.Scenario{Rules: []sandbox.Rule{
		{ConsentID: monthly, Cycle: &two, Outcome: sandbox.Canceled},
		{ConsentID: monthly, Attempt: &zero, Outcome: sandbox.Rejected, Reason: klavi.ReasonInfrastructureFailure},
	}}})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	p := h.mustPay(monthly, "sc-1", "2026-03-05", 9990, nil)
	h.setClock("2026-03-06", 12, 0)
	got := h.get(monthly, p.ID)
	assert.Equal(t, klavi.PaymentRejected, got.Status)
	require.NotNil(t, got.StatusReason)
	assert.Equal(t, klavi.ReasonInfrastructureFailure, got.StatusReason.Code)

	h.setClock("2026-03-26", 12, 0)
	p = h.mustPay(monthly, "sc-2", "2026-04-05", 9990, nil)
	h.setClock("2026-04-05", 12, 0)
	got = h.get(monthly, p.ID)
	assert.Equal(t, klavi.PaymentCanceled, got.Status, "the first matching rule wins")
	require.NotNil(t, got.Cancellation)
	assert.Equal(t, map[klavi.PaymentStatus]int{klavi.PaymentRejected: 1, klavi.PaymentCanceled: 1}, h.sb.Stats().Statuses)
}

func TestServer_RevocationReason(t *testing.T) {
	h := newHarness(t, sandbox.Options{Scenario: &sandbox.Scenario{Rules: []sandbox.Rule{
		{ConsentID: "*", Outcome: sandbox.Rejected, Reason: klavi.ReasonRevokedUser},
	}}})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	h.mustPay(monthly, "rv-1", "2026-03-05", 9990, &retry.Strategy{Days: []int{1, 2}})
	h.setClock("2026-03-26", 12, 0)
	assert.Len(t, h.ledger(sandbox.KindAutoRetry), 0, "no retry after the payer revoked the consent")
	_, err := h.pay(monthly, "rv-2", "2026-04-05", 9990, nil)
	requireRule(t, err, 416, sandbox.RuleConsentNotAuthorized)
}

func TestServer_SetConsentStatus(t *testing.T) {
	h := newHarness(t, sandbox.Options{})
	h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
	p := h.mustPay(monthly, "sr-1", "2026-03-05", 9990, nil)
	require.NoError(t, h.sb.SetConsentStatus(monthly, klavi.ConsentRevoked, klavi.ReasonRevokedMerchant))
	h.setClock("2026-03-05", 7, 0)
	got := h.get(monthly, p.ID)
	assert.Equal(t, klavi.PaymentRejected, got.Status, "a payment settling under a revoked consent fails")
	assert.Equal(t, klavi.ReasonRevokedMerchant, got.StatusReason.Code)
	require.Error(t, h.sb.SetConsentStatus("urn:test:nobody", klavi.ConsentRevoked, ""))
}

func TestServer_AddConsent(t *testing.T) {
	sb := sandbox.New(sandbox.Options{})
	c := sandbox.SampleConsent(monthly, cycle.Monthly, day("2026-02-05"), 9990)
	require.NoError(t, sb.AddConsent(c))
	require.ErrorContains(t, sb.AddConsent(c), "already known")
	bad := sandbox.SampleConsent("not a valid id", cycle.Monthly, day("2026-02-05"), 9990)
	err := sb.AddConsent(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "id:")
	require.Error(t, sb.AddConsent(nil))
	assert.Equal(t, 1, sb.Stats().Consents)
}

func TestServer_InstantPayments(t *testing.T) {
	h := newHarness(t, sandbox.Options{})
	req := func(crid string, date cycle.Date) *klavi.InstantPaymentRequest {
		return &klavi.InstantPaymentRequest{
			ClientRequestID: crid, InstitutionID: "bank", InitType: klavi.PixDict, Proxy: "+5511999998888",
			Customer: &klavi.Customer{IdentifierType: klavi.CPF, Identifier: "52998224725"},
			Date:     date, Amount: 1500, Currency: klavi.Currency, RedirectURL: "https://m.example/r",
			ClientMetadata: &klavi.ClientMetadata{Platform: klavi.Browser, OS: klavi.Linux, OSVersion: "6"},
		}
	}
	ctx := context.Background()
	now, err := h.kc.CreateInstantPayment(ctx, req("inst-1", cycle.Date{}))
	require.NoError(t, err)
	assert.Equal(t, klavi.PaymentStatus("CONSENT_AWAITING_AUTHORIZATION"), now.Status)
	assert.Equal(t, klavi.Cents(1500), now.Amount)
	_, err = h.kc.CreateInstantPayment(ctx, req("inst-1", cycle.Date{}))
	require.ErrorIs(t, err, klavi.ErrDuplicateRequest)
	_, err = h.kc.CreateInstantPayment(ctx, req("inst-past", day("2026-02-24")))
	requireRule(t, err, 416, sandbox.RuleInstantDate)
	later, err := h.kc.CreateInstantPayment(ctx, req("inst-2", day("2026-03-01")))
	require.NoError(t, err)

	for _, u := range []string{now.ConsentRedirectURL, later.ConsentRedirectURL} {
		resp, err := http.Get(u)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	status := func() map[string]klavi.PaymentStatus {
		out := map[string]klavi.PaymentStatus{}
		for _, e := range h.ledger(sandbox.KindInstant) {
			out[e.ClientRequestID] = e.Status
		}
		return out
	}
	assert.Equal(t, map[string]klavi.PaymentStatus{"inst-1": klavi.PaymentCompleted, "inst-2": klavi.PaymentScheduled}, status())
	h.setClock("2026-03-01", 6, 0)
	assert.Equal(t, klavi.PaymentCompleted, status()["inst-2"])
}

func TestServer_CheckOrderWithClient(t *testing.T) {
	for _, rulesFirst := range []bool{false, true} {
		order := sandbox.CheckKeyFirst
		if rulesFirst {
			order = sandbox.CheckRulesFirst
		}
		h := newHarness(t, sandbox.Options{CheckOrder: order})
		h.seed(monthly, cycle.Monthly, "2026-02-05", 9990)
		h.mustPay(monthly, "resend-1", "2026-03-05", 9990, nil)
		h.setClock("2026-03-04", 9, 0) // the window of 5 March closed on the 3rd
		_, err := h.pay(monthly, "resend-1", "2026-03-05", 9990, nil)
		if rulesFirst {
			requireRule(t, err, 416, sandbox.RuleWindow)
		} else {
			require.True(t, errors.Is(err, klavi.ErrDuplicateRequest), "%v", err)
		}
		assert.Len(t, h.sb.Ledger(), 1)
	}
}
