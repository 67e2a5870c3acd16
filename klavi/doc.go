// Package klavi is a typed client for the parts of Klavi's payments API that billingd
// uses (see klavi-api.md): authentication, instant and scheduled payments, Automatic
// Pix consents and payments, retries and payment status.
//
// Contracts:
//   - Money is Cents (integer centavos) in this package's API and the "1234.56" string
//     form only on the wire. Dates are cycle.Date (Brasília civil dates).
//   - Every request is validated before it is sent (Validate methods); a request that
//     breaks a rule is never sent, and the error names each field and rule.
//   - Enum values from Klavi are decoded tolerantly (case, '_', ' ' and '-' alike) and
//     unknown values are kept, not refused; values are sent in UPPER_SNAKE_CASE.
//   - Nothing this package logs or puts in an error carries personal data (tax ids,
//     account numbers, names, phones, e-mails) or a secret (keys, tokens).
package klavi
