package klavi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
)

const (
	accessKey = "AK-live-0123456789"
	secretKey = "SK-live-abcdefghij"
	consentID = "urn:klavi:consent-1"
	paymentID = "urn:klavi:payment-1"
)

var t0 = time.Date(2026, 2, 25, 13, 0, 0, 0, time.UTC)

// A call is one API request the fake Klavi received (auth excluded).
type call struct {
	Method, Path, Body, Token string
}

// fakeKlavi is an httptest server with a scripted answer per API call. Auth issues
// tokens tok-1, tok-2, … valid for ttl seconds (as the server says; it does not
// enforce expiry unless respond does).
type fakeKlavi struct {
	t       *testing.T
	ts      *httptest.Server
	mu      sync.Mutex
	calls   []call
	auths   int
	ttl     int
	auth    func(n int) (int, string) // nil: 200 with tok-n
	respond func(n int, c call, w http.ResponseWriter, r *http.Request)
}

func newFake(t *testing.T, respond func(n int, c call, w http.ResponseWriter, r *http.Request)) *fakeKlavi {
	f := &fakeKlavi{t: t, ttl: 600, respond: respond}
	f.ts = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.ts.Close)
	return f
}

func (f *fakeKlavi) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/payment/customer/v1/auth" {
		f.mu.Lock()
		f.auths++
		n := f.auths
		f.mu.Unlock()
		assert.JSONEq(f.t, `{"accessKey":"`+accessKey+`","secretKey":"`+secretKey+`"}`, string(body))
		status, out := 200, fmt.Sprintf(`{"accessToken":"tok-%d","expireIn":%d}`, n, f.ttl)
		if f.auth != nil {
			status, out = f.auth(n)
		}
		w.WriteHeader(status)
		io.WriteString(w, out)
		return
	}
	c := call{Method: r.Method, Path: r.URL.EscapedPath(), Body: string(body), Token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}
	f.mu.Lock()
	f.calls = append(f.calls, c)
	n := len(f.calls)
	f.mu.Unlock()
	f.respond(n, c, w, r)
}

func (f *fakeKlavi) apiCalls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeKlavi) authCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auths
}

func answer(status int, body string, hdr ...string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// seq answers the nth call with the nth answer (the last one repeats).
func seq(answers ...func(http.ResponseWriter)) func(int, call, http.ResponseWriter, *http.Request) {
	return func(n int, _ call, w http.ResponseWriter, _ *http.Request) {
		answers[min(n, len(answers))-1](w)
	}
}

// sleeps records the waits between attempts instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) got() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func config(url string) klavi.Config {
	return klavi.Config{
		BaseURL: url, AccessKey: accessKey, SecretKey: secretKey,
		Timeout: 5 * time.Second, MaxAttempts: 3, BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second,
		RateLimit: 1e6, RateBurst: 1000, TokenRefreshBefore: time.Minute,
	}
}

// newClient returns a client of f with a fake clock, recorded sleeps, and backoff n
// seconds after attempt n (so the waits are easy to read).
func newClient(t *testing.T, f *fakeKlavi, edit func(*klavi.Config), opts ...klavi.Option) (*klavi.Client, *clock.Fake, *sleeps) {
	t.Helper()
	cfg := config(f.ts.URL)
	if edit != nil {
		edit(&cfg)
	}
	clk := clock.NewFake(t0)
	sl := &sleeps{}
	base := []klavi.Option{klavi.WithClock(clk), klavi.WithSleep(sl.sleep),
		klavi.WithBackoff(func(n int) time.Duration { return time.Duration(n) * time.Second })}
	c, err := klavi.New(cfg, append(base, opts...)...)
	require.NoError(t, err)
	return c, clk, sl
}

func paymentReq(crid string) *klavi.CreatePaymentRequest {
	return &klavi.CreatePaymentRequest{ClientRequestID: crid, Date: cycle.MustDate(2026, 3, 5), Amount: 9990, Currency: "BRL"}
}

const created = `{"id":"urn:klavi:payment-1","clientRequestId":"crid-1","amount":"99.90","currency":"BRL","status":"PAYMENT_PENDING"}`

// requireSameBodies asserts every call re-sent the very same body.
func requireSameBodies(t *testing.T, calls []call, n int) {
	t.Helper()
	require.Len(t, calls, n)
	for _, c := range calls[1:] {
		require.Equal(t, calls[0].Body, c.Body, "a re-send carries the same body, so the same clientRequestId")
	}
	assert.Contains(t, calls[0].Body, `"clientRequestId":"crid-1"`)
}

func TestClient_FailureModes(t *testing.T) {
	ctx := context.Background()

	t.Run("4xx", func(t *testing.T) {
		f := newFake(t, seq(answer(404, `{"statusCode":404,"error":"Not Found","message":"no payment for CPF 529.982.247-25 (maria@example.com) dated 2026-03-05"}`)))
		c, _, sl := newClient(t, f, nil)
		_, err := c.GetPayment(ctx, consentID, paymentID)
		require.ErrorIs(t, err, klavi.ErrRefused)
		assert.False(t, errors.Is(err, klavi.ErrUnavailable))
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.Equal(t, 404, ae.StatusCode)
		assert.Equal(t, "Not Found", ae.Code)
		assert.Equal(t, "get_payment", ae.Endpoint)
		assert.False(t, ae.Retryable)
		assert.Equal(t, "get payment: klavi get_payment: 404 Not Found", err.Error(), "Klavi's message is not in the error's text")
		d := klavi.Describe(err)
		assert.NotContains(t, d, "529.982.247", "Klavi's message is masked")
		assert.NotContains(t, d, "maria@")
		assert.Contains(t, d, "2026-03-05", "dates are kept")
		assert.Len(t, f.apiCalls(), 1, "not retried")
		assert.Empty(t, sl.got())

		f = newFake(t, seq(answer(400, `{"statusCode":400,"error":"Bad Request","message":["date must be a date","amount is invalid"]}`)))
		c, _, _ = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrRefused)
		assert.False(t, klavi.IsOutcomeUnknown(err), "a 400 created nothing")
		assert.NotContains(t, err.Error(), "date must be a date")
		assert.Contains(t, klavi.Describe(err), "(Klavi: date must be a date; amount is invalid)")
		assert.Len(t, f.apiCalls(), 1)
	})

	t.Run("409 on a create is a duplicate clientRequestId", func(t *testing.T) {
		f := newFake(t, seq(answer(409, `{"statusCode":409,"error":"Conflict","message":"clientRequestId already used"}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrDuplicateRequest)
		assert.False(t, errors.Is(err, klavi.ErrRefused))
		assert.False(t, klavi.IsOutcomeUnknown(err))
		assert.Len(t, f.apiCalls(), 1)
		_, err = c.RetryPayment(ctx, consentID, paymentID, &klavi.RetryPaymentRequest{ClientRequestID: "crid-2", Date: cycle.MustDate(2026, 3, 6)})
		require.ErrorIs(t, err, klavi.ErrDuplicateRequest)

		_, err = c.GetPayment(ctx, consentID, paymentID)
		require.Error(t, err)
		assert.False(t, errors.Is(err, klavi.ErrDuplicateRequest), "a 409 on a GET is some other conflict")
	})

	t.Run("416 is a business rule, not retried", func(t *testing.T) {
		f := newFake(t, seq(answer(416, `{"statusCode":416,"error":"Business Rule","message":"date outside D-10..D-2"}`)))
		c, _, sl := newClient(t, f, nil)
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrBusinessRule)
		require.ErrorIs(t, err, klavi.ErrRefused)
		assert.False(t, klavi.IsOutcomeUnknown(err))
		assert.Len(t, f.apiCalls(), 1)
		assert.Empty(t, sl.got())
		assert.Equal(t, "create payment: klavi create_payment: 416 Requested Range Not Satisfiable", err.Error())
		assert.Equal(t, "create payment: klavi create_payment: 416 Requested Range Not Satisfiable (Klavi: Business Rule: date outside D-10..D-2)",
			klavi.Describe(err), "a code that is no title is Klavi's words")
	})

	t.Run("a Retry-After is waited with the Retry-After sleep, the backoff with the sleep", func(t *testing.T) {
		ra := &sleeps{}
		f := newFake(t, seq(answer(429, ``, "Retry-After", "7"), answer(503, ``), answer(201, created)))
		c, _, sl := newClient(t, f, nil, klavi.WithRetryAfterSleep(ra.sleep))
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{7 * time.Second}, ra.got(), "Klavi's wait, in Klavi's time")
		assert.Equal(t, []time.Duration{2 * time.Second}, sl.got(), "the backoff after the 503")
	})

	t.Run("429 with Retry-After", func(t *testing.T) {
		f := newFake(t, seq(answer(429, `{"statusCode":429}`, "Retry-After", "7"), answer(201, created)))
		c, _, sl := newClient(t, f, nil)
		p, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.NoError(t, err)
		assert.Equal(t, paymentID, p.ID)
		assert.Equal(t, []time.Duration{7 * time.Second}, sl.got(), "Retry-After beats the 1s backoff")
		requireSameBodies(t, f.apiCalls(), 2)

		date := t0.Add(30 * time.Second).Format(http.TimeFormat)
		f = newFake(t, seq(answer(429, ``, "Retry-After", date), answer(201, created)))
		c, _, sl = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{30 * time.Second}, sl.got(), "an HTTP date, read on the client's clock")

		f = newFake(t, seq(answer(429, ``, "Retry-After", "1")))
		c, _, sl = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		assert.True(t, klavi.IsOutcomeUnknown(err))
		assert.False(t, errors.Is(err, klavi.ErrRefused))
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, sl.got(), "the backoff wins when longer")
		requireSameBodies(t, f.apiCalls(), 3)

		f = newFake(t, seq(answer(429, ``, "Retry-After", "3600")))
		c, _, sl = newClient(t, f, nil)
		dctx, cancel := context.WithDeadline(ctx, time.Now().Add(time.Minute))
		defer cancel()
		_, err = c.GetPayment(dctx, consentID, paymentID)
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		assert.Empty(t, sl.got(), "a wait past the caller's deadline is not started")
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.Equal(t, time.Hour, ae.RetryAfter, "the caller can schedule the next try")
	})

	t.Run("5xx", func(t *testing.T) {
		f := newFake(t, seq(answer(503, `{}`), answer(502, `<html>bad gateway</html>`), answer(201, created)))
		c, _, sl := newClient(t, f, nil)
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.NoError(t, err)
		assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, sl.got())
		requireSameBodies(t, f.apiCalls(), 3)

		f = newFake(t, seq(answer(500, `{"statusCode":500,"error":"Internal Server Error"}`)))
		c, _, _ = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		assert.True(t, klavi.IsOutcomeUnknown(err), "a 500 may have committed it")
		assert.False(t, errors.Is(err, klavi.ErrRefused))
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.True(t, ae.Retryable)
		assert.Equal(t, 3, ae.Attempt)
		requireSameBodies(t, f.apiCalls(), 3)

		_, err = c.GetPayment(ctx, consentID, paymentID)
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		assert.False(t, klavi.IsOutcomeUnknown(err), "a GET creates nothing")
	})

	t.Run("timeout", func(t *testing.T) {
		f := newFake(t, func(_ int, _ call, w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // never answers: the client gives up
		})
		c, _, sl := newClient(t, f, func(cfg *klavi.Config) { cfg.Timeout = 30 * time.Millisecond; cfg.MaxAttempts = 2 })
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.True(t, klavi.IsOutcomeUnknown(err))
		assert.Contains(t, err.Error(), "no answer within 30ms")
		assert.Len(t, sl.got(), 1)
		requireSameBodies(t, f.apiCalls(), 2)
	})

	t.Run("malformed JSON", func(t *testing.T) {
		f := newFake(t, seq(answer(201, `{"id":"urn:klavi:payment-1","amount":99.9`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.True(t, klavi.IsOutcomeUnknown(err), "a 2xx we cannot read: it exists, but which id?")
		assert.Len(t, f.apiCalls(), 1, "not re-sent: a re-send could only say 409")

		f = newFake(t, seq(answer(201, `{"clientRequestId":"crid-1","status":"PAYMENT_PENDING"}`)))
		c, _, _ = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.True(t, klavi.IsOutcomeUnknown(err), "no id")

		f = newFake(t, seq(answer(201, strings.Replace(created, "crid-1", "crid-9", 1))))
		c, _, _ = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		assert.True(t, klavi.IsOutcomeUnknown(err), "an answer for another clientRequestId")

		f = newFake(t, seq(answer(200, `<html>`), answer(200, ``)))
		c, _, _ = newClient(t, f, nil)
		_, err = c.GetPayment(ctx, consentID, paymentID)
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.False(t, klavi.IsOutcomeUnknown(err))
		_, err = c.GetPaymentStatus(ctx, consentID, paymentID)
		require.ErrorIs(t, err, klavi.ErrMalformedResponse, "an empty body")

		f = newFake(t, seq(answer(200, `{"id":"urn:klavi:payment-1","status":"payment completed","amount":"99.90","date":"2026-03-05","brandNewField":{"x":1},"statusReason":{"code":"nao informado"}}`)))
		c, _, _ = newClient(t, f, nil)
		p, err := c.GetPayment(ctx, consentID, paymentID)
		require.NoError(t, err, "unknown fields are ignored, enums read tolerantly")
		assert.Equal(t, klavi.PaymentCompleted, p.Status)
		assert.Equal(t, klavi.ReasonNaoInformado, p.StatusReason.Code)
	})

	t.Run("canceled context", func(t *testing.T) {
		f := newFake(t, seq(answer(201, created)))
		c, _, _ := newClient(t, f, nil)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := c.CreatePayment(cctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, context.Canceled)
		assert.False(t, klavi.IsOutcomeUnknown(err), "nothing was sent")
		assert.Empty(t, f.apiCalls())
		assert.Equal(t, 0, f.authCalls())

		arrived := make(chan struct{})
		f = newFake(t, func(_ int, _ call, w http.ResponseWriter, r *http.Request) {
			close(arrived)
			<-r.Context().Done()
		})
		c, _, sl := newClient(t, f, nil)
		cctx, cancel = context.WithCancel(ctx)
		go func() { <-arrived; cancel() }()
		_, err = c.CreatePayment(cctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, context.Canceled)
		assert.True(t, klavi.IsOutcomeUnknown(err), "the request had reached Klavi")
		assert.Empty(t, sl.got(), "no retry after the caller gave up")
		assert.Len(t, f.apiCalls(), 1)
	})

	t.Run("token expiry mid-run", func(t *testing.T) {
		f := newFake(t, seq(answer(200, `{"id":"urn:klavi:payment-1","status":"PAYMENT_SCHEDULED"}`)))
		var refreshes []error
		c, clk, _ := newClient(t, f, nil, klavi.WithHooks(klavi.Hooks{OnTokenRefresh: func(err error) { refreshes = append(refreshes, err) }}))
		get := func() string {
			_, err := c.GetPayment(ctx, consentID, paymentID)
			require.NoError(t, err)
			calls := f.apiCalls()
			return calls[len(calls)-1].Token
		}
		assert.Equal(t, "tok-1", get())
		clk.Advance(539 * time.Second)
		assert.Equal(t, "tok-1", get(), "600s token, renewed 60s before expiry")
		clk.Advance(time.Second)
		assert.Equal(t, "tok-2", get())
		assert.Equal(t, []error{nil, nil}, refreshes)

		// Klavi revokes the token before the client expected: 401, one renewal, re-sent.
		f = newFake(t, func(_ int, cl call, w http.ResponseWriter, _ *http.Request) {
			if cl.Token == "tok-1" {
				answer(401, `{"statusCode":401,"error":"Unauthorized","message":"jwt expired"}`)(w)
				return
			}
			answer(201, created)(w)
		})
		c, _, sl := newClient(t, f, nil)
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.NoError(t, err)
		assert.Equal(t, 2, f.authCalls())
		requireSameBodies(t, f.apiCalls(), 2)
		assert.Empty(t, sl.got(), "a renewal is not a backoff")

		// Still 401 with a fresh token: stop after one renewal.
		f = newFake(t, seq(answer(401, `{"statusCode":401,"error":"Unauthorized"}`)))
		c, _, _ = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrAuth)
		assert.False(t, errors.Is(err, klavi.ErrRefused), "the payment itself was not refused")
		assert.False(t, klavi.IsOutcomeUnknown(err))
		assert.Equal(t, 2, f.authCalls())
		assert.Len(t, f.apiCalls(), 2)

		// The keys are refused.
		f = newFake(t, seq(answer(201, created)))
		f.auth = func(int) (int, string) {
			return 401, `{"statusCode":401,"error":"Unauthorized","message":"bad key ` + secretKey + `"}`
		}
		c, _, _ = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrAuth)
		assert.False(t, errors.Is(err, klavi.ErrRefused))
		assert.NotContains(t, err.Error(), secretKey)
		assert.Empty(t, f.apiCalls(), "never sent without a token")

		// An unusable auth answer.
		f = newFake(t, seq(answer(201, created)))
		f.auth = func(int) (int, string) { return 200, `{"accessToken":"x"}` }
		c, _, _ = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrMalformedResponse)
		assert.False(t, klavi.IsOutcomeUnknown(err))
	})

	t.Run("a refusal after a lost attempt leaves the outcome unknown", func(t *testing.T) {
		f := newFake(t, seq(answer(503, ``), answer(416, `{"statusCode":416,"message":"one payment per cycle"}`)))
		c, _, _ := newClient(t, f, nil)
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		assert.True(t, klavi.IsOutcomeUnknown(err), "%v", err)
		for _, e := range []error{klavi.ErrRefused, klavi.ErrBusinessRule, klavi.ErrInvalidRequest, klavi.ErrDuplicateRequest} {
			assert.False(t, errors.Is(err, e), "must not read as %v", e)
		}
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.Equal(t, 416, ae.StatusCode)
		assert.Equal(t, 2, ae.Attempt)

		f = newFake(t, seq(answer(502, ``), answer(409, `{"statusCode":409,"error":"Conflict"}`)))
		c, _, _ = newClient(t, f, nil)
		_, err = c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrOutcomeUnknown, "409 after a lost attempt proves nothing by itself: the caller looks the key up")
		require.NotErrorIs(t, err, klavi.ErrDuplicateRequest)
		var ae409 *klavi.APIError
		require.True(t, errors.As(err, &ae409))
		assert.Equal(t, 409, ae409.StatusCode)
		requireSameBodies(t, f.apiCalls(), 2)
	})

	t.Run("a redirect is not followed", func(t *testing.T) {
		f := newFake(t, seq(answer(302, ``, "Location", "/elsewhere")))
		c, _, _ := newClient(t, f, nil)
		_, err := c.CreatePayment(ctx, consentID, paymentReq("crid-1"))
		var ae *klavi.APIError
		require.True(t, errors.As(err, &ae))
		assert.Equal(t, 302, ae.StatusCode)
		assert.True(t, klavi.IsOutcomeUnknown(err), "not an answer Klavi documents")
		assert.Len(t, f.apiCalls(), 1)
	})
}

func TestClient_InvalidRequestIsNeverSent(t *testing.T) {
	f := newFake(t, seq(answer(201, created)))
	c, _, _ := newClient(t, f, nil)
	ctx := context.Background()
	bad := paymentReq("has space")
	bad.Amount = 0
	_, err := c.CreatePayment(ctx, consentID, bad)
	require.ErrorIs(t, err, klavi.ErrInvalidRequest)
	var l problem.List
	require.True(t, errors.As(err, &l))
	assert.Contains(t, l.Error(), "clientRequestId")
	assert.Contains(t, l.Error(), "amount")

	_, err = c.CreatePayment(ctx, "consent/1", paymentReq("crid-1"))
	require.ErrorIs(t, err, klavi.ErrInvalidRequest)
	assert.Contains(t, err.Error(), "consentId")
	_, err = c.GetPayment(ctx, consentID, "")
	require.ErrorIs(t, err, klavi.ErrInvalidRequest)
	_, err = c.RetryPayment(ctx, consentID, paymentID, nil)
	require.ErrorIs(t, err, klavi.ErrInvalidRequest)
	_, err = c.CreateConsent(ctx, &klavi.CreateConsentRequest{})
	require.ErrorIs(t, err, klavi.ErrInvalidRequest)
	_, err = c.CreateInstantPayment(ctx, &klavi.InstantPaymentRequest{})
	require.ErrorIs(t, err, klavi.ErrInvalidRequest)

	assert.Empty(t, f.apiCalls())
	assert.Equal(t, 0, f.authCalls())
}

func TestClient_PathIDsAreEscaped(t *testing.T) {
	tests := []struct {
		name, consentID, paymentID, wantPath string
	}{
		{"uuid (every example id of seeds 002-004)", "06c26b65-497d-431e-8b50-c86ece05114a", "fcb72e3a-b346-4f71-b044-971dc23232c9",
			"/payment/customer/v1/automatic/consents/06c26b65-497d-431e-8b50-c86ece05114a/payments/fcb72e3a-b346-4f71-b044-971dc23232c9/status"},
		{"urn with ? # and %", "urn:bank:a?c#d", "urn:bank:p%1",
			"/payment/customer/v1/automatic/consents/urn:bank:a%3Fc%23d/payments/urn:bank:p%251/status"},
		{"non-ASCII", "consentimento-ção", "p;1",
			"/payment/customer/v1/automatic/consents/consentimento-%C3%A7%C3%A3o/payments/p%3B1/status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotPath, gotEscaped string
			f := newFake(t, func(_ int, _ call, w http.ResponseWriter, r *http.Request) {
				gotPath, gotEscaped = r.URL.Path, r.URL.EscapedPath()
				answer(200, `{"id":"x","status":"PAYMENT_PENDING"}`)(w)
			})
			c, _, _ := newClient(t, f, nil)
			_, err := c.GetPaymentStatus(context.Background(), tt.consentID, tt.paymentID)
			require.NoError(t, err)
			assert.Equal(t, tt.wantPath, gotEscaped)
			assert.Equal(t, "/payment/customer/v1/automatic/consents/"+tt.consentID+"/payments/"+tt.paymentID+"/status", gotPath,
				"the server decodes each segment back to the id")
		})
	}
}

func TestClient_OneTokenRequestForConcurrentCallers(t *testing.T) {
	release := make(chan struct{})
	f := newFake(t, seq(answer(200, `{"id":"x","status":"PAYMENT_PENDING"}`)))
	f.auth = func(n int) (int, string) {
		<-release
		return 200, fmt.Sprintf(`{"accessToken":"tok-%d","expireIn":600}`, n)
	}
	c, _, _ := newClient(t, f, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			_, err := c.GetPayment(context.Background(), consentID, paymentID)
			errs <- err
		})
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, 1, f.authCalls())
	for _, cl := range f.apiCalls() {
		assert.Equal(t, "tok-1", cl.Token)
	}
}

func TestClient_RateLimit(t *testing.T) {
	f := newFake(t, seq(answer(200, `{"id":"x","status":"PAYMENT_PENDING"}`)))
	c, _, _ := newClient(t, f, func(cfg *klavi.Config) { cfg.RateLimit = 0.01; cfg.RateBurst = 2 })
	ctx := context.Background()
	_, err := c.GetPayment(ctx, consentID, paymentID) // the auth request and this one use the burst
	require.NoError(t, err)
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = c.GetPayment(dctx, consentID, paymentID)
	require.Error(t, err, "the next token is 100s away, past the deadline")
	assert.Contains(t, err.Error(), "rate limit")
	assert.Len(t, f.apiCalls(), 1)
}

func TestClient_Hooks(t *testing.T) {
	f := newFake(t, seq(answer(503, ``), answer(201, created)))
	var mu sync.Mutex
	var got []string
	c, _, _ := newClient(t, f, nil, klavi.WithHooks(klavi.Hooks{OnRequest: func(ep, code string, d time.Duration) {
		mu.Lock()
		got = append(got, ep+" "+code)
		mu.Unlock()
		assert.GreaterOrEqual(t, d, time.Duration(0))
	}}))
	_, err := c.CreatePayment(context.Background(), consentID, paymentReq("crid-1"))
	require.NoError(t, err)
	f.ts.Close() // a transport error now
	_, err = c.GetPayment(context.Background(), consentID, paymentID)
	require.ErrorIs(t, err, klavi.ErrUnavailable)
	assert.Equal(t, []string{"auth 200", "create_payment 503", "create_payment 201",
		"get_payment error", "get_payment error", "get_payment error"}, got)
}

func TestClient_NothingSecretOrPersonalInLogsOrErrors(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFake(t, seq(
		answer(500, `{"statusCode":500,"message":"upstream echoed Bearer tok-1 and `+secretKey+`"}`),
		answer(400, `{"statusCode":400,"error":"Bad Request","message":"debtor 11222333000181 account 1234567890 e-mail joao.silva@example.com.br"}`),
	))
	c, _, _ := newClient(t, f, nil, klavi.WithLogger(log))
	req := paymentReq("crid-1")
	req.CreditorAccount = &klavi.Account{ISPB: "12345678", Issuer: "0001", Number: "1234567890", AccountType: klavi.CACC,
		Holder: &klavi.Person{IdentifierType: klavi.CPF, Identifier: "52998224725", Name: "Maria da Silva"}}
	_, err := c.CreatePayment(context.Background(), consentID, req)
	require.Error(t, err)
	out := logs.String() + "\n" + err.Error()
	for _, secret := range []string{accessKey, secretKey, "tok-1", "52998224725", "1234567890", "11222333000181", "Maria", "joao.silva"} {
		assert.NotContains(t, out, secret)
	}
	assert.Contains(t, logs.String(), "endpoint=create_payment", "the logs say what happened")
}

func TestNew_NamesEveryBadField(t *testing.T) {
	_, err := klavi.New(klavi.Config{BaseURL: "ftp://x", MaxAttempts: 11, BackoffMin: 2, BackoffMax: 1, TokenRefreshBefore: -1})
	require.Error(t, err)
	for _, f := range []string{"BaseURL", "AccessKey", "SecretKey", "Timeout", "MaxAttempts", "BackoffMin", "RateLimit", "RateBurst", "TokenRefreshBefore"} {
		assert.Contains(t, err.Error(), f+":")
	}
	assert.NotContains(t, err.Error(), secretKey)
	_, err = klavi.New(config("https://api-sandbox.klavi.ai/"))
	require.NoError(t, err)
}

func TestClient_ProbeReadsKlavisTimeInOneAttempt(t *testing.T) {
	date := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f := newFake(t, seq(answer(429, `{"statusCode":429}`, "Retry-After", "5", "Date", date.Format(http.TimeFormat))))
	var got []time.Time
	c, _, sl := newClient(t, f, nil, klavi.WithHooks(klavi.Hooks{OnServerTime: func(server, _ time.Time) { got = append(got, server) }}))
	require.NoError(t, c.Probe(context.Background()), "any answer will do: it carries Klavi's time")
	assert.Len(t, f.apiCalls(), 1, "one attempt: no retry, no Retry-After wait")
	assert.Empty(t, sl.d)
	require.NotEmpty(t, got)
	assert.True(t, got[len(got)-1].Equal(date))

	f.ts.Close()
	require.Error(t, c.Probe(context.Background()), "no answer at all is an error")
}

// Each attempt is logged at debug level with its endpoint and code, and not at all
// above it (send asks the logger first, so the record costs nothing when off).
func TestClient_LogsEachAttemptAtDebug(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level slog.Level
		want  []string
	}{
		{"debug", slog.LevelDebug, []string{
			`msg="klavi request" endpoint=auth code=200`,
			`msg="klavi request" endpoint=create_payment code=201`,
		}},
		{"info", slog.LevelInfo, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: tc.level}))
			f := newFake(t, seq(answer(201, created)))
			c, _, _ := newClient(t, f, nil, klavi.WithLogger(log))
			_, err := c.CreatePayment(context.Background(), consentID, paymentReq("crid-1"))
			require.NoError(t, err)
			var got []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if i := strings.Index(l, `msg="klavi request"`); i >= 0 {
					got = append(got, l[i:])
				}
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

// An answer is read up to 1 MiB: one byte more is a failed attempt, retried.
func TestClient_AnswerSizeLimit(t *testing.T) {
	const limit = 1 << 20
	t.Run("at the limit", func(t *testing.T) {
		f := newFake(t, seq(answer(201, created+strings.Repeat(" ", limit-len(created)))))
		c, _, _ := newClient(t, f, nil)
		_, err := c.CreatePayment(context.Background(), consentID, paymentReq("crid-1"))
		require.NoError(t, err)
	})
	t.Run("over the limit", func(t *testing.T) {
		f := newFake(t, seq(answer(201, created+strings.Repeat(" ", limit-len(created)+1))))
		c, _, _ := newClient(t, f, nil)
		_, err := c.CreatePayment(context.Background(), consentID, paymentReq("crid-1"))
		require.ErrorIs(t, err, klavi.ErrUnavailable)
		assert.Contains(t, err.Error(), "answer is larger than 1048576 bytes")
		assert.Len(t, f.apiCalls(), 3, "retried up to MaxAttempts")
	})
}
