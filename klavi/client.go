package klavi

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/internal/redact"
)

// Config is how the client reaches Klavi. Every field is required; New names the
// ones that are wrong.
type Config struct {
	// BaseURL is the API root, e.g. https://api-sandbox.klavi.ai.
	BaseURL string
	// AccessKey and SecretKey buy the access token. They are never logged.
	AccessKey, SecretKey string
	// Timeout bounds each attempt (connect, send, wait, read).
	Timeout time.Duration
	// MaxAttempts is how many times a request is sent at most (1..10) when the answer
	// is 408, 429, 5xx or a transport error.
	MaxAttempts int
	// BackoffMin and BackoffMax bound the wait between attempts: BackoffMin doubled
	// per attempt, capped at BackoffMax, with jitter; a longer Retry-After wins.
	BackoffMin, BackoffMax time.Duration
	// RateLimit is the client-side limit in requests per second, RateBurst its burst.
	RateLimit float64
	RateBurst int
	// TokenRefreshBefore: the token is renewed this long before it expires (at most
	// half its lifetime, so a short-lived token is not renewed on every call).
	TokenRefreshBefore time.Duration
	// AppID is the merchant application's id, the {appId} of the management API
	// (klavi-api.md section 7). Optional: when empty, the first management call
	// discovers it with ListApps and keeps it (exactly one app listed: that one;
	// zero or several: ErrNoAppID).
	AppID string
}

func (cfg Config) validate() error {
	var l problem.List
	if u, err := url.Parse(cfg.BaseURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		l.Addf("BaseURL", "%q must be an absolute http(s) URL", truncate(redact.URL(cfg.BaseURL), 80))
	} else if u.RawQuery != "" || u.Fragment != "" {
		l.Addf("BaseURL", "must not have a query or a fragment")
	}
	if cfg.AccessKey == "" {
		l.Addf("AccessKey", "is empty")
	}
	if cfg.SecretKey == "" {
		l.Addf("SecretKey", "is empty")
	}
	if cfg.Timeout <= 0 {
		l.Addf("Timeout", "must be more than 0")
	}
	if cfg.MaxAttempts < 1 || cfg.MaxAttempts > 10 {
		l.Addf("MaxAttempts", "%d is outside 1..10", cfg.MaxAttempts)
	}
	if cfg.BackoffMin <= 0 || cfg.BackoffMax < cfg.BackoffMin {
		l.Addf("BackoffMin", "must be more than 0 and at most BackoffMax")
	}
	if !(cfg.RateLimit > 0) || math.IsInf(cfg.RateLimit, 0) {
		l.Addf("RateLimit", "must be a finite number of requests per second above 0")
	}
	if cfg.RateBurst < 1 {
		l.Addf("RateBurst", "must be at least 1")
	}
	if cfg.TokenRefreshBefore < 0 {
		l.Addf("TokenRefreshBefore", "must not be negative")
	}
	if cfg.AppID != "" {
		if err := CheckID(cfg.AppID); err != nil {
			l.Addf("AppID", "%v", err)
		}
	}
	return l.Err()
}

// Hooks observe the client; metrics attach here. Nil funcs are skipped. They run on
// the caller's goroutine and must not block.
type Hooks struct {
	// OnRequest is called after every HTTP attempt with the endpoint name
	// ("create_payment"), the status code ("201") or "error" for a transport error,
	// and the attempt's duration.
	OnRequest func(endpoint, code string, d time.Duration)
	// OnTokenRefresh is called after every token request, with its error or nil.
	OnTokenRefresh func(err error)
	// OnServerTime is called after every answer that carries an HTTP Date header,
	// with Klavi's time (to the second) and the local clock's reading halfway through
	// the exchange: how the daemon learns whether its own clock can be trusted.
	OnServerTime func(server, local time.Time)
}

// An Option changes a Client built by New.
type Option func(*Client)

// WithHTTPClient sends requests through hc (nil keeps the default: a transport that
// keeps up to 64 idle connections to Klavi, and no redirects followed). The
// per-attempt Timeout applies either way.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithClock sets the clock that decides token expiry and Retry-After dates
// (nil: the real clock).
func WithClock(clk clock.Clock) Option { return func(c *Client) { c.clock = clock.Or(clk) } }

// WithLogger sets the logger (nil: slog.Default()). Nothing personal or secret is
// logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// WithBackoff replaces the wait before attempt n+1 after n failed attempts (n ≥ 1).
// A longer Retry-After still wins.
func WithBackoff(f func(attempt int) time.Duration) Option {
	return func(c *Client) {
		if f != nil {
			c.backoff = f
		}
	}
}

// WithSleep replaces how the client waits between attempts; it must return early
// with ctx's error when ctx is done. Tests pass one that records and returns at once.
func WithSleep(f func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) {
		if f != nil {
			c.sleep = f
		}
	}
}

// WithRetryAfterSleep replaces how the client waits out a Retry-After, which Klavi
// gives in its own time (a test's sandbox runs on a sped-up clock); nil, the
// default, waits as WithSleep's function does. The backoff between attempts stays
// with WithSleep's.
func WithRetryAfterSleep(f func(ctx context.Context, d time.Duration) error) Option {
	return func(c *Client) { c.retryAfterSleep = f }
}

// WithHooks sets the observation hooks.
func WithHooks(h Hooks) Option { return func(c *Client) { c.hooks = h } }

// A Client calls Klavi. It is safe for concurrent use.
type Client struct {
	cfg     Config
	base    string // BaseURL without a trailing slash
	hc      *http.Client
	clock   clock.Clock
	log     *slog.Logger
	backoff func(attempt int) time.Duration
	sleep   func(ctx context.Context, d time.Duration) error
	// retryAfterSleep waits out a Retry-After longer than the backoff (nil: sleep).
	retryAfterSleep func(ctx context.Context, d time.Duration) error
	hooks           Hooks
	limiter         *rate.Limiter
	tokens          tokenCache
	// reqBase is the parsed base a request's URL is copied from (nil: each URL is
	// parsed), bearer the last token's Authorization value (see newRequest).
	reqBase *url.URL
	bearer  atomic.Pointer[bearerHeader]
	app     appCache
}

// New returns a client for cfg, or an error naming every bad field of cfg.
func New(cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("klavi config: %w", err)
	}
	c := &Client{
		cfg:     cfg,
		base:    strings.TrimRight(cfg.BaseURL, "/"),
		reqBase: requestBase(strings.TrimRight(cfg.BaseURL, "/")),
		hc:      defaultHTTPClient(),
		clock:   clock.Real{},
		log:     slog.Default(),
		sleep:   clock.Sleep,
		limiter: rate.NewLimiter(rate.Limit(cfg.RateLimit), cfg.RateBurst),
		app:     appCache{lock: make(chan struct{}, 1)},
	}
	c.backoff = func(n int) time.Duration {
		return expBackoff(cfg.BackoffMin, cfg.BackoffMax, n, rand.Float64())
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 128
	t.MaxIdleConnsPerHost = 64
	return &http.Client{
		Transport: t,
		// A redirect is not part of Klavi's API; following one would turn a POST into
		// a GET. Report it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// expBackoff is the default wait after attempt n: min·2^(n−1) capped at max, then
// "equal jitter": half of it fixed, half scaled by u in [0,1).
func expBackoff(lo, hi time.Duration, n int, u float64) time.Duration {
	d := hi
	if n < 1 {
		n = 1
	}
	if n <= 32 {
		if x := lo << (n - 1); x > 0 && x < hi {
			d = x
		}
	}
	return d/2 + time.Duration(float64(d/2)*u)
}

// An endpoint is one API call: its low-cardinality name and whether it creates
// something (a create carries a clientRequestId and can be a duplicate).
type endpoint struct {
	name   string // for metrics and logs
	op     string // for error strings
	create bool
}

var (
	epAuth          = endpoint{"auth", "get token", false}
	epCreateConsent = endpoint{"create_consent", "create consent", true}
	epCreatePayment = endpoint{"create_payment", "create payment", true}
	epRetryPayment  = endpoint{"retry_payment", "retry payment", true}
	epGetPayment    = endpoint{"get_payment", "get payment", false}
	epGetStatus     = endpoint{"get_payment_status", "get payment status", false}
	epInstant       = endpoint{"create_instant_payment", "create instant payment", true}
	epGetConsent    = endpoint{"get_consent", "get consent", false}
	epCancelPayment = endpoint{"cancel_payment", "cancel payment", false}
	epListApps      = endpoint{"list_apps", "list apps", false}
	epListOrders    = endpoint{"list_consent_orders", "list consent orders", false}
	epListConsents  = endpoint{"list_consents", "list consents", false}
)

func isCreate(name string) bool {
	switch name {
	case epCreateConsent.name, epCreatePayment.name, epRetryPayment.name, epInstant.name:
		return true
	}
	return false
}

// API paths (klavi-api.md).
const (
	pathAuth     = "/payment/customer/v1/auth"
	pathInstant  = "/payment/customer/v1/instant/payments"
	pathConsents = "/payment/customer/v1/automatic/consents"
)

func paymentsPath(consentID string) string {
	return pathConsents + "/" + url.PathEscape(consentID) + "/payments"
}

func paymentPath(consentID, paymentID string) string {
	return paymentsPath(consentID) + "/" + url.PathEscape(paymentID)
}

// checkIDs validates path ids; a bad one is an InvalidRequestError.
func checkIDs(ep endpoint, ids ...[2]string) error {
	var l problem.List
	for _, id := range ids {
		checkResourceID(&l, id[0], id[1])
	}
	if len(l) > 0 {
		return &InvalidRequestError{Op: ep.op, Problems: l}
	}
	return nil
}

// checkBody validates a request body; a nil or invalid one is an InvalidRequestError.
func checkBody[T any, P interface {
	*T
	Validate() problem.List
}](ep endpoint, r P) error {
	var l problem.List
	if r == nil {
		l.Addf("", "request is nil")
	} else {
		l = r.Validate()
	}
	if len(l) > 0 {
		return &InvalidRequestError{Op: ep.op, Problems: l}
	}
	return nil
}

// CreateConsent asks Klavi for an Automatic Pix consent. The consent starts
// CONSENT_AWAITING_AUTHORIZATION; the payer authorizes it at ConsentRedirectURL.
func (c *Client) CreateConsent(ctx context.Context, r *CreateConsentRequest) (*Consent, error) {
	if err := checkBody(epCreateConsent, r); err != nil {
		return nil, err
	}
	var out Consent
	if err := c.do(ctx, epCreateConsent, http.MethodPost, pathConsents, r, &out); err != nil {
		return nil, err
	}
	if err := checkCreated(epCreateConsent, out.ID, out.ClientRequestID, r.ClientRequestID); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreatePayment creates a recurring payment under consentID. With
// r.AutoRetryStrategy set, Klavi retries a failure itself and refuses RetryPayment
// for it. See the package documentation for what each error means.
func (c *Client) CreatePayment(ctx context.Context, consentID string, r *CreatePaymentRequest) (*Payment, error) {
	if err := checkIDs(epCreatePayment, [2]string{"consentId", consentID}); err != nil {
		return nil, err
	}
	if err := checkBody(epCreatePayment, r); err != nil {
		return nil, err
	}
	var out Payment
	if err := c.do(ctx, epCreatePayment, http.MethodPost, paymentsPath(consentID), r, &out); err != nil {
		return nil, err
	}
	if err := checkCreated(epCreatePayment, out.ID, out.ClientRequestID, r.ClientRequestID); err != nil {
		return nil, err
	}
	return &out, nil
}

// RetryPayment asks Klavi for a new attempt, dated r.Date, of the rejected payment
// paymentID. The retry is a payment of its own (its id is in the result).
func (c *Client) RetryPayment(ctx context.Context, consentID, paymentID string, r *RetryPaymentRequest) (*Payment, error) {
	if err := checkIDs(epRetryPayment, [2]string{"consentId", consentID}, [2]string{"paymentId", paymentID}); err != nil {
		return nil, err
	}
	if err := checkBody(epRetryPayment, r); err != nil {
		return nil, err
	}
	var out Payment
	if err := c.do(ctx, epRetryPayment, http.MethodPost, paymentPath(consentID, paymentID)+"/retry", r, &out); err != nil {
		return nil, err
	}
	if err := checkCreated(epRetryPayment, out.ID, out.ClientRequestID, r.ClientRequestID); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetPayment reads a payment resource.
func (c *Client) GetPayment(ctx context.Context, consentID, paymentID string) (*Payment, error) {
	if err := checkIDs(epGetPayment, [2]string{"consentId", consentID}, [2]string{"paymentId", paymentID}); err != nil {
		return nil, err
	}
	var out Payment
	if err := c.do(ctx, epGetPayment, http.MethodGet, paymentPath(consentID, paymentID), nil, &out); err != nil {
		return nil, err
	}
	if out.Status == "" {
		return nil, fmt.Errorf("%s: %w: no status", epGetPayment.op, ErrMalformedResponse)
	}
	return &out, nil
}

// GetPaymentStatus reads only the status of a payment.
func (c *Client) GetPaymentStatus(ctx context.Context, consentID, paymentID string) (*PaymentStatusInfo, error) {
	if err := checkIDs(epGetStatus, [2]string{"consentId", consentID}, [2]string{"paymentId", paymentID}); err != nil {
		return nil, err
	}
	var out PaymentStatusInfo
	if err := c.do(ctx, epGetStatus, http.MethodGet, paymentPath(consentID, paymentID)+"/status", nil, &out); err != nil {
		return nil, err
	}
	if out.Status == "" {
		return nil, fmt.Errorf("%s: %w: no status", epGetStatus.op, ErrMalformedResponse)
	}
	return &out, nil
}

// CreateInstantPayment starts an instant Pix payment, or a scheduled one when r.Date
// is set. The payer authorizes it at ConsentRedirectURL.
func (c *Client) CreateInstantPayment(ctx context.Context, r *InstantPaymentRequest) (*InstantPayment, error) {
	if err := checkBody(epInstant, r); err != nil {
		return nil, err
	}
	var out InstantPayment
	if err := c.do(ctx, epInstant, http.MethodPost, pathInstant, r, &out); err != nil {
		return nil, err
	}
	if err := checkCreated(epInstant, out.ID, out.ClientRequestID, r.ClientRequestID); err != nil {
		return nil, err
	}
	return &out, nil
}

// checkCreated refuses a create answer without an id, or for another clientRequestId:
// whatever Klavi did, this answer does not tell, so the outcome is unknown.
func checkCreated(ep endpoint, id, gotKey, sentKey string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s: %w: %w: no id in the answer", ep.op, ErrOutcomeUnknown, ErrMalformedResponse)
	case gotKey != "" && gotKey != sentKey:
		return fmt.Errorf("%s: %w: %w: the answer is for another clientRequestId", ep.op, ErrOutcomeUnknown, ErrMalformedResponse)
	}
	return nil
}
