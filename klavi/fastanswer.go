package klavi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	"github.com/klavi-billing/billingd/internal/jsonstr"
)

// fastPayment reads a payment answer the way Payment.UnmarshalJSON does (the
// loose answer rules of answer.go, json/v1's semantics) in one pass over b, for
// the answers Klavi usually sends: a create, a get or a retry answer
// (klavi-api.md section 4, seed page 004). It reports false, leaving *p as it was,
// for anything it leaves to the JSON library: a string with an escape or a byte
// that is not UTF-8, a null, a value of another kind than its field's, a name that
// matches a field in another letter case, an invalid document, a field's reading
// that refuses the value, or a *p that is not the zero Payment (the library merges
// into it). Its answer is then the library's, errors included; where it reports
// true, the Payment is the one the library would have read
// (FuzzFastPayment compares the two).
//
// BenchmarkDecodeAnswer, on a 2-CPU machine: a create answer as the sandbox writes
// it (0.3 KB) in 3.0 µs against the library's 5.4; seed 004's example (1.8 KB,
// indented) in 9 µs against 18.
func fastPayment(b []byte, p *Payment) bool {
	if p == nil || !reflect.ValueOf(p).Elem().IsZero() {
		return false
	}
	var v Payment
	s := scanner{b: b}
	if !s.object(paymentNames, func(name []byte) (bool, bool) { return s.paymentField(&v, name) }) {
		return false
	}
	s.ws()
	if s.i != len(s.b) {
		return false // more than one value
	}
	*p = v
	return true
}

// The JSON names of each struct fastPayment reads, for the check that an unknown
// name does not match one of them in another letter case (json/v1 matches names
// without regard to case).
var (
	paymentNames = []string{"id", "appId", "clientRequestId", "institutionId", "consentId", "date", "endToEndId",
		"transactionIdentification", "loggedUserCpf", "ibgeTownCode", "amount", "currency", "redirectUrl",
		"remittanceInformation", "status", "statusReason", "cancellation", "createAt", "statusUpdateAt",
		"paymentMethod", "paymentMethodConfig", "customer", "debtorAccount", "creditorAccount", "externalInfo"}
	reasonNames       = []string{"code", "message"}
	cancellationNames = []string{"cancelledFrom", "cancelledAt", "cancelledBy"}
	methodNames       = []string{"firstPayment", "originalPaymentId"}
	customerNames     = []string{"identifierType", "identifier", "name", "phone", "email"}
	accountNames      = []string{"ispb", "issuer", "number", "accountType", "holder"}
	personNames       = []string{"identifierType", "identifier", "name"}
)

func (s *scanner) paymentField(v *Payment, name []byte) (known, ok bool) {
	switch string(name) {
	case "id":
		return true, s.str(&v.ID)
	case "appId":
		return true, s.str(&v.AppID)
	case "clientRequestId":
		return true, s.str(&v.ClientRequestID)
	case "institutionId":
		return true, s.str(&v.InstitutionID)
	case "consentId":
		return true, s.str(&v.ConsentID)
	case "date":
		return true, s.with(answerDate{&v.Date}.UnmarshalJSON)
	case "endToEndId":
		return true, s.str(&v.EndToEndID)
	case "transactionIdentification":
		return true, s.str(&v.TransactionIdentification)
	case "loggedUserCpf":
		return true, s.str(&v.LoggedUserCPF)
	case "ibgeTownCode":
		return true, s.str(&v.IBGETownCode)
	case "amount":
		return true, s.with(answerCents{&v.Amount}.UnmarshalJSON)
	case "currency":
		return true, s.with(answerEnum{&v.Currency}.UnmarshalJSON)
	case "redirectUrl":
		return true, s.str(&v.RedirectURL)
	case "remittanceInformation":
		return true, s.str(&v.RemittanceInformation)
	case "status":
		return true, s.text(v.Status.UnmarshalText)
	case "statusReason":
		r := ptr(&v.StatusReason)
		return true, s.object(reasonNames, func(name []byte) (bool, bool) {
			switch string(name) {
			case "code":
				return true, s.text(r.Code.UnmarshalText)
			case "message":
				return true, s.str(&r.Message)
			}
			return false, false
		})
	case "cancellation":
		c := ptr(&v.Cancellation)
		return true, s.object(cancellationNames, func(name []byte) (bool, bool) {
			switch string(name) {
			case "cancelledFrom":
				return true, s.with(answerEnum{&c.CancelledFrom}.UnmarshalJSON)
			case "cancelledAt":
				return true, s.with(answerTime{&c.CancelledAt}.UnmarshalJSON)
			case "cancelledBy":
				return true, s.person(ptr(&c.CancelledBy))
			}
			return false, false
		})
	case "createAt":
		return true, s.with(answerTime{&v.CreateAt}.UnmarshalJSON)
	case "statusUpdateAt":
		return true, s.with(answerTime{&v.StatusUpdateAt}.UnmarshalJSON)
	case "paymentMethod":
		return true, s.with(answerEnum{&v.PaymentMethod}.UnmarshalJSON)
	case "paymentMethodConfig":
		m := ptr(&v.PaymentMethodConfig)
		return true, s.object(methodNames, func(name []byte) (bool, bool) {
			switch string(name) {
			case "firstPayment":
				return true, s.boolean(&m.FirstPayment)
			case "originalPaymentId":
				return true, s.str(&m.OriginalPaymentID)
			}
			return false, false
		})
	case "customer":
		c := ptr(&v.Customer)
		return true, s.object(customerNames, func(name []byte) (bool, bool) {
			switch string(name) {
			case "identifierType":
				return true, s.text(c.IdentifierType.UnmarshalText)
			case "identifier":
				return true, s.str(&c.Identifier)
			case "name":
				return true, s.str(&c.Name)
			case "phone":
				return true, s.str(&c.Phone)
			case "email":
				return true, s.str(&c.Email)
			}
			return false, false
		})
	case "debtorAccount":
		return true, s.account(ptr(&v.DebtorAccount))
	case "creditorAccount":
		return true, s.account(ptr(&v.CreditorAccount))
	case "externalInfo":
		start := s.i
		if !s.skipDepth(1) || s.b[start] == 'n' {
			return true, false // null: left to the library
		}
		v.ExternalInfo = json.RawMessage(bytes.Clone(s.b[start:s.i]))
		return true, true
	}
	return false, false
}

func (s *scanner) account(a *Account) bool {
	return s.object(accountNames, func(name []byte) (bool, bool) {
		switch string(name) {
		case "ispb":
			return true, s.str(&a.ISPB)
		case "issuer":
			return true, s.str(&a.Issuer)
		case "number":
			return true, s.str(&a.Number)
		case "accountType":
			return true, s.text(a.AccountType.UnmarshalText)
		case "holder":
			return true, s.person(ptr(&a.Holder))
		}
		return false, false
	})
}

func (s *scanner) person(p *Person) bool {
	return s.object(personNames, func(name []byte) (bool, bool) {
		switch string(name) {
		case "identifierType":
			return true, s.text(p.IdentifierType.UnmarshalText)
		case "identifier":
			return true, s.str(&p.Identifier)
		case "name":
			return true, s.str(&p.Name)
		}
		return false, false
	})
}

// ptr returns *pp, first pointing it at a new T when nil: a second member of the
// same name reads into the same value, as json/v1 does.
func ptr[T any](pp **T) *T {
	if *pp == nil {
		*pp = new(T)
	}
	return *pp
}

// A scanner reads a JSON document at b[i:], checking it as it goes (unlike
// storage's scanner, which reads records already checked whole): each method
// reports false for input it leaves to the library (see fastPayment).
type scanner struct {
	b []byte
	i int
	// whole is b as one string, made at the first string read: each string field
	// is a piece of it, not an allocation of its own.
	whole string
	last  int // where the last string raw read starts in b
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object reads an object, calling field for each member after its name (at the
// value); field reports whether the name is one of the struct's (names) and, if
// so, whether it read the value. An unknown name that matches one of names in
// another letter case is left to the library; an unknown name's value is skipped.
func (s *scanner) object(names []string, field func(name []byte) (known, ok bool)) bool {
	return s.members(func(name []byte) bool {
		if known, ok := field(name); known {
			return ok
		}
		for _, n := range names {
			if strings.EqualFold(string(name), n) {
				return false // json/v1 would read it into n
			}
		}
		return s.skipDepth(1)
	})
}

// members reads an object, calling value at each member's value with its name.
func (s *scanner) members(value func(name []byte) bool) bool {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		s.ws()
		name, ok := s.raw()
		if !ok {
			return false
		}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if !value(name) {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// raw reads a string as plainBytes accepts it (no escape, no control character,
// valid UTF-8) and returns its bytes between the quotes (a view of b).
func (s *scanner) raw() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	n := bytes.IndexByte(s.b[s.i+1:], '"')
	if n < 0 {
		return nil, false
	}
	in, ok := plainBytes(s.b[s.i : s.i+n+2])
	if !ok {
		return nil, false
	}
	s.i, s.last = s.i+n+2, s.i+1
	return in, true
}

// str reads a string into *dst.
func (s *scanner) str(dst *string) bool {
	in, ok := s.raw()
	if ok {
		if s.whole == "" {
			s.whole = string(s.b)
		}
		*dst = s.whole[s.last : s.last+len(in)]
	}
	return ok
}

// text reads a string and hands its bytes to a type's UnmarshalText.
func (s *scanner) text(set func([]byte) error) bool {
	in, ok := s.raw()
	return ok && set(in) == nil
}

// with hands the next value, a string or a number, to an answer reading's
// UnmarshalJSON (answer.go).
func (s *scanner) with(set func([]byte) error) bool {
	start := s.i
	if s.i >= len(s.b) {
		return false
	}
	if s.b[s.i] == '"' {
		if _, ok := s.raw(); !ok {
			return false
		}
	} else if !s.number() {
		return false
	}
	return set(s.b[start:s.i]) == nil
}

func (s *scanner) boolean(dst *bool) bool {
	switch {
	case bytes.HasPrefix(s.b[s.i:], []byte("true")):
		*dst = true
		s.i += 4
	case bytes.HasPrefix(s.b[s.i:], []byte("false")):
		*dst = false
		s.i += 5
	default:
		return false
	}
	return s.delimited()
}

// delimited reports whether a literal or number just read ends where a value may.
func (s *scanner) delimited() bool {
	if s.i == len(s.b) {
		return true
	}
	switch s.b[s.i] {
	case ' ', '\t', '\n', '\r', ',', '}', ']':
		return true
	}
	return false
}

// number reads a JSON number (RFC 8259's grammar).
func (s *scanner) number() bool {
	b, i := s.b, s.i
	digits := func() bool {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.i = i
	return s.delimited()
}

// maxSkipDepth bounds the nesting skipDepth follows; deeper documents go to the
// library.
const maxSkipDepth = 64

// skipDepth reads past one value of any kind, checking it as the library would;
// depth counts the levels of nesting skipped so far (1 at a member fastPayment does
// not read).
func (s *scanner) skipDepth(depth int) bool {
	if depth > maxSkipDepth || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '"':
		_, ok := s.raw()
		return ok
	case c == '{':
		return s.members(func([]byte) bool { return s.skipDepth(depth + 1) })
	case c == '[':
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			s.ws()
			if !s.skipDepth(depth + 1) {
				return false
			}
			s.ws()
			if s.i >= len(s.b) {
				return false
			}
			switch s.b[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case c == 't' || c == 'f':
		var b bool
		return s.boolean(&b)
	case c == 'n':
		if !bytes.HasPrefix(s.b[s.i:], []byte("null")) {
			return false
		}
		s.i += 4
		return s.delimited()
	default:
		return s.number()
	}
}

// appendCreatePayment appends r's JSON, the bytes json.Marshal (json/v1) writes for
// it, to b, for the requests billingd sends: no creditor account or external info.
// It returns nil and false for any other request, which json.Marshal then writes
// (TestAppendCreatePayment and FuzzAppendCreatePayment compare the two).
func appendCreatePayment(b []byte, r *CreatePaymentRequest) ([]byte, bool) {
	if r.CreditorAccount != nil || r.ExternalInfo != nil || r.Date.IsZero() {
		return nil, false
	}
	b = append(b, `{"clientRequestId":`...)
	b = jsonstr.Append(b, r.ClientRequestID)
	b = append(b, `,"date":"`...)
	b, _ = r.Date.AppendText(b)
	b = append(b, `","amount":`...)
	b, err := r.Amount.AppendJSON(b)
	if err != nil {
		return nil, false // json.Marshal says why
	}
	b = append(b, `,"currency":`...)
	b = jsonstr.Append(b, r.Currency)
	if r.RemittanceInformation != "" {
		b = append(b, `,"remittanceInformation":`...)
		b = jsonstr.Append(b, r.RemittanceInformation)
	}
	if r.IBGETownCode != "" {
		b = append(b, `,"ibgeTownCode":`...)
		b = jsonstr.Append(b, r.IBGETownCode)
	}
	if s := r.AutoRetryStrategy; s != nil {
		if s.Days == nil {
			return nil, false
		}
		b = append(b, `,"autoRetryStrategy":{"days":[`...)
		for i, d := range s.Days {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, int64(d), 10)
		}
		b = append(b, `],"skipWeekend":`...)
		b = strconv.AppendBool(b, s.SkipWeekend)
		b = append(b, '}')
	}
	return append(b, '}'), true
}
