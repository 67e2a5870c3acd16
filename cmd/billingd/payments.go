package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/klavi-billing/billingd/storage"
)

func cmdPayments(ctx context.Context, e *env, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "reconcile":
			return cmdPaymentsReconcile(e, args[1:])
		case "cancel":
			return cmdPaymentsCancel(e, args[1:])
		}
	}
	if len(args) == 0 || args[0] != "list" {
		return usageErrorf("payments: want the subcommand list, reconcile or cancel (see 'billingd payments list -h')")
	}
	fs := newFlagSet(e, "payments list", "[--consent ID | --state UNCONFIRMED|STUCK|MISSED|FAILED|SKIPPED] [--format table|json]",
		"List one consent's attempts and payments, or (without --consent) the items that need\nan operator: UNCONFIRMED, STUCK, MISSED, FAILED and SKIPPED attempts.")
	id := fs.String("consent", "", "consent `ID`")
	state := fs.String("state", "", "only attention items in `STATE`")
	limit := fs.Int("limit", 100, "at most `N` items")
	format := fs.String("format", "table", "table or json")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args[1:], false); err != nil {
		return err
	}
	cl, err := af.client(e)
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

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cmdPaymentsReconcile forces a reconciliation pass through the daemon's admin API.
func cmdPaymentsReconcile(e *env, args []string) error {
	fs := newFlagSet(e, "payments reconcile", "[--consent ID]",
		"Look every UNCONFIRMED and STUCK attempt (of one consent with --consent) up in Klavi's\n"+
			"list of the consent's payments now, and record what Klavi holds: a payment found is\n"+
			"adopted and followed; none found after the window closed ends the attempt. The daemon\n"+
			"also does this by itself (every scheduler.reconcile_every, and at start).")
	id := fs.String("consent", "", "only this consent `ID`")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	cl, err := af.client(e)
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

// cmdPaymentsCancel cancels a scheduled payment at Klavi through the admin API.
func cmdPaymentsCancel(e *env, args []string) error {
	fs := newFlagSet(e, "payments cancel", "--consent ID PAYMENT_ID",
		"Cancel at Klavi a payment scheduled for a later date (Klavi refuses one dated today or\n"+
			"earlier). The attempt ends REJECTED with status CANCELED; nothing is re-sent for it.")
	id := fs.String("consent", "", "the payment's consent `ID` (required)")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if fs.NArg() > 1 { // flags after the payment id
		pid := fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:], false); err != nil {
			return err
		}
		if err := fs.Parse([]string{pid}); err != nil {
			return err
		}
	}
	if *id == "" || fs.NArg() != 1 {
		return usageErrorf("payments cancel: want --consent ID and exactly one PAYMENT_ID")
	}
	cl, err := af.client(e)
	if err != nil {
		return err
	}
	var a storage.Attempt
	path := "/v1/consents/" + url.PathEscape(*id) + "/payments/" + url.PathEscape(fs.Arg(0)) + "/cancel"
	if err := cl.do("POST", path, nil, &a); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "canceled payment %s (consent %s, cycle %d, attempt %d, date %s)\n",
		a.PaymentID, a.ConsentID, a.Cycle, a.Attempt, weekdayDate(a.Date))
	return nil
}
