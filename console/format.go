package console

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/klavi"
)

// BRL formats centavos for people: 123456 → "R$ 1.234,56" (klavi.Cents.BRL).
func BRL(c klavi.Cents) string { return c.BRL() }

// brlPtr formats an amount that may be unknown: nil → "—".
func brlPtr(c *klavi.Cents) string {
	if c == nil {
		return "—"
	}
	return c.BRL()
}

// Instant formats t in Brasília with its zone shown: "2026-01-09 09:00 BRT". Brasília
// has had no summer time since 2019; an instant under it shows BRST, and an offset
// that is neither shows the offset ("-04:00"). The zero time is "—".
func Instant(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	t = t.In(cycle.Brasilia)
	return t.Format("2006-01-02 15:04 ") + zoneOf(t)
}

// instantSec is Instant with seconds, for timelines.
func instantSec(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	t = t.In(cycle.Brasilia)
	return t.Format("2006-01-02 15:04:05 ") + zoneOf(t)
}

func zoneOf(t time.Time) string {
	switch _, off := t.Zone(); off {
	case -3 * 3600:
		return "BRT"
	case -2 * 3600:
		return "BRST"
	default:
		return t.Format("-07:00")
	}
}

// Day formats a Brasília civil date with its weekday: "Fri 2026-01-09". The zero date
// is "—".
func Day(d cycle.Date) string {
	if d.IsZero() {
		return "—"
	}
	return d.Weekday().String()[:3] + " " + d.String()
}

// Age says how long ago since was, coarsely: "3d 4h", "2h 5m", "40s".
func Age(since, now time.Time) string {
	d := now.Sub(since)
	switch {
	case since.IsZero():
		return "—"
	case d < 0:
		d = 0
	}
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", d/time.Hour, d%time.Hour/time.Minute)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// Percent formats a share: 0.9512 → "95,1%"; a share of nothing (den 0) is "—".
func Percent(num, den int) string {
	if den == 0 {
		return "—"
	}
	s := fmt.Sprintf("%.1f%%", 100*float64(num)/float64(den))
	return strings.Replace(s, ".", ",", 1)
}

// person masks a CPF/CNPJ and a name the way the logs do: "CPF *********05, J*** P*******".
func person(p *klavi.Person) string {
	if p == nil {
		return "—"
	}
	return p.Masked()
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"brl":        BRL,
	"brlp":       brlPtr,
	"instant":    Instant,
	"instantSec": instantSec,
	"day":        Day,
	"lower":      strings.ToLower,
	"maskID":     redact.ID,
	"person":     person,
	"add":        func(a, b int) int { return a + b },
}
