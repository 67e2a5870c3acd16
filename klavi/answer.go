package klavi

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
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

var (
	// seed 004 response schema, date: ^(\d{4})-(1[0-2]|0?[1-9])-(3[01]|[12][0-9]|0?[1-9])$
	reAnswerDate = regexp.MustCompile(`^(\d{4})-(\d{1,2})-(\d{1,2})$`)
	// seed 004 response schema, createAt/statusUpdateAt/cancelledAt, widened to what its
	// own example shows (fractional seconds, "2023-01-23T14:17:06.45Z") and to RFC 3339
	// offsets; no zone at all reads as UTC.
	reAnswerTime = regexp.MustCompile(`^(\d{4})-(\d{1,2})-(\d{1,2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$`)
)

// ParseAnswerDate reads a date as Klavi's answers carry it: YYYY-MM-DD, with the
// month and day padded or not ("2023-01-23", "2023-1-23"), as the seed 004 date
// pattern allows. The day must exist. The empty string is the zero Date (absent).
// Requests always send the padded form (cycle.Date).
func ParseAnswerDate(s string) (cycle.Date, error) {
	if s == "" {
		return cycle.Date{}, nil
	}
	m := reAnswerDate.FindStringSubmatch(s)
	if m == nil {
		return cycle.Date{}, fmt.Errorf("%w %q: want YYYY-MM-DD", cycle.ErrDate, truncate(s, 40))
	}
	return civil(s, m[1], m[2], m[3])
}

func civil(s, ys, ms, ds string) (cycle.Date, error) {
	y, _ := strconv.Atoi(ys)
	mo, _ := strconv.Atoi(ms)
	d, _ := strconv.Atoi(ds)
	dt, ok := cycle.NewDate(y, time.Month(mo), d)
	if !ok {
		return cycle.Date{}, fmt.Errorf("%w %q: no such day", cycle.ErrDate, truncate(s, 40))
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
func ParseAnswerTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("invalid date-time %q: %s", truncate(s, 40), why)
	}
	m := reAnswerTime.FindStringSubmatch(s)
	if m == nil {
		return bad("want YYYY-MM-DDThh:mm:ss[.fraction][Z|±hh:mm]")
	}
	d, err := civil(s, m[1], m[2], m[3])
	if err != nil {
		return bad("no such day")
	}
	hh, _ := strconv.Atoi(m[4])
	mm, _ := strconv.Atoi(m[5])
	ss, _ := strconv.Atoi(m[6])
	if hh > 23 || mm > 59 || ss > 59 {
		return bad("no such time of day")
	}
	ns := 0
	if f := m[7]; f != "" {
		ns, _ = strconv.Atoi(f + strings.Repeat("0", 9-len(f)))
	}
	loc := time.UTC
	if m[9] != "" {
		oh, _ := strconv.Atoi(m[10])
		om, _ := strconv.Atoi(m[11])
		if oh > 23 || om > 59 {
			return bad("no such zone offset")
		}
		off := oh*3600 + om*60
		if m[9] == "-" {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	y, mo, dd := d.Civil()
	return time.Date(y, mo, dd, hh, mm, ss, ns, loc).UTC(), nil
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
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return "", false
	}
	in := b[1 : len(b)-1]
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return "", false
		}
	}
	if !utf8.Valid(in) {
		return "", false
	}
	return string(in), true
}

// answerDate decodes into *p with ParseAnswerDate.
type answerDate struct{ p *cycle.Date }

func (d answerDate) UnmarshalJSON(b []byte) error {
	s, ok, err := answerString(b, "date")
	if err != nil || !ok {
		return err
	}
	v, err := ParseAnswerDate(s)
	if err != nil {
		return err
	}
	*d.p = v
	return nil
}

// answerTime decodes into *p with ParseAnswerTime.
type answerTime struct{ p *time.Time }

func (t answerTime) UnmarshalJSON(b []byte) error {
	s, ok, err := answerString(b, "date-time")
	if err != nil || !ok {
		return err
	}
	v, err := ParseAnswerTime(s)
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
func (p *Payment) UnmarshalJSON(b []byte) error {
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
