package klavi

import (
	"context"
	"errors"
	"time"
)

// FenceHeader carries, on every Klavi request of a replicated billingd, the fencing
// token (the election key's create revision) of the leadership term it was sent in.
const FenceHeader = "X-Billingd-Fence"

type headersKey struct{}

// WithHeader returns a context whose Klavi requests carry the header name: value
// besides their own. billingd's replicas send X-Billingd-Fence (the leadership
// term a request was sent in), so that a request from a deposed leader can be
// told apart in Klavi's or the sandbox's logs. Values must not hold personal data
// or secrets.
func WithHeader(ctx context.Context, name, value string) context.Context {
	old, _ := ctx.Value(headersKey{}).(map[string]string)
	h := make(map[string]string, len(old)+1)
	for k, v := range old {
		h[k] = v
	}
	h[name] = value
	return context.WithValue(ctx, headersKey{}, h)
}

func headersOf(ctx context.Context) map[string]string {
	h, _ := ctx.Value(headersKey{}).(map[string]string)
	return h
}

type sendBeforeKey struct{}

// ErrWindowClosed: the client did not send (or send again) a request because the
// instant set by WithSendBefore had come by its clock, or would have by the end of
// the Retry-After it was asked to wait first. Wrapped with
// ErrOutcomeUnknown when an earlier attempt of the same call may have reached Klavi.
var ErrWindowClosed = errors.New("the window to send this request has closed")

// WithSendBefore returns a context whose requests the client sends only before t by
// its own clock (the injected one): an attempt, or a retry after a timeout or a 5xx,
// that would go out at t or later is not made, and the call fails with
// ErrWindowClosed. A Retry-After that would end at t or later is not waited: the
// call fails with ErrWindowClosed at once, as it would have on waking, so a caller
// does not sleep for an attempt that cannot be made. billingd sets t to the end of a
// payment's submission window (an original: the end of D−2 in Brasília, the Pix
// Automático rule of seed 004; a retry: the end of D−1), so a retry inside one call
// never reaches Klavi after midnight.
func WithSendBefore(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, sendBeforeKey{}, t)
}

func sendBeforeOf(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(sendBeforeKey{}).(time.Time)
	return t, ok
}
