package storage

import (
	"strconv"
	"time"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/jsonstr"
	"github.com/klavi-billing/billingd/klavi"
)

// The records every submission writes (its attempt twice, an event, the consent's
// cursor) are encoded by hand: the same bytes encoding/json writes for them
// (TestCodec_AsEncodingJSON compares the three on random records, and
// TestEncode_Fallback the cases below), in a fifth of the codec's time, which
// reflects on the struct for every field. What the hand encoder does not write
// itself, it leaves to the codec, whose bytes and errors are then the record's:
//   - a string holding anything but printable ASCII other than `"`, `\`, `<`, `>`
//     and `&` (encoding/json escapes those, and U+2028, U+2029 and invalid UTF-8
//     beyond ASCII): the string alone is quoted by the codec;
//   - a time outside what RFC 3339 writes (a year outside 0–9999, a zone offset
//     of 24 hours or more), which encoding/json refuses, or an amount outside
//     klavi.Cents' range: the whole record goes to the codec, for its error; a
//     date past year 9999 (or before year 1), whose text is not digits, goes there
//     too, to be quoted as encoding/json quotes it.
//
// A new field of Attempt, Event or consentCursor must be written here too: the
// codec test fails until it is (it sets every field).

// marshalAttempt is json.Marshal(a) (Attempt's JSON).
func marshalAttempt(a *Attempt) ([]byte, error) {
	if !attemptFast(a) {
		return json.Marshal(a)
	}
	b := make([]byte, 0, 512)
	b = append(b, `{"consentId":`...)
	b = jsonstr.Append(b, a.ConsentID)
	b = append(b, `,"cycle":`...)
	b = strconv.AppendInt(b, int64(a.Cycle), 10)
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"state":`...)
	b = jsonstr.Append(b, string(a.State))
	b = append(b, `,"clientRequestId":`...)
	b = jsonstr.Append(b, a.ClientRequestID)
	b = append(b, `,"date":`...)
	b = appendDate(b, a.Date)
	b = append(b, `,"amount":`...)
	b = appendCents(b, a.Amount)
	if a.Mode != "" {
		b = append(b, `,"mode":`...)
		b = jsonstr.Append(b, string(a.Mode))
	}
	if s := a.Strategy; s != nil {
		b = append(b, `,"strategy":{"days":`...)
		if s.Days == nil {
			b = append(b, "null"...)
		} else {
			b = append(b, '[')
			for i, d := range s.Days {
				if i > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendInt(b, int64(d), 10)
			}
			b = append(b, ']')
		}
		b = append(b, `,"skipWeekend":`...)
		b = strconv.AppendBool(b, s.SkipWeekend)
		b = append(b, '}')
	}
	b = appendStringOmit(b, `,"paymentId":`, a.PaymentID)
	b = appendStringOmit(b, `,"originalPaymentId":`, a.OriginalPaymentID)
	b = appendStringOmit(b, `,"status":`, string(a.Status))
	b = appendStringOmit(b, `,"reason":`, a.Reason)
	b = appendIntOmit(b, `,"sends":`, a.Sends)
	b = appendIntOmit(b, `,"polls":`, a.Polls)
	b = appendTimeOmit(b, `,"dueAt":`, a.DueAt)
	b = appendTimeOmit(b, `,"nextPoll":`, a.NextPoll)
	b = append(b, `,"createdAt":`...)
	b = appendTime(b, a.CreatedAt)
	b = appendTimeOmit(b, `,"submittedAt":`, a.SubmittedAt)
	b = append(b, `,"updatedAt":`...)
	b = appendTime(b, a.UpdatedAt)
	if !a.LastRetryDate.IsZero() {
		b = append(b, `,"lastRetryDate":`...)
		b = appendDate(b, a.LastRetryDate)
	}
	b = appendIntOmit(b, `,"plannedRetries":`, a.PlannedRetries)
	b = appendIntOmit(b, `,"lookups":`, a.Lookups)
	b = appendStringOmit(b, `,"confirm":`, a.Confirm)
	b = appendTimeOmit(b, `,"unknownSince":`, a.UnknownSince)
	if r := a.Resolved; r != nil {
		b = append(b, `,"resolved":{"at":`...)
		b = appendTime(b, r.At)
		b = append(b, `,"by":`...)
		b = jsonstr.Append(b, r.By)
		b = append(b, `,"note":`...)
		b = jsonstr.Append(b, r.Note)
		b = append(b, `,"state":`...)
		b = jsonstr.Append(b, string(r.State))
		b = appendTimeOmit(b, `,"since":`, r.Since)
		b = append(b, '}')
	}
	if a.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, a.Version, 10)
	}
	return append(b, '}'), nil
}

// attemptFast reports whether marshalAttempt writes a itself: its amount and times
// are ones encoding/json writes.
func attemptFast(a *Attempt) bool {
	if !centsFast(a.Amount) || !dateFast(a.Date) || !dateFast(a.LastRetryDate) || !timeFast(a.DueAt) || !timeFast(a.NextPoll) || !timeFast(a.CreatedAt) ||
		!timeFast(a.SubmittedAt) || !timeFast(a.UpdatedAt) || !timeFast(a.UnknownSince) {
		return false
	}
	return a.Resolved == nil || timeFast(a.Resolved.At) && timeFast(a.Resolved.Since)
}

// marshalEvent is json.Marshal(e) (Event's JSON).
func marshalEvent(e *Event) ([]byte, error) {
	if !timeFast(e.At) || !dateFast(e.Date) || e.Amount != nil && !centsFast(*e.Amount) {
		return json.Marshal(e)
	}
	b := make([]byte, 0, 320)
	b = append(b, `{"at":`...)
	b = appendTime(b, e.At)
	b = append(b, `,"kind":`...)
	b = jsonstr.Append(b, e.Kind)
	b = append(b, `,"consentId":`...)
	b = jsonstr.Append(b, e.ConsentID)
	if e.Cycle != nil {
		b = append(b, `,"cycle":`...)
		b = strconv.AppendInt(b, int64(*e.Cycle), 10)
	}
	if e.Attempt != nil {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(*e.Attempt), 10)
	}
	if !e.Date.IsZero() {
		b = append(b, `,"date":`...)
		b = appendDate(b, e.Date)
	}
	if e.Amount != nil {
		b = append(b, `,"amount":`...)
		b = appendCents(b, *e.Amount)
	}
	b = appendStringOmit(b, `,"paymentId":`, e.PaymentID)
	b = appendStringOmit(b, `,"clientRequestId":`, e.ClientRequestID)
	b = appendStringOmit(b, `,"status":`, string(e.Status))
	b = append(b, `,"actor":`...)
	b = jsonstr.Append(b, e.Actor)
	b = appendStringOmit(b, `,"reason":`, e.Reason)
	return append(b, '}'), nil
}

// marshalCursor is json.Marshal(c) (consentCursor's JSON).
func marshalCursor(c *consentCursor) ([]byte, error) {
	if !timeFast(c.UpdatedAt) || !timeFast(c.NextDue) || !timeFast(c.RefreshedAt) || !dateFast(c.BillFrom) {
		return json.Marshal(c)
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"state":`...)
	b = jsonstr.Append(b, string(c.State))
	b = appendStringOmit(b, `,"stateReason":`, c.StateReason)
	b = append(b, `,"updatedAt":`...)
	b = appendTime(b, c.UpdatedAt)
	b = append(b, `,"billFrom":`...)
	b = appendDate(b, c.BillFrom)
	b = append(b, `,"nextCycle":`...)
	b = strconv.AppendInt(b, int64(c.NextCycle), 10)
	b = appendTimeOmit(b, `,"nextDue":`, c.NextDue)
	b = appendTimeOmit(b, `,"refreshedAt":`, c.RefreshedAt)
	if c.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, c.Version, 10)
	}
	return append(b, '}'), nil
}

// appendStringOmit appends key and s, unless s is empty (omitempty).
func appendStringOmit(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	return jsonstr.Append(append(b, key...), s)
}

// appendIntOmit appends key and n, unless n is 0 (omitempty).
func appendIntOmit(b []byte, key string, n int) []byte {
	if n == 0 {
		return b
	}
	return strconv.AppendInt(append(b, key...), int64(n), 10)
}

// timeFast reports whether t is a time encoding/json writes (time.Time.MarshalJSON
// refuses the others): a four-digit year and a zone offset under 24 hours.
func timeFast(t time.Time) bool {
	if y := t.Year(); y < 0 || y > 9999 {
		return false
	}
	_, off := t.Zone()
	return off > -24*3600 && off < 24*3600
}

// appendTime appends t as time.Time.MarshalJSON writes it (RFC 3339 with
// nanoseconds); t must be timeFast.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendTimeOmit appends key and t, unless t is the zero time (omitzero).
func appendTimeOmit(b []byte, key string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	return appendTime(append(b, key...), t)
}

// dateFast reports whether appendDate writes d: the zero Date, or a four-digit
// year (0001–9999). Further out, Date.AppendText's digits are other characters,
// which only the codec quotes as encoding/json does.
func dateFast(d cycle.Date) bool {
	if d.IsZero() {
		return true
	}
	y, _, _ := d.Civil()
	return y >= 1 && y <= 9999
}

// appendDate appends d as its JSON string (MarshalText's "YYYY-MM-DD", "" for the
// zero Date).
func appendDate(b []byte, d cycle.Date) []byte {
	b = append(b, '"')
	b, _ = d.AppendText(b) // never fails
	return append(b, '"')
}

// centsFast reports whether c is an amount klavi.Cents writes (MarshalJSON refuses
// the others).
func centsFast(c klavi.Cents) bool { return c >= 0 && c <= klavi.MaxCents }

// appendCents appends c as klavi.Cents.MarshalJSON writes it ("99.90"); c must be
// centsFast.
func appendCents(b []byte, c klavi.Cents) []byte {
	b, _ = c.AppendJSON(b) // centsFast: never fails
	return b
}
