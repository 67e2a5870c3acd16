// Package klavi is a typed client for the parts of Klavi's payments API that billingd
// uses (see klavi-api.md): authentication, instant and scheduled payments, Automatic
// Pix consents and payments, retries, payment status, reading a consent, cancelling
// a payment, and the management API's lists of apps, consents and a consent's
// payments.
//
// Contracts:
//   - Money is Cents (integer centavos) in this package's API and the "1234.56" string
//     form only on the wire. Dates are cycle.Date (Brasília civil dates).
//   - Every request is validated before it is sent (Validate methods, and CheckID
//     for the ids in a path); a request that breaks a rule is never sent, and the
//     error (ErrInvalidRequest, with the problem.List) names each field and rule.
//   - Consent, payment and app ids are opaque strings: a UUID
//     ("06c26b65-497d-431e-8b50-c86ece05114a", the form of every example id in the
//     seeds) or an Open Finance "urn:" id alike, 1 to 256 printable characters with
//     no whitespace and no '/' (CheckID). Each id is escaped as one path segment.
//   - Enum values from Klavi are decoded tolerantly (case, '_', ' ' and '-' alike) and
//     unknown values are kept, not refused; values are sent in UPPER_SNAKE_CASE.
//     Unknown fields in answers are ignored.
//   - Nothing this package logs or puts in an error's text carries personal data (tax
//     ids, account numbers, names, phones, e-mails) or a secret (keys, tokens). Klavi's
//     own words in an error answer are free text that may name the payer: an
//     APIError's text is its endpoint, status and title only, and the message is
//     kept in APIError.Message, truncated, with digit runs, e-mails and credentials
//     masked, for the records an operator reads (Describe), never for a log line.
//
// # Request rules: the seeds', and billingd's own limits
//
// Requests follow the seed pages, not stricter guesses: a consent's
// creditorAccount.holder is optional, and when present needs identifierType,
// identifier and name (seed 003); in a payment each of the holder's fields is
// optional (seed 002); PIX_MANU needs the full holder (seed 000). contractDebtor.name
// uses Open Finance's character set: Latin-1 letters, digits, spaces and
// , . @ : & * + _ < > ( ) ! ? / \ $ % ' - (seed 003, CheckDebtorName). redirectUrl is
// any absolute URI, an app's deep link (myapp://return) included. proxy's 77 and the
// 140 of remittanceInformation and additionalInformation are counted in characters.
// debtorAccount never carries a holder (the schemas of seeds 000 and 003 have none): a
// request that sets one is refused with ErrInvalidRequest, never silently stripped.
//
// Where the seeds state no limit billingd keeps one of its own, so nothing unbounded
// is sent; each is a plain ErrInvalidRequest like the seeds' rules:
//   - clientRequestId: 1 to 100 printable ASCII characters, no spaces;
//   - institutionId: 1 to 256 printable ASCII characters, no spaces;
//   - consent, payment and app ids: CheckID (1 to 256 printable characters, no
//     whitespace, no '/'; the 256 is the seeds' own);
//   - customer.name and a holder's name: 120 characters (the seeds state 120 only
//     for contractDebtor.name); customer.email 254 bytes, customer.phone 20 bytes;
//   - externalInfo: keys of 1 to 64 printable ASCII characters, values of at most
//     1024 characters;
//   - an identifier of a payment holder given without identifierType: 11 or 14 digits;
//   - redirectUrl: no whitespace or control characters;
//   - ListConsentOrders and ListConsents: pageSize 1 to 200 (section 7's maximum).
//
// # Answers
//
// Answers are read as the seeds document them, never more strictly: amounts as the
// string "1234.56" (leading zeros allowed) or as an exact JSON number
// (ParseAnswerAmount), dates padded or not (ParseAnswerDate), date-times with or
// without fractional seconds, with 'Z', an offset, or no zone (UTC)
// (ParseAnswerTime), personal data possibly masked ("***.092.776-**") as opaque
// strings, externalInfo verbatim. An answer that cannot be read at all is
// ErrMalformedResponse.
//
// # The client
//
// New builds a Client from a Config; it is safe for concurrent use. The access token
// is bought with the access keys on first use, cached, and renewed
// TokenRefreshBefore before it expires; one renewal runs at a time and concurrent
// callers wait for it. A 401 renews the token once and sends the request again.
//
// Each attempt is bounded by Config.Timeout and by the caller's context. An answer
// of 408, 429 or 5xx, or a transport error (including a timeout), is retried up to
// MaxAttempts times with capped exponential backoff and jitter, waiting at least
// what Retry-After asks (seconds or an HTTP date). A Retry-After is not waited when
// it outlasts the caller: past its context's deadline (the call ends with that
// answer's error), or, on the client's clock, to or past the instant WithSendBefore
// set (the call ends at once with ErrWindowClosed, as the check before the next
// attempt would end it on waking). Every call is safe to repeat: GETs
// are, the auth POST is, and every create POST is re-sent with the very same body,
// so with the same clientRequestId: a re-send can never make a second payment. A
// client-side rate limit (RateLimit requests/s, RateBurst) applies to every attempt.
//
// # What an error from a create means
//
// The creates are CreatePayment, RetryPayment, CreateConsent and
// CreateInstantPayment. Their result is exactly one of:
//
//   - nil: Klavi created it; the result holds its id.
//   - errors.Is(err, ErrDuplicateRequest): Klavi answered 409 to the call's first
//     and only attempt. The seeds' only 409 example is a permissions refusal, so this
//     proves nothing by itself: look the clientRequestId up in the orders list
//     (FindOrder). A 409 that follows a lost attempt of the same call is reported as
//     outcome unknown instead (that attempt may be what holds the key). Either way,
//     never send it again under a new key before the lookup settles it.
//   - IsOutcomeUnknown(err) (errors.Is(err, ErrOutcomeUnknown)): Klavi may or may not
//     have created it: an attempt was sent and its answer was lost (transport error,
//     timeout, "commit then drop"), the last answer was 408/429/5xx (then
//     errors.Is(err, ErrUnavailable) holds too), a 2xx answer could not be read, or
//     the caller's context ended while an attempt was in flight. Keep the submission
//     pending and send it again later with the same clientRequestId: a 2xx then
//     finishes it, a 409 says it had been created.
//     A definitive refusal that follows a lost attempt within one call is reported as
//     outcome unknown, and then does not satisfy ErrRefused, ErrBusinessRule or
//     ErrAuth (errors.As still finds the *APIError): the lost attempt may have been
//     committed, and the refusal may be caused by it. For the same reason a caller
//     re-sending a submission whose earlier outcome was unknown must not read a
//     refusal as proof that nothing exists: Klavi may check its rules before the
//     clientRequestId, and the window may have closed meanwhile.
//   - anything else: nothing was created.
//     errors.Is(err, ErrRefused): a definitive 4xx about the request (an *APIError
//     with the status, Klavi's error code and message); ErrBusinessRule (416) is a
//     rule of the payment arrangement (window, cycle, amount, retry limits).
//     ErrInvalidRequest: it broke a documented rule and was never sent.
//     ErrAuth: the keys were refused, or the request was refused with a renewed
//     token; the request may succeed once the credentials are fixed.
//     ErrUnavailable without ErrOutcomeUnknown: the token could not be obtained, so
//     the create was never sent. A context error without ErrOutcomeUnknown: the call
//     ended before any attempt was sent.
//     Of these, only ErrRefused and ErrInvalidRequest say the request itself is
//     wrong; after the others the same request may be sent again later.
//
// For the GETs, ErrUnavailable means "no answer; ask again later", ErrRefused a
// definitive 4xx (404: no such payment under that consent). CancelPayment is read
// the same way: it is safe to repeat, so it is retried like a GET, and its errors
// never carry ErrOutcomeUnknown.
//
// # Looking a payment up by clientRequestId (management API)
//
// The create endpoints have no lookup by clientRequestId, and a 409 or a lost answer
// proves nothing by itself. Klavi's management API (klavi-api.md section 7) lists
// every payment ("order") created under a consent with its clientRequestId:
// ListConsentOrders reads one page of it and FindOrder reads it to the end.
//
//   - FindOrder returns the order: Klavi holds that payment, under Order.ID. When
//     two orders share the clientRequestId, the first that did not end
//     PAYMENT_REJECTED, CANCELED or ERROR is returned (or, if all did, the first).
//   - errors.Is(err, ErrOrderNotFound): the list, every page of it read and well
//     formed, has no payment with that clientRequestId. It proves absence only as of
//     the read: a create still in flight at Klavi may appear later.
//   - ErrUnavailable, ErrRefused, ErrAuth, ErrMalformedResponse (a page that cannot
//     be read, a cursor that repeats, more than MaxPages pages), a context error,
//     ErrNoAppID: the list was not read to its end, so nothing is proven either way.
//
// The management paths carry the merchant app's id. Config.AppID sets it; when it
// is empty the first management call asks ListApps once and keeps the answer when
// exactly one app is listed, and otherwise fails with ErrNoAppID ("set
// klavi.app_id"). Pages are asked for with pageSize 200; the next-page cursor is
// read from nextCursor, next or cursor, at the top of the answer or in its meta,
// pagination or links object; an answer without a data array is
// ErrMalformedResponse, never an empty page, so a malformed answer can never be
// read as "not found".
//
// # Endpoint names
//
// Hooks.OnRequest, APIError.Endpoint and the logs name each call: auth,
// create_consent, create_payment, retry_payment, get_payment, get_payment_status,
// create_instant_payment, get_consent, cancel_payment, list_apps,
// list_consent_orders, list_consents.
package klavi
