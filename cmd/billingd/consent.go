package main

import (
	"bytes"
	"context"
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

	"github.com/klavi-billing/billingd/admin"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
)

func cmdConsent(ctx context.Context, e *env, args []string) error {
	subs := map[string]func(context.Context, *env, []string) error{
		"add": cmdConsentAdd, "list": cmdConsentList, "show": cmdConsentShow, "revoke": cmdConsentRevoke,
		"authorize": cmdConsentAuthorize, "amount": cmdConsentAmount, "create": cmdConsentCreate, "import": cmdConsentImport,
	}
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 {
		return usageErrorf("consent: want a subcommand: %s", strings.Join(names, ", "))
	}
	fn, ok := subs[args[0]]
	if !ok {
		return usageErrorf("consent: unknown subcommand %q: want one of %s", args[0], strings.Join(names, ", "))
	}
	return fn(ctx, e, args[1:])
}

func cmdConsentAdd(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "consent add", "[--bill-from YYYY-MM-DD] FILE", "Add a consent (a consent file) to the running daemon.")
	billFrom := fs.String("bill-from", "", "first date billingd bills, `YYYY-MM-DD` (default: today)")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("consent add: want exactly one FILE")
	}
	c, err := readConsentFile(e, fs.Arg(0)) // check locally first: every problem at once
	if err != nil {
		return err
	}
	if *billFrom != "" {
		if _, err := cycle.ParseDate(*billFrom); err != nil {
			return usageErrorf("consent add: --bill-from: %v", err)
		}
	}
	cl, err := af.client(e)
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

func nextDue(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ", submitted " + t.In(cycle.Brasilia).Format("Mon 2006-01-02 15:04")
}

func cmdConsentList(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "consent list", "[--state STATE] [--limit N] [--after ID] [--format table|json]", "List consents (no personal data).")
	state := fs.String("state", "", "only consents in `STATE` (active, awaiting_authorization, revoked, rejected, expired)")
	limit := fs.Int("limit", 100, "at most `N` consents")
	after := fs.String("after", "", "start after this consent `ID` (paging)")
	format := fs.String("format", "table", "table or json")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	cl, err := af.client(e)
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

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func oneID(fs interface{ NArg() int }, name string) error {
	if fs.NArg() != 1 {
		return usageErrorf("%s: want exactly one consent ID", name)
	}
	return nil
}

func cmdConsentShow(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "consent show", "ID", "Show a consent, its billing state and its attempts (JSON).")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if err := oneID(fs, "consent show"); err != nil {
		return err
	}
	cl, err := af.client(e)
	if err != nil {
		return err
	}
	id := url.PathEscape(fs.Arg(0))
	var rec, atts json.RawMessage
	if err := cl.do("GET", "/v1/consents/"+id, nil, &rec); err != nil {
		return err
	}
	if err := cl.do("GET", "/v1/consents/"+id+"/attempts", nil, &atts); err != nil {
		return err
	}
	return printJSON(e.stdout, map[string]json.RawMessage{"consent": rec, "attempts": atts})
}

func cmdConsentRevoke(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "consent revoke", "[--reason TEXT] ID", "Stop billing a consent for good (its history is kept).")
	reason := fs.String("reason", "", "why, for the record")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if err := oneID(fs, "consent revoke"); err != nil {
		return err
	}
	cl, err := af.client(e)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"reason": *reason})
	var sum admin.ConsentSummary
	if err := cl.do("POST", "/v1/consents/"+url.PathEscape(fs.Arg(0))+"/revoke", bytes.NewReader(body), &sum); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", sum.ID, sum.State)
	return nil
}

func cmdConsentAuthorize(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "consent authorize", "ID", "Mark a consent awaiting authorization as authorized: billing starts.")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if err := oneID(fs, "consent authorize"); err != nil {
		return err
	}
	cl, err := af.client(e)
	if err != nil {
		return err
	}
	var sum admin.ConsentSummary
	if err := cl.do("POST", "/v1/consents/"+url.PathEscape(fs.Arg(0))+"/authorize", nil, &sum); err != nil {
		return err
	}
	next := ""
	if sum.NextDue != nil {
		next = nextDue(*sum.NextDue)
	}
	fmt.Fprintf(e.stdout, "%s: %s, next cycle %d%s\n", sum.ID, sum.State, sum.NextCycle, next)
	return nil
}

func cmdConsentAmount(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "consent amount", "ID CYCLE AMOUNT", "Set the amount of one cycle of a variable consent (AMOUNT like 123.45).")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if fs.NArg() != 3 {
		return usageErrorf("consent amount: want ID CYCLE AMOUNT")
	}
	k, err := strconv.Atoi(fs.Arg(1))
	if err != nil || k < 0 {
		return usageErrorf("consent amount: cycle %q is not a cycle index (0, 1, …)", fs.Arg(1))
	}
	a, err := klavi.ParseAmount(fs.Arg(2))
	if err != nil {
		return usageErrorf("consent amount: %v", err)
	}
	cl, err := af.client(e)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]klavi.Cents{"amount": a})
	if err := cl.do("PUT", fmt.Sprintf("/v1/consents/%s/cycles/%d/amount", url.PathEscape(fs.Arg(0)), k), bytes.NewReader(body), nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: cycle %d will bill %s\n", fs.Arg(0), k, a.BRL())
	return nil
}

func cmdConsentCreate(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "consent create", "FILE",
		"Create a consent at Klavi through the running daemon (FILE: Klavi's create-consent\n"+
			"body plus an optional billing object) and print the URL where the payer authorizes it.")
	af := addAdminFlags(fs)
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("consent create: want exactly one FILE")
	}
	body, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return usageErrorf("consent create: %v", err)
	}
	cl, err := af.client(e)
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

func cmdConsentImport(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "consent import", "--db PATH [--bill-from YYYY-MM-DD] FILE|DIR...",
		"Load consents straight into a database while billingd is stopped (first installs).\n"+
			"All files are checked first; if any is invalid nothing is imported. Consents\n"+
			"already stored are skipped, never changed.")
	dbFlag := fs.String("db", "", "database `PATH` (default: storage.path of the config)")
	cfgFlag := fs.String("config", "", "config `FILE` for billing defaults")
	billFrom := fs.String("bill-from", "", "first date billingd bills, `YYYY-MM-DD` (default: today)")
	if err := parseFlags(fs, args, true); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("consent import: want at least one FILE or DIR")
	}
	var from cycle.Date
	if *billFrom != "" {
		var err error
		if from, err = cycle.ParseDate(*billFrom); err != nil {
			return usageErrorf("consent import: --bill-from: %v", err)
		}
	}
	path, cfg, err := dbPath(e, *dbFlag, *cfgFlag)
	if err != nil {
		return err
	}
	cs, err := readConsents(e, fs.Args())
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
	fmt.Fprintf(e.stdout, "imported %d consents into %s (%d already there, skipped)\n", added, path, skipped)
	return nil
}
