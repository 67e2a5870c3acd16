package klavi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// newRequest returns what send's request was built as:
//
//	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(payload)) // nil payload: nil body
//	req.Header.Set("Accept", "application/json")
//	req.Header.Set("Content-Type", "application/json") // with a payload
//	req.Header.Set("Authorization", "Bearer "+token)   // with a token
//	for k, v := range headersOf(ctx) { req.Header.Set(k, v) }
//
// field for field (TestNewRequest_SameAsNetHTTP), built with fewer allocations: the
// header values share one array, the bearer value is made once per token, the URL
// is copied from the parsed BaseURL when url.Parse(c.base+path) would give exactly
// that with Path set to path (reqBase, plainPath), and the URL, the body's reader and
// the header values are one allocation (outgoing). Any other URL is parsed as
// before.
func (c *Client) newRequest(ctx context.Context, method, path string, payload []byte, token string) (*http.Request, error) {
	extra := headersOf(ctx)
	n := 1 + len(extra)
	if payload != nil {
		n++
	}
	if token != "" {
		n++
	}
	o := new(outgoing)
	vals := o.vals[:0]
	if n > len(o.vals) {
		vals = make([]string, 0, n)
	}
	var req *http.Request
	if c.reqBase != nil && simpleMethod(method) && plainPath(path) {
		o.url = *c.reqBase
		o.url.Path = path
		r := http.Request{Method: method, URL: &o.url, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: make(http.Header, n), Host: o.url.Host}
		req = r.WithContext(ctx)
	} else {
		var err error
		if req, err = http.NewRequestWithContext(ctx, method, c.base+path, nil); err != nil {
			return nil, err
		}
	}
	// Header.Set, in the same order: a later key replaces an earlier one. Each value
	// is a slice of capacity 1, so an Add to one header never writes over the next.
	h := req.Header
	set := func(k, v string) {
		vals = append(vals, v)
		i := len(vals)
		h[k] = vals[i-1 : i : i]
	}
	set("Accept", "application/json")
	if payload != nil {
		set("Content-Type", "application/json")
	}
	if token != "" {
		set("Authorization", c.authorization(token))
	}
	for k, v := range extra {
		set(textproto.CanonicalMIMEHeaderKey(k), v)
	}
	if payload != nil { // as NewRequestWithContext sets a *bytes.Reader body
		o.body.Reset(payload)
		req.Body = io.NopCloser(&o.body)
		req.ContentLength = int64(len(payload))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
		if req.ContentLength == 0 {
			req.Body = http.NoBody
			req.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		}
	}
	return req, nil
}

// An outgoing holds, in one allocation, what one attempt's request points to: its
// URL (when copied from reqBase), its body's reader and its header values (when
// there are at most four).
type outgoing struct {
	url  url.URL
	body bytes.Reader
	vals [4]string
}

// A bearerHeader is the Authorization value for one token.
type bearerHeader struct{ token, value string }

// authorization returns "Bearer "+token, made once per token rather than per
// attempt.
func (c *Client) authorization(token string) string {
	if b := c.bearer.Load(); b != nil && b.token == token {
		return b.value
	}
	b := &bearerHeader{token, "Bearer " + token}
	c.bearer.Store(b)
	return b.value
}

// requestBase parses base (BaseURL without its trailing slashes) for newRequest. It
// returns nil, and every URL is parsed from base+path, unless base is
// scheme://authority and nothing more: then url.Parse(base+path), for a path
// plainPath accepts, is this URL with Path set to path (the authority ends where
// the path's '/' begins, and the path is neither unescaped nor kept as RawPath),
// and its Host is what NewRequestWithContext makes of it (an empty port dropped).
func requestBase(base string) *url.URL {
	if strings.ContainsAny(base, "?#%") {
		return nil
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || u.OmitHost ||
		u.Path != "" || u.RawPath != "" || u.ForceQuery || u.RawQuery != "" || u.Fragment != "" || u.RawFragment != "" {
		return nil
	}
	// NewRequestWithContext's removeEmptyPort: "host:" is "host".
	if strings.LastIndex(u.Host, ":") > strings.LastIndex(u.Host, "]") {
		u.Host = strings.TrimSuffix(u.Host, ":")
	}
	return u
}

// plainPath reports whether path starts with '/' and has only bytes that url.Parse
// keeps as they are in a URL's Path and that its EscapedPath does not escape (no
// '%', '?', '#', space, control or non-ASCII byte): the paths this package builds,
// with ids url.PathEscape left alone. Any other path is parsed.
func plainPath(path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.~$&+,/:;=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// simpleMethod reports whether method is one NewRequestWithContext takes as it is.
func simpleMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}
