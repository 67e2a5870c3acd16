package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/cycle"
)

// An upcomingItem is one charge to come, as GET /v1/upcoming lists it.
type upcomingItem struct {
	ConsentID string     `json:"consentId"`
	Cycle     int        `json:"cycle"`
	Attempt   int        `json:"attempt"`
	Kind      string     `json:"kind"` // original, retry or resend
	SubmitAt  instant    `json:"submitAt"`
	DueDate   cycle.Date `json:"dueDate"`
	Amount    *money     `json:"amount"` // nil: a variable cycle with no amount set yet
	Interval  string     `json:"interval"`
	Mode      string     `json:"mode"`
}

type countAmount struct {
	Count  int    `json:"count"`
	Amount *money `json:"amount"`
	// NoAmount counts the charges of a variable cycle with no amount set yet.
	NoAmount int `json:"noAmount"`
}

type upcomingDay struct {
	Date cycle.Date `json:"date"`
	countAmount
}

type upcoming struct {
	From  cycle.Date     `json:"from"`
	To    cycle.Date     `json:"to"`
	Items []upcomingItem `json:"items"`
	Days  []upcomingDay  `json:"days"`
	Total countAmount    `json:"total"`
}

func newPaymentsUpcomingCmd(a *app) *cobra.Command {
	var from, to, format string
	cmd := &cobra.Command{
		Use:   "upcoming [flags]",
		Short: "the charges to come, day by day, with their amounts",
		Long: "List every charge billingd will submit in a range of days: each cycle's original\n" +
			"payment and each planned retry, with its submit instant, due date and amount, and\n" +
			"the count and sum of each day (submit days, Brasília).",
		Example: "  billingd payments upcoming --from 2026-12-01 --to 2026-12-07\n  billingd payments upcoming --format csv > upcoming.csv",
		Args:    noArgs,
	}
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "first submit day, `YYYY-MM-DD` (default: the daemon's today)")
	fl.StringVar(&to, "to", "", "last submit day, `YYYY-MM-DD` (default: the daemon's, a week after --from)")
	fl.StringVar(&format, "format", "table", "`FORMAT`: table, json or csv")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json", "csv"}, cobra.ShellCompDirectiveNoFileComp))
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := checkFormat("payments upcoming", format, "table", "json", "csv"); err != nil {
			return err
		}
		q, err := dateRange("payments upcoming", from, to)
		if err != nil {
			return err
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var up upcoming
		if err := cl.do("GET", "/v1/upcoming?"+q.Encode(), nil, &up); err != nil {
			return err
		}
		if up.Items == nil {
			up.Items = []upcomingItem{}
		}
		if up.Days == nil {
			up.Days = []upcomingDay{}
		}
		switch format {
		case "json":
			return printJSON(a.e.stdout, up)
		case "csv":
			rows := make([][]string, 0, len(up.Items))
			for _, it := range up.Items {
				rows = append(rows, []string{it.SubmitAt.In(cycle.Brasilia).Format("2006-01-02T15:04:05Z07:00"), it.DueDate.String(),
					it.ConsentID, strconv.Itoa(it.Cycle), strconv.Itoa(it.Attempt), it.Kind, plain(it.Amount), it.Interval, it.Mode})
			}
			return writeCSV(a.e.stdout, []string{"submitAt", "dueDate", "consentId", "cycle", "attempt", "kind", "amount", "interval", "mode"}, rows)
		}
		return writeUpcoming(a.e.stdout, up)
	}
	return cmd
}

// dateRange checks --from and --to (YYYY-MM-DD, from ≤ to) and returns them as a
// query.
func dateRange(cmd, from, to string) (url.Values, error) {
	q := url.Values{}
	var f, t cycle.Date
	var err error
	if from != "" {
		if f, err = cycle.ParseDate(from); err != nil {
			return nil, argErrorf("%s: --from: %v", cmd, err)
		}
		q.Set("from", f.String())
	}
	if to != "" {
		if t, err = cycle.ParseDate(to); err != nil {
			return nil, argErrorf("%s: --to: %v", cmd, err)
		}
		q.Set("to", t.String())
	}
	if !f.IsZero() && !t.IsZero() && t.Before(f) {
		return nil, argErrorf("%s: --to %s is before --from %s", cmd, t, f)
	}
	return q, nil
}

// writeUpcoming prints the charges grouped by submit day, each day with its count
// and sum, then the total. A variable cycle with no amount set counts without an
// amount and says so.
func writeUpcoming(w io.Writer, up upcoming) error {
	fmt.Fprintf(w, "charges submitted %s → %s (Brasília)\n", weekdayDate(up.From), weekdayDate(up.To))
	byDay := map[cycle.Date][]upcomingItem{}
	for _, it := range up.Items {
		d := cycle.DateOf(it.SubmitAt.Time)
		byDay[d] = append(byDay[d], it)
	}
	days := up.Days
	if len(days) == 0 { // an answer without day totals: count them here
		for d, items := range byDay {
			days = append(days, upcomingDay{Date: d, countAmount: sum(items)})
		}
	}
	sort.Slice(days, func(i, j int) bool { return days[i].Date.Before(days[j].Date) })
	if len(days) == 0 {
		fmt.Fprintln(w, "\nnothing is submitted in that range")
	}
	for _, d := range days {
		fmt.Fprintf(w, "\n%s  %s, %s\n", weekdayDate(d.Date), plural(d.Count, "charge"), brl(d.Amount))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, it := range byDay[d.Date] {
			amount := brl(it.Amount)
			if it.Amount == nil {
				amount = "(variable, not set)"
			}
			fmt.Fprintf(tw, "  %s\t%s\tcycle %d\t%s\tdue %s\t%s\t%s\t%s\n", it.SubmitAt.In(cycle.Brasilia).Format("15:04 MST"),
				it.ConsentID, it.Cycle, kindOf(it), weekdayDate(it.DueDate), amount, it.Interval, it.Mode)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	unset := up.Total.NoAmount
	if unset == 0 {
		for _, it := range up.Items {
			if it.Amount == nil {
				unset++
			}
		}
	}
	fmt.Fprintf(w, "\ntotal: %s, %s", plural(up.Total.Count, "charge"), brl(up.Total.Amount))
	if unset > 0 {
		fmt.Fprintf(w, " (and %s of a variable cycle with no amount set yet)", plural(unset, "charge"))
	}
	fmt.Fprintln(w)
	return nil
}

func kindOf(it upcomingItem) string {
	if it.Kind == "retry" || it.Kind == "resend" {
		return fmt.Sprintf("%s %d", it.Kind, it.Attempt)
	}
	return it.Kind
}

func sum(items []upcomingItem) countAmount {
	var c countAmount
	var total money
	for _, it := range items {
		c.Count++
		if it.Amount != nil {
			total += *it.Amount
		} else {
			c.NoAmount++
		}
	}
	c.Amount = &total
	return c
}

// A reportRow is one line of the month's ledger.
type reportRow struct {
	Interval string `json:"interval"`
	Outcome  string `json:"outcome"`
	Count    int    `json:"count"`
	Amount   *money `json:"amount"`
}

type report struct {
	Month  string          `json:"month"`
	From   *cycle.Date     `json:"from,omitempty"`
	To     *cycle.Date     `json:"to,omitempty"`
	Rows   []reportRow     `json:"rows"`
	Totals json.RawMessage `json:"totals"`
}

var monthForm = regexp.MustCompile(`^\d{4}-(0[1-9]|1[0-2])$`)

func newReportCmd(a *app) *cobra.Command {
	var month, format string
	cmd := &cobra.Command{
		Use:   "report [flags]",
		Short: "the month's ledger: counts and amounts per interval and outcome",
		Long: "Print the ledger of a month from the stored attempts (exact, not from metrics): per\n" +
			"interval and outcome (billed, completed, rejected, retried, missed, …), the count of\n" +
			"cycles and their amount.",
		Example: "  billingd report --month 2026-11\n  billingd report --month 2026-11 --format csv > 2026-11.csv",
		Args:    noArgs,
	}
	cmd.Flags().StringVar(&month, "month", "", "`YYYY-MM` (default: this month in Brasília)")
	cmd.Flags().StringVar(&format, "format", "table", "`FORMAT`: table, json or csv")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json", "csv"}, cobra.ShellCompDirectiveNoFileComp))
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := checkFormat("report", format, "table", "json", "csv"); err != nil {
			return err
		}
		if month == "" {
			month = a.e.clock.Now().In(cycle.Brasilia).Format("2006-01")
		}
		if !monthForm.MatchString(month) {
			return argErrorf("report: --month %q: want YYYY-MM", month)
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var rep report
		if err := cl.do("GET", "/v1/report?"+url.Values{"month": {month}}.Encode(), nil, &rep); err != nil {
			return err
		}
		if rep.Rows == nil {
			rep.Rows = []reportRow{}
		}
		switch format {
		case "json":
			if len(rep.Totals) == 0 {
				rep.Totals = json.RawMessage("{}")
			}
			return printJSON(a.e.stdout, rep)
		case "csv":
			rows := make([][]string, 0, len(rep.Rows))
			for _, r := range rep.Rows {
				rows = append(rows, []string{rep.Month, r.Interval, r.Outcome, strconv.Itoa(r.Count), plain(r.Amount)})
			}
			return writeCSV(a.e.stdout, []string{"month", "interval", "outcome", "count", "amount"}, rows)
		}
		return writeReport(a.e.stdout, rep)
	}
	return cmd
}

func writeReport(w io.Writer, rep report) error {
	fmt.Fprintf(w, "ledger of %s (Brasília), from the stored attempts\n\n", rep.Month)
	// Rows per interval and outcome, then the totals per outcome; outcomes with no
	// attempt are left out of the table (JSON and CSV list them).
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INTERVAL\tOUTCOME\tCOUNT\tAMOUNT")
	shown := 0
	for _, r := range rep.Rows {
		if r.Count > 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Interval, r.Outcome, r.Count, brl(r.Amount))
			shown++
		}
	}
	for _, t := range totalsOf(rep.Totals, rep.Rows) {
		if t.Count > 0 {
			fmt.Fprintf(tw, "total\t%s\t%d\t%s\n", t.Outcome, t.Count, brl(t.Amount))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if shown == 0 {
		fmt.Fprintln(w, "nothing was billed or decided in that month")
	}
	return nil
}

// totalsOf reads the report's totals: one {count, amount}, or one per outcome, in
// the order the rows give the outcomes.
func totalsOf(raw json.RawMessage, rows []reportRow) []reportRow {
	var one struct {
		Count  *int   `json:"count"`
		Amount *money `json:"amount"`
	}
	if json.Unmarshal(raw, &one) == nil && one.Count != nil {
		return []reportRow{{Outcome: "", Count: *one.Count, Amount: one.Amount}}
	}
	var per map[string]countAmount
	if json.Unmarshal(raw, &per) != nil {
		return nil
	}
	var out []reportRow
	for outcome, ca := range per {
		out = append(out, reportRow{Outcome: outcome, Count: ca.Count, Amount: ca.Amount})
	}
	rank := map[string]int{}
	for _, r := range rows {
		if _, ok := rank[r.Outcome]; !ok {
			rank[r.Outcome] = len(rank)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ri, oki := rank[out[i].Outcome]
		rj, okj := rank[out[j].Outcome]
		if oki != okj {
			return oki
		}
		if ri != rj {
			return ri < rj
		}
		return out[i].Outcome < out[j].Outcome
	})
	return out
}
