package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newWebhooksCmd(a *app) *cobra.Command {
	return group("webhooks", "list the merchant's webhook endpoints and replay events",
		"List the webhook endpoints with what each has not received yet, and deliver events\n"+
			"again: every event after a feed position, one event by its id, a consent whose\n"+
			"events wait (a dead letter: WEBHOOK_DEAD in attention list), or every dead letter.\n"+
			"Deliveries are at least once: receivers dedupe on the event id. See docs/WEBHOOKS.md.",
		newWebhooksListCmd(a), newWebhooksReplayCmd(a))
}

// webhookStatus is an endpoint as GET /v1/webhooks lists it.
type webhookStatus struct {
	Name    string   `json:"name"`
	URL     string   `json:"url"`
	Events  []string `json:"events"`
	Cursor  uint64   `json:"cursor"`
	Head    uint64   `json:"head"`
	Backlog int      `json:"backlog"`
	Waiting int      `json:"waitingConsents"`
	Dead    int      `json:"deadLetters"`
	Oldest  *instant `json:"oldestUndelivered,omitempty"`
}

func newWebhooksListCmd(a *app) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list the endpoints: backlog, oldest undelivered event, dead letters",
		Long: "List the webhook endpoints of the config: each one's cursor in the feed, how many\n" +
			"events it has not received yet (BACKLOG), how many consents wait behind a failed\n" +
			"delivery (WAITING) and how many of them are dead-lettered (DEAD), and how long\n" +
			"the oldest event it has not received has waited.",
		Example: "  billingd webhooks list\n  billingd webhooks list --format json",
		Args:    noArgs,
	}
	cmd.Flags().StringVar(&format, "format", "table", "`FORMAT`: table or json")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := checkFormat("webhooks list", format, "table", "json"); err != nil {
			return err
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var out struct {
			Endpoints []webhookStatus `json:"endpoints"`
		}
		if err := cl.do("GET", "/v1/webhooks", nil, &out); err != nil {
			return err
		}
		if format == "json" {
			return printJSON(a.e.stdout, out)
		}
		return writeWebhooks(a.e.stdout, out.Endpoints, a.e.clock.Now())
	}
	return cmd
}

func writeWebhooks(w io.Writer, eps []webhookStatus, now time.Time) error {
	if len(eps) == 0 {
		fmt.Fprintln(w, "no webhook endpoints are configured (webhooks.endpoints); GET /v1/events serves the feed")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tURL\tEVENTS\tCURSOR\tHEAD\tBACKLOG\tOLDEST\tWAITING\tDEAD")
	for _, e := range eps {
		kinds := "all"
		if len(e.Events) > 0 {
			kinds = strings.Join(e.Events, ",")
		}
		oldest := "-"
		if e.Oldest != nil {
			oldest = age(now.Sub(e.Oldest.Time))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%d\t%d\n", e.Name, e.URL, kinds, e.Cursor, e.Head, e.Backlog, oldest, e.Waiting, e.Dead)
	}
	return tw.Flush()
}

func newWebhooksReplayCmd(a *app) *cobra.Command {
	var (
		endpoint, from, event, consentID string
		dead                             bool
	)
	cmd := &cobra.Command{
		Use:   "replay --endpoint NAME (--from POSITION | --event ID | --consent ID | --dead) [flags]",
		Short: "deliver events to an endpoint again",
		Long: "Deliver events to an endpoint again; the daemon (its leader) sends them on its next\n" +
			"pass, in order per consent, with their ids unchanged:\n\n" +
			"  --from POSITION  every event after that feed position (the endpoint's dead\n" +
			"                   letters and waiting consents are folded in);\n" +
			"  --event ID       that one event;\n" +
			"  --consent ID     the events of a consent that wait (a dead letter: tried again\n" +
			"                   now, for webhooks.max_age more);\n" +
			"  --dead           every dead letter of the endpoint, as --consent does one.",
		Example: "  billingd webhooks replay --endpoint shop --dead\n" +
			"  billingd webhooks replay --endpoint shop --from 0\n" +
			"  billingd webhooks replay --endpoint shop --event evt_3n5xq2mb7kq4a6d2vx4w5yz7ce",
		Args: noArgs,
	}
	fl := cmd.Flags()
	fl.StringVar(&endpoint, "endpoint", "", "the endpoint's `NAME` (required)")
	fl.StringVar(&from, "from", "", "deliver every event after feed `POSITION` (0: the whole feed)")
	fl.StringVar(&event, "event", "", "deliver the event `ID` again")
	fl.StringVar(&consentID, "consent", "", "deliver the waiting events of consent `ID` now")
	fl.BoolVar(&dead, "dead", false, "deliver every dead letter's events now")
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(*cobra.Command, []string) error {
		if endpoint == "" {
			return argErrorf("webhooks replay: --endpoint is required")
		}
		req := map[string]any{}
		n := 0
		if from != "" {
			pos, err := strconv.ParseUint(from, 10, 64)
			if err != nil {
				return argErrorf("webhooks replay: --from %q: want a feed position (0, 1, 2, …)", from)
			}
			req["from"], n = pos, n+1
		}
		if event != "" {
			req["eventId"], n = event, n+1
		}
		if consentID != "" {
			req["consentId"], n = consentID, n+1
		}
		if dead {
			req["dead"], n = true, n+1
		}
		if n != 1 {
			return argErrorf("webhooks replay: name exactly one of --from, --event, --consent, --dead")
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		body, _ := json.Marshal(req)
		var res struct {
			Cursor   uint64 `json:"cursor"`
			Requeued int    `json:"requeued"`
			Revived  int    `json:"revived"`
			Note     string `json:"note"`
		}
		if err := cl.do("POST", "/v1/webhooks/"+url.PathEscape(endpoint)+"/replay", bytes.NewReader(body), &res); err != nil {
			return err
		}
		fmt.Fprintf(a.e.stdout, "endpoint %s: %d event(s) queued again, %d waiting consent(s) tried now; cursor %d\n",
			endpoint, res.Requeued, res.Revived, res.Cursor)
		if res.Note != "" {
			fmt.Fprintln(a.e.stdout, res.Note)
		}
		return nil
	}
	return cmd
}
