package sandbox

import (
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

// A Kind says how a payment came to be.
type Kind string

// Payment kinds.
const (
	// KindOriginal: created by POST .../consents/{consentId}/payments.
	KindOriginal Kind = "original"
	// KindRetry: created by POST .../payments/{paymentId}/retry.
	KindRetry Kind = "retry"
	// KindAutoRetry: created by the sandbox itself, running the autoRetryStrategy of
	// a failed original.
	KindAutoRetry Kind = "auto_retry"
	// KindInstant: created by POST /instant/payments.
	KindInstant Kind = "instant"
)

// A LedgerEntry is one payment the sandbox accepted, as it stands now.
type LedgerEntry struct {
	PaymentID       string `json:"paymentId"`
	ConsentID       string `json:"consentId,omitempty"`
	ClientRequestID string `json:"clientRequestId,omitempty"` // empty for auto retries
	Kind            Kind   `json:"kind"`
	// OriginalPaymentID is the payment a retry retries.
	OriginalPaymentID string `json:"originalPaymentId,omitempty"`
	// Cycle is the consent's cycle index of Date.
	Cycle int `json:"cycle"`
	// Attempt is 0 for an original, n for its nth retry.
	Attempt   int                 `json:"attempt"`
	Date      cycle.Date          `json:"date,omitzero"`
	Amount    klavi.Cents         `json:"amount"`
	Status    klavi.PaymentStatus `json:"status"`
	Reason    klavi.ReasonCode    `json:"reason,omitempty"`
	CreatedAt time.Time           `json:"createdAt"` // UTC
	// ResponseDropped: a "drop" fault closed the connection instead of answering the
	// request that created this payment.
	ResponseDropped bool `json:"responseDropped,omitempty"`
}

// Stats counts what the sandbox did.
type Stats struct {
	// Requests is the number of API requests received (not /_sandbox/*).
	Requests int `json:"requests"`
	// TokensIssued counts successful auth requests.
	TokensIssued int `json:"tokensIssued"`
	// Consents is the number of consents known (seeded or created).
	Consents int `json:"consents"`
	// Accepted counts the payments accepted, by kind.
	Accepted map[Kind]int `json:"accepted"`
	// Statuses counts the payments by their current status.
	Statuses map[klavi.PaymentStatus]int `json:"statuses"`
	// Refusals counts refused requests by rule name (the Rule* constants).
	Refusals map[string]int `json:"refusals"`
	// Faults counts injected faults by kind (the Fault* constants).
	Faults map[string]int `json:"faults"`
}
