package klavi

import "context"

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
