package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
)

func newConsentCmd(a *app) *cobra.Command {
	return group("consent", "add, list, show, revoke, authorize, create or import consents",
		"Add, list, show, revoke, authorize, create or import consents, and set the amount of a\nvariable consent's cycle.",
		newConsentAddCmd(a), newConsentListCmd(a), newConsentShowCmd(a), newConsentRevokeCmd(a),
		newConsentAuthorizeCmd(a), newConsentAmountCmd(a), newConsentCreateCmd(a), newConsentImportCmd(a))
}

func newConsentAddCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add FILE [flags]",
		Short: "add a consent file to the running daemon",
		Long:  "Add a consent (a consent file) to the running daemon.",
	}
	fs := cmd.Flags()
	billFrom := fs.String("bill-from", "", "first date billingd bills, `YYYY-MM-DD` (default: today by the daemon's clock; refused while it is in doubt)")
	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) != 1 {
			return argErrorf("consent add: want exactly one FILE")
		}
		c, err := readConsentFile(e, args[0]) // check locally first: every problem at once
		if err != nil {
			return err
		}
		if *billFrom != "" {
			if _, err := cycle.ParseDate(*billFrom); err != nil {
				return argErrorf("consent add: --bill-from: %v", err)
			}
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		body, _ := json.Marshal(c)
		var raw json.RawMessage
		if err := cl.do("POST", "/v1/consents?billFrom="+url.QueryEscape(*billFrom), bytes.NewReader(body), &raw); err != nil {
			return err
		}
		sum, err := decodeRecord(raw)
		if err != nil {
			return fmt.Errorf("consent add: the daemon's answer: %w", err)
		}
		fmt.Fprintf(e.stdout, "added %s: %s, %s\n", c.ID, sum.State, a.whatNext(c, sum))
		return nil
	}
	return cmd
}

// decodeRecord reads a stored consent record (the answer of add and get) as a
// summary.
func decodeRecord(raw []byte) (consentSummary, error) {
	var sum consentSummary
	if err := json.Unmarshal(raw, &sum); err != nil {
		return sum, err
	}
	var rec struct {
		Consent *consent.Consent `json:"consent"`
	}
	if err := json.Unmarshal(raw, &rec); err == nil && rec.Consent != nil {
		sum.ID = rec.Consent.ID
		if rec.Consent.PaymentMethodConfig != nil {
			sum.Interval = rec.Consent.Interval().String()
			if a, ok := rec.Consent.FixedAmount(); ok && sum.Amount == nil {
				m := money(a)
				sum.Amount = &m
			}
		}
	}
	return sum, nil
}

// whatNext says what billingd does next with a consent just added or authorized:
// the submission of its next cycle; or, when that cycle's window has already closed,
// that the cycle will be MISSED and which cycle is billed next. The plan is the
// daemon's own (scheduler.Policy.Plan) under the billing rules of the config.
func (a *app) whatNext(c *consent.Consent, sum consentSummary) string {
	next := fmt.Sprintf("next cycle %d", sum.NextCycle)
	if !sum.NextSubmitAt.IsZero() {
		next += ", submitted " + tableTime(sum.NextSubmitAt)
	}
	if c == nil || sum.State != string(storage.ConsentActive) {
		return next
	}
	cfg, err := loadConfigFor(a.e, a.config, true)
	if err != nil {
		return next
	}
	pol, err := cfg.policy()
	if err != nil {
		return next
	}
	h, m, _ := parseClock(cfg.Billing.SubmitTime)
	if w := missedNext(pol, h, m, c, sum.NextCycle, cycle.DateOf(a.e.clock.Now())); w != "" {
		return w
	}
	return next
}

// missedNext says, for an active consent whose next cycle is k, under pol (submit
// time h:m) and on today's Brasília date: that cycle k (and the next ones) will be
// MISSED and which cycle is billed next; that cycle k is late and submitted at the
// next scan; or "" when cycle k is planned as usual.
func missedNext(pol scheduler.Policy, h, m int, c *consent.Consent, k int, today cycle.Date) string {
	s := pol.Schedule(c)
	if !s.Exists(k) {
		return ""
	}
	p := pol.Plan(c, s, k, today, nil)
	switch p.State {
	case scheduler.StateLate:
		return fmt.Sprintf("next cycle %d (due %s), submitted at the next scan: its submit day %s has passed and the window is open until %s",
			p.Index, weekdayDate(p.Due), weekdayDate(p.Due.AddDays(-pol.LeadDays)), weekdayDate(p.Deadline))
	case scheduler.StateMissed:
	default:
		return ""
	}
	out := fmt.Sprintf("cycle %d (due %s) will be MISSED: its window closed on %s", p.Index, weekdayDate(p.Due), weekdayDate(p.Deadline))
	for k = p.Index + 1; s.Exists(k); k++ {
		q := pol.Plan(c, s, k, today, nil)
		if q.State == scheduler.StateMissed {
			out += fmt.Sprintf("; cycle %d (due %s) too", q.Index, weekdayDate(q.Due))
			continue
		}
		at := q.SubmitOn.At(h, m)
		if q.State == scheduler.StateLate {
			return out + fmt.Sprintf("; the next cycle billed is %d (due %s), submitted at the next scan", q.Index, weekdayDate(q.Due))
		}
		return out + fmt.Sprintf("; the next cycle billed is %d (due %s), submitted %s", q.Index, weekdayDate(q.Due), tableTime(at))
	}
	return out + "; no later cycle is billed (the consent expires first)"
}

func newConsentListCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list consents (no personal data)",
		Long:  "List consents (no personal data).",
	}
	fs := cmd.Flags()
	state := fs.String("state", "", "only consents in `STATE` (active, awaiting_authorization, revoked, rejected, expired)")
	limit := fs.Int("limit", 100, "at most `N` consents")
	after := fs.String("after", "", "start after this consent `ID` (paging)")
	format := fs.String("format", "table", "`FORMAT`: table or json")
	af := addAdminFlags(cmd, a)
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if err := checkFormat("consent list", *format, "table", "json"); err != nil {
			return err
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *state != "" {
			q.Set("state", *state)
		}
		if *after != "" {
			q.Set("after", *after)
		}
		var out struct {
			Consents []consentSummary `json:"consents"`
		}
		if err := cl.do("GET", "/v1/consents?"+q.Encode(), nil, &out); err != nil {
			return err
		}
		if *format == "json" {
			return printJSON(e.stdout, out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tINTERVAL\tAMOUNT\tNEXT CYCLE\tNEXT DUE\tNEXT SUBMISSION")
		for _, c := range out.Consents {
			amount := "variable"
			if c.Amount != nil {
				amount = brl(c.Amount)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.ID, c.State, c.Interval, amount, c.NextCycle,
				weekdayDate(c.NextDueDate), tableTime(c.NextSubmitAt))
		}
		return tw.Flush()
	}
	return cmd
}

func oneID(args []string, name string) error {
	if len(args) != 1 {
		return argErrorf("%s: want exactly one consent ID", name)
	}
	return nil
}

func newConsentShowCmd(a *app) *cobra.Command {
	var format string
	var cycles int
	cmd := &cobra.Command{
		Use:   "show ID [flags]",
		Short: "show a consent, its upcoming plan and its timeline",
		Long: "Show a consent (personal data masked), its upcoming plan (the daemon's own, cycles\n" +
			"already decided with their stored state) and its timeline: every state change and\n" +
			"operator action, with who and why.",
		Example: "  billingd consent show urn:klavi:consent-0001\n  billingd consent show urn:klavi:consent-0001 --format json",
		Args:    func(cmd *cobra.Command, args []string) error { return oneID(args, "consent show") },
	}
	cmd.Flags().StringVar(&format, "format", "table", "`FORMAT`: table or json")
	cmd.Flags().IntVar(&cycles, "cycles", 6, "cycles of the plan to show")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	af := addAdminFlags(cmd, a)
	cmd.RunE = func(_ *cobra.Command, args []string) error {
		if err := checkFormat("consent show", format, "table", "json"); err != nil {
			return err
		}
		if cycles < 1 || cycles > 10000 {
			return argErrorf("consent show: --cycles %d: want 1..10000", cycles)
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		id := url.PathEscape(args[0])
		var raw json.RawMessage
		if err := cl.do("GET", "/v1/consents/"+id, nil, &raw); err != nil {
			return err
		}
		view, err := viewOf(raw)
		if err != nil {
			return fmt.Errorf("consent show: the daemon's answer: %w", err)
		}
		var plan json.RawMessage
		if err := cl.do("GET", "/v1/consents/"+id+"/preview?"+url.Values{"cycles": {strconv.Itoa(cycles)}}.Encode(), nil, &plan); err != nil {
			return err
		}
		events, timeline, err := consentEvents(cl, id)
		if err != nil {
			return err
		}
		if format == "json" {
			return printJSON(a.e.stdout, struct {
				Consent consentView       `json:"consent"`
				Plan    json.RawMessage   `json:"plan"`
				Events  []json.RawMessage `json:"events"`
			}{view, plan, events})
		}
		return writeConsentShow(a.e.stdout, view, plan, timeline, events != nil)
	}
	return cmd
}

// A consentView is a stored consent with its personal data masked: what consent show
// prints.
type consentView struct {
	sum          consentSummary
	Status       string     `json:"status"`
	ContractID   string     `json:"contractId"`
	Debtor       string     `json:"debtor"`
	Creditor     string     `json:"creditor"`
	Account      string     `json:"creditorAccount"`
	Reference    cycle.Date `json:"referenceStartDate"`
	Expires      string     `json:"expires,omitempty"`
	Variable     string     `json:"variable,omitempty"`
	RetryMode    string     `json:"retryMode"`
	Retries      string     `json:"retries"`
	BillFrom     cycle.Date `json:"billFrom"`
	AddedAt      instant    `json:"addedAt"`
	UpdatedAt    instant    `json:"updatedAt"`
	RedirectSent bool       `json:"awaitingPayer,omitempty"`
}

func (v consentView) MarshalJSON() ([]byte, error) {
	type details consentView // without this method
	obj := map[string]json.RawMessage{}
	for _, part := range []any{v.sum, details(v)} {
		b, err := json.Marshal(part)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, err
		}
	}
	return json.Marshal(obj)
}

// viewOf reads GET /v1/consents/{id} and masks what is personal.
func viewOf(raw []byte) (consentView, error) {
	sum, err := decodeRecord(raw)
	if err != nil {
		return consentView{}, err
	}
	var rec struct {
		Consent     *consent.Consent `json:"consent"`
		BillFrom    cycle.Date       `json:"billFrom"`
		AddedAt     time.Time        `json:"addedAt"`
		UpdatedAt   time.Time        `json:"updatedAt"`
		RedirectURL string           `json:"redirectUrl"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return consentView{}, err
	}
	v := consentView{sum: sum, BillFrom: rec.BillFrom, AddedAt: instant{rec.AddedAt}, UpdatedAt: instant{rec.UpdatedAt},
		RedirectSent: rec.RedirectURL != "" && sum.State == string(storage.ConsentAwaiting)}
	c := rec.Consent
	if c == nil {
		return v, nil
	}
	v.Status = string(c.Status)
	v.RetryMode = string(c.Billing.RetryMode)
	v.Retries = "none"
	if st := c.Strategy(); st != nil {
		v.Retries = st.Describe()
	}
	if exp := c.Expiry(); !exp.IsZero() {
		v.Expires = exp.String()
	}
	if pm := c.PaymentMethodConfig; pm != nil {
		v.ContractID = pm.ContractID
		v.Reference = pm.ReferenceStartDate
		v.Debtor = dash(pm.ContractDebtor.Masked())
		v.Variable = pm.VariableRange("-")
	}
	if ca := c.CreditorAccount; ca != nil {
		v.Creditor = dash(ca.Holder.Masked())
		v.Account = ca.Masked()
	}
	return v, nil
}

// A timelineEvent is one event of a consent's timeline.
type timelineEvent struct {
	At              time.Time  `json:"at"`
	Kind            string     `json:"kind"`
	Cycle           *int       `json:"cycle"`
	Attempt         *int       `json:"attempt"`
	Date            cycle.Date `json:"date"`
	Amount          *money     `json:"amount"`
	PaymentID       string     `json:"paymentId"`
	ClientRequestID string     `json:"clientRequestId"`
	Actor           string     `json:"actor"`
	Reason          string     `json:"reason"`
}

// consentEvents reads the whole timeline (every page). A daemon without timelines
// gives nil, nil, nil.
func consentEvents(cl *adminClient, id string) ([]json.RawMessage, []timelineEvent, error) {
	raws := []json.RawMessage{}
	var evs []timelineEvent
	after := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if after != "" {
			q.Set("after", after)
		}
		var page struct {
			Events []json.RawMessage `json:"events"`
			Next   string            `json:"next"`
		}
		err := cl.do("GET", "/v1/consents/"+id+"/events?"+q.Encode(), nil, &page)
		if noRoute(err) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		for _, r := range page.Events {
			var ev timelineEvent
			if err := json.Unmarshal(r, &ev); err != nil {
				return nil, nil, fmt.Errorf("consent show: an event of the timeline: %w", err)
			}
			raws = append(raws, r)
			evs = append(evs, ev)
		}
		if page.Next == "" || page.Next == after {
			return raws, evs, nil
		}
		after = page.Next
	}
}

func writeConsentShow(w io.Writer, v consentView, plan json.RawMessage, events []timelineEvent, haveTimeline bool) error {
	s := v.sum
	amount := "variable"
	if s.Amount != nil {
		amount = brl(s.Amount) + " (fixed)"
	} else if v.Variable != "" {
		amount = "variable, " + v.Variable
	}
	next := fmt.Sprintf("cycle %d", s.NextCycle)
	if !s.NextDueDate.IsZero() {
		next += ", due " + weekdayDate(s.NextDueDate)
	}
	if !s.NextSubmitAt.IsZero() {
		next += ", submitted " + tableTime(s.NextSubmitAt)
	}
	state := s.State
	if s.StateReason != "" {
		state += " (" + s.StateReason + ")"
	}
	fmt.Fprintf(w, "consent %s\n", s.ID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"state", state},
		{"Klavi status", v.Status},
		{"interval", fmt.Sprintf("%s from %s", s.Interval, weekdayDate(v.Reference))},
		{"expires", firstNonEmpty(v.Expires, "never")},
		{"amount", amount},
		{"retries", fmt.Sprintf("%s (mode %s)", v.Retries, firstNonEmpty(v.RetryMode, "the config's"))},
		{"contract", v.ContractID},
		{"debtor", v.Debtor},
		{"creditor", v.Creditor},
		{"creditor account", v.Account},
		{"billed from", weekdayDate(v.BillFrom)},
		{"next", next},
		{"added", tableTime(v.AddedAt.Time)},
		{"updated", tableTime(v.UpdatedAt.Time)},
	} {
		fmt.Fprintf(tw, "  %s:\t%s\n", kv[0], dash(kv[1]))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nupcoming plan")
	var pv scheduler.Preview
	if err := json.Unmarshal(plan, &pv); err != nil {
		return fmt.Errorf("consent show: the daemon's plan: %w", err)
	}
	if err := writePlanTable(w, pv); err != nil {
		return err
	}
	fmt.Fprintln(w, "\ntimeline")
	if !haveTimeline {
		fmt.Fprintln(w, "  this daemon keeps no timeline (upgrade it); see 'billingd payments list --consent ID'")
		return nil
	}
	if len(events) == 0 {
		fmt.Fprintln(w, "  no events yet")
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tEVENT\tCYCLE\tATTEMPT\tDATE\tAMOUNT\tPAYMENT ID\tACTOR\tREASON")
	for _, ev := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tableTime(ev.At), ev.Kind, intOrDash(ev.Cycle), intOrDash(ev.Attempt),
			weekdayDate(ev.Date), brl(ev.Amount), dash(ev.PaymentID), dash(ev.Actor), dash(oneLine(ev.Reason, 80)))
	}
	return tw.Flush()
}

func intOrDash(n *int) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(*n)
}

func newConsentRevokeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke ID [flags]",
		Short: "stop billing a consent for good",
		Long:  "Stop billing a consent for good (its history is kept).",
	}
	fs := cmd.Flags()
	reason := fs.String("reason", "", "`TEXT`: why, for the record")
	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if err := oneID(args, "consent revoke"); err != nil {
			return err
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]string{"reason": *reason})
		var sum consentSummary
		if err := cl.do("POST", "/v1/consents/"+url.PathEscape(args[0])+"/revoke", bytes.NewReader(body), &sum); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: %s\n", sum.ID, sum.State)
		return nil
	}
	return cmd
}

func newConsentAuthorizeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authorize ID [flags]",
		Short: "start billing a consent the payer authorized, once Klavi confirms it",
		Long: "Start billing a consent awaiting authorization, once the payer authorized it: billingd reads\n" +
			"the consent at Klavi first, and only a consent Klavi reports CONSENT_AUTHORIZED is billed.\n" +
			"Any other status changes nothing and exits 2 naming it (a consent Klavi stopped is\n" +
			"stopped). The refresh job does the same by itself every few minutes.",
	}
	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if err := oneID(args, "consent authorize"); err != nil {
			return err
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var sum consentSummary
		if err := cl.do("POST", "/v1/consents/"+url.PathEscape(args[0])+"/authorize", nil, &sum); err != nil {
			return err
		}
		// The consent itself, for the plan of its next cycle.
		var c *consent.Consent
		var rec struct {
			Consent *consent.Consent `json:"consent"`
		}
		if cl.do("GET", "/v1/consents/"+url.PathEscape(args[0]), nil, &rec) == nil {
			c = rec.Consent
		}
		fmt.Fprintf(e.stdout, "%s: %s, %s\n", sum.ID, sum.State, a.whatNext(c, sum))
		return nil
	}
	return cmd
}

func newConsentAmountCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "amount ID CYCLE AMOUNT [flags]",
		Short: "set the amount of one cycle of a variable consent",
		Long:  "Set the amount of one cycle of a variable consent (AMOUNT like 123.45).",
	}

	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) != 3 {
			return argErrorf("consent amount: want ID CYCLE AMOUNT")
		}
		k, err := strconv.Atoi(args[1])
		if err != nil || k < 0 {
			return argErrorf("consent amount: cycle %q is not a cycle index (0, 1, …)", args[1])
		}
		a, err := klavi.ParseAmount(args[2])
		if err != nil {
			return argErrorf("consent amount: %v", err)
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		body, _ := json.Marshal(map[string]klavi.Cents{"amount": a})
		if err := cl.do("PUT", fmt.Sprintf("/v1/consents/%s/cycles/%d/amount", url.PathEscape(args[0]), k), bytes.NewReader(body), nil); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: cycle %d will bill %s\n", args[0], k, a.BRL())
		return nil
	}
	return cmd
}

func newConsentCreateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create FILE [flags]",
		Short: "create a consent at Klavi and print where the payer authorizes it",
		Long: "Create a consent at Klavi through the running daemon (FILE: Klavi's create-consent\n" +
			"body plus an optional billing object) and print the URL where the payer authorizes it.\n\n" +
			"The body is a consent file's (examples/consents/*.json) without the two fields\n" +
			"Klavi gives a consent, id and status: billingd stores the consent under the id\n" +
			"Klavi answers with, awaiting the payer's authorization.",
	}

	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) != 1 {
			return argErrorf("consent create: want exactly one FILE")
		}
		body, err := os.ReadFile(args[0])
		if err != nil {
			return usageErrorf("consent create: %v", err)
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		var out struct {
			ID          string `json:"id"`
			Status      string `json:"status"`
			RedirectURL string `json:"consentRedirectUrl"`
		}
		if err := cl.do("POST", "/v1/klavi/consents", bytes.NewReader(body), &out); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "created %s (%s)\nthe payer authorizes it at: %s\n", out.ID, out.Status, out.RedirectURL)
		return nil
	}
	return cmd
}

// readConsents reads consent files: each FILE holds one consent or an array of them;
// a DIR contributes its *.json files in name order. Every problem of every file is
// printed; any problem fails the whole read.
func readConsents(e *env, paths []string) ([]*consent.Consent, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		m, _ := filepath.Glob(filepath.Join(p, "*.json"))
		if len(m) == 0 {
			return nil, usageErrorf("%s: no *.json consent files", p)
		}
		sort.Strings(m)
		files = append(files, m...)
	}
	var (
		out  []*consent.Consent
		bad  bool
		seen = map[string]string{}
	)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, usageErrorf("%v", err)
		}
		cs, err := consent.DecodeMany(data)
		if err != nil {
			reportProblems(e.stderr, f, err)
			bad = true
			continue
		}
		for _, c := range cs {
			if prev, dup := seen[c.ID]; dup {
				fmt.Fprintf(e.stderr, "billingd: %s: consent %s is also in %s\n", f, c.ID, prev)
				bad = true
			}
			seen[c.ID] = f
		}
		out = append(out, cs...)
	}
	if bad {
		return nil, errSilent
	}
	return out, nil
}

func newConsentImportCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE|DIR... [flags]",
		Short: "load consents straight into a database while billingd is stopped",
		Long: "Load consents straight into a database while billingd is stopped (first installs).\n" +
			"All files are checked first; if any is invalid nothing is imported. Consents\n" +
			"already stored are skipped, never changed.\n\n" +
			"\"Today\" is the Brasília date of this host's clock, with no Klavi time to check\n" +
			"it against: the clock must be right (NTP). On a clock more than\n" +
			"scheduler.clock_tolerance behind the latest instant the database holds, the\n" +
			"import is refused and writes nothing (exit 1), as the daemon decides nothing on\n" +
			"such a clock. The import's instant becomes that latest instant: after an import\n" +
			"on a clock ahead, a daemon on the right clock doubts its clock (not ready,\n" +
			"BillingdClockInDoubt) instead of never billing the cycles due before that wrong\n" +
			"today. A --bill-from after today is taken as given: cycles due before it are\n" +
			"never billed. See docs/OPERATIONS.md, \"First install: import consents\".",
	}
	fs := cmd.Flags()
	dbFlag := fs.String("db", "", "database `PATH` (default: storage.path of the config)")
	billFrom := fs.String("bill-from", "", "first date billingd bills, `YYYY-MM-DD` (default: today by this host's clock)")
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) == 0 {
			return argErrorf("consent import: want at least one FILE or DIR")
		}
		started := e.clock.Now()
		from := cycle.DateOf(started) // today by this host's clock: it must be right
		if *billFrom != "" {
			var err error
			if from, err = cycle.ParseDate(*billFrom); err != nil {
				return argErrorf("consent import: --bill-from: %v", err)
			}
			today := cycle.DateOf(started)
			switch {
			case from.Before(today.AddDays(-scheduler.WindowOpensDays)):
				fmt.Fprintf(e.stderr, "warning: --bill-from %s is before today (%s): every cycle due between them whose window has closed is recorded MISSED, and alerted\n", from, today)
			case today.AddDays(366).Before(from):
				fmt.Fprintf(e.stderr, "warning: --bill-from %s is more than a year ahead: nothing due before it is billed\n", from)
			case today.Before(from):
				fmt.Fprintf(e.stderr, "note: --bill-from %s is after today (%s by this host's clock): cycles due before it are never billed\n", from, today)
			}
		}
		path, cfg, err := dbPath(e, *dbFlag, a.config)
		if err != nil {
			return err
		}
		cs, err := readConsents(e, args)
		if err != nil {
			return err
		}
		sc, err := cfg.schedulerConfig() // the daemon's own: its clock tolerance too
		if err != nil {
			return usageErrorf("%v", err)
		}
		pol, h, m := sc.Policy, sc.SubmitHour, sc.SubmitMinute
		db, err := bolt.Open(path, bolt.Options{Timeout: time.Second})
		if err != nil {
			if errors.Is(err, storage.ErrLocked) {
				return fmt.Errorf("%w; while billingd runs, add consents with 'billingd consent add'", err)
			}
			return err
		}
		defer db.Close()
		// Nothing is written to a damaged file: check every page first.
		if err := db.Verify(cmd.Context()); err != nil {
			return fmt.Errorf("%s: %w (nothing was imported)", path, err)
		}
		sch, err := scheduler.New(sc, db, nil, scheduler.WithClock(e.clock))
		if err != nil {
			return err
		}
		added, skipped, err := sch.AddConsents(cmd.Context(), cs, from)
		if errors.Is(err, scheduler.ErrClockBehind) {
			return fmt.Errorf("import: this host's %w. Fix the clock (NTP), then import again", err)
		}
		if err != nil {
			return fmt.Errorf("import: %w (%s imported before it; running the import again skips them)", err, plural(added, "consent"))
		}
		fmt.Fprintf(e.stdout, "imported %s into %s (%d already there, skipped)\n", plural(added, "consent"), path, skipped)
		if *billFrom == "" && added > 0 {
			fmt.Fprintf(e.stdout, "billed from %s: today by this host's clock (%s)\n", weekdayDate(from), started.UTC().Format(time.RFC3339))
		}
		// What the first scan will do that an operator would not expect: cycles whose
		// window closed before the import (MISSED, and alerted), and late ones.
		today := cycle.DateOf(e.clock.Now())
		for _, c := range cs {
			rec, err := db.GetConsent(cmd.Context(), c.ID)
			if err != nil || rec.State != storage.ConsentActive || rec.AddedAt.Before(started) {
				continue // not this import's, or not billed
			}
			if w := missedNext(pol, h, m, c, rec.NextCycle, today); w != "" {
				fmt.Fprintf(e.stdout, "  %s: %s\n", c.ID, w)
			}
		}
		return nil
	}
	return cmd
}
