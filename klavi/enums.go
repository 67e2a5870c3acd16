package klavi

import (
	"strings"

	"github.com/klavi-billing/billingd/internal/enum"
)

// Enum values are decoded tolerantly with enum.Normalize: case-insensitive and
// Unicode-aware (diacritics dropped: "não informado" reads as NAO_INFORMADO), with
// '_', '-' and any space alike and runs of them read as one ("payment  completed",
// "PAYMENT__COMPLETED" and "payment_completed" read as PAYMENT_COMPLETED). Values are
// sent in UPPER_SNAKE_CASE. Unknown values decode without error and are kept
// (normalized), so a new status from Klavi never breaks decoding; Valid methods tell
// known values.

// normalize is enum.Normalize of b. A value this package knows, in its canonical
// spelling (the usual answer), is returned as the package's own string: looking it
// up does not copy b, so decoding it allocates nothing.
func normalize(b []byte) string {
	if v, ok := canonicalValues[string(b)]; ok {
		return v
	}
	return enum.Normalize(string(b))
}

// canonicalValues maps every value named in this package, and the documented values
// of the free enums (currency, paymentMethod, cancelledFrom), to itself. Each is
// canonical (enum.Normalize returns it as it is), so normalize returns for it what
// enum.Normalize would.
var canonicalValues = func() map[string]string {
	m := map[string]string{}
	add := func(vs ...string) {
		for _, v := range vs {
			m[v] = v
		}
	}
	add(Currency, "AUTOMATIC_PIX", "INITIATOR", "HOLDER", "INSTITUTION")
	add(strs(CPF, CNPJ)...)
	add(strs(CACC, SVGS, TRAN)...)
	add(strs(Browser, App)...)
	add(strs(Linux, MacOS, Unix, Windows, IOS, Android, Other)...)
	add(strs(PixInic, PixManu, PixDict, PixQRCode)...)
	add(strs(ConsentStarted, ConsentAwaitingAuthorization, ConsentAuthorized, ConsentRejected,
		ConsentPartiallyAccepted, ConsentRevoked, ConsentPeriodExpired, ConsentExpired)...)
	add(strs(PaymentPending, PaymentReadyForSettlement, PaymentScheduled, PaymentSettlementProcessing,
		PaymentCompleted, PaymentRejected, PaymentCanceled, PaymentError)...)
	add(strs(ReasonCodes...)...)
	return m
}()

func strs[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func oneOf[T ~string](v T, all ...T) bool {
	for _, a := range all {
		if v == a {
			return true
		}
	}
	return false
}

// IdentifierType is the kind of a Brazilian tax id.
type IdentifierType string

// Identifier types.
const (
	CPF  IdentifierType = "CPF"
	CNPJ IdentifierType = "CNPJ"
)

// UnmarshalText decodes tolerantly.
func (t *IdentifierType) UnmarshalText(b []byte) error { *t = IdentifierType(normalize(b)); return nil }

// Valid reports whether t is CPF or CNPJ.
func (t IdentifierType) Valid() bool { return oneOf(t, CPF, CNPJ) }

// AccountType is a Pix account type.
type AccountType string

// Account types.
const (
	CACC AccountType = "CACC" // current account
	SVGS AccountType = "SVGS" // savings account
	TRAN AccountType = "TRAN" // prepaid payment account
)

// UnmarshalText decodes tolerantly.
func (t *AccountType) UnmarshalText(b []byte) error { *t = AccountType(normalize(b)); return nil }

// Valid reports whether t is a known account type.
func (t AccountType) Valid() bool { return oneOf(t, CACC, SVGS, TRAN) }

// Platform is clientMetadata.platform.
type Platform string

// Platforms.
const (
	Browser Platform = "BROWSER"
	App     Platform = "APP"
)

// UnmarshalText decodes tolerantly.
func (p *Platform) UnmarshalText(b []byte) error { *p = Platform(normalize(b)); return nil }

// Valid reports whether p is a known platform.
func (p Platform) Valid() bool { return oneOf(p, Browser, App) }

// OS is clientMetadata.os.
type OS string

// Operating systems.
const (
	Linux   OS = "LINUX"
	MacOS   OS = "MACOS"
	Unix    OS = "UNIX"
	Windows OS = "WINDOWS"
	IOS     OS = "IOS"
	Android OS = "ANDROID"
	Other   OS = "OTHER"
)

// UnmarshalText decodes tolerantly.
func (o *OS) UnmarshalText(b []byte) error { *o = OS(normalize(b)); return nil }

// Valid reports whether o is a known OS.
func (o OS) Valid() bool { return oneOf(o, Linux, MacOS, Unix, Windows, IOS, Android, Other) }

// InitType is how an instant payment names its payee.
type InitType string

// Instant payment initiation types.
const (
	PixInic   InitType = "PIX_INIC"   // payee pre-registered
	PixManu   InitType = "PIX_MANU"   // creditorAccount given in full
	PixDict   InitType = "PIX_DICT"   // proxy is the Pix key
	PixQRCode InitType = "PIX_QRCODE" // qrCode given
)

// UnmarshalText decodes tolerantly.
func (t *InitType) UnmarshalText(b []byte) error { *t = InitType(normalize(b)); return nil }

// Valid reports whether t is a known initiation type.
func (t InitType) Valid() bool { return oneOf(t, PixInic, PixManu, PixDict, PixQRCode) }

// ConsentStatus is the status of a consent at Klavi.
type ConsentStatus string

// Consent statuses.
const (
	ConsentStarted               ConsentStatus = "STARTED"
	ConsentAwaitingAuthorization ConsentStatus = "CONSENT_AWAITING_AUTHORIZATION"
	ConsentAuthorized            ConsentStatus = "CONSENT_AUTHORIZED"
	ConsentRejected              ConsentStatus = "CONSENT_REJECTED"
	ConsentPartiallyAccepted     ConsentStatus = "CONSENT_PARTIALLY_ACCEPTED"
	ConsentRevoked               ConsentStatus = "CONSENT_REVOKED"
	ConsentPeriodExpired         ConsentStatus = "CONSENT_PERIOD_EXPIRED"
	ConsentExpired               ConsentStatus = "EXPIRED"
)

// UnmarshalText decodes tolerantly.
func (s *ConsentStatus) UnmarshalText(b []byte) error { *s = ConsentStatus(normalize(b)); return nil }

// Valid reports whether s is a known consent status.
func (s ConsentStatus) Valid() bool {
	return oneOf(s, ConsentStarted, ConsentAwaitingAuthorization, ConsentAuthorized, ConsentRejected,
		ConsentPartiallyAccepted, ConsentRevoked, ConsentPeriodExpired, ConsentExpired)
}

// Terminal reports whether no payment can ever be made under a consent in status s:
// rejected, revoked or expired.
func (s ConsentStatus) Terminal() bool {
	return oneOf(s, ConsentRejected, ConsentRevoked, ConsentPeriodExpired, ConsentExpired)
}

// PaymentStatus is the status of a payment at Klavi.
type PaymentStatus string

// Payment statuses.
const (
	PaymentPending              PaymentStatus = "PAYMENT_PENDING"
	PaymentReadyForSettlement   PaymentStatus = "PAYMENT_READY_FOR_SETTLEMENT"
	PaymentScheduled            PaymentStatus = "PAYMENT_SCHEDULED"
	PaymentSettlementProcessing PaymentStatus = "PAYMENT_SETTLEMENT_PROCESSING"
	PaymentCompleted            PaymentStatus = "PAYMENT_COMPLETED"
	PaymentRejected             PaymentStatus = "PAYMENT_REJECTED"
	PaymentCanceled             PaymentStatus = "CANCELED"
	PaymentError                PaymentStatus = "ERROR"
)

// UnmarshalText decodes tolerantly; "PAYMENT_CANCELED" and "CANCELLED" read as CANCELED.
func (s *PaymentStatus) UnmarshalText(b []byte) error {
	v := PaymentStatus(normalize(b))
	switch v {
	case "PAYMENT_CANCELED", "CANCELLED", "PAYMENT_CANCELLED":
		v = PaymentCanceled
	case "PAYMENT_ERROR":
		v = PaymentError
	}
	*s = v
	return nil
}

// Valid reports whether s is a known payment status.
func (s PaymentStatus) Valid() bool {
	return oneOf(s, PaymentPending, PaymentReadyForSettlement, PaymentScheduled, PaymentSettlementProcessing,
		PaymentCompleted, PaymentRejected, PaymentCanceled, PaymentError)
}

// Final reports whether s can no longer change: completed, rejected, canceled or error.
func (s PaymentStatus) Final() bool {
	return oneOf(s, PaymentCompleted, PaymentRejected, PaymentCanceled, PaymentError)
}

// ReasonCode is statusReason.code.
type ReasonCode string

// Status reason codes.
const (
	ReasonNotInformed                    ReasonCode = "NOT_INFORMED"
	ReasonNaoInformado                   ReasonCode = "NAO_INFORMADO"
	ReasonInfrastructureFailure          ReasonCode = "INFRASTRUCTURE_FAILURE"
	ReasonAuthorizationExpiredTime       ReasonCode = "AUTHORIZATION_EXPIRED_TIME"
	ReasonUserRejected                   ReasonCode = "USER_REJECTED"
	ReasonOriginDestinationAccountsEqual ReasonCode = "ORIGIN_DESTINATION_ACCOUNTS_EQUAL"
	ReasonAccountDoesNotAllowPayment     ReasonCode = "ACCOUNT_DOES_NOT_ALLOW_PAYMENT"
	ReasonDivergentAuthentication        ReasonCode = "DIVERGENT_AUTHENTICATION"
	ReasonRevokedUser                    ReasonCode = "REVOKED_USER"
	ReasonRevokedMerchant                ReasonCode = "REVOKED_MERCHANT"
)

// UnmarshalText decodes tolerantly.
func (r *ReasonCode) UnmarshalText(b []byte) error { *r = ReasonCode(normalize(b)); return nil }

// ReasonCodes lists the known status reason codes (klavi-api.md, common shapes).
var ReasonCodes = []ReasonCode{ReasonNotInformed, ReasonNaoInformado, ReasonInfrastructureFailure, ReasonAuthorizationExpiredTime,
	ReasonUserRejected, ReasonOriginDestinationAccountsEqual, ReasonAccountDoesNotAllowPayment,
	ReasonDivergentAuthentication, ReasonRevokedUser, ReasonRevokedMerchant}

// ReasonCodeList is ReasonCodes comma-separated, for messages that refuse a code.
func ReasonCodeList() string {
	var b strings.Builder
	for i, r := range ReasonCodes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(r))
	}
	return b.String()
}

// Valid reports whether r is a known reason code.
func (r ReasonCode) Valid() bool { return oneOf(r, ReasonCodes...) }

// Canonical returns the English code for a reason Klavi also spells in Portuguese:
// NAO_INFORMADO (seed 004's example, "não informado") is NOT_INFORMED. Every other
// code, known or not, is returned as it is.
func (r ReasonCode) Canonical() ReasonCode {
	if r == ReasonNaoInformado {
		return ReasonNotInformed
	}
	return r
}

// ConsentGone reports whether r means the payer or the merchant revoked the consent,
// so nothing more may be charged under it.
func (r ReasonCode) ConsentGone() bool { return oneOf(r, ReasonRevokedUser, ReasonRevokedMerchant) }

// DefaultRetryableReasons are the rejection reasons after which a retry can succeed:
// the failure was not the payer's decision and not a permanent property of the
// accounts (insufficient funds reach Klavi as NOT_INFORMED or
// ACCOUNT_DOES_NOT_ALLOW_PAYMENT).
var DefaultRetryableReasons = []ReasonCode{
	ReasonNotInformed, ReasonNaoInformado, ReasonInfrastructureFailure, ReasonAccountDoesNotAllowPayment,
}
