package main

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
)

func newPaymentsCmd(a *app) *cobra.Command {
	return group("payments", "list attempts and payments, upcoming charges; reconcile or cancel payments",
		"List a consent's attempts and payments, the items needing an operator or the charges\nto come; reconcile unknown outcomes with Klavi, or cancel a scheduled payment.",
		newPaymentsListCmd(a), newPaymentsUpcomingCmd(a), newPaymentsReconcileCmd(a), newPaymentsCancelCmd(a))
}

func newPaymentsListCmd(a *app) *cobra.Command {
	var id, state, from, to, format string
	var limit int
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list payments and attempts by date range, state and consent",
		Long: "List attempts and payments. With --from or --to: every attempt dated in the range\n" +
			"(the payment's date, Brasília), of one --state and one --consent if given, every page.\n" +
			"Without them: one consent's attempts (--consent), or the items that need an operator\n" +
			"(UNCONFIRMED, STUCK, MISSED, FAILED, SKIPPED; see also 'billingd attention list').\n\n" +
			"--state takes any attempt state with --from, --to or --consent: SUBMITTING, SUBMITTED,\n" +
			"COMPLETED, REJECTED, UNCONFIRMED, STUCK, FAILED, MISSED, SKIPPED, PLANNED or DROPPED.\n" +
			"Without them, only one of the states needing an operator.",
		Example: "  billingd payments list --consent urn:klavi:consent-0001\n" +
			"  billingd payments list --from 2026-11-01 --to 2026-11-30 --state COMPLETED --format csv > nov.csv",
		Args: noArgs,
	}
	fl := cmd.Flags()
	fl.StringVar(&id, "consent", "", "only this consent `ID`")
	fl.StringVar(&state, "state", "", "only attempts in `STATE`: any attempt state (COMPLETED, REJECTED, …) with --from, --to or --consent; else UNCONFIRMED, STUCK, MISSED, FAILED or SKIPPED")
	fl.StringVar(&from, "from", "", "only attempts dated on or after `YYYY-MM-DD` (alone: up to a year after)")
	fl.StringVar(&to, "to", "", "only attempts dated on or before `YYYY-MM-DD` (alone: from a year before)")
	fl.IntVar(&limit, "limit", 0, "at most `N` attempts (0: all of them)")
	fl.StringVar(&format, "format", "table", "`FORMAT`: table, json or csv")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json", "csv"}, cobra.ShellCompDirectiveNoFileComp))
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(*cobra.Command, []string) error {
		e := a.e
		if err := checkFormat("payments list", format, "table", "json", "csv"); err != nil {
			return err
		}
		if limit < 0 {
			return argErrorf("payments list: --limit %d: want 0 (all) or more", limit)
		}
		if err := checkListState(state, from != "" || to != "", id != ""); err != nil {
			return err
		}
		// One end of the range given: the other is a year away (the API's longest
		// range), never the server's one-month default that would hide attempts.
		if from != "" && to == "" {
			if f, err := cycle.ParseDate(from); err == nil {
				to = f.AddDays(365).String()
			}
		} else if to != "" && from == "" {
			if t, err := cycle.ParseDate(to); err == nil {
				from = t.AddDays(-365).String()
			}
		}
		q, err := dateRange("payments list", from, to)
		if err != nil {
			return err
		}
		if from != "" {
			fmt.Fprintf(e.stderr, "attempts dated %s to %s (Brasília)\n", from, to)
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var (
			atts []*storage.Attempt
			more bool
		)
		if from == "" && to == "" {
			atts, more, err = listAttempts(cl, id, state, limit)
		} else if atts, more, err = listPayments(cl, q, id, state, limit); noRoute(err) {
			return fmt.Errorf("payments list: this daemon does not list payments by date (no GET /v1/payments): upgrade it, or leave out --from and --to")
		}
		if err != nil {
			return err
		}
		for _, at := range atts {
			inBrasilia(at)
		}
		switch format {
		case "json":
			return printJSON(e.stdout, struct {
				Payments []*storage.Attempt `json:"payments"`
			}{atts})
		case "csv":
			rows := make([][]string, 0, len(atts))
			for _, at := range atts {
				rows = append(rows, []string{at.ConsentID, strconv.Itoa(at.Cycle), strconv.Itoa(at.Attempt), string(at.State),
					at.Date.String(), at.Amount.String(), at.ClientRequestID, at.PaymentID, string(at.Status), oneLine(at.Reason, 1000)})
			}
			return writeCSV(e.stdout, []string{"consentId", "cycle", "attempt", "state", "date", "amount", "clientRequestId", "paymentId", "status", "reason"}, rows)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CONSENT\tCYCLE\tATTEMPT\tSTATE\tDATE\tAMOUNT\tCLIENT REQUEST ID\tPAYMENT ID\tREASON")
		for _, at := range atts {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", at.ConsentID, at.Cycle, at.Attempt, at.State, weekdayDate(at.Date),
				at.Amount.BRL(), at.ClientRequestID, dash(at.PaymentID), dash(oneLine(at.Reason, 80)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if more {
			fmt.Fprintf(e.stdout, "\nmore attempts match: raise --limit (now %d) to see them\n", limit)
		}
		return nil
	}
	return cmd
}

// checkListState refuses a --state that payments list cannot ask for: one that is
// not an attempt state, or, without a date range or a consent, one outside the
// states needing an operator (the only ones the daemon lists without them).
func checkListState(state string, dated, oneConsent bool) error {
	if state == "" {
		return nil
	}
	st := storage.AttemptState(strings.ToUpper(state))
	if !slices.Contains(storage.AttemptStates, st) {
		return argErrorf("payments list: --state %q: want one of %s", state, orList(storage.AttemptStates))
	}
	if !dated && !oneConsent && !slices.Contains(storage.AttentionStates, st) {
		return argErrorf("payments list: --state %s needs a date range (--from, --to) or --consent; without them only the states needing an operator are listed: %s",
			st, orList(storage.AttentionStates))
	}
	return nil
}

// listPayments reads GET /v1/payments page after page (its next cursor) until the end
// or limit attempts (0: no limit); more says whether attempts were left.
func listPayments(cl *adminClient, q url.Values, id, state string, limit int) (atts []*storage.Attempt, more bool, err error) {
	if id != "" {
		q.Set("consent", id)
	}
	if state != "" {
		q.Set("state", strings.ToUpper(state))
	}
	q.Set("format", "json")
	atts = []*storage.Attempt{}
	cursor := ""
	for {
		page := 500
		if limit > 0 {
			page = min(page, limit-len(atts))
		}
		q.Set("limit", strconv.Itoa(page))
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var out struct {
			Payments []*storage.Attempt `json:"payments"`
			Next     string             `json:"next"`
		}
		if err := cl.do("GET", "/v1/payments?"+q.Encode(), nil, &out); err != nil {
			return nil, false, err
		}
		atts = append(atts, out.Payments...)
		if out.Next == "" || out.Next == cursor {
			return atts, false, nil
		}
		if limit > 0 && len(atts) >= limit {
			return atts[:limit], true, nil
		}
		cursor = out.Next
	}
}

// listAttempts lists one consent's attempts (of one state if given), or the
// attention items (of one state if given).
func listAttempts(cl *adminClient, id, state string, limit int) ([]*storage.Attempt, bool, error) {
	asked := limit
	if limit == 0 {
		limit = 100 // the attention listing's page
	}
	var out struct {
		Attempts []*storage.Attempt `json:"attempts"`
	}
	path := "/v1/attempts?" + url.Values{"state": {state}, "limit": {strconv.Itoa(limit)}}.Encode()
	if id != "" {
		path = "/v1/consents/" + url.PathEscape(id) + "/attempts"
	}
	if err := cl.do("GET", path, nil, &out); err != nil {
		return nil, false, err
	}
	atts := []*storage.Attempt{}
	for _, a := range out.Attempts {
		if id == "" || state == "" || strings.EqualFold(string(a.State), state) {
			atts = append(atts, a)
		}
	}
	if id != "" && asked > 0 && len(atts) > asked {
		return atts[:asked], true, nil
	}
	return atts, false, nil
}

// inBrasilia moves an attempt's instants to Brasília time, for JSON output.
func inBrasilia(a *storage.Attempt) {
	for _, t := range []*time.Time{&a.DueAt, &a.NextPoll, &a.CreatedAt, &a.SubmittedAt, &a.UpdatedAt, &a.UnknownSince} {
		if !t.IsZero() {
			*t = t.In(cycle.Brasilia)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cmdPaymentsReconcile forces a reconciliation pass through the daemon's admin API.
func newPaymentsReconcileCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reconcile [flags]",
		Short: "look UNCONFIRMED and STUCK attempts up in Klavi now",
		Long: "Look every UNCONFIRMED and STUCK attempt (of one consent with --consent) up in Klavi's\n" +
			"list of the consent's payments now, and record what Klavi holds: a payment found is\n" +
			"adopted and followed; none found after the window closed ends the attempt. The daemon\n" +
			"also does this by itself (every scheduler.reconcile_every, and at start).",
	}
	fs := cmd.Flags()
	id := fs.String("consent", "", "only this consent `ID`")
	af := addAdminFlags(cmd, a)
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		cl, err := af.client()
		if err != nil {
			return err
		}
		path := "/v1/reconcile"
		if *id != "" {
			path += "?" + url.Values{"consent": {*id}}.Encode()
		}
		var res struct{ Looked, Resolved, Errors int }
		if err := cl.do("POST", path, nil, &res); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "looked up %d, resolved %d, still unknown %d, store errors %d\n",
			res.Looked, res.Resolved, res.Looked-res.Resolved-res.Errors, res.Errors)
		return nil
	}
	return cmd
}

// cmdPaymentsCancel cancels a scheduled payment at Klavi through the admin API.
func newPaymentsCancelCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cancel PAYMENT_ID --consent ID [flags]",
		Short: "cancel at Klavi a payment scheduled for a later date",
		Long: "Cancel at Klavi a payment scheduled for a later date (Klavi refuses one dated today or\n" +
			"earlier). The attempt ends REJECTED with status CANCELED; nothing is re-sent for it.",
	}
	fs := cmd.Flags()
	id := fs.String("consent", "", "the payment's consent `ID` (required)")
	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if *id == "" || len(args) != 1 {
			return argErrorf("payments cancel: want --consent ID and exactly one PAYMENT_ID")
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var att storage.Attempt
		path := "/v1/consents/" + url.PathEscape(*id) + "/payments/" + url.PathEscape(args[0]) + "/cancel"
		if err := cl.do("POST", path, nil, &att); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "canceled payment %s (consent %s, cycle %d, attempt %d, date %s)\n",
			att.PaymentID, att.ConsentID, att.Cycle, att.Attempt, weekdayDate(att.Date))
		return nil
	}
	return cmd
}
