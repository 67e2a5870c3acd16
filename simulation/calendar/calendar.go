package calendar

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/simulation"
)

// counts is what happened on a day, in a month or in the whole run; its fields
// are simulation.Summary's.
type counts struct {
	Submitted    int // originals submitted by billingd
	Retries      int // local retries submitted by billingd
	KlaviRetries int // retries Klavi ran itself (attach mode)
	Completed    int
	Rejected     int
	Missed       int
	Skipped      int
	Unconfirmed  int
	Failed       int
	Settled      klavi.Cents // the amount of the completed payments
}

func (c *counts) add(o counts) {
	c.Submitted += o.Submitted
	c.Retries += o.Retries
	c.KlaviRetries += o.KlaviRetries
	c.Completed += o.Completed
	c.Rejected += o.Rejected
	c.Missed += o.Missed
	c.Skipped += o.Skipped
	c.Unconfirmed += o.Unconfirmed
	c.Failed += o.Failed
	c.Settled += o.Settled
}

// Sent is the number of charges billingd submitted: originals and its own retries.
func (c counts) Sent() int { return c.Submitted + c.Retries }

// Retried counts the retries, billingd's and Klavi's.
func (c counts) Retried() int { return c.Retries + c.KlaviRetries }

// count adds one timeline event; it reports false for a kind the picture does not
// know (it then shows in no count).
func (c *counts) count(ev simulation.Event) bool {
	switch ev.Event {
	case "submitted":
		c.Submitted++
	case "retry_submitted":
		c.Retries++
	case "completed":
		c.Completed++
		if ev.Amount != nil {
			c.Settled += *ev.Amount
		}
	case "rejected":
		c.Rejected++
	case "missed":
		c.Missed++
	case "skipped":
		c.Skipped++
	case "unconfirmed":
		c.Unconfirmed++
	case "failed":
		c.Failed++
	default:
		return false
	}
	return true
}

// A mark kind is one colour and shape of the marks in a day cell (the templates'
// CSS: hollow for what was sent, filled for an outcome); marks are drawn in this
// order, one per event.
type markKind struct {
	Class string // CSS class, also the legend's key
	Label string // the legend's text
	n     func(counts) int
}

var markKinds = []markKind{
	{"sent", "submitted by billingd", func(c counts) int { return c.Submitted }},
	{"retry", "retry (by billingd or by Klavi)", counts.Retried},
	{"completed", "completed (settled)", func(c counts) int { return c.Completed }},
	{"rejected", "rejected", func(c counts) int { return c.Rejected }},
	{"failed", "failed (refused by Klavi)", func(c counts) int { return c.Failed }},
	{"missed", "missed (window closed)", func(c counts) int { return c.Missed }},
	{"skipped", "skipped (no amount set)", func(c counts) int { return c.Skipped }},
	{"unconfirmed", "unconfirmed", func(c counts) int { return c.Unconfirmed }},
}

// Marks returns the class of each mark of c, in markKinds order.
func (c counts) Marks() []string {
	var out []string
	for _, k := range markKinds {
		for range k.n(c) {
			out = append(out, k.Class)
		}
	}
	return out
}

// Badge is the cell's "↑2 ✓1": charges sent and settled, empty when neither.
func (c counts) Badge() string {
	var parts []string
	if n := c.Sent(); n > 0 {
		parts = append(parts, fmt.Sprintf("↑%d", n))
	}
	if c.Completed > 0 {
		parts = append(parts, fmt.Sprintf("✓%d", c.Completed))
	}
	return strings.Join(parts, " ")
}

// Amount is the amount settled, "R$ 1.234,56", empty when nothing settled.
func (c counts) Amount() string {
	if c.Completed == 0 {
		return ""
	}
	return c.Settled.BRL()
}

// Headline is a month's first totals line.
func (c counts) Headline() string {
	return fmt.Sprintf("↑ %d sent · ✓ %d settled · %s", c.Sent(), c.Completed, c.Settled.BRL())
}

// Others is a month's second totals line: the outcomes other than completion that
// happened, or a line saying there were none.
func (c counts) Others() string {
	var parts []string
	for _, p := range []struct {
		n    int
		noun string
	}{
		{c.Rejected, "rejected"}, {c.Retried(), "retried"}, {c.Failed, "failed"}, {c.Missed, "missed"},
		{c.Skipped, "skipped"}, {c.Unconfirmed, "unconfirmed"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.noun))
		}
	}
	if len(parts) == 0 {
		return "nothing rejected, retried, failed or missed"
	}
	return strings.Join(parts, " · ")
}

// Summary is the run's totals line.
func (c counts) Summary() string {
	return fmt.Sprintf("%d charges submitted, %d retries by billingd and %d by Klavi · %d completed, %s settled · "+
		"%d rejected · %d failed · %d missed · %d skipped · %d unconfirmed",
		c.Submitted, c.Retries, c.KlaviRetries, c.Completed, c.Settled.BRL(),
		c.Rejected, c.Failed, c.Missed, c.Skipped, c.Unconfirmed)
}

// day is one calendar cell.
type day struct {
	Date             cycle.Date
	InSpan           bool // a simulated day (the months' other days are drawn faint)
	Weekend, Holiday bool
	counts
	lines []line
}

type line struct {
	at   time.Time
	text string
}

// Class is the cell's shading class.
func (d *day) Class() string {
	switch {
	case !d.InSpan:
		return "out"
	case d.Holiday:
		return "holiday"
	case d.Weekend:
		return "weekend"
	}
	return "business"
}

// Title is the cell's tooltip: the date, what kind of day, and its events.
func (d *day) Title() string {
	var b strings.Builder
	b.WriteString(d.Date.Weekday().String()[:3] + " " + d.Date.String())
	switch {
	case !d.InSpan:
		b.WriteString(", not simulated")
	case d.Holiday:
		b.WriteString(", holiday")
	case d.Weekend:
		b.WriteString(", weekend")
	}
	if a := d.Amount(); a != "" {
		fmt.Fprintf(&b, ": %s settled", a)
	}
	for _, l := range d.lines {
		b.WriteString("\n" + l.text)
	}
	return b.String()
}

// month is one month's grid, weeks starting on Sunday as Brazilian calendars do.
type month struct {
	First  cycle.Date
	Weeks  [][7]*day // nil: a cell before the 1st or after the month's last day
	Totals counts
}

// Name is "January 2026".
func (m *month) Name() string { return fmt.Sprintf("%s %d", m.First.Month(), m.First.Year()) }

// picture is the whole calendar.
type picture struct {
	From, To cycle.Date
	Consents int
	Months   []*month
	Totals   counts
}

// Span is "Thu 2026-01-01 → Thu 2026-12-31 (365 days)".
func (p *picture) Span() string {
	n := p.To.DaysSince(p.From) + 1
	days := "days"
	if n == 1 {
		days = "day"
	}
	return fmt.Sprintf("%s %s → %s %s (%d %s)", p.From.Weekday().String()[:3], p.From, p.To.Weekday().String()[:3], p.To, n, days)
}

// build lays out res; cal shades holidays (nil: cycle.NewCalendar()).
func build(res *simulation.Result, cal *cycle.Calendar) *picture {
	if cal == nil {
		cal = cycle.NewCalendar()
	}
	p := &picture{From: res.From, To: res.To, Consents: len(res.Summaries)}
	days := map[cycle.Date]*day{}
	first, last := res.From, res.To
	at := func(d cycle.Date) *day {
		if days[d] == nil {
			days[d] = &day{Date: d}
		}
		if d.Before(first) {
			first = d
		}
		if d.After(last) {
			last = d
		}
		return days[d]
	}
	for _, ev := range res.Events {
		d := ev.Day
		if d.IsZero() {
			d = cycle.DateOf(ev.At)
		}
		c := at(d)
		if c.count(ev) {
			c.lines = append(c.lines, line{ev.At, describe(ev)})
		}
	}
	for _, l := range res.Ledger {
		if l.Kind != sandbox.KindAutoRetry {
			continue
		}
		c := at(cycle.DateOf(l.CreatedAt))
		c.KlaviRetries++
		c.lines = append(c.lines, line{l.CreatedAt, fmt.Sprintf("%s klavi_retry %s cycle %d retry %d, dated %s, %s: %s (run by Klavi)",
			l.CreatedAt.In(cycle.Brasilia).Format("15:04"), l.ConsentID, l.Cycle, l.Attempt, l.Date, l.Amount.BRL(), l.Status)})
	}
	for d := cycle.MustDate(first.Year(), first.Month(), 1); !d.After(last); d = d.AddMonthsClamped(1) {
		m := &month{First: d}
		n := cycle.DaysIn(d.Year(), d.Month())
		lead := int(d.Weekday())
		m.Weeks = make([][7]*day, (lead+n+6)/7)
		for i := range n {
			dd := d.AddDays(i)
			c := at(dd)
			c.InSpan = !dd.Before(res.From) && !dd.After(res.To)
			c.Weekend, c.Holiday = dd.IsWeekend(), cal.IsHoliday(dd)
			sort.SliceStable(c.lines, func(i, j int) bool { return c.lines[i].at.Before(c.lines[j].at) })
			m.Weeks[(lead+i)/7][(lead+i)%7] = c
			m.Totals.add(c.counts)
		}
		p.Totals.add(m.Totals)
		p.Months = append(p.Months, m)
	}
	return p
}

// describe is one tooltip line: what happened, to which consent and cycle, for how
// much; ids and amounts only.
func describe(ev simulation.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s cycle %d", ev.At.In(cycle.Brasilia).Format("15:04"), ev.Event, ev.ConsentID, ev.Cycle)
	if ev.Attempt > 0 {
		fmt.Fprintf(&b, " retry %d", ev.Attempt)
	}
	fmt.Fprintf(&b, ", dated %s", ev.Date)
	if ev.Amount != nil {
		fmt.Fprintf(&b, ", %s", ev.Amount.BRL())
	}
	if ev.Reason != "" {
		fmt.Fprintf(&b, ": %s", ev.Reason)
	}
	return b.String()
}
