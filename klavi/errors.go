package klavi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/internal/redact"
)

// The errors the client returns, for errors.Is. Which of them mean what for a
// create call is the contract spelled out in the package documentation.
var (
	// ErrInvalidRequest: the request broke a rule of the API (Validate, or a path id
	// that is not a valid resource id). It was never sent. The error also holds the
	// problem.List (errors.As).
	ErrInvalidRequest = errors.New("invalid request")

	// ErrDuplicateRequest: Klavi answered 409 to a create's only attempt. Klavi may
	// hold a payment for this clientRequestId, or may have refused the request (the
	// seeds' only 409 is "Insufficient permissions requested"): the orders list
	// (FindOrder) tells which.
	ErrDuplicateRequest = errors.New("duplicate clientRequestId")

	// ErrRefused: Klavi answered a definitive 4xx (any but 401, 403, 408, 409 and
	// 429): it refused the request and created nothing for it.
	ErrRefused = errors.New("refused by klavi")

	// ErrBusinessRule: Klavi answered 416, a business-rule refusal (window, cycle,
	// amount, retry limits). It is also an ErrRefused.
	ErrBusinessRule = errors.New("business rule")

	// ErrAuth: Klavi refused the access keys, or answered 401 or 403 even with a
	// freshly renewed token. Nothing was created, but the request itself may be fine:
	// it is not an ErrRefused.
	ErrAuth = errors.New("klavi authentication")

	// ErrUnavailable: no definitive answer from Klavi after the last attempt: a
	// transport error, a timeout, 408, 429 or 5xx.
	ErrUnavailable = errors.New("klavi unavailable")

	// ErrMalformedResponse: Klavi answered 2xx with a body that cannot be read.
	ErrMalformedResponse = errors.New("malformed response")

	// ErrOutcomeUnknown: a create may or may not have been committed by Klavi (an
	// attempt was sent and its answer was lost, or unreadable). Keep the submission
	// and send it again later with the same clientRequestId.
	ErrOutcomeUnknown = errors.New("outcome unknown")

	// ErrOrderNotFound: Klavi's list of the consent's payments, read to its end, has
	// no payment with that clientRequestId (FindOrder). Only a list read completely,
	// every page a well-formed answer, gives it; any failure to read the list is
	// ErrUnavailable, ErrRefused, ErrAuth or ErrMalformedResponse instead.
	ErrOrderNotFound = errors.New("no order with that clientRequestId")

	// ErrNoAppID: Config.AppID is empty and the management API cannot be used
	// without it: Klavi lists zero apps, or several, for these keys. Set klavi.app_id.
	ErrNoAppID = errors.New("klavi app id unknown")
)

// IsOutcomeUnknown reports whether err leaves it unknown whether a create was
// committed (errors.Is(err, ErrOutcomeUnknown)).
func IsOutcomeUnknown(err error) bool { return errors.Is(err, ErrOutcomeUnknown) }

// An APIError is a non-2xx answer from Klavi.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is Klavi's "error" field ("Conflict", "Bad Request"); it may be empty.
	Code string
	// Message is Klavi's "message", truncated and with anything that looks like a tax
	// id, an account number, an e-mail or a credential masked. It is free text that
	// may still name the payer: Error leaves it out; Describe adds it for records an
	// operator reads.
	Message string
	// Endpoint is the low-cardinality name of the call ("create_payment").
	Endpoint string
	// Retryable: the status is one the client retries (408, 429, 5xx). An APIError
	// returned with Retryable set came after the last attempt.
	Retryable bool
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
	// Attempt is the attempt (1-based) that got this answer.
	Attempt int
}

// Error formats e for logs: endpoint, status and its title, "klavi create_payment:
// 422 Unprocessable Entity". Klavi's code is the title when it is one (an HTTP
// status text, or an UPPER_SNAKE_CASE code); Klavi's message never is part of it
// (see Describe).
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "klavi %s: %d", e.Endpoint, e.StatusCode)
	if t := e.title(); t != "" {
		b.WriteString(" " + t)
	}
	return b.String()
}

// title is Klavi's code when it has the shape of one, else the status's text.
func (e *APIError) title() string {
	if e.Code != "" && (reCode.MatchString(e.Code) || isStatusText(e.Code)) {
		return e.Code
	}
	return http.StatusText(e.StatusCode)
}

// said is what Klavi said beyond the status: its code when it is not the title, and
// its message.
func (e *APIError) said() string {
	var parts []string
	if e.Code != "" && e.Code != e.title() {
		parts = append(parts, e.Code)
	}
	if e.Message != "" {
		parts = append(parts, e.Message)
	}
	return strings.Join(parts, ": ")
}

// Describe is err's text with, when err holds an *APIError (errors.As) whose answer
// said more than its status, Klavi's words: "…: klavi create_payment: 422
// Unprocessable Entity (Klavi: amount above the consent's limit)". Klavi's words are
// masked (digit runs, e-mails, credentials) but may still name the payer: Describe
// is for records an operator reads (an attempt's reason, an admin API answer),
// never for a log line, which takes the error itself. nil is "".
func Describe(err error) string {
	if err == nil {
		return ""
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if s := ae.said(); s != "" {
			return err.Error() + " (Klavi: " + s + ")"
		}
	}
	return err.Error()
}

// isStatusText reports whether s is the text of an HTTP status ("Bad Request"),
// in any case.
func isStatusText(s string) bool {
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" && strings.EqualFold(t, s) {
			return true
		}
	}
	return false
}

// Is makes errors.Is see ErrDuplicateRequest (409 on a create), ErrRefused (a
// definitive 4xx), ErrBusinessRule (416), ErrAuth (401, 403), ErrUnavailable
// (Retryable) and, for a create, ErrOutcomeUnknown (any answer that is neither a 409
// nor a definitive refusal: Klavi may have committed it).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrDuplicateRequest:
		return e.StatusCode == http.StatusConflict && isCreate(e.Endpoint)
	case ErrRefused:
		return refusal(e.StatusCode)
	case ErrBusinessRule:
		return e.StatusCode == http.StatusRequestedRangeNotSatisfiable
	case ErrAuth:
		return authStatus(e.StatusCode)
	case ErrUnavailable:
		return e.Retryable
	case ErrOutcomeUnknown:
		return isCreate(e.Endpoint) && !definitive(e.StatusCode)
	}
	return false
}

// retryableStatus reports the statuses worth another attempt: the request was not
// processed, or may not have been, and Klavi may answer later.
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// authStatus reports 401 and 403.
func authStatus(code int) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden
}

// refusal reports a definitive 4xx about the request itself: nothing was created.
func refusal(code int) bool {
	return code >= 400 && code < 500 && code != http.StatusConflict && !authStatus(code) && !retryableStatus(code)
}

// definitive reports an answer that settles a create: 409 (it exists), or a refusal
// or an authentication failure (nothing was created).
func definitive(code int) bool {
	return code == http.StatusConflict || refusal(code) || authStatus(code)
}

// outcomeUnknownError is the error of a create that may have been committed: an
// attempt was sent and its answer lost, and the call then ended some other way (a
// refusal, a context error, an unreadable answer). It answers errors.Is only for
// ErrOutcomeUnknown, ErrUnavailable, ErrMalformedResponse and the context errors,
// never for ErrRefused, ErrBusinessRule, ErrAuth or ErrInvalidRequest, so no order
// of checks can read it as "nothing was created". errors.As still reaches the last
// answer's *APIError.
type outcomeUnknownError struct {
	op  string
	err error
}

func (e *outcomeUnknownError) Error() string {
	return fmt.Sprintf("%s: %v (%v: an earlier attempt was sent and its answer lost)", e.op, e.err, ErrOutcomeUnknown)
}

func (e *outcomeUnknownError) Is(target error) bool {
	switch target {
	case ErrOutcomeUnknown:
		return true
	case ErrUnavailable, ErrMalformedResponse, ErrWindowClosed, context.Canceled, context.DeadlineExceeded:
		return errors.Is(e.err, target)
	}
	return false
}

func (e *outcomeUnknownError) As(target any) bool { return errors.As(e.err, target) }

// An InvalidRequestError is a request that was not sent because it breaks the API's
// rules. errors.Is(err, ErrInvalidRequest) holds, and errors.As finds Problems.
type InvalidRequestError struct {
	Op       string // "create payment"
	Problems problem.List
}

func (e *InvalidRequestError) Error() string {
	return fmt.Sprintf("%s: %v: %v", e.Op, ErrInvalidRequest, e.Problems)
}

// Unwrap returns ErrInvalidRequest and the problem list.
func (e *InvalidRequestError) Unwrap() []error { return []error{ErrInvalidRequest, e.Problems} }

// maxMessageLen bounds the part of Klavi's message kept in an APIError.
const maxMessageLen = 200

var (
	reEmail  = regexp.MustCompile(`[^\s@"'<>(),;:]+@[^\s@"'<>(),;:]+`)
	reKeep   = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}|\d{1,16}\.\d{2})$`) // a date, an amount
	reDigits = regexp.MustCompile(`\d[\d.\-/]*\d`)
	reBearer = regexp.MustCompile(`(?i)bearer\s+\S+`)
	reCode   = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`) // an enum code: BUSINESS_RULE
)

// reQuoted is a quoted value in a decoding error: `invalid date "…"`.
var reQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// reQuotedPath is a quoted JSON pointer ("/customer/cpf"): a field, not a value.
var reQuotedPath = regexp.MustCompile(`^"(/[A-Za-z0-9_~.\-]*)*"$`)

// decodeText is the text of an error met reading one of Klavi's answers: the values
// it quotes are Klavi's data (a name where an amount should be), so each is replaced
// by its length; field paths, dates and amounts are kept. It is truncated.
func decodeText(err error) string {
	msg := reQuoted.ReplaceAllStringFunc(strings.TrimPrefix(err.Error(), "json: "), func(q string) string {
		if reQuotedPath.MatchString(q) || reKeep.MatchString(q[1:len(q)-1]) {
			return q // a field, or a date or an amount (the expected form: "99.90")
		}
		return redact.Text(q[1 : len(q)-1])
	})
	return truncate(msg, 160)
}

// sanitize makes Klavi's message fit for the records an operator reads: Klavi may echo
// parts of the request, so e-mails and runs of 6 or more digits (tax ids, account
// numbers, phones; dates and amounts are kept) are masked, a bearer token or one of secrets is
// hidden, control characters are dropped and the text is truncated.
func sanitize(msg string, secrets ...string) string {
	for _, s := range secrets {
		if len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	msg = reBearer.ReplaceAllString(msg, "Bearer [redacted]")
	msg = reEmail.ReplaceAllStringFunc(msg, redact.Email)
	msg = reDigits.ReplaceAllStringFunc(msg, func(s string) string {
		if reKeep.MatchString(s) {
			return s
		}
		n := 0
		for _, c := range s {
			if c >= '0' && c <= '9' {
				n++
			}
		}
		if n < 6 {
			return s
		}
		return redact.ID(s)
	})
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)
	return truncate(strings.TrimSpace(msg), maxMessageLen)
}
