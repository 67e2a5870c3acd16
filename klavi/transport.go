package klavi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	json "github.com/go-json-experiment/json/v1"
)

// maxResponseBytes bounds what is read of an answer.
const maxResponseBytes = 1 << 20

// An attempt is what one HTTP exchange gave: a response, or a transport error.
type attempt struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// do sends one API call and decodes a 2xx answer into out. The body is encoded once,
// so every attempt sends the same bytes: a re-sent create carries the same
// clientRequestId, never a new one. 408, 429, 5xx and transport errors are retried
// up to MaxAttempts with backoff (or Retry-After, if longer); a 401 renews the token
// once and re-sends without using up an attempt. Every error names the call.
func (c *Client) do(ctx context.Context, ep endpoint, method, path string, body, out any) error {
	var payload []byte
	if r, ok := body.(*CreatePaymentRequest); ok {
		payload, _ = appendCreatePayment(make([]byte, 0, 256), r) // nil: json.Marshal writes it
	}
	if body != nil && payload == nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s: %w: %v", ep.op, ErrInvalidRequest, err)
		}
		payload = b
	}
	// maybeCommitted: an attempt was sent and no definitive answer came back for it,
	// so a create may exist at Klavi even if a later attempt is refused.
	var maybeCommitted, renewed bool
	fail := func(err error) error {
		if ep.create && maybeCommitted && !errors.Is(err, ErrOutcomeUnknown) {
			return &outcomeUnknownError{op: ep.op, err: err}
		}
		return fmt.Errorf("%s: %w", ep.op, err)
	}
	token := ""
	for n := 1; ; n++ {
		if err := c.limiter.Wait(ctx); err != nil {
			return fail(fmt.Errorf("rate limit: %w", err))
		}
		if ep != epAuth && token == "" {
			tok, err := c.token(ctx, "")
			if err != nil {
				return fail(err)
			}
			token = tok
		}
		if err := c.windowClosed(ctx, ep, 0); err != nil {
			return fail(err)
		}
		a := c.send(ctx, ep, method, path, payload, token)
		if a.err != nil {
			maybeCommitted = true
			if ctx.Err() != nil { // the caller gave up; the attempt may have been sent
				return fail(ctx.Err())
			}
			err := fmt.Errorf("%w: %w", ErrUnavailable, a.err)
			if n >= c.cfg.MaxAttempts {
				return fail(err)
			}
			if err := c.wait(ctx, ep, n, 0, a.err.Error()); err != nil {
				return fail(err)
			}
			continue
		}
		if a.status >= 200 && a.status < 300 {
			if err := decode(a.body, out); err != nil {
				maybeCommitted = true
				return fail(err)
			}
			return nil
		}
		apiErr := c.apiError(ep, a, n)
		if a.status == http.StatusUnauthorized && ep != epAuth && !renewed {
			renewed = true
			c.log.Info("klavi refused the access token; renewing it", "endpoint", ep.name)
			tok, err := c.token(ctx, token)
			if err != nil {
				return fail(err)
			}
			token = tok
			n-- // the re-send with a fresh token is not a new attempt
			continue
		}
		if !apiErr.Retryable {
			if !definitive(a.status) {
				maybeCommitted = true // a 1xx or 3xx: not an answer Klavi documents
			}
			return fail(apiErr)
		}
		maybeCommitted = true
		if n >= c.cfg.MaxAttempts {
			return fail(apiErr)
		}
		// The deadline is on the real clock, whatever clock reads Retry-After.
		if dl, ok := ctx.Deadline(); ok && apiErr.RetryAfter > time.Until(dl) {
			return fail(apiErr) // Klavi asks for a longer wait than the caller allows
		}
		// Nor one that would end as or after the send window closes: the check at
		// the loop's top would refuse the next attempt on waking, so the caller (a
		// due scan's pass, and the sends queued behind it) would wait for nothing.
		// The call ends now with the error it would have ended with on waking, and
		// fail keeps the unknown outcome of the attempts already sent.
		if err := c.windowClosed(ctx, ep, apiErr.RetryAfter); err != nil {
			c.log.Warn("klavi request failed; not retrying: the window to send it closes before the wait asked ends",
				"endpoint", ep.name, "attempt", n, "cause", strconv.Itoa(a.status), "wait", apiErr.RetryAfter)
			return fail(err)
		}
		if err := c.wait(ctx, ep, n, apiErr.RetryAfter, strconv.Itoa(a.status)); err != nil {
			return fail(err)
		}
	}
}

// windowClosed is ErrWindowClosed, with the instant, when an attempt made after
// waiting wait would go out at or after the instant WithSendBefore put on ctx, read
// on the client's clock (the one that also reads Retry-After and on whose time
// WithRetryAfterSleep waits); nil otherwise, and always for the token request. With
// wait 0 it is the check before every attempt; with a Retry-After, the same rule
// applied before the wait rather than after it: wait sleeps the longer of the
// backoff and the Retry-After, so the attempt after it goes out no earlier.
func (c *Client) windowClosed(ctx context.Context, ep endpoint, wait time.Duration) error {
	t, ok := sendBeforeOf(ctx)
	if !ok || ep == epAuth || c.clock.Now().Add(wait).Before(t) {
		return nil
	}
	return fmt.Errorf("%w (at %s)", ErrWindowClosed, t.Format(time.RFC3339))
}

// wait sleeps before attempt n+1: the backoff, or retryAfter when longer (waited
// with the Retry-After sleep: Klavi's time).
func (c *Client) wait(ctx context.Context, ep endpoint, n int, retryAfter time.Duration, why string) error {
	d := c.backoff(n)
	if retryAfter > d {
		c.log.Warn("klavi request failed; retrying", "endpoint", ep.name, "attempt", n, "cause", why, "wait", retryAfter)
		if c.retryAfterSleep != nil {
			return c.retryAfterSleep(ctx, retryAfter)
		}
		return c.sleep(ctx, retryAfter)
	}
	c.log.Warn("klavi request failed; retrying", "endpoint", ep.name, "attempt", n, "cause", why, "wait", d)
	return c.sleep(ctx, d)
}

// send makes one HTTP exchange, bounded by the configured Timeout.
func (c *Client) send(ctx context.Context, ep endpoint, method, path string, payload []byte, token string) attempt {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := c.newRequest(actx, method, path, payload, token)
	if err != nil {
		return attempt{err: err}
	}
	start := c.clock.Now()
	a := attempt{}
	resp, err := c.hc.Do(req)
	if err == nil {
		a.status, a.header = resp.StatusCode, resp.Header
		a.body, err = readLimited(resp.Body, maxResponseBytes+1)
		resp.Body.Close()
		if err == nil && len(a.body) > maxResponseBytes {
			err = fmt.Errorf("answer is larger than %d bytes", maxResponseBytes)
		}
	}
	code := "error"
	if err != nil {
		a.err = transportError(err, actx, c.cfg.Timeout)
	} else {
		code = strconv.Itoa(a.status)
		if h := c.hooks.OnServerTime; h != nil {
			if t, perr := http.ParseTime(a.header.Get("Date")); perr == nil {
				end := c.clock.Now()
				h(t, start.Add(end.Sub(start)/2))
			}
		}
	}
	if h := c.hooks.OnRequest; h != nil {
		h(ep.name, code, c.clock.Now().Sub(start))
	}
	// Debug's arguments are boxed before it checks the level: ask first, so an
	// attempt logged at no level allocates nothing for it.
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug("klavi request", "endpoint", ep.name, "code", code)
	}
	return a
}

// readLimited is io.ReadAll(io.LimitReader(r, limit)) (the same bytes and error)
// without the LimitReader, an allocation per attempt: it reads r until EOF, an
// error, or limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b := make([]byte, 0, 512)
	for int64(len(b)) < limit {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow
		}
		p := b[len(b):cap(b)]
		if rest := limit - int64(len(b)); int64(len(p)) > rest {
			p = p[:rest]
		}
		n, err := r.Read(p)
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// transportError drops the URL from a net/http error (it adds nothing the endpoint
// does not say) and names a per-attempt timeout as such.
func transportError(err error, actx context.Context, timeout time.Duration) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(actx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s: %w", timeout, context.DeadlineExceeded)
	}
	return err
}

// optionalBody is an out for do whose 2xx answer may have no body at all.
type optionalBody struct {
	v     any  // where a body is decoded
	empty bool // the answer had no body
}

// decode reads a 2xx body into out, ignoring unknown fields. An empty body is
// ErrMalformedResponse unless out is an *optionalBody.
func decode(body []byte, out any) error {
	if o, ok := out.(*optionalBody); ok {
		if len(bytes.TrimSpace(body)) == 0 {
			o.empty = true
			return nil
		}
		out = o.v
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("%w: empty body", ErrMalformedResponse)
	}
	if p, ok := out.(*Payment); ok && fastPayment(body, p) {
		return nil // the usual answer, read in one pass
	}
	// Anything else, a payment fastPayment declined included (its UnmarshalJSON
	// tries fastPayment once more, then the library).
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%w: %s", ErrMalformedResponse, decodeText(err))
	}
	return nil
}

// errorBody is Klavi's error shape: {"statusCode":409,"error":"Conflict","message":"..."}.
// message is sometimes a list of strings.
type errorBody struct {
	Error   string          `json:"error"`
	Message json.RawMessage `json:"message"`
}

func (c *Client) apiError(ep endpoint, a attempt, n int) *APIError {
	e := &APIError{StatusCode: a.status, Endpoint: ep.name, Retryable: retryableStatus(a.status), Attempt: n}
	var eb errorBody
	if json.Unmarshal(a.body, &eb) == nil {
		e.Code = sanitize(eb.Error, c.cfg.AccessKey, c.cfg.SecretKey)
		var msg string
		var msgs []string
		switch {
		case json.Unmarshal(eb.Message, &msg) == nil:
		case json.Unmarshal(eb.Message, &msgs) == nil:
			msg = strings.Join(msgs, "; ")
		}
		e.Message = sanitize(msg, c.cfg.AccessKey, c.cfg.SecretKey)
	}
	if v := a.header.Get("Retry-After"); v != "" {
		e.RetryAfter = parseRetryAfter(v, c.clock.Now())
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP date; anything else, or a time in
// the past, is zero.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 24*3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
