package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of every delivery.
const (
	// SignatureHeader carries "t=<Unix seconds>,v1=<hex HMAC-SHA256>": the HMAC,
	// keyed with the endpoint's secret, of the timestamp, a dot and the raw body.
	SignatureHeader = "Billingd-Signature"
	// EventIDHeader carries the event's id (the body's "id"): the receiver's dedupe key.
	EventIDHeader = "Billingd-Event-Id"
)

// DefaultTolerance is the age a receiver should accept a signature's timestamp up to
// (and as far in the future): long enough for clock skew and a slow delivery,
// short enough that a captured request cannot be replayed much later.
const DefaultTolerance = 5 * time.Minute

// Errors of Verify. Callers branch with errors.Is; every one means "do not trust
// this request".
var (
	// ErrNoSignature: the header is empty or has no t= or no v1=.
	ErrNoSignature = errors.New("webhook: no signature")
	// ErrBadSignature: no v1 signature matches the body and the secret.
	ErrBadSignature = errors.New("webhook: signature does not match")
	// ErrTooOld: the timestamp is further from now than the tolerance.
	ErrTooOld = errors.New("webhook: timestamp outside the tolerance")
)

// Sign returns the SignatureHeader value of body sent at t with secret.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts))
	h.Write([]byte{'.'})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Verify checks a delivery as its receiver must: header is the SignatureHeader
// value, body the raw request body (before any JSON decoding), tolerance how far
// the timestamp may be from now (0: DefaultTolerance). Several v1= entries are
// allowed (any one matching is enough) so that a secret can be rotated. It returns
// nil only for a body signed with secret within the tolerance; an empty secret
// verifies nothing.
func Verify(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	if secret == "" {
		return ErrBadSignature // anyone can sign with an empty key
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var (
		ts   string
		sigs []string
	)
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case !ok:
		case k == "t":
			ts = v
		case k == "v1":
			sigs = append(sigs, v)
		}
	}
	if ts == "" || len(sigs) == 0 {
		return ErrNoSignature
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: t=%q", ErrNoSignature, ts)
	}
	want := []byte(mac(secret, ts, body))
	match := false
	for _, s := range sigs {
		if hmac.Equal([]byte(s), want) {
			match = true
		}
	}
	if !match {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s from now, tolerance %s", ErrTooOld, d.Round(time.Second), tolerance)
	}
	return nil
}
