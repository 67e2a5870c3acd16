// Package sandbox is an in-process fake Klavi: an http.Handler that serves the API
// endpoints the klavi package calls, with Klavi's rules and a payment state machine,
// for tests (mount it on an httptest.Server), simulations and `billingd sandbox`.
//
// It is deterministic: its state lives in memory (and, with Options.Journal, in a
// write-ahead journal on disk) and moves only with its Clock, and
// is brought up to date lazily (on every request and every Ledger or Stats call), so
// a test moves a clock.Fake and then looks, with no goroutine and no sleep involved.
// Payment outcomes come from a Scenario; faults are drawn from a seeded generator.
// It is for local use only: /_sandbox/* needs no token.
//
// # Endpoints
//
//	POST /payment/customer/v1/auth                                   {accessKey, secretKey} → {accessToken, expireIn}
//	POST /payment/customer/v1/instant/payments                       instant (or, with date, scheduled) payment
//	POST /payment/customer/v1/automatic/consents                     consent, CONSENT_AWAITING_AUTHORIZATION
//	GET  /payment/customer/v1/automatic/consents/{consentId}         the consent, every field
//	POST /payment/customer/v1/automatic/consents/{consentId}/payments
//	GET  /payment/customer/v1/automatic/consents/{consentId}/payments/{paymentId}[/status]
//	POST /payment/customer/v1/automatic/consents/{consentId}/payments/{paymentId}/retry
//	POST /payment/customer/v1/automatic/consents/{consentId}/payments/{paymentId}/cancel  {cancelledBy, identifierType}
//	GET  /payment/management/v1/merchants/apps                       {"data":[{"id":"<AppID>","name":"sandbox"}]}
//	GET  /payment/management/v1/merchants/automatic/{appId}/consents                      paged consents
//	GET  /payment/management/v1/merchants/automatic/{appId}/consents/{consentId}/orders   paged payments
//	GET|POST /_sandbox/authorize/{id}   the consentRedirectUrl: authorizes a consent or instant payment
//	POST /_sandbox/consents             seed consents: one consent file JSON, or an array of them
//	                                    (billing settings accepted and ignored)
//	GET  /_sandbox/consents/{consentId} a consent's status
//	POST /_sandbox/consents/{consentId}/authorize|reject|revoke|expire   the payer's or the bank's change (see AuthorizeConsent)
//	GET  /_sandbox/ledger, /_sandbox/stats
//
// Errors have Klavi's shape, {"statusCode":409,"error":"Conflict","message":"..."},
// plus "rule" (one of the Rule* constants, also the start of the message) and, for a
// 400, "problems" (every problem with its JSON path).
//
// # Rules
//
// Every API call needs a bearer token from the auth endpoint (401 when missing,
// unknown or expired at the sandbox's clock). Request bodies are decoded strictly
// (unknown fields are problems) and validated with the klavi package's Validate
// (400). Path ids are opaque (ValidID: 1..256 printable characters, no '/' or white
// space), unescaped from the path. A clientRequestId is usable once across every
// create: consents (seeded ones included), payments, retries and instant payments
// (409, or see Options.Duplicate). By default that check comes before the business
// rules (Options.CheckOrder reverses them; a payment met again under its own
// clientRequestId does not count against one-per-cycle). The business rules answer
// 416:
//
//   - a payment needs a CONSENT_AUTHORIZED consent; a consent awaiting authorization
//     for more than 60 minutes becomes CONSENT_REJECTED (AUTHORIZATION_EXPIRED_TIME),
//     an authorized one past its expirationDateTime CONSENT_PERIOD_EXPIRED;
//   - its date is within today+2..today+10 (Brasília, from the clock), not before the
//     referenceStartDate and not after the consent's expiry date;
//   - a fixed consent bills exactly fixedAmount; a variable one between
//     minimumVariableAmount and maximumVariableAmount;
//   - autoRetryStrategy must be valid for the consent's interval (5-day window for
//     WEEKLY, 7 otherwise) and needs isRetryAccepted;
//   - one payment per cycle (cycle = Schedule.Index of the date): a payment in a cycle
//     that already holds one that is not REJECTED or CANCELED is refused;
//   - a retry is refused when the original carried an autoRetryStrategy, when the
//     consent does not accept retries, when the original is not PAYMENT_REJECTED,
//     after 3 retries, past the 5/7-day window after the original's date, on or after
//     the next cycle's start, when not dated after today (a retry is requested by
//     23:59 of the day before its date), on a day that already has a retry of it, and
//     while another payment of the cycle is live.
//
// # Payment life
//
// A payment is PAYMENT_PENDING when created and PAYMENT_SCHEDULED once the clock has
// moved past its creation. At SettleHour (Brasília) on its date it ends
// PAYMENT_COMPLETED, PAYMENT_REJECTED (with the scenario's statusReason) or CANCELED,
// as the Scenario says for (consent, cycle, attempt). A rejection whose reason means
// the consent is gone (REVOKED_USER, REVOKED_MERCHANT) revokes the consent; a payment
// settling under a revoked consent is rejected with that reason.
//
// Retries requested through the retry endpoint are payments of their own
// (paymentMethodConfig.originalPaymentId = the original; attempt 1, 2, 3) that live
// the same life. The original keeps its own status.
//
// An original that carried an autoRetryStrategy is retried by the sandbox itself when
// it fails, on the dates retry.Plan gives (bounded by the retry window, the next
// cycle's start and the consent's expiry), each retry a new payment of kind
// auto_retry created when the previous attempt failed. The digest does not say what
// the original shows meanwhile; this model: while Klavi-run retries remain, the
// original is PAYMENT_SCHEDULED with the last failure's statusReason; it ends
// PAYMENT_COMPLETED when a retry completes, or PAYMENT_REJECTED (with the last
// reason) when the plan is used up, a retry is canceled, or the consent is revoked.
//
// Instant payments await authorization at /_sandbox/authorize/{id} (60 minutes);
// then an immediate one settles at once and a scheduled one on its date. The sign-up
// firstPayment of a consent is not modelled.
//
// # Section 7: consent, cancel, management
//
// Klavi publishes these paths and parameters, not their answers; the shapes are the
// sandbox's choices. GET .../consents/{id} answers id, clientRequestId, status,
// statusReason, paymentMethodConfig, expirationDateTime, createAt, statusUpdateAt
// and, while awaiting authorization, consentRedirectUrl (404 when unknown).
//
// Cancel takes {"cancelledBy":"<CPF or CNPJ digits>","identifierType":"CPF|CNPJ"}
// (400 when invalid) and cancels a payment that is not final and is dated after
// the sandbox's today (Brasília): 200 with the payment, CANCELED, with cancellation
// {cancelledFrom INITIATOR, cancelledAt, cancelledBy{identifier, identifierType}}.
// A final payment is refused 416 cancel_final, one dated today or earlier 416
// cancel_too_late. A canceled payment frees its cycle.
//
// The management lists answer {"data":[...], "<CursorField>":"<next>"}, the cursor
// absent on the last page; query pageSize (default 20, 1..200 else 400; pages hold at most PageSizeMax),
// cursor (opaque, bound to its list; anything else is 400) and startDate/endDate
// (YYYY-MM-DD, inclusive). Items come in creation order, and a cursor stays valid
// as items are added. Orders are every payment under the consent (originals,
// retries, the retries Klavi runs) as {id, clientRequestId, date, amount, currency,
// status, statusReason, createAt}, filtered on their date; consents are shown as
// GET .../consents/{id} shows them, filtered on the Brasília date of createAt. An
// appId other than Options.AppID is 404.
//
// # Readings
//
// Where Klavi's documents allow several answers, Options pick one, so a client can
// be tested against each (`billingd sandbox` has a flag for each):
//
//   - IDs (--ids): consent and payment ids are version 4 UUIDs (the default, as in
//     every example of the reference pages) derived from Options.Seed and a counter,
//     so a run is reproducible; or urn:sandbox:consent-000001 and
//     urn:sandbox:payment-00000001 (the schema's URN form).
//   - Amounts (--amounts): "amount":"3109.55" (default, the examples) or
//     "amount":3109.55 (seed 002's response schema), written from the centavos.
//   - StatusCase (--status-case): statuses and statusReason codes as
//     PAYMENT_COMPLETED (default), payment_completed or Payment Completed.
//   - Duplicate (--duplicate): a payment or retry create re-using a clientRequestId
//     answers 409 {"statusCode":409,"error":"Conflict","message":"..."} (default), or
//     201 with the payment it created when that payment is under the same consent.
//   - CheckOrder (--check-order): that check before (default) or after the business
//     rules; after, a re-send whose window closed meets the 416.
//   - ConflictPermissions (--conflict-permissions): a seeded fraction of creates is
//     refused with seed 000's only 409 example,
//     {"statusCode":409,"error":"Conflict","message":"Insufficient permissions requested"}
//     (no "rule" field), creating nothing: a 409 that is a refusal.
//   - ClockOffset (--clock-offset): the sandbox's clock is Clock plus the offset.
//     Every answer carries a Date header from the sandbox's clock.
//
// Answers are the sandbox's own structs, written as these readings say; request
// bodies are decoded and validated with the klavi package's types.
//
// # Journal
//
// With Options.Journal (`billingd sandbox --journal FILE`) every consent and
// payment change (creation with its clientRequestId, status changes, settlement,
// cancellation) is appended as a checksummed JSON line and fsynced before the
// answer that reveals it is written; concurrent answers share one fsync. Open
// replays the file, so a sandbox killed with SIGKILL and started again knows every
// clientRequestId and payment and carries their state machines on. A torn last
// record is logged and ignored; other damage is an error wrapping
// ErrJournalCorrupt. The journal holds the consents' personal data (mode 0600).
// Tokens, fault draws and Stats counters other than payments and consents are
// not kept. The format is described in journal.go.
//
// # Ledger and faults
//
// Ledger lists every payment accepted, in creation order, with its kind (original,
// retry, auto_retry, instant), cycle, attempt, status and whether a "drop" fault ate
// the answer to the request that created it. Stats (GET /_sandbox/stats) counts the
// payments by kind and by status as they change, so reading it walks nothing and
// costs the same with any ledger: a harness may poll it during a run. Faults (latency, 5xx, 429 with
// Retry-After, timeouts that hang until the client gives up, and "commit, then drop
// the connection") apply to API endpoints only; ScriptFaults queues exact ones.
package sandbox
