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
// Decode checks every field and reports all problems at once, each with its JSON path;
// DecodeMany does the same for a file of one consent or a JSON array of them.
//
// Guarantees: a Consent that Decode or DecodeMany returns passes Validate, and
// ClientRequestID is a pure function of (consent id, cycle, attempt). The package
// does no I/O and never reads the clock; it does not store consents (storage) nor
// decide what to bill (scheduler).
package consent
