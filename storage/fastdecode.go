package storage

import (
	"bytes"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
)

// Every due entry's decision reads a consent's terms and cursor (readTerms). Those
// two records are read by hand where they are as the store writes them: the same
// values the codec gives (TestFastDecode compares the two on random and damaged
// records), in a fraction of its time, which reflects on every field and matches
// names in any letter case. The hand reader leaves the record to the codec, whose
// value and error are then the record's, when it meets anything it does not read
// itself: JSON that is not valid, a member it does not know or meets twice, a
// string with an escape, a null where the store writes none, a value its field's
// own method refuses. Each field is read by the method the codec calls for its
// type (UnmarshalText, UnmarshalJSON), so the two agree on what a value means.

// decodeTermsBody is decodeBody for a terms record (putTerms's JSON).
func decodeTermsBody(id, body []byte) (decodedBody, error) {
	var b decodedBody
	if termsFast(body, &b) && b.Consent != nil { // no consent: the codec's error
		return b, nil
	}
	return decodeBody(id, body)
}

// readCursor is json.Unmarshal(raw, c) for a stored cursor (marshalCursor's
// JSON).
func readCursor(raw []byte, c *consentCursor) error {
	*c = consentCursor{}
	if cursorFast(raw, c) {
		return nil
	}
	*c = consentCursor{}
	return json.Unmarshal(raw, c)
}

// allowDuplicates is the validity check's option (made once: an option is an
// allocation). The readers find a name met twice themselves, and leave that
// record to the codec.
var allowDuplicates = jsontext.AllowDuplicateNames(true)

func termsFast(raw []byte, b *decodedBody) bool {
	if !jsontext.Value(raw).IsValid(allowDuplicates) {
		return false
	}
	s := scanner{b: raw}
	return s.object([]string{"consent", "addedAt", "redirectUrl"}, func(i int) bool {
		switch i {
		case 0:
			b.Consent = new(consent.Consent)
			return s.consent(b.Consent)
		case 1:
			return s.time(&b.AddedAt)
		default:
			return s.str(&b.RedirectURL)
		}
	}) && s.end()
}

// consent reads a consent's terms (consent.Consent.Terms: no customer, accounts,
// contract debtor or first payment).
func (s *scanner) consent(c *consent.Consent) bool {
	return s.object([]string{"id", "status", "clientRequestId", "institutionId", "expirationDateTime", "clientMetadata",
		"paymentMethodConfig", "billing"}, func(i int) bool {
		switch i {
		case 0:
			return s.str(&c.ID)
		case 1:
			return s.text(&c.Status)
		case 2:
			return s.str(&c.ClientRequestID)
		case 3:
			return s.str(&c.InstitutionID)
		case 4:
			c.ExpirationDateTime = new(klavi.DateTime)
			return s.jsonValue(c.ExpirationDateTime)
		case 5:
			return s.null() // the terms keep no client metadata
		case 6:
			c.PaymentMethodConfig = new(klavi.PaymentMethodConfig)
			return s.paymentMethodConfig(c.PaymentMethodConfig)
		default:
			return s.billing(&c.Billing)
		}
	})
}

func (s *scanner) paymentMethodConfig(p *klavi.PaymentMethodConfig) bool {
	return s.object([]string{"contractId", "fixedAmount", "minimumVariableAmount", "maximumVariableAmount", "currency",
		"interval", "referenceStartDate", "contractDebtor", "isRetryAccepted"}, func(i int) bool {
		switch i {
		case 0:
			return s.str(&p.ContractID)
		case 1:
			p.FixedAmount = new(klavi.Cents)
			return s.jsonValue(p.FixedAmount)
		case 2:
			p.MinimumVariableAmount = new(klavi.Cents)
			return s.jsonValue(p.MinimumVariableAmount)
		case 3:
			p.MaximumVariableAmount = new(klavi.Cents)
			return s.jsonValue(p.MaximumVariableAmount)
		case 4:
			return s.str(&p.Currency)
		case 5:
			return s.text(&p.Interval)
		case 6:
			return s.text(&p.ReferenceStartDate)
		case 7:
			return s.null() // the terms keep no contract debtor
		default:
			if s.null() {
				return true
			}
			v, ok := s.boolean()
			p.IsRetryAccepted = &v
			return ok
		}
	})
}

func (s *scanner) billing(b *consent.Billing) bool {
	return s.object([]string{"retryMode", "autoRetryStrategy", "dueDateAdjust", "remittanceInformation"}, func(i int) bool {
		switch i {
		case 0:
			return s.text(&b.RetryMode)
		case 1:
			b.AutoRetryStrategy = new(retry.Strategy)
			return s.codec(b.AutoRetryStrategy)
		case 2:
			b.DueDateAdjust = new(cycle.DueAdjust)
			return s.text(b.DueDateAdjust)
		default:
			return s.str(&b.RemittanceInformation)
		}
	})
}

func cursorFast(raw []byte, c *consentCursor) bool {
	if !jsontext.Value(raw).IsValid(allowDuplicates) {
		return false
	}
	s := scanner{b: raw}
	return s.object([]string{"state", "stateReason", "updatedAt", "billFrom", "nextCycle", "nextDue", "refreshedAt", "version"}, func(i int) bool {
		switch i {
		case 0:
			v, ok := s.plain()
			c.State = intern(ConsentStates, v)
			return ok
		case 1:
			return s.str(&c.StateReason)
		case 2:
			return s.time(&c.UpdatedAt)
		case 3:
			return s.text(&c.BillFrom)
		case 4:
			v, ok := s.digits()
			if !ok || len(v) > 9 { // an int, as the codec reads it; longer: the codec
				return false
			}
			n, err := strconv.Atoi(string(v))
			c.NextCycle = n
			return err == nil
		case 5:
			return s.time(&c.NextDue)
		case 6:
			return s.time(&c.RefreshedAt)
		default:
			return s.version(&c.Version)
		}
	}) && s.end()
}

// A scanner reads JSON already known to be valid (jsontext.Value.IsValid, which
// also checks UTF-8): its methods recognize, and report false for what they do not
// read themselves.
type scanner struct {
	b []byte
	i int
}

// object reads an object whose member names are among names, each at most once,
// calling member with the name's index to read its value.
func (s *scanner) object(names []string, member func(i int) bool) bool {
	s.space()
	if !s.byte('{') {
		return false
	}
	var seen uint64
	next := 0 // the name the store writes next: looked at first
	for first := true; ; first = false {
		s.space()
		if s.byte('}') {
			return true
		}
		if !first && !s.byte(',') {
			return false
		}
		s.space()
		name, ok := s.plain()
		if !ok {
			return false
		}
		s.space()
		if !s.byte(':') {
			return false
		}
		i := indexOf(names, name, next)
		if i < 0 || seen&(1<<i) != 0 {
			return false // another spelling, or a name twice: the codec decides
		}
		seen |= 1 << i
		next = i + 1
		s.space()
		if !member(i) {
			return false
		}
	}
}

// indexOf is name's index in names, -1 when it is none of them; it looks from
// next on first.
func indexOf(names []string, name []byte, next int) int {
	for i := next; i < len(names); i++ {
		if names[i] == string(name) {
			return i
		}
	}
	for i := 0; i < next && i < len(names); i++ {
		if names[i] == string(name) {
			return i
		}
	}
	return -1
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// byte consumes c if it is next.
func (s *scanner) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only white space is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// plain consumes a string without escapes and returns its bytes.
func (s *scanner) plain() ([]byte, bool) {
	if !s.byte('"') {
		return nil, false
	}
	start := s.i
	n := bytes.IndexByte(s.b[start:], '"')
	if n < 0 || bytes.IndexByte(s.b[start:start+n], '\\') >= 0 {
		return nil, false
	}
	s.i = start + n + 1
	return s.b[start : start+n], true
}

// str reads a string without escapes into v.
func (s *scanner) str(v *string) bool {
	b, ok := s.plain()
	*v = string(b)
	return ok
}

// text reads a string without escapes with v's UnmarshalText.
func (s *scanner) text(v interface{ UnmarshalText([]byte) error }) bool {
	b, ok := s.plain()
	return ok && v.UnmarshalText(b) == nil
}

// time reads a string as time.Time.UnmarshalJSON reads it.
func (s *scanner) time(t *time.Time) bool {
	start := s.i
	if _, ok := s.plain(); !ok {
		return false
	}
	return t.UnmarshalJSON(s.b[start:s.i]) == nil
}

// jsonValue reads a string (a null is left to the codec) with v's UnmarshalJSON.
func (s *scanner) jsonValue(v interface{ UnmarshalJSON([]byte) error }) bool {
	start := s.i
	if _, ok := s.plain(); !ok {
		return false
	}
	return v.UnmarshalJSON(s.b[start:s.i]) == nil
}

// codec reads any value but null with the codec into v.
func (s *scanner) codec(v any) bool {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == 'n' || !s.skip() {
		return false
	}
	return json.Unmarshal(s.b[start:s.i], v) == nil
}

// null consumes a null.
func (s *scanner) null() bool {
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// boolean consumes true or false.
func (s *scanner) boolean() (bool, bool) {
	switch {
	case len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "true":
		s.i += 4
		return true, true
	case len(s.b)-s.i >= 5 && string(s.b[s.i:s.i+5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}

// digits consumes a number made of digits only.
func (s *scanner) digits() ([]byte, bool) {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == start || s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return nil, false
	}
	return s.b[start:s.i], true
}

// version reads a record's version: digits only, as a uint64.
func (s *scanner) version(v *uint64) bool {
	b, ok := s.digits()
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	*v = n
	return err == nil
}

// skip consumes any value.
func (s *scanner) skip() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		return s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if !s.skipString() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default: // a number or a literal
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return true
			}
			s.i++
		}
		return true
	}
}

// skipString consumes a string, escapes and all.
func (s *scanner) skipString() bool {
	s.i++ // the opening quote
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
			continue
		case '"':
			s.i++
			return true
		}
		s.i++
	}
	return false
}

// attemptNames are the members of a stored attempt (marshalAttempt's JSON), in the
// order it writes them.
var attemptNames = []string{"consentId", "cycle", "attempt", "state", "clientRequestId", "date", "amount", "mode",
	"strategy", "paymentId", "originalPaymentId", "status", "reason", "sends", "polls", "dueAt", "nextPoll",
	"createdAt", "submittedAt", "updatedAt", "lastRetryDate", "plannedRetries", "lookups", "confirm",
	"unknownSince", "resolved", "version"}

// resolutionNames are the members of a stored attempt's resolution.
var resolutionNames = []string{"at", "by", "note", "state", "since"}

// readHead is json.Unmarshal(raw, h) into a zero attemptHead (it zeroes *h first)
// for a stored attempt: a write reads the head of the attempt it replaces
// (applyTx) for every answer it records.
func readHead(raw []byte, h *attemptHead) error {
	*h = attemptHead{}
	if headFast(raw, h) {
		return nil
	}
	*h = attemptHead{}
	return json.Unmarshal(raw, h)
}

func headFast(raw []byte, h *attemptHead) bool {
	if !jsontext.Value(raw).IsValid(allowDuplicates) {
		return false
	}
	s := scanner{b: raw}
	return s.object(attemptNames, func(i int) bool {
		switch attemptNames[i] {
		case "state":
			v, ok := s.plain()
			h.State = intern(AttemptStates, v)
			return ok
		case "date":
			return s.text(&h.Date)
		case "dueAt":
			return s.time(&h.DueAt)
		case "nextPoll":
			return s.time(&h.NextPoll)
		case "resolved":
			h.Resolved = new(struct {
				State AttemptState `json:"state"`
			})
			return s.object(resolutionNames, func(i int) bool {
				if resolutionNames[i] != "state" {
					return s.skip()
				}
				v, ok := s.plain()
				h.Resolved.State = intern(AttemptStates, v)
				return ok
			})
		case "version":
			return s.version(&h.Version)
		}
		// Any other member is skipped, but a null is left to the codec.
		return !s.null() && s.skip()
	}) && s.end()
}
