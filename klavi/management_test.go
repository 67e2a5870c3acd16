package klavi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

const (
	appID      = "0b59d801-08e0-4e84-9ecd-569f34e32279"
	uuidConsID = "06c26b65-497d-431e-8b50-c86ece05114a"
	ordersPath = "/payment/management/v1/merchants/automatic/" + appID + "/consents/" + uuidConsID + "/orders"
	appsPath   = "/payment/management/v1/merchants/apps"
)

func withApp(cfg *klavi.Config) { cfg.AppID = appID }

func order(id, crid, status string) string {
	return fmt.Sprintf(`{"id":%q,"clientRequestId":%q,"date":"2026-3-5","amount":99.9,"status":%q,"createAt":"2026-02-25T13:00:00.123Z"}`, id, crid, status)
}

func TestClient_GetConsent(t *testing.T) {
	ctx := context.Background()
	t.Run("authorized, read tolerantly", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"id":"`+uuidConsID+`","clientRequestId":"c1","status":"consent authorized",
			"statusUpdateAt":"2026-02-25T13:00:00.5Z","paymentMethodConfig":{"interval":"MONTHLY","fixedAmount":99.90,"referenceStartDate":"2026-3-5"},"new":1}`)))
		c, _, _ := newClient(t, f, nil)
		got, err := c.GetConsent(ctx, uuidConsID)
		require.NoError(t, err)
		assert.Equal(t, klavi.ConsentAuthorized, got.Status)
		assert.Equal(t, cycle.Monthly, got.PaymentMethodConfig.Interval)
		assert.Equal(t, klavi.Cents(9990), *got.PaymentMethodConfig.FixedAmount)
		calls := f.apiCalls()
		require.Len(t, calls, 1)
		assert.Equal(t, "GET /payment/customer/v1/automatic/consents/"+uuidConsID, calls[0].Method+" "+calls[0].Path)
	})
	t.Run("revoked", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"id":"x","status":"CONSENT_REVOKED","statusReason":{"code":"revoked user"}}`)))
		c, _, _ := newClient(t, f, nil)
		got, err := c.GetConsent(ctx, "urn:klavi:consent-1")
		require.NoError(t, err)
		assert.True(t, got.Status.Terminal())
		assert.True(t, got.StatusReason.Code.ConsentGone())
	})
	t.Run("no status", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"id":"x"}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.GetConsent(ctx, uuidConsID)
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
	})
	t.Run("404", func(t *testing.T) {
		f := newFake(t, seq(answer(404, `{"statusCode":404,"error":"Not Found"}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.GetConsent(ctx, uuidConsID)
		require.ErrorIs(t, err, klavi.ErrRefused)
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.Equal(t, "get_consent", ae.Endpoint)
	})
	t.Run("invalid id never sent", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.GetConsent(ctx, "a b")
		require.ErrorIs(t, err, klavi.ErrInvalidRequest)
		assert.Empty(t, f.apiCalls())
	})
}

func TestClient_CancelPayment(t *testing.T) {
	ctx := context.Background()
	req := &klavi.CancelPaymentRequest{CancelledBy: "52998224725", IdentifierType: klavi.CPF}
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{{"200 empty", 200, ``}, {"204", 204, ``}, {"202 blank", 202, "  \n"}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, seq(answer(tc.status, tc.body)))
			c, _, _ := newClient(t, f, nil)
			p, err := c.CancelPayment(ctx, uuidConsID, "fcb72e3a-b346-4f71-b044-971dc23232c9", req)
			require.NoError(t, err)
			assert.Nil(t, p)
			calls := f.apiCalls()
			require.Len(t, calls, 1)
			assert.Equal(t, "POST", calls[0].Method)
			assert.Equal(t, "/payment/customer/v1/automatic/consents/"+uuidConsID+"/payments/fcb72e3a-b346-4f71-b044-971dc23232c9/cancel", calls[0].Path)
			assert.JSONEq(t, `{"cancelledBy":"52998224725","identifierType":"CPF"}`, calls[0].Body)
		})
	}
	t.Run("payment body", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"id":"p1","status":"CANCELED","cancellation":{"cancelledFrom":"INITIATOR","cancelledAt":"2026-03-01T10:00:00Z"}}`)))
		c, _, _ := newClient(t, f, nil)
		p, err := c.CancelPayment(ctx, uuidConsID, "p1", req)
		require.NoError(t, err)
		require.NotNil(t, p)
		assert.Equal(t, klavi.PaymentCanceled, p.Status)
		assert.Equal(t, "INITIATOR", p.Cancellation.CancelledFrom)
	})
	t.Run("5xx then success, same body", func(t *testing.T) {
		f := newFake(t, seq(answer(503, ``), answer(200, ``)))
		c, _, sl := newClient(t, f, nil)
		_, err := c.CancelPayment(ctx, uuidConsID, "p1", req)
		require.NoError(t, err)
		assert.Len(t, sl.got(), 1)
		calls := f.apiCalls()
		require.Len(t, calls, 2)
		assert.Equal(t, calls[0].Body, calls[1].Body)
	})
	t.Run("refused", func(t *testing.T) {
		f := newFake(t, seq(answer(422, `{"statusCode":422,"message":"payment already settled"}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.CancelPayment(ctx, uuidConsID, "p1", req)
		require.ErrorIs(t, err, klavi.ErrRefused)
		assert.False(t, klavi.IsOutcomeUnknown(err), "not a create")
	})
	t.Run("validated before sending", func(t *testing.T) {
		f := newFake(t, seq(answer(200, ``)))
		c, _, _ := newClient(t, f, nil)
		for _, r := range []*klavi.CancelPaymentRequest{
			nil, {}, {CancelledBy: "123", IdentifierType: klavi.CPF}, {CancelledBy: "52998224725", IdentifierType: klavi.CNPJ},
			{CancelledBy: "52998224725", IdentifierType: "RG"},
		} {
			_, err := c.CancelPayment(ctx, uuidConsID, "p1", r)
			require.ErrorIs(t, err, klavi.ErrInvalidRequest)
			assert.NotContains(t, err.Error(), "52998224725", "the document is never echoed")
		}
		_, err := c.CancelPayment(ctx, uuidConsID, "p1", &klavi.CancelPaymentRequest{CancelledBy: "11222333000181", IdentifierType: klavi.CNPJ})
		require.NoError(t, err)
		assert.Len(t, f.apiCalls(), 1)
	})
}

func TestClient_ListApps(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"data wrapper", `{"data":[{"id":"a1","name":"Loja"},{"id":"a2"}]}`},
		{"bare array", `[{"id":"a1","name":"Loja"},{"id":"a2"}]`},
		{"appId field", `{"data":[{"appId":"a1","name":"Loja"},{"appId":"a2"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, seq(answer(200, tc.body)))
			c, _, _ := newClient(t, f, nil)
			apps, err := c.ListApps(context.Background())
			require.NoError(t, err)
			assert.Equal(t, []klavi.MerchantApp{{ID: "a1", Name: "Loja"}, {ID: "a2"}}, apps)
			assert.Equal(t, appsPath, f.apiCalls()[0].Path)
		})
	}
	t.Run("not a list", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"apps":"none"}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.ListApps(context.Background())
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
	})
}

func TestClient_AppDiscovery(t *testing.T) {
	ctx := context.Background()
	serve := func(apps string) func(int, call, http.ResponseWriter, *http.Request) {
		return func(_ int, cl call, w http.ResponseWriter, _ *http.Request) {
			if cl.Path == appsPath {
				answer(200, apps)(w)
				return
			}
			answer(200, `{"data":[]}`)(w)
		}
	}
	count := func(calls []call, path string) int {
		n := 0
		for _, c := range calls {
			if c.Path == path {
				n++
			}
		}
		return n
	}
	t.Run("one app: used and kept", func(t *testing.T) {
		f := newFake(t, serve(`{"data":[{"id":"`+appID+`","name":"Loja"}]}`))
		c, _, _ := newClient(t, f, nil)
		_, err := c.ListConsentOrders(ctx, uuidConsID, klavi.OrdersQuery{})
		require.NoError(t, err)
		_, err = c.ListConsents(ctx, klavi.ConsentsQuery{})
		require.NoError(t, err)
		calls := f.apiCalls()
		assert.Equal(t, 1, count(calls, appsPath), "discovered once")
		assert.Equal(t, 1, count(calls, ordersPath))
		assert.Equal(t, 1, count(calls, "/payment/management/v1/merchants/automatic/"+appID+"/consents"))
	})
	for _, tc := range []struct{ name, apps, want string }{
		{"zero apps", `{"data":[]}`, "lists 0 apps"},
		{"two apps", `{"data":[{"id":"a1"},{"id":"a2"}]}`, "lists 2 apps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, serve(tc.apps))
			c, _, _ := newClient(t, f, nil)
			_, err := c.FindOrder(ctx, uuidConsID, "crid-1")
			require.ErrorIs(t, err, klavi.ErrNoAppID)
			assert.False(t, errors.Is(err, klavi.ErrOrderNotFound), "nothing was looked up")
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), "set klavi.app_id")
			_, err = c.ListConsents(ctx, klavi.ConsentsQuery{})
			require.ErrorIs(t, err, klavi.ErrNoAppID)
			assert.Equal(t, 2, count(f.apiCalls(), appsPath), "a failed discovery is not kept")
			assert.Equal(t, 0, count(f.apiCalls(), ordersPath))
		})
	}
	t.Run("configured app id: no discovery", func(t *testing.T) {
		f := newFake(t, serve(`{"data":[]}`))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.ListConsentOrders(ctx, uuidConsID, klavi.OrdersQuery{})
		require.NoError(t, err)
		assert.Equal(t, 0, count(f.apiCalls(), appsPath))
	})
	t.Run("discovery unavailable", func(t *testing.T) {
		f := newFake(t, seq(answer(503, ``)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.FindOrder(ctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound))
	})
	t.Run("bad app id in config", func(t *testing.T) {
		cfg := config("https://api-sandbox.klavi.ai")
		cfg.AppID = "a/b"
		_, err := klavi.New(cfg)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "AppID:")
	})
}

func TestClient_ListConsentOrders(t *testing.T) {
	ctx := context.Background()
	t.Run("query and decoding", func(t *testing.T) {
		var query string
		f := newFake(t, func(_ int, _ call, w http.ResponseWriter, r *http.Request) {
			query = r.URL.RawQuery
			answer(200, `{"data":[`+order("p1", "crid-1", "payment completed")+`],"nextCursor":"c2"}`)(w)
		})
		c, _, _ := newClient(t, f, withApp)
		page, err := c.ListConsentOrders(ctx, uuidConsID, klavi.OrdersQuery{
			Cursor: "a b&c", StartDate: cycle.MustDate(2026, 1, 1), EndDate: cycle.MustDate(2026, 12, 31)})
		require.NoError(t, err)
		assert.Equal(t, "cursor=a+b%26c&endDate=2026-12-31&pageSize=200&startDate=2026-01-01", query)
		assert.Equal(t, ordersPath, f.apiCalls()[0].Path)
		assert.Equal(t, "c2", page.Next)
		require.Len(t, page.Orders, 1)
		o := page.Orders[0]
		assert.Equal(t, "p1", o.ID)
		assert.Equal(t, "crid-1", o.ClientRequestID)
		assert.Equal(t, cycle.MustDate(2026, 3, 5), o.Date)
		assert.Equal(t, klavi.Cents(9990), o.Amount)
		assert.Equal(t, klavi.PaymentCompleted, o.Status)
		assert.True(t, time.Date(2026, 2, 25, 13, 0, 0, 123e6, time.UTC).Equal(o.CreateAt))
	})
	t.Run("invalid queries are never sent", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"data":[]}`)))
		c, _, _ := newClient(t, f, withApp)
		for _, q := range []klavi.OrdersQuery{
			{PageSize: 201}, {PageSize: -1}, {Cursor: "a\x00b"},
			{StartDate: cycle.MustDate(2026, 2, 1), EndDate: cycle.MustDate(2026, 1, 1)},
		} {
			_, err := c.ListConsentOrders(ctx, uuidConsID, q)
			require.ErrorIs(t, err, klavi.ErrInvalidRequest, "%+v", q)
		}
		_, err := c.ListConsentOrders(ctx, "a/b", klavi.OrdersQuery{})
		require.ErrorIs(t, err, klavi.ErrInvalidRequest)
		assert.Empty(t, f.apiCalls())
	})
	t.Run("next-page cursor shapes", func(t *testing.T) {
		for _, tc := range []struct{ name, extra, want string }{
			{"cursor", `"cursor":"n"`, "n"},
			{"nextCursor", `"nextCursor":"n"`, "n"},
			{"next", `"next":"n"`, "n"},
			{"case-insensitive", `"NextCursor":"n"`, "n"},
			{"numeric", `"next":12`, "12"},
			{"meta.cursor", `"meta":{"cursor":"n"}`, "n"},
			{"pagination.nextCursor", `"pagination":{"nextCursor":"n","total":3}`, "n"},
			{"links.next URL", `"links":{"next":"https://api.klavi.ai/x/orders?pageSize=200&cursor=n%2B1"}`, "n+1"},
			{"nextCursor beats an echoed cursor", `"cursor":"old","nextCursor":"n"`, "n"},
			{"absent", ``, ""},
			{"null", `"nextCursor":null`, ""},
			{"empty", `"meta":{"next":""}`, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				body := `{"data":[]`
				if tc.extra != "" {
					body += "," + tc.extra
				}
				f := newFake(t, seq(answer(200, body+"}")))
				c, _, _ := newClient(t, f, withApp)
				page, err := c.ListConsentOrders(ctx, uuidConsID, klavi.OrdersQuery{})
				require.NoError(t, err)
				assert.Equal(t, tc.want, page.Next)
			})
		}
	})
	t.Run("bare array is one last page", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `[`+order("p1", "c", "PAYMENT_PENDING")+`]`)))
		c, _, _ := newClient(t, f, withApp)
		page, err := c.ListConsentOrders(ctx, uuidConsID, klavi.OrdersQuery{})
		require.NoError(t, err)
		assert.Len(t, page.Orders, 1)
		assert.Empty(t, page.Next)
	})
	t.Run("unreadable answers are never an empty page", func(t *testing.T) {
		for _, body := range []string{`{}`, `{"data":null}`, `{"data":{}}`, `{"data":[{"amount":1.234}]}`, `{"data":[],"next":true}`,
			`{"data":[],"links":{"next":"/orders?page=2"}}`, `null`, `{"data":[`} {
			f := newFake(t, seq(answer(200, body)))
			c, _, _ := newClient(t, f, withApp)
			_, err := c.ListConsentOrders(ctx, uuidConsID, klavi.OrdersQuery{})
			require.ErrorIs(t, err, klavi.ErrMalformedResponse, body)
		}
	})
}

// pagedOrders serves orders pages keyed by the request's cursor ("" is the first);
// each page names its next cursor with field (a top-level name or "meta.x").
func pagedOrders(t *testing.T, pages map[string][]string, next map[string]string, field string) func(int, call, http.ResponseWriter, *http.Request) {
	return func(_ int, cl call, w http.ResponseWriter, r *http.Request) {
		require.Equal(t, ordersPath, cl.Path)
		q := r.URL.Query()
		assert.Equal(t, "200", q.Get("pageSize"))
		cur := q.Get("cursor")
		body := map[string]any{"data": json.RawMessage("[" + strings.Join(pages[cur], ",") + "]")}
		if n := next[cur]; n != "" {
			if obj, name, ok := strings.Cut(field, "."); ok {
				body[obj] = map[string]string{name: n}
			} else {
				body[field] = n
			}
		}
		b, err := json.Marshal(body)
		require.NoError(t, err)
		answer(200, string(b))(w)
	}
}

func TestClient_FindOrder(t *testing.T) {
	ctx := context.Background()
	pages := map[string][]string{
		"":   {order("p1", "crid-1", "PAYMENT_COMPLETED"), order("p2", "crid-2", "PAYMENT_REJECTED")},
		"c2": {order("p3", "crid-3", "PAYMENT_PENDING")},
		"c3": {order("p4", "crid-4", "PAYMENT_SCHEDULED"), order("p5", "crid-5", "PAYMENT_PENDING")},
	}
	next := map[string]string{"": "c2", "c2": "c3"}

	for _, field := range []string{"cursor", "nextCursor", "next", "meta.cursor", "pagination.nextCursor", "links.next"} {
		t.Run("three pages, next page named "+field, func(t *testing.T) {
			f := newFake(t, pagedOrders(t, pages, next, field))
			c, _, _ := newClient(t, f, withApp)
			o, err := c.FindOrder(ctx, uuidConsID, "crid-5")
			require.NoError(t, err)
			assert.Equal(t, "p5", o.ID)
			assert.Equal(t, klavi.Cents(9990), o.Amount)
			assert.Len(t, f.apiCalls(), 3)

			o, err = c.FindOrder(ctx, uuidConsID, "crid-1")
			require.NoError(t, err)
			assert.Equal(t, "p1", o.ID)
			assert.Len(t, f.apiCalls(), 4, "stops at the first page that holds it")
		})
	}

	t.Run("not found", func(t *testing.T) {
		f := newFake(t, pagedOrders(t, pages, next, "nextCursor"))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "billingd-0123456789abcdef-7-0")
		require.ErrorIs(t, err, klavi.ErrOrderNotFound)
		for _, e := range []error{klavi.ErrUnavailable, klavi.ErrRefused, klavi.ErrMalformedResponse} {
			assert.False(t, errors.Is(err, e))
		}
		assert.Len(t, f.apiCalls(), 3, "read to the end")
	})

	t.Run("two orders share the clientRequestId", func(t *testing.T) {
		dup := map[string][]string{
			"":   {order("p1", "dup", "PAYMENT_REJECTED")},
			"c2": {order("p2", "dup", "CANCELED"), order("p3", "dup", "PAYMENT_SCHEDULED")},
		}
		f := newFake(t, pagedOrders(t, dup, map[string]string{"": "c2"}, "next"))
		c, _, _ := newClient(t, f, withApp)
		o, err := c.FindOrder(ctx, uuidConsID, "dup")
		require.NoError(t, err)
		assert.Equal(t, "p3", o.ID, "the one that did not end rejected")

		onlyFailed := map[string][]string{"": {order("p1", "dup", "PAYMENT_REJECTED")}, "c2": {order("p2", "dup", "ERROR")}}
		f = newFake(t, pagedOrders(t, onlyFailed, map[string]string{"": "c2"}, "next"))
		c, _, _ = newClient(t, f, withApp)
		o, err = c.FindOrder(ctx, uuidConsID, "dup")
		require.NoError(t, err)
		assert.Equal(t, "p1", o.ID, "all ended rejected: the first")
	})

	t.Run("repeated cursor", func(t *testing.T) {
		loop := map[string]string{"": "c2", "c2": "c3", "c3": "c2"}
		f := newFake(t, pagedOrders(t, pages, loop, "cursor"))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "nope")
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound))
		assert.Contains(t, err.Error(), "does not advance")
		assert.Len(t, f.apiCalls(), 3)

		f = newFake(t, pagedOrders(t, pages, map[string]string{"": "same", "same": "same"}, "cursor"))
		c, _, _ = newClient(t, f, withApp)
		_, err = c.FindOrder(ctx, uuidConsID, "nope")
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.Len(t, f.apiCalls(), 2)
	})

	t.Run("more than MaxPages pages", func(t *testing.T) {
		var n atomic.Int64
		f := newFake(t, func(_ int, _ call, w http.ResponseWriter, _ *http.Request) {
			answer(200, fmt.Sprintf(`{"data":[],"nextCursor":"c%d"}`, n.Add(1)))(w)
		})
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "nope")
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.Contains(t, err.Error(), "past 1000 pages")
		assert.Equal(t, int64(klavi.MaxPages), n.Load())
	})

	t.Run("4xx", func(t *testing.T) {
		f := newFake(t, seq(answer(404, `{"statusCode":404,"error":"Not Found"}`)))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, klavi.ErrRefused)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound), "a refused list proves nothing")
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.Equal(t, "list_consent_orders", ae.Endpoint)
	})

	t.Run("403", func(t *testing.T) {
		f := newFake(t, seq(answer(403, `{"statusCode":403,"error":"Forbidden"}`)))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, klavi.ErrAuth)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound))
	})

	t.Run("5xx then success", func(t *testing.T) {
		inner := pagedOrders(t, pages, next, "nextCursor")
		f := newFake(t, func(n int, cl call, w http.ResponseWriter, r *http.Request) {
			if n == 2 {
				answer(502, ``)(w)
				return
			}
			inner(n, cl, w, r)
		})
		c, _, sl := newClient(t, f, withApp)
		o, err := c.FindOrder(ctx, uuidConsID, "crid-4")
		require.NoError(t, err)
		assert.Equal(t, "p4", o.ID)
		assert.Equal(t, []time.Duration{time.Second}, sl.got())
		assert.Len(t, f.apiCalls(), 4)
	})

	t.Run("5xx to the last attempt", func(t *testing.T) {
		f := newFake(t, seq(answer(503, ``)))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound))
		assert.False(t, klavi.IsOutcomeUnknown(err), "a lookup creates nothing")
		assert.Len(t, f.apiCalls(), 3)
	})

	t.Run("timeout", func(t *testing.T) {
		f := newFake(t, func(_ int, _ call, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		c, _, _ := newClient(t, f, func(cfg *klavi.Config) { withApp(cfg); cfg.Timeout = 30 * time.Millisecond; cfg.MaxAttempts = 2 })
		_, err := c.FindOrder(ctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound))
	})

	t.Run("bad JSON", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"data":[{"id":"p1"`)))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound))
	})

	t.Run("bad JSON on a later page", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"data":[],"next":"c2"}`), answer(200, `{}`)))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound), "a list not read to its end proves nothing")
	})

	t.Run("canceled context", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"data":[]}`)))
		c, _, _ := newClient(t, f, withApp)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := c.FindOrder(cctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, context.Canceled)
		assert.False(t, errors.Is(err, klavi.ErrOrderNotFound))
		assert.Empty(t, f.apiCalls())

		f = newFake(t, seq(answer(200, `{"data":[]}`)))
		c, _, _ = newClient(t, f, nil) // the context also ends the app discovery
		_, err = c.FindOrder(cctx, uuidConsID, "crid-1")
		require.ErrorIs(t, err, context.Canceled)
	})

	t.Run("invalid arguments are never sent", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"data":[]}`)))
		c, _, _ := newClient(t, f, withApp)
		_, err := c.FindOrder(ctx, uuidConsID, "")
		require.ErrorIs(t, err, klavi.ErrInvalidRequest)
		_, err = c.FindOrder(ctx, "", "crid-1")
		require.ErrorIs(t, err, klavi.ErrInvalidRequest)
		assert.Empty(t, f.apiCalls())
	})
}

func TestClient_ListConsents(t *testing.T) {
	ctx := context.Background()
	f := newFake(t, func(_ int, cl call, w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/payment/management/v1/merchants/automatic/"+appID+"/consents", cl.Path)
		switch r.URL.Query().Get("cursor") {
		case "":
			answer(200, `{"data":[{"id":"c1","status":"CONSENT_AUTHORIZED"}],"pagination":{"nextCursor":"k2"}}`)(w)
		default:
			answer(200, `{"data":[{"id":"c2","status":"consent revoked","createAt":"2026-1-2T03:04:05"}]}`)(w)
		}
	})
	c, _, _ := newClient(t, f, withApp)
	p1, err := c.ListConsents(ctx, klavi.ConsentsQuery{PageSize: 50})
	require.NoError(t, err)
	require.Len(t, p1.Consents, 1)
	assert.Equal(t, "k2", p1.Next)
	p2, err := c.ListConsents(ctx, klavi.ConsentsQuery{Cursor: p1.Next})
	require.NoError(t, err)
	require.Len(t, p2.Consents, 1)
	assert.Equal(t, klavi.ConsentRevoked, p2.Consents[0].Status)
	assert.Empty(t, p2.Next)

	_, err = c.ListConsents(ctx, klavi.ConsentsQuery{PageSize: 500})
	require.ErrorIs(t, err, klavi.ErrInvalidRequest)
	assert.Len(t, f.apiCalls(), 2)
}
