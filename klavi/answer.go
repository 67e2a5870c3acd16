package klavi

import (
	"fmt"
	"time"
	"unicode/utf8"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/enum"
)

// Klavi's answers are read more loosely than billingd's requests are written: what a
// seed page documents, or shows in an example, is never refused, while every request
// keeps the strict forms (YYYY-MM-DD, YYYY-MM-DDThh:mm:ssZ, "1234.56"). The loose
// readings live here and apply only to answer types (Payment, Order, Consent,
// PaymentStatusInfo, Cancellation, InstantPayment); billingd's own inputs, the
// consent file format and the admin API, keep cycle.Date's, DateTime's and Cents'
// strict rules.

// text is what the answer parsers read: a Go string, or the bytes of a JSON string
// straight from the decoder (no copy is made to parse them).
type text interface{ ~string | ~[]byte }

// The answer forms are matched by hand, without a regexp, and match exactly what
// these patterns do (FuzzAnswerPatterns compares them group by group):
//
//	date:      ^(\d{4})-(\d{1,2})-(\d{1,2})$
//	date-time: ^(\d{4})-(\d{1,2})-(\d{1,2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$
//
// The date is seed 004's response schema pattern,
// ^(\d{4})-(1[0-2]|0?[1-9])-(3[01]|[12][0-9]|0?[1-9])$, with the range checks left
// to cycle.NewDate. The date-time is the schema's createAt/statusUpdateAt/cancelledAt
// widened to what its own example shows (fractional seconds,
// "2023-01-23T14:17:06.45Z") and to RFC 3339 offsets; no zone at all reads as UTC.
// Every group after a digit run starts with a non-digit, so the longest run is the
// only one that can match: no backtracking is needed.

// digitsAt returns the end of the run of lo to hi ASCII digits at s[i:] (it takes
// at most hi), or -1 if there are fewer than lo.
func digitsAt[T text](s T, i, lo, hi int) int {
	j := i
	for j < len(s) && j-i < hi && '0' <= s[j] && s[j] <= '9' {
		j++
	}
	if j-i < lo {
		return -1
	}
	return j
}

// matchDate matches the date pattern at s[0:] up to the end of its day, and returns
// that end (-1: no match) and the groups 1 to 3 in m.
func matchDate[T text](s T, m *[12]T) int {
	y := digitsAt(s, 0, 4, 4)
	if y < 0 || y >= len(s) || s[y] != '-' {
		return -1
	}
	mo := digitsAt(s, y+1, 1, 2)
	if mo < 0 || mo >= len(s) || s[mo] != '-' {
		return -1
	}
	d := digitsAt(s, mo+1, 1, 2)
	if d < 0 {
		return -1
	}
	m[1], m[2], m[3] = s[:y], s[y+1:mo], s[mo+1:d]
	return d
}

// matchAnswerDate is FindStringSubmatch of the date pattern: m[0] the whole match,
// m[1:4] its groups.
func matchAnswerDate[T text](s T) (m [12]T, ok bool) {
	if matchDate(s, &m) != len(s) {
		return [12]T{}, false
	}
	m[0] = s
	return m, true
}

// matchAnswerTime is FindStringSubmatch of the date-time pattern: m[0] the whole
// match, m[1:12] its groups, the zero T for a group that did not take part.
func matchAnswerTime[T text](s T) (m [12]T, ok bool) {
	i := matchDate(s, &m)
	if i < 0 || i >= len(s) || (s[i] != 'T' && s[i] != 't' && s[i] != ' ') {
		return [12]T{}, false
	}
	for g, sep := range [3]byte{':', ':', 0} { // hh:mm:ss
		j := digitsAt(s, i+1, 2, 2)
		if j < 0 || (sep != 0 && (j >= len(s) || s[j] != sep)) {
			return [12]T{}, false
		}
		m[4+g] = s[i+1 : j]
		i = j
	}
	if i < len(s) && s[i] == '.' {
		j := digitsAt(s, i+1, 1, 9)
		if j < 0 {
			return [12]T{}, false
		}
		m[7] = s[i+1 : j]
		i = j
	}
	if i < len(s) {
		switch s[i] {
		case 'Z', 'z':
			m[8] = s[i : i+1]
			i++
		case '+', '-':
			m[9] = s[i : i+1]
			j := digitsAt(s, i+1, 2, 2)
			if j < 0 {
				return [12]T{}, false
			}
			m[10] = s[i+1 : j]
			if j < len(s) && s[j] == ':' {
				j++
			}
			k := digitsAt(s, j, 2, 2)
			if k < 0 {
				return [12]T{}, false
			}
			m[11] = s[j:k]
			i = k
		default:
			return [12]T{}, false
		}
	}
	if i != len(s) {
		return [12]T{}, false
	}
	m[0] = s
	return m, true
}

// atoi reads a run of at most 9 ASCII digits, as matched above.
func atoi[T text](s T) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

// ParseAnswerDate reads a date as Klavi's answers carry it: YYYY-MM-DD, with the
// month and day padded or not ("2023-01-23", "2023-1-23"), as the seed 004 date
// pattern allows. The day must exist. The empty string is the zero Date (absent).
// Requests always send the padded form (cycle.Date).
func ParseAnswerDate(s string) (cycle.Date, error) { return parseAnswerDate(s) }

func parseAnswerDate[T text](s T) (cycle.Date, error) {
	if len(s) == 0 {
		return cycle.Date{}, nil
	}
	m, ok := matchAnswerDate(s)
	if !ok {
		return cycle.Date{}, fmt.Errorf("%w %q: want YYYY-MM-DD", cycle.ErrDate, truncate(string(s), 40))
	}
	return civil(s, m[1], m[2], m[3])
}

func civil[T text](s, ys, ms, ds T) (cycle.Date, error) {
	dt, ok := cycle.NewDate(atoi(ys), time.Month(atoi(ms)), atoi(ds))
	if !ok {
		return cycle.Date{}, fmt.Errorf("%w %q: no such day", cycle.ErrDate, truncate(string(s), 40))
	}
	return dt, nil
}

// ParseAnswerTime reads an instant as Klavi's answers carry it, and returns it in
// UTC. Accepted: a date as ParseAnswerDate reads it, 'T' (or 't' or a space),
// hh:mm:ss, optional fractional seconds (1 to 9 digits), and a zone that is 'Z', a
// numeric offset (+hh:mm or +hhmm), or absent, which reads as UTC:
// "2023-01-23T10:00:00Z", "2023-01-23T14:17:06.45Z" (the seed 004 example),
// "2023-01-23T10:00:00.123456+00:00", "2023-01-23T10:00:00". The empty string is
// the zero time (absent). Requests always send DateTimeLayout.
func ParseAnswerTime(s string) (time.Time, error) { return parseAnswerTime(s) }

func parseAnswerTime[T text](s T) (time.Time, error) {
	if len(s) == 0 {
		return time.Time{}, nil
	}
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("invalid date-time %q: %s", truncate(string(s), 40), why)
	}
	m, ok := matchAnswerTime(s)
	if !ok {
		return bad("want YYYY-MM-DDThh:mm:ss[.fraction][Z|±hh:mm]")
	}
	d, err := civil(s, m[1], m[2], m[3])
	if err != nil {
		return bad("no such day")
	}
	hh, mm, ss := atoi(m[4]), atoi(m[5]), atoi(m[6])
	if hh > 23 || mm > 59 || ss > 59 {
		return bad("no such time of day")
	}
	ns := atoi(m[7]) // 1 to 9 digits of a second: scaled to nanoseconds
	for range 9 - len(m[7]) {
		ns *= 10
	}
	off := 0 // seconds east of UTC
	if len(m[9]) != 0 {
		oh, om := atoi(m[10]), atoi(m[11])
		if oh > 23 || om > 59 {
			return bad("no such zone offset")
		}
		off = oh*3600 + om*60
		if m[9][0] == '-' {
			off = -off
		}
	}
	y, mo, dd := d.Civil()
	// The wall time at offset off is off seconds ahead of UTC (what time.Date with
	// time.FixedZone then UTC gives, without building a zone).
	return time.Date(y, mo, dd, hh, mm, ss, ns, time.UTC).Add(-time.Duration(off) * time.Second), nil
}

// answerString reads a JSON string for a loose answer field; null is "absent".
func answerString(b []byte, what string) (string, bool, error) {
	if string(b) == "null" {
		return "", false, nil
	}
	if s, ok := plainString(b); ok {
		return s, true, nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", false, fmt.Errorf("%s: want a string, got %s", what, truncate(string(b), 40))
	}
	return s, true, nil
}

// plainString reads a JSON string with no escapes, no control characters and valid
// UTF-8 (the usual answer: "2026-03-05", "PAYMENT_COMPLETED") without the decoder;
// ok is false for anything else, which json.Unmarshal then reads.
func plainString(b []byte) (string, bool) {
	in, ok := plainBytes(b)
	if !ok {
		return "", false
	}
	return string(in), true
}

// plainBytes is plainString without the copy: the string's bytes inside b.
func plainBytes(b []byte) ([]byte, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return nil, false
	}
	in := b[1 : len(b)-1]
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return nil, false
		}
	}
	if !utf8.Valid(in) {
		return nil, false
	}
	return in, true
}

// answerDate decodes into *p with ParseAnswerDate.
type answerDate struct{ p *cycle.Date }

func (d answerDate) UnmarshalJSON(b []byte) error {
	var v cycle.Date
	var err error
	if in, plain := plainBytes(b); plain {
		v, err = parseAnswerDate(in) // the usual answer, read in place
	} else if s, ok, serr := answerString(b, "date"); serr != nil || !ok {
		return serr
	} else {
		v, err = ParseAnswerDate(s)
	}
	if err != nil {
		return err
	}
	*d.p = v
	return nil
}

// answerTime decodes into *p with ParseAnswerTime.
type answerTime struct{ p *time.Time }

func (t answerTime) UnmarshalJSON(b []byte) error {
	var v time.Time
	var err error
	if in, plain := plainBytes(b); plain {
		v, err = parseAnswerTime(in) // the usual answer, read in place
	} else if s, ok, serr := answerString(b, "date-time"); serr != nil || !ok {
		return serr
	} else {
		v, err = ParseAnswerTime(s)
	}
	if err != nil {
		return err
	}
	*t.p = v
	return nil
}

// answerCents decodes into *p with ParseAnswerAmount; null leaves it unchanged.
type answerCents struct{ p *Cents }

func (a answerCents) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := ParseAnswerAmount(b)
	if err != nil {
		return err
	}
	*a.p = v
	return nil
}

// answerCentsPtr decodes an optional amount into *p; null leaves it nil.
type answerCentsPtr struct{ p **Cents }

func (a answerCentsPtr) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*a.p = nil
		return nil
	}
	v, err := ParseAnswerAmount(b)
	if err != nil {
		return err
	}
	*a.p = &v
	return nil
}

// answerEnum decodes a free enum (paymentMethod, cancelledFrom, currency) into *p
// with enum.Normalize: "automatic pix" reads as AUTOMATIC_PIX. Unknown values
// are kept.
type answerEnum struct{ p *string }

func (e answerEnum) UnmarshalJSON(b []byte) error {
	if in, plain := plainBytes(b); plain {
		*e.p = normalize(in) // a known value is not copied
		return nil
	}
	s, ok, err := answerString(b, "enum")
	if err != nil || !ok {
		return err
	}
	*e.p = enum.Normalize(s)
	return nil
}

// answerInterval decodes an interval name into *p; a name billingd does not know
// leaves the zero Interval (Valid reports false) instead of refusing the answer.
type answerInterval struct{ p *cycle.Interval }

func (a answerInterval) UnmarshalJSON(b []byte) error {
	s, ok, err := answerString(b, "interval")
	if err != nil || !ok {
		return err
	}
	if iv, err := cycle.ParseInterval(s); err == nil {
		*a.p = iv
	}
	return nil
}

// UnmarshalJSON reads a payment resource with the answer rules: date and
// date-times as ParseAnswerDate and ParseAnswerTime read them, the amount as
// ParseAnswerAmount reads it, paymentMethod and currency normalized, every other field as its type reads it.
// The usual answer is read in one pass (fastPayment), any other by the JSON library.
func (p *Payment) UnmarshalJSON(b []byte) error {
	if fastPayment(b, p) {
		return nil
	}
	return libraryPayment(b, p)
}

// libraryPayment is Payment.UnmarshalJSON through the JSON library: the reading
// fastPayment must agree with.
func libraryPayment(b []byte, p *Payment) error {
	type plain Payment
	aux := struct {
		*plain
		Date           answerDate  `json:"date"`
		Amount         answerCents `json:"amount"`
		CreateAt       answerTime  `json:"createAt"`
		StatusUpdateAt answerTime  `json:"statusUpdateAt"`
		PaymentMethod  answerEnum  `json:"paymentMethod"`
		Currency       answerEnum  `json:"currency"`
	}{(*plain)(p), answerDate{&p.Date}, answerCents{&p.Amount}, answerTime{&p.CreateAt}, answerTime{&p.StatusUpdateAt},
		answerEnum{&p.PaymentMethod}, answerEnum{&p.Currency}}
	return json.Unmarshal(b, &aux)
}

// UnmarshalJSON reads cancelledAt with ParseAnswerTime and normalizes cancelledFrom.
func (c *Cancellation) UnmarshalJSON(b []byte) error {
	type plain Cancellation
	aux := struct {
		*plain
		CancelledAt   answerTime `json:"cancelledAt"`
		CancelledFrom answerEnum `json:"cancelledFrom"`
	}{(*plain)(c), answerTime{&c.CancelledAt}, answerEnum{&c.CancelledFrom}}
	return json.Unmarshal(b, &aux)
}

// UnmarshalJSON reads statusUpdateAt with ParseAnswerTime.
func (s *PaymentStatusInfo) UnmarshalJSON(b []byte) error {
	type plain PaymentStatusInfo
	aux := struct {
		*plain
		StatusUpdateAt answerTime `json:"statusUpdateAt"`
	}{(*plain)(s), answerTime{&s.StatusUpdateAt}}
	return json.Unmarshal(b, &aux)
}

// UnmarshalJSON reads an order with the same rules as a Payment.
func (o *Order) UnmarshalJSON(b []byte) error {
	type plain Order
	aux := struct {
		*plain
		Date           answerDate  `json:"date"`
		Amount         answerCents `json:"amount"`
		CreateAt       answerTime  `json:"createAt"`
		StatusUpdateAt answerTime  `json:"statusUpdateAt"`
		Currency       answerEnum  `json:"currency"`
	}{(*plain)(o), answerDate{&o.Date}, answerCents{&o.Amount}, answerTime{&o.CreateAt}, answerTime{&o.StatusUpdateAt},
		answerEnum{&o.Currency}}
	return json.Unmarshal(b, &aux)
}

// UnmarshalJSON reads an instant payment answer's amount with ParseAnswerAmount.
func (p *InstantPayment) UnmarshalJSON(b []byte) error {
	type plain InstantPayment
	aux := struct {
		*plain
		Amount answerCents `json:"amount"`
	}{(*plain)(p), answerCents{&p.Amount}}
	return json.Unmarshal(b, &aux)
}

// UnmarshalJSON reads a consent answer: expirationDateTime, createAt and
// statusUpdateAt with ParseAnswerTime, paymentMethodConfig as ConsentConfig reads it.
func (c *Consent) UnmarshalJSON(b []byte) error {
	type plain Consent
	aux := struct {
		*plain
		ExpirationDateTime answerTime `json:"expirationDateTime"`
		CreateAt           answerTime `json:"createAt"`
		StatusUpdateAt     answerTime `json:"statusUpdateAt"`
	}{(*plain)(c), answerTime{&c.ExpirationDateTime}, answerTime{&c.CreateAt}, answerTime{&c.StatusUpdateAt}}
	return json.Unmarshal(b, &aux)
}

// UnmarshalJSON reads a consent's paymentMethodConfig from an answer:
// referenceStartDate and firstPayment.date with ParseAnswerDate, an unknown interval
// as the zero Interval, currency normalized.
func (p *ConsentConfig) UnmarshalJSON(b []byte) error {
	type plain ConsentConfig
	aux := struct {
		*plain
		FixedAmount           answerCentsPtr  `json:"fixedAmount"`
		MinimumVariableAmount answerCentsPtr  `json:"minimumVariableAmount"`
		MaximumVariableAmount answerCentsPtr  `json:"maximumVariableAmount"`
		Interval              answerInterval  `json:"interval"`
		ReferenceStartDate    answerDate      `json:"referenceStartDate"`
		Currency              answerEnum      `json:"currency"`
		FirstPayment          json.RawMessage `json:"firstPayment"`
	}{plain: (*plain)(p), FixedAmount: answerCentsPtr{&p.FixedAmount}, MinimumVariableAmount: answerCentsPtr{&p.MinimumVariableAmount},
		MaximumVariableAmount: answerCentsPtr{&p.MaximumVariableAmount}, Interval: answerInterval{&p.Interval},
		ReferenceStartDate: answerDate{&p.ReferenceStartDate}, Currency: answerEnum{&p.Currency}}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if len(aux.FirstPayment) == 0 || string(aux.FirstPayment) == "null" {
		return nil
	}
	type plainFP FirstPayment
	fp := &FirstPayment{}
	faux := struct {
		*plainFP
		Date     answerDate  `json:"date"`
		Amount   answerCents `json:"amount"`
		Currency answerEnum  `json:"currency"`
	}{(*plainFP)(fp), answerDate{&fp.Date}, answerCents{&fp.Amount}, answerEnum{&fp.Currency}}
	if err := json.Unmarshal(aux.FirstPayment, &faux); err != nil {
		return err
	}
	p.FirstPayment = fp
	return nil
}
