package vopr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/klavi"
)

// The network between billingd and Klavi: an http.RoundTripper that hands each
// request to the in-process sandbox on the world's goroutine, and decides (from the
// seed) what the wire does to it. Time spent on the wire moves the virtual clock.

// A fault is what the wire does to one request.
type fault string

const (
	faultNone      fault = ""
	faultDropSend  fault = "drop-before" // lost before Klavi saw it
	faultDropReply fault = "drop-after"  // Klavi handled (and committed) it; the answer is lost
	fault5xx       fault = "503"
	fault429       fault = "429"
	faultTimeout   fault = "timeout"   // Klavi handled it, the answer came after the client gave up
	faultDuplicate fault = "duplicate" // delivered twice; the client gets the second answer
	faultSandbox   fault = "klavi-crash"
	faultCrashSend fault = "billingd-crash-before" // billingd dies before the request leaves
	faultCrashWait fault = "billingd-crash-after"  // billingd dies while Klavi handles it
)

// faultRates are a world's chances of each fault per API request.
type faultRates struct {
	dropSend, dropReply, err5xx, err429, timeout, duplicate, sandboxCrash, crash float64
	// latency is the most a request takes (uniform from 0); slow the chance of a
	// delayed answer (up to a minute).
	latency time.Duration
	slow    float64
}

// errWire is the transport error of a lost request or answer.
var errWire = errors.New("connection reset by peer")

// request is what the world learned of a payment create or retry on the wire.
type request struct {
	retry     bool
	consentID string
	paymentID string // the original, for a retry
	body      klavi.CreatePaymentRequest
}

// network is the world's RoundTripper.
type network struct{ w *world }

func (n network) RoundTrip(req *http.Request) (*http.Response, error) {
	w := n.w
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	pay := parsePayment(req.Method, req.URL.Path, body)
	if pay != nil {
		w.onPost(pay) // the invariants of what is sent
	}
	f := w.drawFault(pay != nil)
	if f != faultNone {
		w.disturb("", "wire "+string(f))
	}
	serve := func() *httptest.ResponseRecorder {
		r := req.Clone(req.Context())
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.RequestURI = req.URL.RequestURI()
		rec := httptest.NewRecorder()
		w.sb.ServeHTTP(rec, r)
		return rec
	}
	lat := w.latency()
	if w.klaviDown() {
		w.advance(lat)
		return nil, fmt.Errorf("dial klavi: connection refused")
	}
	if pay != nil {
		w.tracef("post %s %s date=%s amount=%s fault=%s", kindOf(pay), pay.body.ClientRequestID, pay.body.Date, pay.body.Amount, orDash(string(f)))
	}
	switch f {
	case faultCrashSend:
		w.crash("at a klavi call, before the request left")
	case faultDropSend:
		w.advance(lat)
		return nil, errWire
	case fault5xx, fault429:
		w.advance(lat)
		return synthetic(w, f), nil
	}
	w.advance(lat / 2)
	rec := serve()
	if f == faultDuplicate {
		rec = serve()
	}
	w.advance(lat - lat/2)
	switch f {
	case faultDropReply:
		return nil, errWire
	case faultTimeout:
		w.advance(w.klaviTimeout)
		return nil, fmt.Errorf("no answer: %w", errTimeout)
	case faultSandbox:
		w.sandboxCrash()
		return nil, errWire
	case faultCrashWait:
		w.crash("at a klavi call, while klavi handled it")
	}
	if pay != nil {
		w.tracef("answer %s %d", pay.body.ClientRequestID, rec.Code)
		if rec.Code == http.StatusConflict && strings.Contains(rec.Body.String(), "Insufficient permissions") {
			// The seeds' refusing 409 (sandbox ConflictPermissions): Klavi refused the
			// payment, which no preview can foresee.
			w.disturb(pay.consentID, "klavi refused (409 permissions)")
		}
	}
	return rec.Result(), nil
}

var errTimeout = errors.New("timeout")

// synthetic is a 503 or 429 answer the wire makes up (a proxy in front of Klavi).
func synthetic(w *world, f fault) *http.Response {
	rec := httptest.NewRecorder()
	rec.Header().Set("Date", w.now().UTC().Format(http.TimeFormat))
	rec.Header().Set("Content-Type", "application/json")
	status := http.StatusServiceUnavailable
	if f == fault429 {
		status = http.StatusTooManyRequests
		rec.Header().Set("Retry-After", "1")
	}
	rec.WriteHeader(status)
	fmt.Fprintf(rec, `{"statusCode":%d,"error":%q,"message":"vopr wire fault"}`, status, http.StatusText(status))
	return rec.Result()
}

// parsePayment recognizes a payment create or retry; nil for any other request.
func parsePayment(method, path string, body []byte) *request {
	const prefix = "/payment/customer/v1/automatic/consents/"
	if method != http.MethodPost || !strings.HasPrefix(path, prefix) {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(path, prefix), "/")
	switch {
	case len(parts) == 2 && parts[1] == "payments":
		p := &request{consentID: parts[0]}
		if json.Unmarshal(body, &p.body) != nil {
			return nil
		}
		return p
	case len(parts) == 4 && parts[1] == "payments" && parts[3] == "retry":
		p := &request{retry: true, consentID: parts[0], paymentID: parts[2]}
		var rb klavi.RetryPaymentRequest
		if json.Unmarshal(body, &rb) != nil {
			return nil
		}
		p.body.ClientRequestID, p.body.Date = rb.ClientRequestID, rb.Date
		return p
	}
	return nil
}

func kindOf(p *request) string {
	if p.retry {
		return "retry"
	}
	return "create"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
