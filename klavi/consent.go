package klavi

import (
	"fmt"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
)

// CreatedConsent is a consent as the one who created it knows it: the id Klavi gave
// it, its status, and the body of the request that created it. Its JSON is the
// consent file format without billingd's billing settings (package consent adds
// them). It holds personal data (contractDebtor, accounts, customer): never log it
// whole; log its ID.
type CreatedConsent struct {
	ID     string        `json:"id"`
	Status ConsentStatus `json:"status"`
	CreateConsentRequest
}

// Validate lists every problem of c: the id, the status and the Klavi rules of the
// consent body.
func (c *CreatedConsent) Validate() problem.List {
	var l problem.List
	if c.ID == "" {
		l.Addf("id", "is required")
	} else if err := CheckID(c.ID); err != nil {
		l.Addf("id", "not a valid consent id: %v", err)
	}
	switch {
	case c.Status == "":
		l.Addf("status", "is required (e.g. CONSENT_AUTHORIZED)")
	case !c.Status.Valid():
		l.Addf("status", "%q is not a Klavi consent status", truncate(string(c.Status), 60))
	}
	return append(l, c.CreateConsentRequest.Validate()...)
}

// Interval returns the consent's billing interval.
func (c *CreatedConsent) Interval() cycle.Interval { return c.PaymentMethodConfig.Interval }

// Expiry returns the last date a payment may be dated: the Brasília date of
// expirationDateTime, or the zero Date when the consent does not expire.
func (c *CreatedConsent) Expiry() cycle.Date {
	if c.ExpirationDateTime == nil || c.ExpirationDateTime.IsZero() {
		return cycle.Date{}
	}
	return cycle.DateOf(c.ExpirationDateTime.Time)
}

// Schedule returns the consent's cycle schedule with due dates moved by adjust on
// the calendar cal.
func (c *CreatedConsent) Schedule(adjust cycle.DueAdjust, cal *cycle.Calendar) cycle.Schedule {
	return cycle.Schedule{
		Reference: c.PaymentMethodConfig.ReferenceStartDate,
		Interval:  c.PaymentMethodConfig.Interval,
		Adjust:    adjust,
		Calendar:  cal,
		Expiry:    c.Expiry(),
	}
}

// FixedAmount returns the amount every cycle bills, and false for a variable consent.
func (c *CreatedConsent) FixedAmount() (Cents, bool) {
	if a := c.PaymentMethodConfig.FixedAmount; a != nil {
		return *a, true
	}
	return 0, false
}

// CheckVariableAmount reports whether a is an acceptable amount for one cycle of this
// (variable) consent: more than zero, at least minimumVariableAmount and at most
// maximumVariableAmount when they are set.
func (c *CreatedConsent) CheckVariableAmount(a Cents) error {
	pmc := c.PaymentMethodConfig
	switch {
	case pmc.FixedAmount != nil:
		return fmt.Errorf("consent %s has a fixed amount of %s; a per-cycle amount cannot be set", c.ID, *pmc.FixedAmount)
	case a <= 0:
		return fmt.Errorf("amount %s must be more than 0.00", a)
	case a > MaxCents:
		return fmt.Errorf("amount %s is more than the largest amount, %s", a, MaxCents)
	case pmc.MaximumVariableAmount != nil && a > *pmc.MaximumVariableAmount:
		return fmt.Errorf("amount %s is above the consent's maximumVariableAmount %s", a, *pmc.MaximumVariableAmount)
	case pmc.MinimumVariableAmount != nil && a < *pmc.MinimumVariableAmount:
		return fmt.Errorf("amount %s is below the consent's minimumVariableAmount %s", a, *pmc.MinimumVariableAmount)
	}
	return nil
}

// RetryAccepted reports whether the payer accepted retries (isRetryAccepted).
func (c *CreatedConsent) RetryAccepted() bool {
	p := c.PaymentMethodConfig.IsRetryAccepted
	return p != nil && *p
}
