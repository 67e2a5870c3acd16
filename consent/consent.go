package consent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
)

// RetryMode says who retries a failed payment.
type RetryMode string

// Retry modes.
const (
	// Attach sends the strategy with the payment; Klavi retries, billingd only tracks.
	Attach RetryMode = "attach"
	// Local: billingd requests each planned retry itself through Klavi's retry endpoint.
	Local RetryMode = "local"
	// Off: no retries.
	Off RetryMode = "off"
)

// ParseRetryMode parses attach, local or off, case-insensitively.
func ParseRetryMode(s string) (RetryMode, error) {
	m := RetryMode(strings.ToLower(strings.TrimSpace(s)))
	switch m {
	case Attach, Local, Off:
		return m, nil
	}
	return "", fmt.Errorf("invalid retry mode %q: want attach, local or off", s)
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseRetryMode.
func (m *RetryMode) UnmarshalText(b []byte) error {
	v, err := ParseRetryMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Billing holds billingd's own settings for one consent. Zero fields take the
// daemon's configured defaults.
type Billing struct {
	RetryMode             RetryMode        `json:"retryMode,omitempty"`
	AutoRetryStrategy     *retry.Strategy  `json:"autoRetryStrategy,omitempty"`
	DueDateAdjust         *cycle.DueAdjust `json:"dueDateAdjust,omitempty"`
	RemittanceInformation string           `json:"remittanceInformation,omitempty"`
}

// A Consent is a Klavi Automatic Pix consent with billingd's billing settings.
// It holds personal data (contractDebtor, accounts, customer): never log it whole;
// log its ID.
//
// Its id, status and Klavi body are a klavi.CreatedConsent, whose methods (Interval,
// Expiry, FixedAmount, CheckVariableAmount, RetryAccepted) it has too.
type Consent struct {
	klavi.CreatedConsent
	Billing Billing `json:"billing"`
}

// Decode reads one consent from JSON and validates it. The error, when not nil, is a
// problem.List naming every problem with its JSON path.
func Decode(data []byte) (*Consent, error) {
	var c Consent
	dl := problem.DecodeJSON(data, &c)
	if len(dl) == 0 {
		if l := c.Validate(); len(l) > 0 {
			return nil, l
		}
		return &c, nil
	}
	if len(dl) == 1 && dl[0].Path == "" {
		return nil, dl // not JSON at all
	}
	// Keep going: the fields that did decode may have problems of their own. A field
	// that failed to decode is left zero; its decoding problem is the one to report.
	bad := make(map[string]bool, len(dl))
	for _, p := range dl {
		bad[p.Path] = true
	}
	for _, p := range c.Validate() {
		if !bad[p.Path] {
			dl = append(dl, p)
		}
	}
	return nil, dl
}

// DecodeMany reads one consent, or a JSON array of them, and validates each with
// Decode. The error, when not nil, is a problem.List naming every problem of every
// consent with its JSON path, prefixed by the consent's index in an array ("[2].id"),
// and every id that appears twice. Nothing is returned unless every consent is valid.
func DecodeMany(data []byte) ([]*Consent, error) {
	return problem.DecodeMany(data, "consents", Decode, func(c *Consent) string { return c.ID })
}

// Validate lists every problem of c: the Klavi rules of the consent body, the id and
// status, and the billing settings.
func (c *Consent) Validate() problem.List {
	l := c.CreatedConsent.Validate()
	b := c.Billing
	if s := b.AutoRetryStrategy; s != nil {
		pmc := c.PaymentMethodConfig
		accepted := pmc != nil && pmc.IsRetryAccepted != nil && *pmc.IsRetryAccepted
		iv := cycle.Monthly // unknown interval: check the longest window still
		if pmc != nil && pmc.Interval.Valid() {
			iv = pmc.Interval
		}
		for _, v := range s.Violations(iv, accepted) {
			l.Addf(problem.Join("billing.autoRetryStrategy", v.Field), "%s", v.Message)
		}
	}
	if n := utf8.RuneCountInString(b.RemittanceInformation); n > 140 {
		l.Addf("billing.remittanceInformation", "is %d characters long, the limit is 140", n)
	}
	return l
}

// Schedule returns the consent's cycle schedule. adjust and cal are the daemon's
// defaults; the consent's billing.dueDateAdjust overrides adjust.
func (c *Consent) Schedule(adjust cycle.DueAdjust, cal *cycle.Calendar) cycle.Schedule {
	if c.Billing.DueDateAdjust != nil {
		adjust = *c.Billing.DueDateAdjust
	}
	return c.CreatedConsent.Schedule(adjust, cal)
}

// Strategy returns the consent's retry strategy, or nil when it has none or does not
// accept retries.
func (c *Consent) Strategy() *retry.Strategy {
	if !c.RetryAccepted() || c.Billing.AutoRetryStrategy == nil || c.Billing.AutoRetryStrategy.IsZero() {
		return nil
	}
	return c.Billing.AutoRetryStrategy
}

// RetryModeOr returns the consent's retry mode, or def when it sets none.
func (c *Consent) RetryModeOr(def RetryMode) RetryMode {
	if c.Billing.RetryMode != "" {
		return c.Billing.RetryMode
	}
	return def
}

// Hash returns a short stable digest of the consent id (16 hex digits): the part of
// every clientRequestId that names the consent.
func Hash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}

// ClientRequestID derives the idempotency key of attempt a of cycle k of the consent
// id: billingd-<hash>-<k>-<a>. It is a pure function of its inputs, so a re-send of
// the same attempt (after a crash, a timeout) always carries the same key, and Klavi
// refuses a second payment for it. It is at most 40 characters of [A-Za-z0-9-].
func ClientRequestID(id string, k, a int) string {
	sum := sha256.Sum256([]byte(id))
	b := make([]byte, 0, 40)
	b = append(b, "billingd-"...)
	b = hex.AppendEncode(b, sum[:8])
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, '-')
	return string(strconv.AppendInt(b, int64(a), 10))
}

// Terms returns a copy of c with only what billing decisions read: the id, status,
// interval, reference start date, expiry, amounts, retry acceptance, currency and
// contract id, and the billing settings. The customer, the accounts, the contract
// debtor, the first payment, the client metadata, the external info and the
// redirect URL are left out (who may cancel a payment, the creditor account's
// holder, is read from the whole consent). c is not changed; the copy shares
// nothing that c's setters change.
//
// The store keeps a consent's Terms beside it so that a due entry's decision
// decodes a few fields, not the whole consent (storage: GetConsentAttempt).
func (c *Consent) Terms() *Consent {
	t := &Consent{Billing: c.Billing}
	t.ID, t.Status = c.ID, c.Status
	t.ExpirationDateTime = c.ExpirationDateTime
	if p := c.PaymentMethodConfig; p != nil {
		q := *p
		q.ContractDebtor, q.FirstPayment = nil, nil
		t.PaymentMethodConfig = &q
	}
	return t
}
