// Package consent is a consent as billingd keeps and bills it: Klavi's
// create-consent body (klavi.CreateConsentRequest) with the consent's id and status,
// plus a billing object with billingd's own per-consent settings.
//
// The file format (and the admin API body) is that JSON object:
//
//	{"id": "06c26b65-497d-431e-8b50-c86ece05114a", "status": "CONSENT_AUTHORIZED", "clientRequestId": "...", ...,
//	 "paymentMethodConfig": {...},
//	 "billing": {"retryMode": "attach|local|off",
//	             "autoRetryStrategy": {"days": [1, 3], "skipWeekend": true},
//	             "dueDateAdjust": "none|next_business_day",
//	             "remittanceInformation": "..."}}
//
// Decode checks every field and reports all problems at once, each with its JSON path.
package consent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
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
type Consent struct {
	ID     string              `json:"id"`
	Status klavi.ConsentStatus `json:"status"`
	klavi.CreateConsentRequest
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

// Validate lists every problem of c: the Klavi rules of the consent body, the id and
// status, and the billing settings.
func (c *Consent) Validate() problem.List {
	var l problem.List
	if c.ID == "" {
		l.Addf("id", "is required")
	} else if err := klavi.CheckID(c.ID); err != nil {
		l.Addf("id", "not a valid consent id: %v", err)
	}
	switch {
	case c.Status == "":
		l.Addf("status", "is required (e.g. CONSENT_AUTHORIZED)")
	case !c.Status.Valid():
		l.Addf("status", "%q is not a Klavi consent status", trunc(string(c.Status)))
	}
	l = append(l, c.CreateConsentRequest.Validate()...)
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

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// Interval returns the consent's billing interval.
func (c *Consent) Interval() cycle.Interval { return c.PaymentMethodConfig.Interval }

// Expiry returns the last date a payment may be dated: the Brasília date of
// expirationDateTime, or the zero Date when the consent does not expire.
func (c *Consent) Expiry() cycle.Date {
	if c.ExpirationDateTime == nil || c.ExpirationDateTime.IsZero() {
		return cycle.Date{}
	}
	return cycle.DateOf(c.ExpirationDateTime.Time)
}

// Schedule returns the consent's cycle schedule. adjust and cal are the daemon's
// defaults; the consent's billing.dueDateAdjust overrides adjust.
func (c *Consent) Schedule(adjust cycle.DueAdjust, cal *cycle.Calendar) cycle.Schedule {
	if c.Billing.DueDateAdjust != nil {
		adjust = *c.Billing.DueDateAdjust
	}
	return cycle.Schedule{
		Reference: c.PaymentMethodConfig.ReferenceStartDate,
		Interval:  c.PaymentMethodConfig.Interval,
		Adjust:    adjust,
		Calendar:  cal,
		Expiry:    c.Expiry(),
	}
}

// FixedAmount returns the amount every cycle bills, and false for a variable consent.
func (c *Consent) FixedAmount() (klavi.Cents, bool) {
	if a := c.PaymentMethodConfig.FixedAmount; a != nil {
		return *a, true
	}
	return 0, false
}

// CheckVariableAmount reports whether a is an acceptable amount for one cycle of this
// (variable) consent: more than zero, at least minimumVariableAmount and at most
// maximumVariableAmount when they are set.
func (c *Consent) CheckVariableAmount(a klavi.Cents) error {
	pmc := c.PaymentMethodConfig
	switch {
	case pmc.FixedAmount != nil:
		return fmt.Errorf("consent %s has a fixed amount of %s; a per-cycle amount cannot be set", c.ID, *pmc.FixedAmount)
	case a <= 0:
		return fmt.Errorf("amount %s must be more than 0.00", a)
	case a > klavi.MaxCents:
		return fmt.Errorf("amount %s is more than the largest amount, %s", a, klavi.MaxCents)
	case pmc.MaximumVariableAmount != nil && a > *pmc.MaximumVariableAmount:
		return fmt.Errorf("amount %s is above the consent's maximumVariableAmount %s", a, *pmc.MaximumVariableAmount)
	case pmc.MinimumVariableAmount != nil && a < *pmc.MinimumVariableAmount:
		return fmt.Errorf("amount %s is below the consent's minimumVariableAmount %s", a, *pmc.MinimumVariableAmount)
	}
	return nil
}

// RetryAccepted reports whether the payer accepted retries (isRetryAccepted).
func (c *Consent) RetryAccepted() bool {
	p := c.PaymentMethodConfig.IsRetryAccepted
	return p != nil && *p
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
	return fmt.Sprintf("billingd-%s-%d-%d", Hash(id), k, a)
}
