package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/cycle"
)

// attentionStates are the states an attention item can be in, in the order counts
// are shown.
var attentionStates = []string{"MISSED", "SKIPPED", "FAILED", "UNCONFIRMED", "STUCK", "AMOUNT_MISSING", "WEBHOOK_DEAD"}

func newAttentionCmd(a *app) *cobra.Command {
	return group("attention", "list and resolve the items waiting for an operator",
		"List the items waiting for an operator (MISSED, SKIPPED, FAILED, UNCONFIRMED and STUCK\n"+
			"attempts, and variable cycles whose submission is near with no amount set,\n"+
			"AMOUNT_MISSING), and the consents whose webhook events an endpoint has not taken\n"+
			"for webhooks.max_age (WEBHOOK_DEAD), with how long each has been open; resolve one\n"+
			"with a note: who, when and why are kept in the consent's timeline (for WEBHOOK_DEAD,\n"+
			"in the daemon's log).",
		newAttentionListCmd(a), newAttentionResolveCmd(a))
}

// An attentionItem is one open item, as GET /v1/attention lists it.
type attentionItem struct {
	ConsentID       string     `json:"consentId"`
	Cycle           int        `json:"cycle"`
	Attempt         int        `json:"attempt"`
	State           string     `json:"state"`
	Date            cycle.Date `json:"date"`
	Amount          *money     `json:"amount"`
	Reason          string     `json:"reason"`
	ClientRequestID string     `json:"clientRequestId"`
	PaymentID       string     `json:"paymentId"`
	Since           instant    `json:"since"`
	AgeSeconds      int64      `json:"ageSeconds"`
	// Endpoint and EventID: a WEBHOOK_DEAD item's endpoint and first event.
	Endpoint string `json:"endpoint,omitempty"`
	EventID  string `json:"eventId,omitempty"`
}

// name is the item as attention resolve takes it.
func (it attentionItem) name() string {
	if it.Endpoint != "" {
		return webhookItemPrefix + it.Endpoint + "/" + it.ConsentID
	}
	return fmt.Sprintf("%s/%d/%d", it.ConsentID, it.Cycle, it.Attempt)
}

// webhookItemPrefix starts the name of a WEBHOOK_DEAD item: webhook:ENDPOINT/CONSENT_ID.
const webhookItemPrefix = "webhook:"

type attentionPage struct {
	Items  []attentionItem `json:"items"`
	Counts map[string]int  `json:"counts"`
	Next   string          `json:"next"`
}

func newAttentionListCmd(a *app) *cobra.Command {
	var state, format string
	var limit int
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list the open items, oldest first, with their age",
		Long: "List the items waiting for an operator, with how long each has been open, and how\n" +
			"many are open in each state.",
		Example: "  billingd attention list\n  billingd attention list --state MISSED --format json",
		Args:    noArgs,
	}
	fl := cmd.Flags()
	fl.StringVar(&state, "state", "", "only items in `STATE`: "+strings.Join(attentionStates, ", "))
	fl.IntVar(&limit, "limit", 1000, "at most `N` items (pages are followed up to it)")
	fl.StringVar(&format, "format", "table", "`FORMAT`: table or json")
	_ = cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions(attentionStates, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := checkFormat("attention list", format, "table", "json"); err != nil {
			return err
		}
		if limit < 1 {
			return argErrorf("attention list: --limit %d: want 1 or more", limit)
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var all attentionPage
		all.Items = []attentionItem{}
		after := ""
		for {
			q := url.Values{"limit": {strconv.Itoa(min(limit-len(all.Items), 1000))}}
			if state != "" {
				q.Set("state", strings.ToUpper(state))
			}
			if after != "" {
				q.Set("after", after)
			}
			var page attentionPage
			if err := cl.do("GET", "/v1/attention?"+q.Encode(), nil, &page); err != nil {
				return err
			}
			if all.Counts == nil {
				all.Counts = page.Counts
			}
			all.Items = append(all.Items, page.Items...)
			all.Next = page.Next
			if page.Next == "" || page.Next == after || len(all.Items) >= limit {
				break
			}
			after = page.Next
		}
		if len(all.Items) > limit {
			all.Items = all.Items[:limit]
		}
		if all.Counts == nil {
			all.Counts = map[string]int{}
		}
		if format == "json" {
			return printJSON(a.e.stdout, all)
		}
		return writeAttention(a.e.stdout, all)
	}
	return cmd
}

func writeAttention(w io.Writer, p attentionPage) error {
	fmt.Fprintln(w, "open: "+countsLine(p.Counts))
	if len(p.Items) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ITEM\tSTATE\tAGE\tSINCE\tDATE\tAMOUNT\tCLIENT REQUEST ID\tPAYMENT ID\tREASON")
	for _, it := range p.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.name(), it.State,
			age(time.Duration(it.AgeSeconds)*time.Second), tableTime(it.Since.Time), weekdayDate(it.Date), brl(it.Amount),
			dash(it.ClientRequestID), dash(it.PaymentID), dash(oneLine(it.Reason, 80)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Next != "" {
		fmt.Fprintln(w, "\nmore items are open: raise --limit to see them")
	}
	return nil
}

// countsLine is "2 MISSED, 1 FAILED" in the states' order, or "nothing".
func countsLine(counts map[string]int) string {
	var parts []string
	seen := map[string]bool{}
	for _, s := range attentionStates {
		seen[s] = true
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	var other []string
	for s, n := range counts {
		if !seen[s] && n > 0 {
			other = append(other, fmt.Sprintf("%d %s", n, s))
		}
	}
	sort.Strings(other)
	parts = append(parts, other...)
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// age is a duration for a table, in its two largest units: 3d4h, 5h12m, 40m, 12s.
func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	days, h, m := int(d/(24*time.Hour)), int(d/time.Hour)%24, int(d/time.Minute)%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh%dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm", m)
	}
	return fmt.Sprintf("%ds", int(d/time.Second))
}

// oneLine is s on one line, cut at n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

func newAttentionResolveCmd(a *app) *cobra.Command {
	var note, actor string
	cmd := &cobra.Command{
		Use:   "resolve CONSENT_ID/CYCLE/ATTEMPT --note TEXT [flags]",
		Short: "resolve an open item with a note (kept with who and when)",
		Long: "Resolve an open item: it leaves the list and the alerts, and the consent's timeline\n" +
			"keeps who resolved it, when and why. The item is named as attention list shows it.\n" +
			"A WEBHOOK_DEAD item (webhook:ENDPOINT/CONSENT_ID) is resolved by giving its first\n" +
			"event up: the endpoint will not get it, and the consent's later events follow\n" +
			"(to deliver it instead: billingd webhooks replay --consent).",
		Example: "  billingd attention resolve urn:klavi:consent-0001/3/0 --note \"charged by hand, ticket 4411\"",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return argErrorf("attention resolve: want exactly one item CONSENT_ID/CYCLE/ATTEMPT")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "`TEXT`: why the item is resolved, for the record (required)")
	cmd.Flags().StringVar(&actor, "actor", "", "`NAME` of who resolves it (default: $USER)")
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		if strings.TrimSpace(note) == "" {
			return argErrorf("attention resolve: --note is required: say why, for the record")
		}
		if rest, ok := strings.CutPrefix(args[0], webhookItemPrefix); ok {
			ep, id, ok := strings.Cut(rest, "/")
			if !ok || ep == "" || id == "" {
				return argErrorf("attention resolve: %q is not webhook:ENDPOINT/CONSENT_ID", args[0])
			}
			cl, err := af.client()
			if err != nil {
				return err
			}
			if who := firstNonEmpty(actor, a.e.getenv("USER")); who != "" {
				cl.actor = who
			}
			body, _ := json.Marshal(map[string]any{"webhook": ep, "consentId": id, "note": note})
			if err := cl.do("POST", "/v1/attention/resolve", bytes.NewReader(body), nil); err != nil {
				return err
			}
			fmt.Fprintf(a.e.stdout, "resolved %s (WEBHOOK_DEAD): its first event is given up; the later ones follow\n", args[0])
			return nil
		}
		id, k, n, err := parseItem(args[0])
		if err != nil {
			return argErrorf("attention resolve: %v", err)
		}
		who := firstNonEmpty(actor, a.e.getenv("USER"))
		if who == "" {
			return argErrorf("attention resolve: who resolves it? set --actor NAME ($USER is not set)")
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		cl.actor = who
		body, _ := json.Marshal(map[string]any{"consentId": id, "cycle": k, "attempt": n, "note": note})
		var out struct {
			State string `json:"state"`
		}
		if err := cl.do("POST", "/v1/attention/resolve", bytes.NewReader(body), &out); err != nil {
			return err
		}
		what := ""
		if out.State != "" {
			what = " (" + out.State + ")"
		}
		fmt.Fprintf(a.e.stdout, "resolved %s/%d/%d%s as %s: %s\n", id, k, n, what, who, oneLine(note, 200))
		return nil
	}
	return cmd
}

// parseItem splits CONSENT_ID/CYCLE/ATTEMPT; the consent id may itself hold slashes.
func parseItem(s string) (id string, k, n int, err error) {
	parts := strings.Split(s, "/")
	if len(parts) < 3 {
		return "", 0, 0, fmt.Errorf("%q is not CONSENT_ID/CYCLE/ATTEMPT", s)
	}
	id = strings.Join(parts[:len(parts)-2], "/")
	k, err1 := strconv.Atoi(parts[len(parts)-2])
	n, err2 := strconv.Atoi(parts[len(parts)-1])
	if id == "" || err1 != nil || err2 != nil || k < 0 || n < 0 {
		return "", 0, 0, fmt.Errorf("%q is not CONSENT_ID/CYCLE/ATTEMPT (cycle and attempt are numbers: 0, 1, …)", s)
	}
	return id, k, n, nil
}
