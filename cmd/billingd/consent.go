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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/admin"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
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
	billFrom := fs.String("bill-from", "", "first date billingd bills, `YYYY-MM-DD` (default: today)")
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
		var rec storage.ConsentRecord
		if err := cl.do("POST", "/v1/consents?billFrom="+url.QueryEscape(*billFrom), bytes.NewReader(body), &rec); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added %s: %s, next cycle %d%s\n", rec.ID(), rec.State, rec.NextCycle, nextDue(rec.NextDue))
		return nil
	}
	return cmd
}

func nextDue(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ", submitted " + t.In(cycle.Brasilia).Format("Mon 2006-01-02 15:04")
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
	format := fs.String("format", "table", "table or json")
	af := addAdminFlags(cmd, a)
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
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
			Consents []admin.ConsentSummary `json:"consents"`
		}
		if err := cl.do("GET", "/v1/consents?"+q.Encode(), nil, &out); err != nil {
			return err
		}
		if *format == "json" {
			return printJSON(e.stdout, out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tINTERVAL\tAMOUNT\tNEXT CYCLE\tNEXT SUBMISSION")
		for _, c := range out.Consents {
			amount := "variable"
			if c.Amount != nil {
				amount = c.Amount.BRL()
			}
			next := "-"
			if c.NextDue != nil {
				next = c.NextDue.In(cycle.Brasilia).Format("Mon 2006-01-02 15:04")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", c.ID, c.State, c.Interval, amount, c.NextCycle, next)
		}
		return tw.Flush()
	}
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func oneID(args []string, name string) error {
	if len(args) != 1 {
		return argErrorf("%s: want exactly one consent ID", name)
	}
	return nil
}

func newConsentShowCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show ID [flags]",
		Short: "show a consent, its upcoming plan and its timeline",
		Long:  "Show a consent, its billing state and its attempts (JSON).",
	}
	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if err := oneID(args, "consent show"); err != nil {
			return err
		}
		cl, err := af.client()
		if err != nil {
			return err
		}
		id := url.PathEscape(args[0])
		var rec, atts json.RawMessage
		if err := cl.do("GET", "/v1/consents/"+id, nil, &rec); err != nil {
			return err
		}
		if err := cl.do("GET", "/v1/consents/"+id+"/attempts", nil, &atts); err != nil {
			return err
		}
		return printJSON(e.stdout, map[string]json.RawMessage{"consent": rec, "attempts": atts})
	}
	return cmd
}

func newConsentRevokeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke ID [flags]",
		Short: "stop billing a consent for good",
		Long:  "Stop billing a consent for good (its history is kept).",
	}
	fs := cmd.Flags()
	reason := fs.String("reason", "", "why, for the record")
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
		var sum admin.ConsentSummary
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
		Short: "mark a consent awaiting authorization as authorized",
		Long:  "Mark a consent awaiting authorization as authorized: billing starts.",
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
		var sum admin.ConsentSummary
		if err := cl.do("POST", "/v1/consents/"+url.PathEscape(args[0])+"/authorize", nil, &sum); err != nil {
			return err
		}
		next := ""
		if sum.NextDue != nil {
			next = nextDue(*sum.NextDue)
		}
		fmt.Fprintf(e.stdout, "%s: %s, next cycle %d%s\n", sum.ID, sum.State, sum.NextCycle, next)
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
			"body plus an optional billing object) and print the URL where the payer authorizes it.",
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
		cs, err := decodeConsents(data)
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

// decodeConsents decodes one consent object or an array of them.
func decodeConsents(data []byte) ([]*consent.Consent, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		c, err := consent.Decode(data)
		if err != nil {
			return nil, err
		}
		return []*consent.Consent{c}, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(trimmed, &raws); err != nil {
		return nil, problem.List{{Message: "not a valid JSON array of consents: " + strings.TrimPrefix(err.Error(), "json: ")}}
	}
	var (
		out  []*consent.Consent
		all  problem.List
		list problem.List
	)
	for i, r := range raws {
		c, err := consent.Decode(r)
		if err != nil {
			if errors.As(err, &list) {
				all.Merge(problem.Index("", i), list)
			}
			continue
		}
		out = append(out, c)
	}
	if len(all) > 0 {
		return nil, all
	}
	return out, nil
}

func newConsentImportCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import FILE|DIR... [flags]",
		Short: "load consents straight into a database while billingd is stopped",
		Long: "Load consents straight into a database while billingd is stopped (first installs).\n" +
			"All files are checked first; if any is invalid nothing is imported. Consents\n" +
			"already stored are skipped, never changed.",
	}
	fs := cmd.Flags()
	dbFlag := fs.String("db", "", "database `PATH` (default: storage.path of the config)")
	billFrom := fs.String("bill-from", "", "first date billingd bills, `YYYY-MM-DD` (default: today)")
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) == 0 {
			return argErrorf("consent import: want at least one FILE or DIR")
		}
		var from cycle.Date
		if *billFrom != "" {
			var err error
			if from, err = cycle.ParseDate(*billFrom); err != nil {
				return argErrorf("consent import: --bill-from: %v", err)
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
		pol, err := cfg.policy()
		if err != nil {
			return usageErrorf("%v", err)
		}
		db, err := storage.Open(path, storage.Options{Timeout: time.Second})
		if err != nil {
			if errors.Is(err, storage.ErrLocked) {
				return fmt.Errorf("%w; while billingd runs, add consents with 'billingd consent add'", err)
			}
			return err
		}
		defer db.Close()
		// Nothing is written to a damaged file: check every page first.
		if err := db.Verify(); err != nil {
			return fmt.Errorf("%s: %w (nothing was imported)", path, err)
		}
		h, m, _ := parseClock(cfg.Billing.SubmitTime)
		sch, err := scheduler.New(scheduler.Config{Policy: pol, SubmitHour: h, SubmitMinute: m}, db, nil, scheduler.WithClock(e.clock))
		if err != nil {
			return err
		}
		added, skipped, err := sch.AddConsents(cs, from, db.ApplyAll)
		if err != nil {
			return fmt.Errorf("import: %w (nothing was imported)", err)
		}
		fmt.Fprintf(e.stdout, "imported %s into %s (%d already there, skipped)\n", plural(added, "consent"), path, skipped)
		return nil
	}
	return cmd
}
