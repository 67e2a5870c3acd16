package calendar

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/simulation"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var writers = []struct {
	name  string
	write func(io.Writer, *simulation.Result, *cycle.Calendar) error
}{
	{"html", WriteHTML},
	{"svg", WriteSVG},
}

// simulate runs the example consents for 60 days from 1 Feb 2026 (Carnival on
// 16-17 Feb) with the demo scenario plus seeded random rejections: a small run,
// deterministic, with every common outcome.
func simulate(t *testing.T) *simulation.Result {
	t.Helper()
	cs, err := simulation.Examples()
	require.NoError(t, err)
	require.NotEmpty(t, cs)
	from := cycle.MustDate(2026, 2, 1)
	cfg := scheduler.Config{Policy: scheduler.Policy{LeadDays: 3, RetryMode: consent.Attach, Calendar: cycle.NewCalendar()}, SubmitHour: 9}
	sc, amounts := simulation.Demo(cs, from, cfg.Policy)
	sc.RejectFraction, sc.RejectReason, sc.Seed = 0.3, klavi.ReasonNotInformed, 7
	res, err := simulation.Run(context.Background(), simulation.Options{Consents: cs, From: from, Days: 60, Scheduler: cfg, Scenario: sc, Amounts: amounts, Dir: t.TempDir()})
	require.NoError(t, err)
	return res
}

func draw(t *testing.T, write func(io.Writer, *simulation.Result, *cycle.Calendar) error, res *simulation.Result) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, write(&b, res, nil))
	return b.String()
}

// The pictures of a small run are the golden files; `go test ./simulation/calendar
// -update` rewrites them (then look at them in a browser).
func TestWrite_Golden(t *testing.T) {
	res := simulate(t)
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			got := draw(t, w.write, res)
			path := filepath.Join("testdata", "feb-mar-2026."+w.name+".golden")
			if *update {
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run with -update to create it")
			assert.Equal(t, string(want), got, "rerun with -update and review the diff")
		})
	}
}

// element is the data-* attributes of one element of a picture.
type element map[string]string

// dataElements returns the data-* attributes of every element of an HTML page or
// an SVG image that has some.
func dataElements(t *testing.T, format, doc string) []element {
	t.Helper()
	var out []element
	collect := func(attrs map[string]string) {
		e := element{}
		for k, v := range attrs {
			if name, ok := strings.CutPrefix(k, "data-"); ok {
				e[name] = v
			} else if k == "id" && v == "totals" {
				e["total"] = "run"
			}
		}
		if len(e) > 0 {
			out = append(out, e)
		}
	}
	switch format {
	case "html":
		z := html.NewTokenizer(strings.NewReader(doc))
		for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
			if tt == html.StartTagToken || tt == html.SelfClosingTagToken {
				attrs := map[string]string{}
				for _, a := range z.Token().Attr {
					attrs[a.Key] = a.Val
				}
				collect(attrs)
			}
		}
		require.ErrorIs(t, z.Err(), io.EOF)
	case "svg":
		d := xml.NewDecoder(strings.NewReader(doc))
		for {
			tok, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			if se, ok := tok.(xml.StartElement); ok {
				attrs := map[string]string{}
				for _, a := range se.Attr {
					attrs[a.Name.Local] = a.Value
				}
				collect(attrs)
			}
		}
	}
	return out
}

// sumOf reads an element's counts as a Summary.
func sumOf(t *testing.T, e element) simulation.Summary {
	t.Helper()
	n := func(k string) int {
		v, err := strconv.Atoi(e[k])
		require.NoError(t, err, "data-%s=%q", k, e[k])
		return v
	}
	billed, err := klavi.ParseAmount(e["settled"])
	require.NoError(t, err)
	return simulation.Summary{
		Submitted: n("submitted"), Retries: n("retries"), KlaviRetries: n("klavi-retries"), Completed: n("completed"),
		Rejected: n("rejected"), Missed: n("missed"), Skipped: n("skipped"), Unconfirmed: n("unconfirmed"), Failed: n("failed"),
		Billed: billed,
	}
}

func add(a *simulation.Summary, b simulation.Summary) {
	a.Submitted += b.Submitted
	a.Retries += b.Retries
	a.KlaviRetries += b.KlaviRetries
	a.Completed += b.Completed
	a.Rejected += b.Rejected
	a.Missed += b.Missed
	a.Skipped += b.Skipped
	a.Unconfirmed += b.Unconfirmed
	a.Failed += b.Failed
	a.Billed += b.Billed
}

// The picture's totals, and the sums over its day cells, are the run's: the
// summaries' totals, as `billingd simulate` prints them.
func TestWrite_TotalsAgreeWithTheRun(t *testing.T) {
	res := simulate(t)
	var want simulation.Summary
	for _, s := range res.Summaries {
		add(&want, simulation.Summary{Submitted: s.Submitted, Retries: s.Retries, KlaviRetries: s.KlaviRetries, Completed: s.Completed,
			Rejected: s.Rejected, Missed: s.Missed, Skipped: s.Skipped, Unconfirmed: s.Unconfirmed, Failed: s.Failed, Billed: s.Billed})
	}
	require.Positive(t, want.Completed)
	require.Positive(t, want.Rejected)
	require.Positive(t, want.Retries+want.KlaviRetries)
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			doc := draw(t, w.write, res)
			var days, totals simulation.Summary
			cells, runs := 0, 0
			for _, e := range dataElements(t, w.name, doc) {
				switch {
				case e["date"] != "":
					cells++
					add(&days, sumOf(t, e))
				case e["total"] == "run":
					runs++
					totals = sumOf(t, e)
				}
			}
			assert.Equal(t, 60, cells, "one cell per simulated day")
			assert.Equal(t, 1, runs, "one totals line")
			assert.Equal(t, want, days, "the day cells add up to the run")
			assert.Equal(t, want, totals, "the totals line is the run's")
			assert.Contains(t, doc, want.Billed.BRL()+" settled")
		})
	}
}

// The HTML opens and closes every element it opens (void elements aside) and
// parses; the SVG is well-formed XML.
func TestWrite_WellFormed(t *testing.T) {
	res := simulate(t)
	t.Run("html", func(t *testing.T) {
		doc := draw(t, WriteHTML, res)
		_, err := html.Parse(strings.NewReader(doc))
		require.NoError(t, err)
		void := map[string]bool{"meta": true, "br": true, "img": true, "link": true, "hr": true, "input": true}
		var stack []string
		z := html.NewTokenizer(strings.NewReader(doc))
		for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
			name, _ := z.TagName()
			switch tt {
			case html.StartTagToken:
				if !void[string(name)] {
					stack = append(stack, string(name))
				}
			case html.EndTagToken:
				require.NotEmpty(t, stack, "</%s> closes nothing", name)
				require.Equal(t, stack[len(stack)-1], string(name), "</%s> closes <%s>", name, stack[len(stack)-1])
				stack = stack[:len(stack)-1]
			}
		}
		require.ErrorIs(t, z.Err(), io.EOF)
		assert.Empty(t, stack, "left open")
		assert.True(t, strings.HasPrefix(doc, "<!DOCTYPE html>"))
		assert.NotContains(t, doc, "<script")
		assert.NotContains(t, doc, "http", "no external asset")
	})
	t.Run("svg", func(t *testing.T) {
		doc := draw(t, WriteSVG, res)
		d := xml.NewDecoder(strings.NewReader(doc))
		var root string
		for {
			tok, err := d.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			if se, ok := tok.(xml.StartElement); ok && root == "" {
				root = se.Name.Space + " " + se.Name.Local
			}
		}
		assert.Equal(t, "http://www.w3.org/2000/svg svg", root)
		assert.NotContains(t, doc, "<script")
		assert.Equal(t, 1, strings.Count(doc, "http"), "no external asset, only the SVG namespace")
	})
}

// personal returns the values of the example consents' fields that identify
// people, companies and accounts.
func personal(t *testing.T) []string {
	t.Helper()
	keys := map[string]bool{"name": true, "identifier": true, "number": true, "contractId": true, "clientRequestId": true, "ispb": true}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && keys[k] {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	files, err := filepath.Glob("../../examples/consents/*.json")
	require.NoError(t, err)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		var v any
		require.NoError(t, json.Unmarshal(data, &v))
		walk(v)
	}
	return out
}

var styles = regexp.MustCompile(`(?s)<style>.*?</style>`)

// The pictures show ids and amounts: no name, document number, account or
// contract of the example consents.
func TestWrite_NoPersonalData(t *testing.T) {
	res := simulate(t)
	values := personal(t)
	require.Greater(t, len(values), 12)
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			doc := styles.ReplaceAllString(draw(t, w.write, res), "<style></style>") // colours like #555555 are no data
			assert.Contains(t, doc, "urn:klavi:consent-weekly-0002", "consent ids are shown")
			for _, v := range values {
				assert.False(t, strings.Contains(doc, v), "the %s picture shows %q", w.name, v)
			}
		})
	}
}

// What a Result carries is escaped, in text and in attributes.
func TestWrite_Escapes(t *testing.T) {
	amount := klavi.Cents(1234_56)
	d := cycle.MustDate(2026, 3, 2)
	res := &simulation.Result{
		From: d, To: d, Summaries: []*simulation.Summary{{ConsentID: `<b id="x">&`}},
		Events: []simulation.Event{{
			Day: d, At: d.At(9, 0), Event: "completed", ConsentID: `<script>alert("x")</script>`, Date: d, Amount: &amount,
			Reason: `"quoted" & <tagged>`,
		}},
	}
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			doc := draw(t, w.write, res)
			assert.NotContains(t, doc, "<script")
			assert.NotContains(t, doc, `"quoted"`)
			assert.Contains(t, doc, "R$ 1.234,56")
			dataElements(t, w.name, doc) // parses
		})
	}
}

func TestBuild(t *testing.T) {
	amount := klavi.Cents(99_90)
	from, to := cycle.MustDate(2026, 2, 10), cycle.MustDate(2026, 3, 5)
	at := func(d cycle.Date, h int) time.Time { return d.At(h, 0) }
	res := &simulation.Result{From: from, To: to, Events: []simulation.Event{
		{Day: cycle.MustDate(2026, 2, 13), At: at(cycle.MustDate(2026, 2, 13), 9), Event: "submitted", Amount: &amount},
		{Day: cycle.MustDate(2026, 2, 18), At: at(cycle.MustDate(2026, 2, 18), 6), Event: "completed", Amount: &amount},
		{Day: cycle.MustDate(2026, 2, 18), At: at(cycle.MustDate(2026, 2, 18), 9), Event: "rejected", Amount: &amount},
		{Day: cycle.MustDate(2026, 2, 18), At: at(cycle.MustDate(2026, 2, 18), 8), Event: "retry_submitted", Amount: &amount},
		{Day: cycle.MustDate(2026, 3, 2), At: at(cycle.MustDate(2026, 3, 2), 9), Event: "retry_planned"},
	}}
	p := build(res, nil)
	require.Len(t, p.Months, 2)
	feb, mar := p.Months[0], p.Months[1]
	assert.Equal(t, "February 2026", feb.Name())
	assert.Len(t, feb.Weeks, 4, "February 2026 starts on a Sunday: four full weeks")
	assert.Len(t, mar.Weeks, 5)
	assert.Equal(t, cycle.MustDate(2026, 3, 1), mar.Weeks[0][0].Date, "1 March 2026 is a Sunday")
	assert.Nil(t, mar.Weeks[4][3], "after 31 March (a Tuesday)")

	cell := func(m, d int) *day {
		for _, mo := range p.Months {
			for _, w := range mo.Weeks {
				for _, c := range w {
					if c != nil && c.Date == cycle.MustDate(2026, time.Month(m), d) {
						return c
					}
				}
			}
		}
		t.Fatalf("no cell for %d/%d", d, m)
		return nil
	}
	for _, tc := range []struct {
		name        string
		month, day  int
		class       string
		badge, amnt string
		marks       []string
	}{
		{"before the run", 2, 9, "out", "", "", nil},
		{"after the run", 3, 6, "out", "", "", nil},
		{"a business day with a submission", 2, 13, "business", "↑1", "", []string{"sent"}},
		{"Carnival Monday", 2, 16, "holiday", "", "", nil},
		{"Carnival Tuesday", 2, 17, "holiday", "", "", nil},
		{"a weekend", 2, 14, "weekend", "", "", nil},
		{"a busy day, marks in legend order", 2, 18, "business", "↑1 ✓1", "R$ 99,90", []string{"retry", "completed", "rejected"}},
		{"an event the picture does not draw", 3, 2, "business", "", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cell(tc.month, tc.day)
			assert.Equal(t, tc.class, c.Class())
			assert.Equal(t, tc.badge, c.Badge())
			assert.Equal(t, tc.amnt, c.Amount())
			assert.Equal(t, tc.marks, c.Marks())
		})
	}
	assert.Equal(t, "Fri 2026-02-13\n09:00 submitted  cycle 0, dated , R$ 99,90", cell(2, 13).Title())
	assert.Equal(t, []string{"06:00", "08:00", "09:00"}, []string{cell(2, 18).lines[0].text[:5], cell(2, 18).lines[1].text[:5], cell(2, 18).lines[2].text[:5]}, "tooltip lines in time order")
	assert.Equal(t, counts{Submitted: 1, Retries: 1, Completed: 1, Rejected: 1, Settled: amount}, p.Totals)
	assert.Equal(t, p.Totals, feb.Totals)
	assert.Equal(t, "1 rejected · 1 retried", feb.Totals.Others())
	assert.Equal(t, "nothing rejected, retried, failed or missed", mar.Totals.Others())
	assert.Equal(t, "Tue 2026-02-10 → Thu 2026-03-05 (24 days)", p.Span())
}
