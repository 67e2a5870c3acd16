package sandbox

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/klavi"
)

// The sandbox's answers are its own wire structs, written with the readings the
// Options select (amount as string or number, enum case), so what it sends does not
// depend on how the klavi package decodes.

// wireReason is a statusReason.
type wireReason struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// wireDocument is a cancelledBy: the canceller's document.
type wireDocument struct {
	Identifier     string `json:"identifier"`
	IdentifierType string `json:"identifierType"`
}

// wireCancellation is a payment's cancellation (seed 004).
type wireCancellation struct {
	CancelledFrom string        `json:"cancelledFrom"`
	CancelledAt   string        `json:"cancelledAt"`
	CancelledBy   *wireDocument `json:"cancelledBy,omitempty"`
}

// wireMethodInfo is a payment's paymentMethodConfig.
type wireMethodInfo struct {
	FirstPayment      bool   `json:"firstPayment"`
	OriginalPaymentID string `json:"originalPaymentId,omitempty"`
}

// wirePayment is the payment resource (seeds 002 and 004): the answer to a create,
// a retry, a cancel and a GET.
type wirePayment struct {
	ID                    string            `json:"id"`
	AppID                 string            `json:"appId,omitempty"`
	ClientRequestID       string            `json:"clientRequestId"`
	InstitutionID         string            `json:"institutionId,omitempty"`
	ConsentID             string            `json:"consentId,omitempty"`
	Date                  string            `json:"date,omitempty"`
	EndToEndID            string            `json:"endToEndId,omitempty"`
	Amount                json.RawMessage   `json:"amount"`
	Currency              string            `json:"currency"`
	RemittanceInformation string            `json:"remittanceInformation,omitempty"`
	Status                string            `json:"status"`
	StatusReason          *wireReason       `json:"statusReason,omitempty"`
	Cancellation          *wireCancellation `json:"cancellation,omitempty"`
	CreateAt              string            `json:"createAt,omitempty"`
	StatusUpdateAt        string            `json:"statusUpdateAt,omitempty"`
	PaymentMethod         string            `json:"paymentMethod,omitempty"`
	PaymentMethodConfig   *wireMethodInfo   `json:"paymentMethodConfig,omitempty"`
}

// wireStatus is the answer to GET .../payments/{paymentId}/status.
type wireStatus struct {
	ID             string      `json:"id"`
	Status         string      `json:"status"`
	StatusReason   *wireReason `json:"statusReason,omitempty"`
	StatusUpdateAt string      `json:"statusUpdateAt,omitempty"`
}

// wireInstant is the answer to an instant payment creation (seed 000).
type wireInstant struct {
	ID                 string          `json:"id"`
	ClientRequestID    string          `json:"clientRequestId"`
	Amount             json.RawMessage `json:"amount"`
	Currency           string          `json:"currency"`
	Status             string          `json:"status"`
	StatusReason       *wireReason     `json:"statusReason,omitempty"`
	ConsentRedirectURL string          `json:"consentRedirectUrl,omitempty"`
}

// wirePerson is a contractDebtor.
type wirePerson struct {
	IdentifierType string `json:"identifierType"`
	Identifier     string `json:"identifier"`
	Name           string `json:"name,omitempty"`
}

// wireFirstPayment is a consent's sign-up payment.
type wireFirstPayment struct {
	RemittanceInformation string          `json:"remittanceInformation,omitempty"`
	Date                  string          `json:"date,omitempty"`
	Amount                json.RawMessage `json:"amount"`
	Currency              string          `json:"currency"`
}

// wireMethodConfig is a consent's paymentMethodConfig (seed 003).
type wireMethodConfig struct {
	ContractID            string            `json:"contractId"`
	FixedAmount           json.RawMessage   `json:"fixedAmount,omitempty"`
	MinimumVariableAmount json.RawMessage   `json:"minimumVariableAmount,omitempty"`
	MaximumVariableAmount json.RawMessage   `json:"maximumVariableAmount,omitempty"`
	Currency              string            `json:"currency"`
	Interval              string            `json:"interval"`
	ReferenceStartDate    string            `json:"referenceStartDate"`
	ContractDebtor        *wirePerson       `json:"contractDebtor,omitempty"`
	IsRetryAccepted       *bool             `json:"isRetryAccepted,omitempty"`
	FirstPayment          *wireFirstPayment `json:"firstPayment,omitempty"`
}

// wireConsent is a consent: the answer to its creation (id, clientRequestId,
// status, statusReason, consentRedirectUrl) and, with every field, to GET
// .../consents/{id} and the management list.
type wireConsent struct {
	ID                  string            `json:"id"`
	ClientRequestID     string            `json:"clientRequestId"`
	Status              string            `json:"status"`
	StatusReason        *wireReason       `json:"statusReason,omitempty"`
	PaymentMethodConfig *wireMethodConfig `json:"paymentMethodConfig,omitempty"`
	ExpirationDateTime  string            `json:"expirationDateTime,omitempty"`
	CreateAt            string            `json:"createAt,omitempty"`
	StatusUpdateAt      string            `json:"statusUpdateAt,omitempty"`
	ConsentRedirectURL  string            `json:"consentRedirectUrl,omitempty"`
}

// wireOrder is one entry of the management orders list.
type wireOrder struct {
	ID              string          `json:"id"`
	ClientRequestID string          `json:"clientRequestId"`
	Date            string          `json:"date,omitempty"`
	Amount          json.RawMessage `json:"amount"`
	Currency        string          `json:"currency"`
	Status          string          `json:"status"`
	StatusReason    *wireReason     `json:"statusReason,omitempty"`
	CreateAt        string          `json:"createAt,omitempty"`
}

// wireApp is one merchant application.
type wireApp struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// amount writes c (centavos) as the Amounts reading says: the JSON string
// "3109.55" or the JSON number 3109.55, from the integer, never through a float.
func (s *Server) amount(c klavi.Cents) json.RawMessage {
	t := c.String()
	if s.opts.Amounts == AmountsNumber {
		return json.RawMessage(t)
	}
	return json.RawMessage(`"` + t + `"`)
}

// optAmount is amount for an optional field: nil stays absent.
func (s *Server) optAmount(c *klavi.Cents) json.RawMessage {
	if c == nil {
		return nil
	}
	return s.amount(*c)
}

// enum writes an enum value (a status or reason code, held in UPPER_SNAKE_CASE) as
// the StatusCase reading says: PAYMENT_COMPLETED, payment_completed or
// Payment Completed.
func (s *Server) enum(v string) string {
	switch s.opts.StatusCase {
	case StatusLower:
		return strings.ToLower(v)
	case StatusSpaced:
		words := strings.Split(strings.ToLower(v), "_")
		for i, w := range words {
			if w != "" {
				words[i] = strings.ToUpper(w[:1]) + w[1:]
			}
		}
		return strings.Join(words, " ")
	}
	return v
}

func (s *Server) reason(r *klavi.StatusReason) *wireReason {
	if r == nil {
		return nil
	}
	return &wireReason{Code: s.enum(string(r.Code)), Message: r.Message}
}

// dateTime writes an instant in the API's form, YYYY-MM-DDThh:mm:ssZ; the zero time
// stays absent.
func dateTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(klavi.DateTimeLayout)
}
