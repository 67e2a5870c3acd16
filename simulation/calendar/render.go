package calendar

import (
	"bufio"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"unicode/utf8"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/simulation"
)

//go:embed calendar.html.tmpl
var htmlSource string

//go:embed calendar.svg.tmpl
var svgSource string

var (
	htmlTemplate = template.Must(template.New("html").Parse(htmlSource))
	svgTemplate  = template.Must(template.New("svg").Parse(svgSource))
)

// WriteHTML writes res as a self-contained HTML page: one table per month, a
// legend and the totals. cal shades the holidays (nil: cycle.NewCalendar()).
func WriteHTML(w io.Writer, res *simulation.Result, cal *cycle.Calendar) error {
	p := build(res, cal)
	return execute(w, htmlTemplate, struct {
		*picture
		Kinds []markKind
	}{p, markKinds})
}

// WriteSVG writes res as an SVG image of the same calendar, three months to a
// row, for a README or a browser. cal shades the holidays (nil:
// cycle.NewCalendar()).
func WriteSVG(w io.Writer, res *simulation.Result, cal *cycle.Calendar) error {
	return execute(w, svgTemplate, layout(build(res, cal)))
}

func execute(w io.Writer, t *template.Template, data any) error {
	bw := bufio.NewWriter(w)
	if err := t.Execute(bw, data); err != nil {
		return fmt.Errorf("draw calendar: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("draw calendar: %w", err)
	}
	return nil
}

// The SVG's geometry, in pixels. A cell holds the day's number and badge, two
// rows of five marks and the amount settled; a month is a title, the weekdays, six
// weeks and two lines of totals.
const (
	cellW, cellH = 66, 54
	cellGap      = 2
	markPitch    = 11
	marksPerRow  = 5
	markRows     = 2
	markTop      = 19

	monthW     = 7*cellW + 6*cellGap
	gridTop    = 38 // below the month's title and weekdays
	monthH     = gridTop + 6*cellH + 5*cellGap + 46
	monthCols  = 3
	colGap     = 32
	rowGap     = 18
	margin     = 24
	headerH    = 168
	legendRow1 = 96
	legendRow2 = 122
)

type svgView struct {
	*picture
	Width, Height int
	MonthW        int
	Months        []svgMonth
	Legend        []svgLegend
	Shades        []svgLegend
}

type svgMonth struct {
	*month
	X, Y     int
	Weekdays []svgText
	// TotalsY and Totals2Y place the totals lines under the month's last week.
	TotalsY, Totals2Y int
	Cells             []svgCell
}

type svgText struct {
	X    int
	Text string
}

type svgCell struct {
	*day
	X, Y  int
	Marks []svgMark
	More  string // "+3" when the marks do not fit
}

type svgMark struct {
	X, Y  int
	Class string
}

type svgLegend struct {
	X, Y  int
	Class string
	Label string
}

var weekdays = []string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

// layout places every month, cell and mark of p.
func layout(p *picture) *svgView {
	v := &svgView{picture: p, Width: 2*margin + monthCols*monthW + (monthCols-1)*colGap,
		MonthW: monthW}
	rows := (len(p.Months) + monthCols - 1) / monthCols
	v.Height = headerH + rows*monthH + (rows-1)*rowGap + margin
	for i, m := range p.Months {
		sm := svgMonth{month: m, X: margin + (i%monthCols)*(monthW+colGap), Y: headerH + (i/monthCols)*(monthH+rowGap)}
		sm.TotalsY = gridTop + len(m.Weeks)*(cellH+cellGap) + 16
		sm.Totals2Y = sm.TotalsY + 16
		for c, name := range weekdays {
			sm.Weekdays = append(sm.Weekdays, svgText{X: c*(cellW+cellGap) + cellW/2, Text: name})
		}
		for r, week := range m.Weeks {
			for c, d := range week {
				if d == nil {
					continue
				}
				cell := svgCell{day: d, X: c * (cellW + cellGap), Y: gridTop + r*(cellH+cellGap)}
				marks := d.Marks()
				fit := marksPerRow * markRows
				if len(marks) > fit {
					cell.More = fmt.Sprintf("+%d", len(marks)-fit+1)
					marks = marks[:fit-1]
				}
				for j, class := range marks {
					cell.Marks = append(cell.Marks, svgMark{X: 5 + (j%marksPerRow)*markPitch, Y: markTop + (j/marksPerRow)*markPitch, Class: class})
				}
				sm.Cells = append(sm.Cells, cell)
			}
		}
		v.Months = append(v.Months, sm)
	}
	x := margin
	for _, k := range markKinds {
		v.Legend = append(v.Legend, svgLegend{X: x, Y: legendRow1, Class: k.Class, Label: k.Label})
		x += 16 + textWidth(k.Label, 13) + 18
	}
	x = margin
	for _, s := range []struct{ class, label string }{
		{"business", "business day"}, {"weekend", "weekend"}, {"holiday", "holiday"}, {"out", "not simulated"},
	} {
		v.Shades = append(v.Shades, svgLegend{X: x, Y: legendRow2, Class: s.class, Label: s.label})
		x += 22 + textWidth(s.label, 13) + 18
	}
	return v
}

// textWidth estimates the width of s in a sans-serif font of size px, to space
// the legend without measuring fonts.
func textWidth(s string, px int) int {
	return utf8.RuneCountInString(s) * px * 55 / 100
}
