package klavi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// netHTTPRequest is how send built its request before newRequest: the reference.
func netHTTPRequest(ctx context.Context, base, method, path string, payload []byte, token string) (*http.Request, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headersOf(ctx) {
		req.Header.Set(k, v)
	}
	return req, nil
}

// readBody reads a request body, and says its type (what net/http's transfer code
// looks at to tell an in-memory body).
func readBody(t *testing.T, rc io.ReadCloser) (string, string) {
	t.Helper()
	if rc == nil {
		return "<nil>", ""
	}
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	return reflect.TypeOf(rc).String(), string(b)
}

// sameRequest checks every exported field of got against want, the bodies and
// GetBody by type and content, the context by identity.
func sameRequest(t *testing.T, want, got *http.Request, what string) {
	t.Helper()
	wv, gv := reflect.ValueOf(want).Elem(), reflect.ValueOf(got).Elem()
	for i := 0; i < wv.NumField(); i++ {
		f := wv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		switch f.Name {
		case "Body":
			wt, wb := readBody(t, want.Body)
			gt, gb := readBody(t, got.Body)
			assert.Equal(t, wt, gt, "%s: Body type", what)
			assert.Equal(t, wb, gb, "%s: Body", what)
		case "GetBody":
			require.Equal(t, want.GetBody == nil, got.GetBody == nil, "%s: GetBody", what)
			for range 2 { // each call is a fresh body
				if want.GetBody == nil {
					break
				}
				wrc, werr := want.GetBody()
				grc, gerr := got.GetBody()
				require.NoError(t, werr)
				require.NoError(t, gerr)
				wt, wb := readBody(t, wrc)
				gt, gb := readBody(t, grc)
				assert.Equal(t, wt, gt, "%s: GetBody type", what)
				assert.Equal(t, wb, gb, "%s: GetBody", what)
			}
		case "Header":
			assert.Equal(t, want.Header, got.Header, "%s: Header", what)
			for k, v := range got.Header {
				assert.Equal(t, 1, cap(v), "%s: Header[%q] has room to grow into another's value", what, k)
			}
		default:
			assert.Equal(t, wv.Field(i).Interface(), gv.Field(i).Interface(), "%s: %s", what, f.Name)
		}
	}
	assert.True(t, want.Context() == got.Context(), "%s: Context", what)
}

// checkNewRequest compares newRequest with the reference for one input, errors
// included.
func checkNewRequest(t *testing.T, base, method, path string, payload []byte, token string, hdr map[string]string) {
	t.Helper()
	ctx := context.Background()
	for k, v := range hdr {
		ctx = WithHeader(ctx, k, v)
	}
	c := &Client{base: base, reqBase: requestBase(base)}
	what := method + " " + base + path
	want, werr := netHTTPRequest(ctx, base, method, path, payload, token)
	got, gerr := c.newRequest(ctx, method, path, payload, token)
	if werr != nil || gerr != nil {
		assert.Equal(t, errString(werr), errString(gerr), what)
		return
	}
	sameRequest(t, want, got, what)
	// A second request for another token gets its own Authorization value.
	if token != "" {
		again, err := c.newRequest(ctx, method, path, payload, token+"2")
		require.NoError(t, err)
		if _, set := hdr["Authorization"]; !set {
			assert.Equal(t, "Bearer "+token+"2", again.Header.Get("Authorization"), what)
		}
	}
}

var requestBases = []string{
	"http://127.0.0.1:8080", "https://api-sandbox.klavi.ai", "https://API-Sandbox.Klavi.AI", "https://api-sandbox.klavi.ai:",
	"https://api-sandbox.klavi.ai:443", "http://[::1]:8080", "http://[::1]:", "http://[fe80::1%25en0]:8080",
	"https://user:pass@klavi.example", "https://klavi.example/api", "https://klavi.example/api%20v1", "https://klavi.example?",
	"https://klavi.example#", "http://klavi.example/", "klavi.example", "ftp://klavi.example", "http://", "http://a b",
}

var requestPaths = []string{
	pathAuth, pathInstant, pathConsents, paymentsPath("urn:bench:c-0000001"),
	paymentPath("06c26b65-497d-431e-8b50-c86ece05114a", "urn:klavi:payment-1") + "/retry",
	paymentsPath("id with space"), paymentsPath("id?query"), paymentsPath("ação"), paymentsPath("a%b"), paymentsPath("a;b=c,d@e$f&g+h~i"),
	"", "relative", "/a?b=c", "/a#f", "/%zz", "/a b", "/caf\u00e9", "//double", "/./x/../y", "/\x7f",
}

func TestNewRequest_SameAsNetHTTP(t *testing.T) {
	payloads := [][]byte{nil, {}, []byte(`{"clientRequestId":"crid-1","amount":"99.90"}`)}
	headers := []map[string]string{
		nil,
		{FenceHeader: "42"},
		{"x-billingd-fence": "7", "accept": "text/plain", "Authorization": "Basic x"}, // replace what send sets
		{"A": "1", "B": "2", "C": "3", "D": "4", "E": "5"},                            // more than outgoing holds
		{"bad key": "v", "X-Empty": ""},
	}
	for _, base := range requestBases {
		for _, path := range requestPaths {
			for _, method := range []string{http.MethodGet, http.MethodPost, "", "get", "BAD METHOD", "PROPFIND"} {
				for _, payload := range payloads {
					for _, token := range []string{"", "tok-1"} {
						for _, hdr := range headers {
							checkNewRequest(t, base, method, path, payload, token, hdr)
						}
					}
				}
			}
		}
	}
}

func FuzzNewRequest_SameAsNetHTTP(f *testing.F) {
	for _, base := range requestBases {
		for _, path := range requestPaths[:8] {
			f.Add(base, path, http.MethodPost, []byte(`{}`), "tok-1", FenceHeader, "1")
		}
	}
	f.Fuzz(func(t *testing.T, base, path, method string, payload []byte, token, hk, hv string) {
		var hdr map[string]string
		if hk != "" {
			hdr = map[string]string{hk: hv}
		}
		checkNewRequest(t, base, method, path, payload, token, hdr)
		checkNewRequest(t, base, method, path, nil, token, nil)
	})
}

// The fast path is the one the daemon takes: its BaseURL is scheme://host.
func TestRequestBase(t *testing.T) {
	for base, fast := range map[string]bool{
		"https://api-sandbox.klavi.ai": true, "http://127.0.0.1:8080": true, "https://h:": true,
		"https://h/api": false, "https://h?": false, "https://h#": false, "http://[fe80::1%25en0]:1": false, "h": false,
	} {
		assert.Equal(t, fast, requestBase(base) != nil, base)
	}
	assert.Equal(t, "h", requestBase("https://h:").Host, "an empty port is dropped, as NewRequestWithContext does")
	assert.True(t, plainPath(paymentPath("urn:klavi:consent-1", "06c26b65-497d-431e-8b50-c86ece05114a")))
}
