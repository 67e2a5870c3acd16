package klavi

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/retry"
)

// Currency is the only currency the API takes.
const Currency = "BRL"

// DateTimeLayout is the API's date-time form: RFC 3339 in UTC, to the second.
const DateTimeLayout = "2006-01-02T15:04:05Z"

// A DateTime is an instant in the API's strict form, YYYY-MM-DDThh:mm:ssZ (20 chars,
// UTC). The zero DateTime is "not set".
type DateTime struct{ time.Time }

// ParseDateTime parses the strict YYYY-MM-DDThh:mm:ssZ form.
func ParseDateTime(s string) (DateTime, error) {
	t, err := time.Parse(DateTimeLayout, s)
	if err != nil || len(s) != len(DateTimeLayout) {
		return DateTime{}, fmt.Errorf("invalid date-time %q: want YYYY-MM-DDThh:mm:ssZ in UTC", s)
	}
	return DateTime{t}, nil
}

// MarshalText formats t in UTC to the second.
func (t DateTime) MarshalText() ([]byte, error) {
	return []byte(t.UTC().Format(DateTimeLayout)), nil
}

// MarshalJSON formats t as a JSON string in UTC to the second. (Defined here so the
// embedded time.Time's own JSON methods are not used.)
func (t DateTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(DateTimeLayout) + `"`), nil
}

// UnmarshalJSON parses a JSON string with ParseDateTime.
func (t *DateTime) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return fmt.Errorf("invalid date-time %s: want a string YYYY-MM-DDThh:mm:ssZ", b)
	}
	return t.UnmarshalText([]byte(s))
}

// UnmarshalText parses with ParseDateTime.
func (t *DateTime) UnmarshalText(b []byte) error {
	v, err := ParseDateTime(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// A Person is a customer, an account holder or a contract debtor: who, by tax id.
// Every field is personal data: never log it (see Mask).
type Person struct {
	IdentifierType IdentifierType `json:"identifierType"`
	Identifier     string         `json:"identifier"`
	Name           string         `json:"name,omitempty"`
}

// A Customer is the paying user of an initiation.
type Customer struct {
	IdentifierType IdentifierType `json:"identifierType"`
	Identifier     string         `json:"identifier"`
	Name           string         `json:"name,omitempty"`
	Phone          string         `json:"phone,omitempty"`
	Email          string         `json:"email,omitempty"`
}

// An Account is a Pix account (personal data).
type Account struct {
	ISPB        string      `json:"ispb"`
	Issuer      string      `json:"issuer,omitempty"`
	Number      string      `json:"number"`
	AccountType AccountType `json:"accountType"`
	Holder      *Person     `json:"holder,omitempty"`
}

// ClientMetadata describes the device of the user who starts a flow.
type ClientMetadata struct {
	Platform  Platform `json:"platform"`
	OS        OS       `json:"os"`
	OSVersion string   `json:"osVersion"`
}

// A FirstPayment is the sign-up payment of a consent, paid on authorization. It is
// not a billing cycle and billingd never bills it.
type FirstPayment struct {
	RemittanceInformation string     `json:"remittanceInformation,omitempty"`
	Date                  cycle.Date `json:"date,omitzero"`
	Amount                Cents      `json:"amount"`
	Currency              string     `json:"currency"`
}

// PaymentMethodConfig is the recurring-payment part of a consent.
type PaymentMethodConfig struct {
	ContractID            string         `json:"contractId"`
	FixedAmount           *Cents         `json:"fixedAmount,omitempty"`
	MinimumVariableAmount *Cents         `json:"minimumVariableAmount,omitempty"`
	MaximumVariableAmount *Cents         `json:"maximumVariableAmount,omitempty"`
	Currency              string         `json:"currency"`
	Interval              cycle.Interval `json:"interval"`
	ReferenceStartDate    cycle.Date     `json:"referenceStartDate"`
	ContractDebtor        *Person        `json:"contractDebtor"`
	IsRetryAccepted       *bool          `json:"isRetryAccepted"`
	FirstPayment          *FirstPayment  `json:"firstPayment,omitempty"`
}

// CreateConsentRequest is the body of POST /automatic/consents.
type CreateConsentRequest struct {
	ClientRequestID       string               `json:"clientRequestId"`
	InstitutionID         string               `json:"institutionId"`
	Customer              *Customer            `json:"customer,omitempty"`
	LoggedUserCPF         string               `json:"loggedUserCpf,omitempty"`
	RedirectURL           string               `json:"redirectUrl,omitempty"`
	AdditionalInformation string               `json:"additionalInformation,omitempty"`
	DebtorAccount         *Account             `json:"debtorAccount,omitempty"`
	CreditorAccount       *Account             `json:"creditorAccount,omitempty"`
	ExternalInfo          map[string]string    `json:"externalInfo,omitempty"`
	ExpirationDateTime    *DateTime            `json:"expirationDateTime,omitempty"`
	ClientMetadata        *ClientMetadata      `json:"clientMetadata"`
	PaymentMethodConfig   *PaymentMethodConfig `json:"paymentMethodConfig"`
}

// StatusReason explains a status.
type StatusReason struct {
	Code    ReasonCode `json:"code"`
	Message string     `json:"message,omitempty"`
}

// Consent is a consent as Klavi answers for it: the response to a consent creation
// (seed 003: id, clientRequestId, status, statusReason, consentRedirectUrl) and to
// GetConsent and ListConsents (klavi-api.md section 7, whose shape is not published:
// every other field is optional and read when present). Unknown fields are ignored.
// Date-times are read as ParseAnswerTime reads them. Customer, accounts and the
// contract debtor are personal data: never log them.
type Consent struct {
	ID                 string        `json:"id"`
	ClientRequestID    string        `json:"clientRequestId"`
	Status             ConsentStatus `json:"status"`
	StatusReason       *StatusReason `json:"statusReason,omitempty"`
	ConsentRedirectURL string        `json:"consentRedirectUrl,omitempty"`

	AppID                 string          `json:"appId,omitempty"`
	InstitutionID         string          `json:"institutionId,omitempty"`
	Customer              *Customer       `json:"customer,omitempty"`
	LoggedUserCPF         string          `json:"loggedUserCpf,omitempty"`
	RedirectURL           string          `json:"redirectUrl,omitempty"`
	AdditionalInformation string          `json:"additionalInformation,omitempty"`
	DebtorAccount         *Account        `json:"debtorAccount,omitempty"`
	CreditorAccount       *Account        `json:"creditorAccount,omitempty"`
	ExternalInfo          json.RawMessage `json:"externalInfo,omitempty"`
	// ExpirationDateTime is when the consent stops being valid (zero: no expiry given).
	ExpirationDateTime  time.Time      `json:"expirationDateTime,omitzero"`
	PaymentMethodConfig *ConsentConfig `json:"paymentMethodConfig,omitempty"`
	CreateAt            time.Time      `json:"createAt,omitzero"`
	StatusUpdateAt      time.Time      `json:"statusUpdateAt,omitzero"`
}

// ConsentConfig is paymentMethodConfig as a consent answer carries it (the fields of
// PaymentMethodConfig, seed 003, read loosely): dates padded or not, an interval
// billingd does not know as the zero Interval, amounts as strings or numbers.
type ConsentConfig struct {
	ContractID            string         `json:"contractId,omitempty"`
	FixedAmount           *Cents         `json:"fixedAmount,omitempty"`
	MinimumVariableAmount *Cents         `json:"minimumVariableAmount,omitempty"`
	MaximumVariableAmount *Cents         `json:"maximumVariableAmount,omitempty"`
	Currency              string         `json:"currency,omitempty"`
	Interval              cycle.Interval `json:"interval,omitzero"`
	ReferenceStartDate    cycle.Date     `json:"referenceStartDate,omitzero"`
	ContractDebtor        *Person        `json:"contractDebtor,omitempty"`
	IsRetryAccepted       *bool          `json:"isRetryAccepted,omitempty"`
	FirstPayment          *FirstPayment  `json:"firstPayment,omitempty"`
}

// CreatePaymentRequest is the body of POST /automatic/consents/{consentId}/payments.
type CreatePaymentRequest struct {
	ClientRequestID       string            `json:"clientRequestId"`
	Date                  cycle.Date        `json:"date"`
	Amount                Cents             `json:"amount"`
	Currency              string            `json:"currency"`
	CreditorAccount       *Account          `json:"creditorAccount,omitempty"`
	RemittanceInformation string            `json:"remittanceInformation,omitempty"`
	IBGETownCode          string            `json:"ibgeTownCode,omitempty"`
	ExternalInfo          map[string]string `json:"externalInfo,omitempty"`
	AutoRetryStrategy     *retry.Strategy   `json:"autoRetryStrategy,omitempty"`
}

// RetryPaymentRequest is the body of POST .../payments/{paymentId}/retry.
type RetryPaymentRequest struct {
	ClientRequestID string     `json:"clientRequestId"`
	Date            cycle.Date `json:"date"`
}

// PaymentMethodInfo is paymentMethodConfig of a payment resource.
type PaymentMethodInfo struct {
	FirstPayment      bool   `json:"firstPayment"`
	OriginalPaymentID string `json:"originalPaymentId,omitempty"`
}

// Cancellation says who canceled a payment (seed 004: present when the status is
// CANCELED).
type Cancellation struct {
	// CancelledFrom is the channel: INITIATOR or HOLDER per the schema, INSTITUTION in
	// its example; kept as Klavi sends it (normalized to UPPER_SNAKE_CASE).
	CancelledFrom string    `json:"cancelledFrom,omitempty"`
	CancelledAt   time.Time `json:"cancelledAt,omitzero"`
	// CancelledBy is the canceller's document {identifier, identifierType} (personal
	// data; it may arrive masked).
	CancelledBy *Person `json:"cancelledBy,omitempty"`
}

// Payment is a payment resource: the response to a payment or retry creation (which
// carries the first few fields, seed 002) and to GET .../payments/{paymentId} (every
// field of seed 004). The date is a Brasília date; date-times are read as
// ParseAnswerTime reads them (with or without fractions, any zone) and held in UTC.
// Personal data (customer, loggedUserCpf, accounts, cancelledBy) may arrive masked
// ("***.092.776-**") and is kept as the opaque string Klavi sent: never log it.
type Payment struct {
	ID                        string             `json:"id"`
	AppID                     string             `json:"appId,omitempty"`
	ClientRequestID           string             `json:"clientRequestId"`
	InstitutionID             string             `json:"institutionId,omitempty"`
	ConsentID                 string             `json:"consentId,omitempty"`
	Date                      cycle.Date         `json:"date,omitzero"`
	EndToEndID                string             `json:"endToEndId,omitempty"`
	TransactionIdentification string             `json:"transactionIdentification,omitempty"`
	LoggedUserCPF             string             `json:"loggedUserCpf,omitempty"`
	IBGETownCode              string             `json:"ibgeTownCode,omitempty"`
	Amount                    Cents              `json:"amount"`
	Currency                  string             `json:"currency"`
	RedirectURL               string             `json:"redirectUrl,omitempty"`
	RemittanceInformation     string             `json:"remittanceInformation,omitempty"`
	Status                    PaymentStatus      `json:"status"`
	StatusReason              *StatusReason      `json:"statusReason,omitempty"`
	Cancellation              *Cancellation      `json:"cancellation,omitempty"`
	CreateAt                  time.Time          `json:"createAt,omitzero"`
	StatusUpdateAt            time.Time          `json:"statusUpdateAt,omitzero"`
	PaymentMethod             string             `json:"paymentMethod,omitempty"`
	PaymentMethodConfig       *PaymentMethodInfo `json:"paymentMethodConfig,omitempty"`
	Customer                  *Customer          `json:"customer,omitempty"`
	DebtorAccount             *Account           `json:"debtorAccount,omitempty"`
	CreditorAccount           *Account           `json:"creditorAccount,omitempty"`
	// ExternalInfo is the merchant's key/value metadata exactly as Klavi returns it
	// (a JSON object whose values may be strings, numbers or anything else); nil when
	// absent. Decode it further with encoding/json if needed.
	ExternalInfo json.RawMessage `json:"externalInfo,omitempty"`
}

// PaymentStatusInfo is the response to GET .../payments/{paymentId}/status.
type PaymentStatusInfo struct {
	ID             string        `json:"id,omitempty"`
	Status         PaymentStatus `json:"status"`
	StatusReason   *StatusReason `json:"statusReason,omitempty"`
	StatusUpdateAt time.Time     `json:"statusUpdateAt,omitzero"`
}

// An Order is one payment in Klavi's management list of a consent's payments
// (ListConsentOrders, klavi-api.md section 7): the fields the list is documented to
// carry (id, clientRequestId, date, amount, status) and the ones a payment resource
// carries when present, read with the same rules as a Payment.
type Order struct {
	ID                  string             `json:"id"`
	ClientRequestID     string             `json:"clientRequestId"`
	ConsentID           string             `json:"consentId,omitempty"`
	Date                cycle.Date         `json:"date,omitzero"`
	Amount              Cents              `json:"amount"`
	Currency            string             `json:"currency,omitempty"`
	Status              PaymentStatus      `json:"status"`
	StatusReason        *StatusReason      `json:"statusReason,omitempty"`
	EndToEndID          string             `json:"endToEndId,omitempty"`
	PaymentMethodConfig *PaymentMethodInfo `json:"paymentMethodConfig,omitempty"`
	CreateAt            time.Time          `json:"createAt,omitzero"`
	StatusUpdateAt      time.Time          `json:"statusUpdateAt,omitzero"`
}

// InstantPaymentRequest is the body of POST /instant/payments: an immediate payment,
// or a scheduled one when Date is set.
type InstantPaymentRequest struct {
	ClientRequestID       string            `json:"clientRequestId"`
	InstitutionID         string            `json:"institutionId"`
	InitType              InitType          `json:"initType"`
	Customer              *Customer         `json:"customer"`
	LoggedUserCPF         string            `json:"loggedUserCpf,omitempty"`
	IBGETownCode          string            `json:"ibgeTownCode,omitempty"`
	Proxy                 string            `json:"proxy,omitempty"`
	QRCode                string            `json:"qrCode,omitempty"`
	Date                  cycle.Date        `json:"date,omitzero"`
	Amount                Cents             `json:"amount"`
	Currency              string            `json:"currency"`
	RedirectURL           string            `json:"redirectUrl"`
	RemittanceInformation string            `json:"remittanceInformation,omitempty"`
	DebtorAccount         *Account          `json:"debtorAccount,omitempty"`
	CreditorAccount       *Account          `json:"creditorAccount,omitempty"`
	ExternalInfo          map[string]string `json:"externalInfo,omitempty"`
	ClientMetadata        *ClientMetadata   `json:"clientMetadata"`
}

// InstantPayment is the response to an instant payment creation.
type InstantPayment struct {
	ID                 string        `json:"id"`
	ClientRequestID    string        `json:"clientRequestId"`
	Amount             Cents         `json:"amount"`
	Currency           string        `json:"currency"`
	Status             PaymentStatus `json:"status"`
	StatusReason       *StatusReason `json:"statusReason,omitempty"`
	ConsentRedirectURL string        `json:"consentRedirectUrl,omitempty"`
}

// Masked is p as an operator may read it, identifier and name masked (see
// internal/redact): "CPF *********25, M**** d* S****". It is "" for a nil p.
func (p *Person) Masked() string {
	if p == nil {
		return ""
	}
	s := string(p.IdentifierType) + " " + redact.ID(p.Identifier)
	if p.Name != "" {
		s += ", " + redact.Name(p.Name)
	}
	return s
}

// Masked is a's bank and account number, the number masked: "ISPB 12345678,
// account ******78".
func (a *Account) Masked() string { return "ISPB " + a.ISPB + ", account " + redact.ID(a.Number) }

// VariableRange is "MIN to MAX" of a variable amount in reais, none standing for
// a bound not given; "" for a fixed amount.
func (c *PaymentMethodConfig) VariableRange(none string) string {
	if c.FixedAmount != nil {
		return ""
	}
	lo, hi := none, none
	if c.MinimumVariableAmount != nil {
		lo = c.MinimumVariableAmount.BRL()
	}
	if c.MaximumVariableAmount != nil {
		hi = c.MaximumVariableAmount.BRL()
	}
	return lo + " to " + hi
}
