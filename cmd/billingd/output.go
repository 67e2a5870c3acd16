package main

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

// Output conventions of every command: tables show instants in Brasília with the
// zone (Fri 2026-11-27 09:00 -03) and dates with their weekday; JSON shows instants
// in RFC 3339 with the Brasília offset (2026-11-27T09:00:00-03:00), dates as
// YYYY-MM-DD and amounts as the API's strings ("1234.56"); tables show amounts as
// R$ 1.234,56.

// tableTime is an instant for a table, or "-" when zero.
func tableTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(cycle.Brasilia).Format("Mon 2006-01-02 15:04 MST")
}

// An instant is a time.Time that encodes in RFC 3339 with the Brasília offset.
type instant struct{ time.Time }

func (t instant) MarshalJSON() ([]byte, error) {
	return t.In(cycle.Brasilia).MarshalJSON()
}

// A money amount of an admin API answer: a string ("12.34") or a number, read
// exactly; null or absent leaves it nil where a *money is used.
type money klavi.Cents

func (m money) MarshalJSON() ([]byte, error) { return klavi.Cents(m).MarshalJSON() }

func (m *money) UnmarshalJSON(b []byte) error {
	c, err := klavi.ParseAnswerAmount(b)
	if err != nil {
		return err
	}
	*m = money(c)
	return nil
}

// brl is an amount for a table; "-" when nil.
func brl(m *money) string {
	if m == nil {
		return "-"
	}
	return klavi.Cents(*m).BRL()
}

// plain is an amount for CSV: "1234.56", "" when nil.
func plain(m *money) string {
	if m == nil {
		return ""
	}
	return klavi.Cents(*m).String()
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeCSV writes a header and rows as RFC 4180 CSV.
func writeCSV(w io.Writer, header []string, rows [][]string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	if err := cw.WriteAll(rows); err != nil {
		return err
	}
	return cw.Error()
}

// checkFormat refuses a --format outside allowed.
func checkFormat(cmd, format string, allowed ...string) error {
	for _, a := range allowed {
		if format == a {
			return nil
		}
	}
	return argErrorf("%s: --format %s: want %s", cmd, strconv.Quote(format), orList(allowed))
}

// orList is "A", "A or B", "A, B or C".
func orList[T ~string](xs []T) string {
	var b strings.Builder
	for i, x := range xs {
		switch {
		case i == 0:
		case i == len(xs)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(x))
	}
	return b.String()
}

// A consentSummary is a consent as the admin API lists it. It reads the next
// submission from nextSubmitAt, or from nextDue (the field's earlier name), and
// prints it as nextSubmitAt, with nextDueDate, the due date of that cycle, when the
// daemon tells it.
type consentSummary struct {
	ID           string
	State        string
	StateReason  string
	Interval     string
	Amount       *money
	NextCycle    int
	NextSubmitAt time.Time
	NextDueDate  cycle.Date
}

func (s *consentSummary) UnmarshalJSON(b []byte) error {
	var raw struct {
		ID           string      `json:"id"`
		State        string      `json:"state"`
		StateReason  string      `json:"stateReason"`
		Interval     string      `json:"interval"`
		Amount       *money      `json:"amount"`
		NextCycle    int         `json:"nextCycle"`
		NextSubmitAt *time.Time  `json:"nextSubmitAt"`
		NextDue      *time.Time  `json:"nextDue"`
		NextDueDate  *cycle.Date `json:"nextDueDate"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*s = consentSummary{ID: raw.ID, State: raw.State, StateReason: raw.StateReason, Interval: raw.Interval, Amount: raw.Amount, NextCycle: raw.NextCycle}
	switch {
	case raw.NextSubmitAt != nil:
		s.NextSubmitAt = *raw.NextSubmitAt
	case raw.NextDue != nil:
		s.NextSubmitAt = *raw.NextDue
	}
	if raw.NextDueDate != nil {
		s.NextDueDate = *raw.NextDueDate
	}
	return nil
}

func (s consentSummary) MarshalJSON() ([]byte, error) {
	out := struct {
		ID           string      `json:"id"`
		State        string      `json:"state"`
		StateReason  string      `json:"stateReason,omitempty"`
		Interval     string      `json:"interval"`
		Amount       *money      `json:"amount"`
		NextCycle    int         `json:"nextCycle"`
		NextSubmitAt *instant    `json:"nextSubmitAt"`
		NextDueDate  *cycle.Date `json:"nextDueDate"`
	}{ID: s.ID, State: s.State, StateReason: s.StateReason, Interval: s.Interval, Amount: s.Amount, NextCycle: s.NextCycle}
	if !s.NextSubmitAt.IsZero() {
		out.NextSubmitAt = &instant{s.NextSubmitAt}
	}
	if !s.NextDueDate.IsZero() {
		out.NextDueDate = &s.NextDueDate
	}
	return json.Marshal(out)
}
