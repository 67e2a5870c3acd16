package klavi

import (
	"context"
	"errors"

	"github.com/klavi-billing/billingd/cycle"
)

// ErrOrderNotFound: the consent's orders list, read to its end, has no payment with
// that clientRequestId.
var ErrOrderNotFound = errors.New("no order with that clientRequestId")

// An Order is one payment in the management API's list of a consent's payments.
type Order struct {
	ID              string        `json:"id"`
	ClientRequestID string        `json:"clientRequestId"`
	ConsentID       string        `json:"consentId,omitempty"`
	Date            cycle.Date    `json:"date"`
	Amount          Cents         `json:"amount"`
	Currency        string        `json:"currency,omitempty"`
	Status          PaymentStatus `json:"status"`
	StatusReason    *StatusReason `json:"statusReason,omitempty"`
}

// CancelPaymentRequest is the body of POST .../payments/{paymentId}/cancel.
type CancelPaymentRequest struct {
	CancelledBy    string         `json:"cancelledBy"`
	IdentifierType IdentifierType `json:"identifierType"`
}

func (c *Client) FindOrder(ctx context.Context, consentID, clientRequestID string) (*Order, error) {
	return nil, ErrUnavailable
}
func (c *Client) GetConsent(ctx context.Context, consentID string) (*Consent, error) {
	return nil, ErrUnavailable
}
func (c *Client) CancelPayment(ctx context.Context, consentID, paymentID string, r *CancelPaymentRequest) (*Payment, error) {
	return nil, ErrUnavailable
}
