package sandbox

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/klavi-billing/billingd/clock"
)

// Readings: where Klavi's documents allow several answers, the sandbox can give each
// of them, so a client can be tested against every one. The zero value of each
// Options field is the first reading listed.
const (
	// IDsUUID: consent and payment ids are version 4 UUIDs, as every example id in
	// the reference pages is ("fcb72e3a-b346-4f71-b044-971dc23232c9").
	IDsUUID = "uuid"
	// IDsURN: ids have the Open Finance URN form the schema gives
	// ("urn:sandbox:payment-00000001").
	IDsURN = "urn"

	// AmountsString: "amount":"3109.55", as the examples show.
	AmountsString = "string"
	// AmountsNumber: "amount":3109.55, as seed 002's response schema types it.
	AmountsNumber = "number"

	// StatusUpper: PAYMENT_COMPLETED (the digest's restored form).
	StatusUpper = "upper"
	// StatusLower: payment_completed.
	StatusLower = "lower"
	// StatusSpaced: Payment Completed (the reference pages lost their underscores).
	StatusSpaced = "spaced"

	// Duplicate409: a create re-using a clientRequestId answers 409 Conflict.
	Duplicate409 = "409"
	// DuplicateExisting: a payment or retry create re-using the clientRequestId of a
	// payment under the same consent answers 201 with that payment (an idempotent
	// replay); any other re-use still answers 409.
	DuplicateExisting = "existing"

	// CheckKeyFirst: the clientRequestId is checked before the business rules.
	CheckKeyFirst = "key-first"
	// CheckRulesFirst: the business rules are checked first, so a re-send of a
	// created payment can meet a 416 (its window closed, its consent revoked)
	// instead of the duplicate answer.
	CheckRulesFirst = "rules-first"
)

// DefaultAppID is the merchant application's id when Options.AppID is empty.
const DefaultAppID = "5b0c3e1e-8f4a-4c2d-9a57-3f1d2b6e7a90"

// DefaultPageSizeMax is the largest pageSize the management lists accept by default.
const DefaultPageSizeMax = 200

// Options configure a Server. The zero Options are usable: real clock, any non-empty
// keys accepted, tokens valid for an hour, every payment completed, no faults, UUID
// ids, string amounts, upper-case enums, 409 on a re-used clientRequestId checked
// before the rules, nothing kept on disk.
type Options struct {
	// Clock is the sandbox's notion of now (nil: the real clock), before ClockOffset.
	// Today, the payment window, token expiry and settlement all follow it.
	Clock clock.Clock
	// ClockOffset is added to Clock: the sandbox's clock runs ahead (or, negative,
	// behind) the process's. Every answer carries a Date header from it.
	ClockOffset time.Duration
	// AccessKey and SecretKey are the keys the auth endpoint accepts; when both are
	// empty it accepts any non-empty pair.
	AccessKey, SecretKey string
	// TokenTTL is the lifetime of an access token (default 1h).
	TokenTTL time.Duration
	// Scenario decides how payments end (nil: all complete).
	Scenario *Scenario
	// Faults to inject on API endpoints.
	Faults Faults
	// Logger (nil: slog.Default()). Nothing personal is logged.
	Logger *slog.Logger
	// SettleHour is the Brasília hour (1..23) at which payments settle on their date;
	// 0 means the default, 6.
	SettleHour int

	// Seed seeds the sandbox's own draws: the UUIDs it issues and the
	// ConflictPermissions refusals. The same seed and the same requests in the same
	// order give the same ids and refusals.
	Seed uint64
	// IDs is the form of the ids the sandbox issues: IDsUUID ("" too) or IDsURN.
	IDs string
	// Amounts is how answers write amounts: AmountsString ("" too) or AmountsNumber.
	// Either is written from the integer centavos, never through a float.
	Amounts string
	// StatusCase is how answers write payment and consent statuses and statusReason
	// codes: StatusUpper ("" too), StatusLower or StatusSpaced.
	StatusCase string
	// Duplicate is the answer to a create re-using a clientRequestId Klavi holds:
	// Duplicate409 ("" too) or DuplicateExisting.
	Duplicate string
	// CheckOrder is whether the clientRequestId is checked before the business rules
	// (CheckKeyFirst, "" too) or after them (CheckRulesFirst). Klavi does not
	// document its order.
	CheckOrder string
	// ConflictPermissions (0..1) is the fraction of creates (consents, payments,
	// retries, instant payments) refused with seed 000's only 409 example,
	// {"statusCode":409,"error":"Conflict","message":"Insufficient permissions requested"},
	// creating nothing: a 409 that means a refusal, not a duplicate. Drawn from Seed.
	ConflictPermissions float64
	// CursorField is the name of the next-page cursor in the management lists'
	// answers: "cursor" ("" too), "nextCursor" or "next".
	CursorField string
	// PageSizeMax is the largest pageSize the management lists accept (default 200).
	PageSizeMax int
	// AppID is the merchant application's id, listed by GET
	// /payment/management/v1/merchants/apps (default DefaultAppID).
	AppID string
	// Journal is a file where every state change Klavi would keep (consents, their
	// status, payments with their clientRequestId, status changes, cancellations)
	// is appended and fsynced before the answer that reveals it is written. Open
	// replays an existing journal. Empty: state lives in memory only.
	Journal string
	// RequestLog is a file where every payment-creating request (create payment,
	// retry payment) is appended as one JSON line (RequestRecord) once it is
	// answered: arrival instants, its X-Billingd-Fence, clientRequestId and outcome.
	// Lines are written, not fsynced: they survive the process, not the machine.
	// Empty: no request log. Read it with ReadRequestLog.
	RequestLog string
}

// withDefaults fills the empty readings with their defaults.
func (o Options) withDefaults() Options {
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if o.SettleHour <= 0 || o.SettleHour > 23 {
		o.SettleHour = 6
	}
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&o.IDs, IDsUUID)
	def(&o.Amounts, AmountsString)
	def(&o.StatusCase, StatusUpper)
	def(&o.Duplicate, Duplicate409)
	def(&o.CheckOrder, CheckKeyFirst)
	def(&o.CursorField, "cursor")
	def(&o.AppID, DefaultAppID)
	if o.PageSizeMax <= 0 {
		o.PageSizeMax = DefaultPageSizeMax
	}
	return o
}

// Validate reports the first reading that is not one of its values, a fraction
// outside 0..1, an AppID that is not an id, and invalid Faults.
func (o Options) Validate() error {
	o = o.withDefaults()
	for _, f := range []struct {
		name, v string
		all     []string
	}{
		{"ids", o.IDs, []string{IDsUUID, IDsURN}},
		{"amounts", o.Amounts, []string{AmountsString, AmountsNumber}},
		{"status case", o.StatusCase, []string{StatusUpper, StatusLower, StatusSpaced}},
		{"duplicate", o.Duplicate, []string{Duplicate409, DuplicateExisting}},
		{"check order", o.CheckOrder, []string{CheckKeyFirst, CheckRulesFirst}},
		{"cursor field", o.CursorField, []string{"cursor", "nextCursor", "next"}},
	} {
		if !oneOf(f.v, f.all...) {
			return fmt.Errorf("sandbox options: %s %q: want one of %v", f.name, f.v, f.all)
		}
	}
	if !(o.ConflictPermissions >= 0 && o.ConflictPermissions <= 1) {
		return fmt.Errorf("sandbox options: conflict permissions %v: want a fraction between 0 and 1", o.ConflictPermissions)
	}
	if !ValidID(o.AppID) {
		return fmt.Errorf("sandbox options: app id %q: want 1..256 printable characters, no '/' or space", o.AppID)
	}
	return o.Faults.Validate()
}

func oneOf(v string, all ...string) bool {
	for _, a := range all {
		if v == a {
			return true
		}
	}
	return false
}

// offsetClock is a clock ahead of (or behind) another by a fixed offset.
type offsetClock struct {
	c clock.Clock
	d time.Duration
}

func (o offsetClock) Now() time.Time { return o.c.Now().Add(o.d) }
