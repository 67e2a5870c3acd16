package sandbox_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

const mgmt = "/payment/management/v1/merchants"

func TestServer_GetConsent(t *testing.T) {
	b := newRaw(t, sandbox.Options{})
	c := b.do(http.MethodPost, consentsPath, consentBody(t, "signup-1"))
	require.Equal(t, 201, c.code, c.raw)
	id := str(c.body["id"])

	t.Run("awaiting authorization", func(t *testing.T) {
		got := b.do(http.MethodGet, consentsPath+"/"+id, "")
		require.Equal(t, 200, got.code, got.raw)
		assert.Equal(t, id, got.body["id"])
		assert.Equal(t, "signup-1", got.body["clientRequestId"])
		assert.Equal(t, "CONSENT_AWAITING_AUTHORIZATION", got.body["status"])
		assert.Equal(t, b.ts.URL+"/_sandbox/authorize/"+id, got.body["consentRedirectUrl"])
		assert.Equal(t, "2026-02-25T13:00:00Z", got.body["createAt"])
		assert.Equal(t, "2026-02-25T13:00:00Z", got.body["statusUpdateAt"])
		pmc := got.body["paymentMethodConfig"].(map[string]any)
		assert.Equal(t, "MONTHLY", pmc["interval"])
		assert.Equal(t, "99.90", pmc["fixedAmount"])
		assert.Equal(t, "2026-02-05", pmc["referenceStartDate"])
	})
	t.Run("authorized", func(t *testing.T) {
		b.clk.Advance(10 * time.Minute)
		a := b.do(http.MethodPost, "/_sandbox/consents/"+id+"/authorize", "")
		require.Equal(t, 200, a.code, a.raw)
		got := b.do(http.MethodGet, consentsPath+"/"+id, "")
		assert.Equal(t, "CONSENT_AUTHORIZED", got.body["status"])
		assert.Nil(t, got.body["consentRedirectUrl"], "only while awaiting")
		assert.Equal(t, "2026-02-25T13:10:00Z", got.body["statusUpdateAt"])
	})
	t.Run("expiration date-time", func(t *testing.T) {
		b.seed(monthly, "2026-02-05", 9990)
		c := sandbox.SampleConsent(weekly, cycle.Monthly, day("2026-02-05"), 9990)
		exp, err := klavi.ParseDateTime("2026-12-31T23:59:59Z")
		require.NoError(t, err)
		c.ExpirationDateTime = &exp
		require.NoError(t, b.sb.AddConsent(c))
		got := b.do(http.MethodGet, consentsPath+"/"+weekly, "")
		assert.Equal(t, "2026-12-31T23:59:59Z", got.body["expirationDateTime"])
		got = b.do(http.MethodGet, consentsPath+"/"+monthly, "")
		assert.Nil(t, got.body["expirationDateTime"])
	})
	t.Run("unknown", func(t *testing.T) {
		got := b.do(http.MethodGet, consentsPath+"/fcb72e3a-b346-4f71-b044-971dc23232c9", "")
		assert.Equal(t, 404, got.code)
	})
}

func TestServer_ConsentActions(t *testing.T) {
	for _, tc := range []struct {
		name, action, from     string // from: "awaiting" (created through the API) or "authorized" (seeded)
		wantCode               int
		wantStatus, wantReason string
	}{
		{"authorize awaiting", "authorize", "awaiting", 200, "CONSENT_AUTHORIZED", ""},
		{"authorize authorized", "authorize", "authorized", 409, "CONSENT_AUTHORIZED", ""},
		{"reject awaiting", "reject", "awaiting", 200, "CONSENT_REJECTED", "USER_REJECTED"},
		{"reject authorized", "reject", "authorized", 409, "CONSENT_AUTHORIZED", ""},
		{"revoke authorized", "revoke", "authorized", 200, "CONSENT_REVOKED", "REVOKED_USER"},
		{"revoke by the merchant", "revoke?reason=revoked_merchant", "authorized", 200, "CONSENT_REVOKED", "REVOKED_MERCHANT"},
		{"revoke with a reason that is not a revocation", "revoke?reason=USER_REJECTED", "authorized", 400, "CONSENT_AUTHORIZED", ""},
		{"revoke awaiting", "revoke", "awaiting", 409, "CONSENT_AWAITING_AUTHORIZATION", ""},
		{"expire authorized", "expire", "authorized", 200, "CONSENT_PERIOD_EXPIRED", ""},
		{"expire awaiting", "expire", "awaiting", 200, "CONSENT_REJECTED", "AUTHORIZATION_EXPIRED_TIME"},
		{"unknown action", "pause", "authorized", 404, "CONSENT_AUTHORIZED", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRaw(t, sandbox.Options{})
			id := monthly
			if tc.from == "awaiting" {
				c := b.do(http.MethodPost, consentsPath, consentBody(t, "signup-1"))
				require.Equal(t, 201, c.code)
				id = str(c.body["id"])
			} else {
				b.seed(monthly, "2026-02-05", 9990)
			}
			a := b.do(http.MethodPost, "/_sandbox/consents/"+id+"/"+tc.action, "")
			require.Equal(t, tc.wantCode, a.code, a.raw)
			got := b.do(http.MethodGet, consentsPath+"/"+id, "")
			assert.Equal(t, tc.wantStatus, got.body["status"])
			if tc.wantReason != "" {
				assert.Equal(t, tc.wantReason, got.body["statusReason"].(map[string]any)["code"])
			}
			if tc.wantStatus != "CONSENT_AUTHORIZED" {
				p := b.pay(id, "after", "2026-03-05", "99.90")
				assert.Equal(t, 416, p.code, "no payment under a consent that is not authorized")
			}
		})
	}
	t.Run("in-process", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{})
		b.seed(monthly, "2026-02-05", 9990)
		status := func(id string) string { return str(b.do(http.MethodGet, consentsPath+"/"+id, "").body["status"]) }
		require.ErrorIs(t, b.sb.AuthorizeConsent(monthly), sandbox.ErrConsentState)
		require.NoError(t, b.sb.RevokeConsent(monthly, klavi.ReasonRevokedMerchant))
		assert.Equal(t, "CONSENT_REVOKED", status(monthly))
		require.Error(t, b.sb.RevokeConsent("urn:test:nobody", ""))

		c := b.do(http.MethodPost, consentsPath, consentBody(t, "signup-1"))
		require.NoError(t, b.sb.AuthorizeConsent(str(c.body["id"])))
		assert.Equal(t, "CONSENT_AUTHORIZED", status(str(c.body["id"])))
		require.NoError(t, b.sb.ExpireConsent(str(c.body["id"])))
		assert.Equal(t, "CONSENT_PERIOD_EXPIRED", status(str(c.body["id"])))

		c = b.do(http.MethodPost, consentsPath, consentBody(t, "signup-2"))
		require.NoError(t, b.sb.RejectConsent(str(c.body["id"])))
		assert.Equal(t, "CONSENT_REJECTED", status(str(c.body["id"])))
	})
	t.Run("authorize after 60 minutes", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{})
		c := b.do(http.MethodPost, consentsPath, consentBody(t, "signup-1"))
		b.clk.Advance(61 * time.Minute)
		a := b.do(http.MethodPost, "/_sandbox/consents/"+str(c.body["id"])+"/authorize", "")
		assert.Equal(t, 410, a.code, a.raw)
		got := b.do(http.MethodGet, consentsPath+"/"+str(c.body["id"]), "")
		assert.Equal(t, "CONSENT_REJECTED", got.body["status"])
		assert.Equal(t, "2026-02-25T14:00:00Z", got.body["statusUpdateAt"], "rejected when the 60 minutes ran out")
	})
}

func TestServer_Cancel(t *testing.T) {
	const doc = `{"cancelledBy":"52998224725","identifierType":"CPF"}`
	cancel := func(b *rawBox, consentID, paymentID, body string) answer {
		return b.do(http.MethodPost, paymentsPath(consentID)+"/"+paymentID+"/cancel", body)
	}
	t.Run("a payment dated later", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{})
		b.seed(monthly, "2026-02-05", 9990)
		p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
		require.Equal(t, 201, p.code)
		b.clk.Advance(time.Hour)
		c := cancel(b, monthly, str(p.body["id"]), doc)
		require.Equal(t, 200, c.code, c.raw)
		assert.Equal(t, "CANCELED", c.body["status"])
		assert.Equal(t, map[string]any{
			"cancelledFrom": "INITIATOR", "cancelledAt": "2026-02-25T14:00:00Z",
			"cancelledBy": map[string]any{"identifier": "52998224725", "identifierType": "CPF"},
		}, c.body["cancellation"])

		b.clk.Set(day("2026-03-06").At(12, 0))
		got := b.do(http.MethodGet, paymentsPath(monthly)+"/"+str(p.body["id"]), "")
		assert.Equal(t, "CANCELED", got.body["status"], "it never settles")
		assert.Equal(t, "2026-02-25T14:00:00Z", got.body["statusUpdateAt"])

		again := cancel(b, monthly, str(p.body["id"]), doc)
		assert.Equal(t, 416, again.code)
		assert.Equal(t, sandbox.RuleCancelFinal, again.body["rule"])
	})
	t.Run("its cycle is free again", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{})
		b.seed(monthly, "2026-02-05", 9990)
		p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
		require.Equal(t, 416, b.pay(monthly, "p-2", "2026-03-05", "99.90").code, "one per cycle")
		require.Equal(t, 200, cancel(b, monthly, str(p.body["id"]), `{"cancelledBy":"11222333000181","identifierType":"CNPJ"}`).code)
		assert.Equal(t, 201, b.pay(monthly, "p-3", "2026-03-05", "99.90").code)
	})
	t.Run("refusals", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{})
		b.seed(monthly, "2026-02-05", 9990)
		today := b.pay(monthly, "p-today", "2026-02-27", "99.90") // cycle of 5 Feb
		later := b.pay(monthly, "p-later", "2026-03-05", "99.90")
		b.clk.Set(day("2026-02-27").At(1, 0)) // before the settle hour: still scheduled
		for _, tc := range []struct {
			name, paymentID, body string
			code                  int
			rule                  string
		}{
			{"dated today", str(today.body["id"]), doc, 416, sandbox.RuleCancelTooLate},
			{"unknown payment", "fcb72e3a-b346-4f71-b044-971dc23232c9", doc, 404, sandbox.RuleNotFound},
			{"empty body", str(later.body["id"]), `{}`, 400, sandbox.RuleInvalidRequest},
			{"not JSON", str(later.body["id"]), `cancel`, 400, sandbox.RuleInvalidRequest},
			{"unknown field", str(later.body["id"]), `{"cancelledBy":"52998224725","identifierType":"CPF","why":"x"}`, 400, sandbox.RuleInvalidRequest},
			{"bad type", str(later.body["id"]), `{"cancelledBy":"52998224725","identifierType":"RG"}`, 400, sandbox.RuleInvalidRequest},
			{"CPF of 10 digits", str(later.body["id"]), `{"cancelledBy":"5299822472","identifierType":"CPF"}`, 400, sandbox.RuleInvalidRequest},
			{"CNPJ given as CPF", str(later.body["id"]), `{"cancelledBy":"11222333000181","identifierType":"CPF"}`, 400, sandbox.RuleInvalidRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c := cancel(b, monthly, tc.paymentID, tc.body)
				assert.Equal(t, tc.code, c.code, c.raw)
				assert.Equal(t, tc.rule, c.body["rule"])
				assert.NotContains(t, c.raw, "5299822472", "the document is never echoed")
			})
		}
		b.clk.Set(day("2026-02-27").At(7, 0))
		c := cancel(b, monthly, str(today.body["id"]), doc)
		assert.Equal(t, sandbox.RuleCancelFinal, c.body["rule"], "completed")
	})
	t.Run("a retry Klavi runs", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{Scenario: &sandbox.Scenario{Rules: []sandbox.Rule{{ConsentID: "*", Outcome: sandbox.Rejected}}}})
		b.seed(monthly, "2026-02-05", 9990)
		p := b.do(http.MethodPost, paymentsPath(monthly), `{"clientRequestId":"p-1","date":"2026-03-05","amount":"99.90","currency":"BRL","autoRetryStrategy":{"days":[2],"skipWeekend":false}}`)
		require.Equal(t, 201, p.code, p.raw)
		b.clk.Set(day("2026-03-05").At(12, 0))
		var retryID string
		for _, e := range b.sb.Ledger() {
			if e.Kind == sandbox.KindAutoRetry {
				retryID = e.PaymentID
			}
		}
		require.NotEmpty(t, retryID)
		require.Equal(t, 200, cancel(b, monthly, retryID, doc).code)
		got := b.do(http.MethodGet, paymentsPath(monthly)+"/"+str(p.body["id"]), "")
		assert.Equal(t, "PAYMENT_REJECTED", got.body["status"], "the original ends with its plan")
	})
}

func TestServer_Apps(t *testing.T) {
	for _, tc := range []struct{ name, appID, want string }{
		{"default", "", sandbox.DefaultAppID},
		{"chosen", "app-1", "app-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRaw(t, sandbox.Options{AppID: tc.appID})
			a := b.do(http.MethodGet, mgmt+"/apps", "")
			require.Equal(t, 200, a.code)
			assert.JSONEq(t, fmt.Sprintf(`{"data":[{"id":%q,"name":"sandbox"}]}`, tc.want), a.raw)
		})
	}
}

// ordersBox has one monthly consent with five orders: p-0..p-3 dated 5 March, each
// canceled before the next is created (a canceled payment frees its cycle), then
// p-4 dated 27 February (the cycle of 5 February).
func ordersBox(t *testing.T, opts sandbox.Options) (*rawBox, []string) {
	b := newRaw(t, opts)
	b.seed(monthly, "2026-02-05", 9990)
	var ids []string
	for i := range 4 {
		p := b.pay(monthly, fmt.Sprintf("p-%d", i), "2026-03-05", "99.90")
		require.Equal(t, 201, p.code, p.raw)
		ids = append(ids, str(p.body["id"]))
		c := b.do(http.MethodPost, paymentsPath(monthly)+"/"+ids[i]+"/cancel", `{"cancelledBy":"52998224725","identifierType":"CPF"}`)
		require.Equal(t, 200, c.code, c.raw)
	}
	p := b.pay(monthly, "p-4", "2026-02-27", "99.90") // the cycle of 5 February
	require.Equal(t, 201, p.code, p.raw)
	return b, append(ids, str(p.body["id"]))
}

func TestServer_ListOrders(t *testing.T) {
	orders := mgmt + "/automatic/" + sandbox.DefaultAppID + "/consents/" + monthly + "/orders"
	for _, field := range []string{"", "cursor", "nextCursor", "next"} {
		t.Run("pages with cursor field "+field, func(t *testing.T) {
			b, ids := ordersBox(t, sandbox.Options{CursorField: field})
			name := field
			if name == "" {
				name = "cursor"
			}
			var got []string
			var sizes []int
			q := url.Values{"pageSize": {"2"}}
			for range 10 {
				a := b.do(http.MethodGet, orders+"?"+q.Encode(), "")
				require.Equal(t, 200, a.code, a.raw)
				data := a.body["data"].([]any)
				sizes = append(sizes, len(data))
				for _, o := range data {
					got = append(got, str(o.(map[string]any)["id"]))
				}
				next, ok := a.body[name]
				if !ok {
					break
				}
				for _, other := range []string{"cursor", "nextCursor", "next"} {
					if other != name {
						assert.NotContains(t, a.body, other)
					}
				}
				q.Set("cursor", str(next))
			}
			assert.Equal(t, ids, got, "every order once, in creation order")
			assert.Equal(t, []int{2, 2, 1}, sizes, "the cursor is absent on the last page")
		})
	}
	t.Run("an order's fields", func(t *testing.T) {
		b, ids := ordersBox(t, sandbox.Options{Amounts: sandbox.AmountsNumber})
		a := b.do(http.MethodGet, orders, "")
		require.Equal(t, 200, a.code)
		data := a.body["data"].([]any)
		require.Len(t, data, 5, "default page size 20")
		assert.NotContains(t, a.body, "cursor")
		o := data[0].(map[string]any)
		assert.Equal(t, ids[0], o["id"])
		assert.Equal(t, "p-0", o["clientRequestId"])
		assert.Equal(t, "2026-03-05", o["date"])
		assert.Equal(t, 99.9, o["amount"])
		assert.Contains(t, a.raw, `"amount":99.90`)
		assert.Equal(t, "BRL", o["currency"])
		assert.Equal(t, "CANCELED", o["status"])
		assert.Equal(t, "2026-02-25T13:00:00Z", o["createAt"])
		assert.Equal(t, "PAYMENT_PENDING", data[4].(map[string]any)["status"])
	})
	t.Run("date filters", func(t *testing.T) {
		b, ids := ordersBox(t, sandbox.Options{})
		for _, tc := range []struct {
			name, query string
			want        []string
		}{
			{"start", "startDate=2026-03-01", ids[:4]},
			{"end", "endDate=2026-02-28", ids[4:]},
			{"both, inclusive", "startDate=2026-02-27&endDate=2026-03-05", ids},
			{"nothing", "startDate=2026-04-01", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := b.do(http.MethodGet, orders+"?"+tc.query, "")
				require.Equal(t, 200, a.code, a.raw)
				var got []string
				for _, o := range a.body["data"].([]any) {
					got = append(got, str(o.(map[string]any)["id"]))
				}
				assert.Equal(t, tc.want, got)
				assert.Contains(t, a.raw, `"data":[`, "an empty page is an empty array")
			})
		}
	})
	t.Run("retries are orders", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{Scenario: &sandbox.Scenario{Default: sandbox.Rejected}})
		b.seed(monthly, "2026-02-05", 9990)
		p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
		b.clk.Set(day("2026-03-05").At(12, 0))
		r := b.retry(monthly, str(p.body["id"]), "r-1", "2026-03-06")
		require.Equal(t, 201, r.code, r.raw)
		a := b.do(http.MethodGet, orders, "")
		data := a.body["data"].([]any)
		require.Len(t, data, 2)
		assert.Equal(t, "r-1", data[1].(map[string]any)["clientRequestId"])
	})
	t.Run("refusals", func(t *testing.T) {
		b, _ := ordersBox(t, sandbox.Options{})
		b.seed(weekly, "2026-02-05", 9990)
		first := b.do(http.MethodGet, orders+"?pageSize=1", "")
		otherList := mgmt + "/automatic/" + sandbox.DefaultAppID + "/consents/" + weekly + "/orders"
		for _, tc := range []struct {
			name, path string
			code       int
		}{
			{"page size 0", orders + "?pageSize=0", 400},
			{"page size 201", orders + "?pageSize=201", 400},
			{"page size 200", orders + "?pageSize=200", 200},
			{"page size not a number", orders + "?pageSize=ten", 400},
			{"garbage cursor", orders + "?cursor=garbage", 400},
			{"another list's cursor", otherList + "?cursor=" + str(first.body["cursor"]), 400},
			{"bad date", orders + "?startDate=2026-3-1", 400},
			{"end before start", orders + "?startDate=2026-03-02&endDate=2026-03-01", 400},
			{"unknown app", mgmt + "/automatic/another-app/consents/" + monthly + "/orders", 404},
			{"unknown consent", mgmt + "/automatic/" + sandbox.DefaultAppID + "/consents/urn:test:nobody/orders", 404},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := b.do(http.MethodGet, tc.path, "")
				assert.Equal(t, tc.code, a.code, a.raw)
			})
		}
	})
	t.Run("page size max", func(t *testing.T) {
		b, _ := ordersBox(t, sandbox.Options{PageSizeMax: 300})
		assert.Equal(t, 200, b.do(http.MethodGet, orders+"?pageSize=300", "").code)
		assert.Equal(t, 400, b.do(http.MethodGet, orders+"?pageSize=301", "").code)
		small, _ := ordersBox(t, sandbox.Options{PageSizeMax: 2})
		a := small.do(http.MethodGet, orders+"?pageSize=200", "")
		require.Equal(t, 200, a.code, "the documented 200 is accepted, and served in smaller pages")
		assert.Len(t, a.body["data"], 2)
		assert.NotEmpty(t, a.body["cursor"])
		assert.Equal(t, 400, small.do(http.MethodGet, orders+"?pageSize=201", "").code)
	})
	t.Run("a page that grows", func(t *testing.T) {
		b, ids := ordersBox(t, sandbox.Options{})
		a := b.do(http.MethodGet, orders+"?pageSize=5", "")
		require.Len(t, a.body["data"], 5)
		require.NotContains(t, a.body, "cursor", "the last page")
		a = b.do(http.MethodGet, orders+"?pageSize=4", "")
		cursor := str(a.body["cursor"])
		b.clk.Set(day("2026-03-02").At(9, 0))
		p := b.pay(monthly, "p-5", "2026-03-12", "99.90") // the cycle of 5 March: its payments were canceled
		require.Equal(t, 201, p.code, p.raw)
		a = b.do(http.MethodGet, orders+"?pageSize=4&cursor="+cursor, "")
		var got []string
		for _, o := range a.body["data"].([]any) {
			got = append(got, str(o.(map[string]any)["id"]))
		}
		assert.Equal(t, []string{ids[4], str(p.body["id"])}, got, "a cursor stays valid as orders are added")
	})
}

func TestServer_ListConsents(t *testing.T) {
	b := newRaw(t, sandbox.Options{CursorField: "nextCursor"})
	b.seed(monthly, "2026-02-05", 9990)
	b.clk.Set(day("2026-02-26").At(10, 0))
	c := b.do(http.MethodPost, consentsPath, consentBody(t, "signup-1"))
	require.Equal(t, 201, c.code)
	b.clk.Set(day("2026-02-27").At(10, 0))
	b.seed(weekly, "2026-02-05", 9990)
	list := mgmt + "/automatic/" + sandbox.DefaultAppID + "/consents"

	a := b.do(http.MethodGet, list+"?pageSize=2", "")
	require.Equal(t, 200, a.code, a.raw)
	data := a.body["data"].([]any)
	require.Len(t, data, 2)
	assert.Equal(t, monthly, data[0].(map[string]any)["id"])
	assert.Equal(t, c.body["id"], data[1].(map[string]any)["id"])
	assert.Equal(t, "CONSENT_REJECTED", data[1].(map[string]any)["status"], "not authorized within 60 minutes")
	a = b.do(http.MethodGet, list+"?pageSize=2&cursor="+str(a.body["nextCursor"]), "")
	require.Len(t, a.body["data"], 1)
	assert.Equal(t, weekly, a.body["data"].([]any)[0].(map[string]any)["id"])
	assert.NotContains(t, a.body, "nextCursor")

	a = b.do(http.MethodGet, list+"?startDate=2026-02-26&endDate=2026-02-26", "")
	require.Len(t, a.body["data"], 1, "filtered on the Brasília date of createAt")
	assert.Equal(t, 404, b.do(http.MethodGet, mgmt+"/automatic/nope/consents", "").code)
	assert.Equal(t, 400, b.do(http.MethodGet, list+"?pageSize=201", "").code)
}
