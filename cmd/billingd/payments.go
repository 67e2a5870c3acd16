package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/storage"
)

func newPaymentsCmd(a *app) *cobra.Command {
	return group("payments", "list attempts and payments, upcoming charges; reconcile or cancel payments",
		"List a consent's attempts and payments, the items needing an operator or the charges\nto come; reconcile unknown outcomes with Klavi, or cancel a scheduled payment.",
		newPaymentsListCmd(a), newPaymentsReconcileCmd(a), newPaymentsCancelCmd(a))
}

func newPaymentsListCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list a consent's attempts, or the items that need an operator",
		Long: "List one consent's attempts and payments, or (without --consent) the items that need\n" +
			"an operator: UNCONFIRMED, STUCK, MISSED, FAILED and SKIPPED attempts.",
		Args: noArgs,
	}
	fs := cmd.Flags()
	id := fs.String("consent", "", "consent `ID`")
	state := fs.String("state", "", "only attention items in `STATE`")
	limit := fs.Int("limit", 100, "at most `N` items")
	format := fs.String("format", "table", "table or json")
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(*cobra.Command, []string) error {
		e := a.e
		cl, err := af.client()
		if err != nil {
			return err
		}
		var out struct {
			Attempts []*storage.Attempt `json:"attempts"`
		}
		path := "/v1/attempts?" + url.Values{"state": {*state}, "limit": {strconv.Itoa(*limit)}}.Encode()
		if *id != "" {
			path = "/v1/consents/" + url.PathEscape(*id) + "/attempts"
		}
		if err := cl.do("GET", path, nil, &out); err != nil {
			return err
		}
		if *format == "json" {
			return printJSON(e.stdout, out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CONSENT\tCYCLE\tATTEMPT\tSTATE\tDATE\tAMOUNT\tCLIENT REQUEST ID\tPAYMENT ID\tREASON")
		for _, a := range out.Attempts {
			reason := a.Reason
			if len(reason) > 80 {
				reason = reason[:80] + "…"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ConsentID, a.Cycle, a.Attempt, a.State, weekdayDate(a.Date),
				a.Amount.BRL(), a.ClientRequestID, dash(a.PaymentID), dash(strings.ReplaceAll(reason, "\t", " ")))
		}
		return tw.Flush()
	}
	return cmd
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
