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
	if len(args) == 0 || args[0] != "list" {
		return usageErrorf("payments: want the subcommand list (see 'billingd payments list -h')")
	}
	fs := newFlagSet(e, "payments list", "[--consent ID | --state UNCONFIRMED|MISSED|FAILED|SKIPPED] [--format table|json]",
		"List one consent's attempts and payments, or (without --consent) the items that need\nan operator: UNCONFIRMED, MISSED, FAILED and SKIPPED attempts.")
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
