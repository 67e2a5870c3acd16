package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/scheduler"
)

type previewFlags struct {
	file, id, from, format string
	n, lead                int
}

func newPreviewCmd(a *app) *cobra.Command {
	var f previewFlags
	cmd := &cobra.Command{
		Use:   "preview (--consent-file FILE | --consent ID) [flags]",
		Short: "show the cycles, submit days and retry dates of a consent (dry run)",
		Long: `Show the next cycles of a consent: due dates, the day billingd submits each one, and
the retry dates of a failed charge. It is a dry run of the daemon's own plan. With
--consent it asks the running daemon about a stored consent (amounts set included).`,
		Example: `  billingd preview --consent-file examples/consents/monthly-31st.json --from 2025-10-25 --cycles 5
  billingd preview --consent urn:klavi:consent-0001 --format json`,
		Args: noArgs,
	}
	fl := cmd.Flags()
	fl.StringVar(&f.file, "consent-file", "", "consent `FILE` (JSON: Klavi's consent plus id, status and billing)")
	fl.StringVar(&f.id, "consent", "", "`ID` of a consent stored in the running daemon")
	af := addAdminFlags(cmd, a)
	fl.Lookup("addr").Usage = "admin API `URL` (with --consent)"
	fl.Lookup("token").Usage = "admin bearer `TOKEN` (with --consent)"
	fl.StringVar(&f.from, "from", "", "the day the plan is seen from, `YYYY-MM-DD`: its first due date shown and its states (planned, late, missed) as of that day (default: today in Brasília)")
	fl.IntVar(&f.n, "cycles", 12, "number of cycles to show")
	fl.IntVar(&f.lead, "lead-days", 0, "submit `N` days before the due date, 2..10 (default: billing.lead_days of the config, 3)")
	fl.StringVar(&f.format, "format", "table", "output `FORMAT`: table or json")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(*cobra.Command, []string) error { return runPreview(a, af, f) }
	return cmd
}

func runPreview(a *app, af *adminFlags, f previewFlags) error {
	e := a.e
	switch {
	case f.file == "" && f.id == "":
		return argErrorf("preview: want --consent-file FILE or --consent ID")
	case f.file != "" && f.id != "":
		return argErrorf("preview: want --consent-file FILE or --consent ID, not both")
	}
	if f.format != "table" && f.format != "json" {
		return argErrorf("preview: --format %q: want table or json", f.format)
	}
	if f.n < 1 || f.n > 10000 {
		return argErrorf("preview: --cycles %d: want 1..10000", f.n)
	}
	if f.id != "" {
		return previewStored(e, af, f.id, f.from, f.n, f.lead, f.format)
	}
	cfg, err := loadConfigFor(e, a.config, false)
	if err != nil {
		return err
	}
	pol, err := cfg.policy()
	if err != nil {
		return usageErrorf("%v", err)
	}
	if f.lead != 0 {
		if f.lead < scheduler.WindowClosesDays || f.lead > scheduler.WindowOpensDays {
			return argErrorf("preview: --lead-days %d: want 2..10 (a payment is created 2 to 10 days before its date)", f.lead)
		}
		pol.LeadDays = f.lead
	}
	day := cycle.DateOf(e.clock.Now())
	if f.from != "" {
		if day, err = cycle.ParseDate(f.from); err != nil {
			return argErrorf("preview: --from: %v", err)
		}
	}
	c, err := readConsentFile(e, f.file)
	if err != nil {
		return err
	}
	pv := pol.Preview(c, day, f.n, nil)
	if f.format == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(pv)
	}
	return writePreviewTable(e.stdout, pv)
}

// previewStored previews a consent stored in the running daemon.
func previewStored(e *env, af *adminFlags, id, from string, n, lead int, format string) error {
	if lead != 0 {
		return argErrorf("preview: --lead-days applies to --consent-file; the daemon uses its own billing.lead_days")
	}
	day := cycle.DateOf(e.clock.Now())
	if from != "" {
		var err error
		if day, err = cycle.ParseDate(from); err != nil {
			return argErrorf("preview: --from: %v", err)
		}
	}
	cl, err := af.client()
	if err != nil {
		return err
	}
	q := url.Values{"from": {day.String()}, "cycles": {strconv.Itoa(n)}}
	var raw json.RawMessage
	if err := cl.do("GET", "/v1/consents/"+url.PathEscape(id)+"/preview?"+q.Encode(), nil, &raw); err != nil {
		return err
	}
	if format == "json" {
		_, err := fmt.Fprintf(e.stdout, "%s\n", raw)
		return err
	}
	var pv scheduler.Preview
	if err := json.Unmarshal(raw, &pv); err != nil {
		return fmt.Errorf("preview from the daemon: %w", err)
	}
	pv.From = day
	return writePreviewTable(e.stdout, pv)
}

// readConsentFile decodes and validates one consent file. Invalid content prints every
// problem on stderr and returns errSilent (exit 2).
func readConsentFile(e *env, path string) (*consent.Consent, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageErrorf("read consent: %v", err)
	}
	c, err := consent.Decode(data)
	if err != nil {
		reportProblems(e.stderr, path, err)
		return nil, errSilent
	}
	return c, nil
}

// reportProblems prints an invalid-input error: each problem on its own line.
func reportProblems(w io.Writer, what string, err error) {
	var l problem.List
	if !errors.As(err, &l) {
		fmt.Fprintf(w, "billingd: %s: %v\n", what, err)
		return
	}
	noun := "problems"
	if len(l) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(w, "billingd: %s: %d %s:\n", what, len(l), noun)
	for _, p := range l {
		fmt.Fprintf(w, "  %s\n", p)
	}
}

// policy returns the billing policy of the config (Validate has passed).
func (c *Config) policy() (scheduler.Policy, error) {
	mode, err := consent.ParseRetryMode(c.Billing.RetryMode)
	if err != nil {
		return scheduler.Policy{}, err
	}
	adj, err := cycle.ParseDueAdjust(c.Billing.DueDateAdjust)
	if err != nil {
		return scheduler.Policy{}, err
	}
	p := scheduler.Policy{LeadDays: c.Billing.LeadDays, RetryMode: mode, DueAdjust: adj, Calendar: c.calendar()}
	return p, p.Validate()
}

func weekdayDate(d cycle.Date) string {
	if d.IsZero() {
		return "-"
	}
	return d.Weekday().String()[:3] + " " + d.String()
}

func writePreviewTable(w io.Writer, pv scheduler.Preview) error {
	lead := ""
	if pv.LeadDays > 0 {
		lead = fmt.Sprintf(", submitted %d days before the due date", pv.LeadDays)
	}
	fmt.Fprintf(w, "consent %s: %s, retry mode %s%s; seen from %s\n\n",
		pv.ConsentID, pv.Interval, pv.RetryMode, lead, weekdayDate(pv.From))
	return writePlanTable(w, pv)
}

// writePlanTable prints a plan's cycles.
func writePlanTable(w io.Writer, pv scheduler.Preview) error {
	if len(pv.Cycles) == 0 {
		fmt.Fprintln(w, "no cycles: the consent expires before any cycle is due on or after that day")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CYCLE\tSTART\tEND\tDUE\tSUBMIT ON\tSTATE\tAMOUNT\tRETRIES")
	for _, c := range pv.Cycles {
		amount := "(variable, not set)"
		if c.Amount != nil {
			amount = c.Amount.BRL()
		}
		var rs []string
		for _, r := range c.Retries {
			rs = append(rs, fmt.Sprintf("+%d %s", r.Day, weekdayDate(r.Date)))
		}
		for _, d := range c.Dropped {
			rs = append(rs, fmt.Sprintf("+%d dropped: %s", d.Day, d.Reason))
		}
		retries := "-"
		if len(rs) > 0 {
			retries = strings.Join(rs, ", ")
		}
		state := string(c.State)
		if len(c.Stored) > 0 {
			// A decided cycle: what billingd did, attempt by attempt (the store's word).
			var parts []string
			for _, a := range c.Stored {
				p := string(a.State)
				if a.Attempt > 0 {
					p = fmt.Sprintf("retry %d %s", a.Attempt, a.State)
				}
				if a.PaymentID != "" {
					p += " " + a.PaymentID
				}
				parts = append(parts, p)
			}
			state = strings.Join(parts, "; ")
		} else if c.Reason != "" {
			state += " (" + c.Reason + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Index, weekdayDate(c.Start), weekdayDate(c.End),
			weekdayDate(c.Due), weekdayDate(c.SubmitOn), state, amount, retries)
	}
	return tw.Flush()
}
