package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/klavi-billing/billingd/storage/bolt"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/simulation"
	"github.com/klavi-billing/billingd/simulation/calendar"
)

func newSimulateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "simulate [flags]",
		Short: "run the real scheduler against the sandbox on a virtual clock (a year in seconds)",
		Long: "Run the real scheduler and store against the in-process Klavi sandbox on a virtual\n" +
			"clock: a day-by-day timeline of what billingd submits, what settles, what is retried,\n" +
			"missed or skipped, then a summary. With no flags it runs the example consents for\n" +
			"120 days from today with a demo scenario (one failure per consent, variable\n" +
			"amounts set by a simulated operator).\n\n" +
			"The database is a temporary file, removed at the end, unless --db names a new\n" +
			"file to keep: the store as the daemon would have left it at the run's end,\n" +
			"marked as a simulation's. 'billingd run' refuses to bill on it (exit 3);\n" +
			"'billingd run --read-only' serves it to the operator commands (report, payments\n" +
			"upcoming, consent show), and 'billingd db check --db FILE' reads it. An existing\n" +
			"file is refused: a run never writes into a database it did not create.\n\n" +
			"--html FILE and --svg FILE also draw the run as a calendar, month by month: per\n" +
			"day the charges submitted and settled, one mark per outcome, the amount settled,\n" +
			"weekends and holidays shaded, totals per month. Each file is self-contained\n" +
			"and replaced if it exists, unless it is a database (any bbolt file), a file\n" +
			"with a database's lock or archive file beside it, or one of those: refused.",
		Example: "  billingd simulate --from 2026-02-01 --days 150\n" +
			"  billingd simulate --from 2026-02-01 --days 150 --format json --db /tmp/sim.db\n" +
			"  billingd simulate --from 2026-01-01 --days 365 --svg docs/simulate-year.svg",
	}
	fl := cmd.Flags()
	consentsFlag := fl.String("consents", "", "consent `FILE` or DIR (default: the embedded examples)")
	from := fl.String("from", "", "first simulated day, `YYYY-MM-DD` (default: today in Brasília)")
	days := fl.Int("days", 120, "days to simulate")
	scenarioFlag := fl.String("scenario", "", "sandbox scenario `FILE` (JSON, as examples/scenario.json) deciding payment outcomes (default: the demo scenario)")
	faultsFlag := fl.String("faults", "", "sandbox faults, e.g. 5xx=0.05,drop=0.02,seed=7 (see 'billingd sandbox -h')")
	dbFlag := fl.String("db", "", "keep the run's database at `FILE`, a new file, with its archive file FILE.archive (default: temporary ones, removed)")
	format := fl.String("format", "text", "`FORMAT`: text (timeline and summary) or json (one event per line)")
	htmlFlag := fl.String("html", "", "also draw the run as a calendar in a self-contained HTML `FILE`")
	svgFlag := fl.String("svg", "", "also draw the run as a calendar in an SVG `FILE`")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		ctx := cmd.Context()
		if *format != "text" && *format != "json" {
			return argErrorf("simulate: --format %q: want text or json", *format)
		}
		if *days < 1 || *days > 3660 {
			return argErrorf("simulate: --days %d: want 1..3660", *days)
		}
		outs := []outFlag{{"--db", *dbFlag}, {"--html", *htmlFlag}, {"--svg", *svgFlag}}
		if err := distinctOutputs("simulate", outs...); err != nil {
			return err
		}
		live := []liveDB{a.configDB()}
		for _, f := range outs {
			if f.path == "" {
				continue
			}
			if f.flag == "--db" { // must be new: checked below
				if err := checkNewOutput("simulate: --db", live, f.path); err != nil {
					return err
				}
				continue
			}
			if err := checkOutputs("simulate: "+f.flag, live, f.path); err != nil {
				return err
			}
			if st, err := os.Stat(filepath.Dir(f.path)); err != nil || !st.IsDir() {
				return argErrorf("simulate: %s %s: no directory %s to write it in", f.flag, f.path, filepath.Dir(f.path))
			}
		}
		if *dbFlag != "" {
			if _, err := os.Lstat(*dbFlag); err == nil {
				return argErrorf("simulate: --db %s: the file exists; name a new file (a run never writes into an existing database)", *dbFlag)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return argErrorf("simulate: --db: %v", err)
			}
			if _, err := os.Lstat(bolt.ArchivePath(*dbFlag)); err == nil {
				return argErrorf("simulate: --db %s: its archive file %s exists; name a new file", *dbFlag, bolt.ArchivePath(*dbFlag))
			}
		}
		cfg, err := loadConfigFor(e, a.config, false)
		if err != nil {
			return err
		}
		sc, err := cfg.schedulerConfig()
		if err != nil {
			return usageErrorf("%v", err)
		}
		start := cycle.DateOf(e.clock.Now())
		if *from != "" {
			if start, err = cycle.ParseDate(*from); err != nil {
				return argErrorf("simulate: --from: %v", err)
			}
		}
		var cs []*consent.Consent
		if *consentsFlag != "" {
			if cs, err = readConsents(e, []string{*consentsFlag}); err != nil {
				if errors.Is(err, errUsage) { // a consent file's problem: name the flag
					return usageErrorf("simulate: --consents: %s", strings.TrimPrefix(err.Error(), errUsage.Error()+": "))
				}
				return err
			}
		} else if cs, err = simulation.Examples(); err != nil {
			return err
		}
		opts := simulation.Options{Consents: cs, From: start, Days: *days, Scheduler: sc, DB: *dbFlag}
		if a.logLevel != "" { // the daemon's own logs, on stderr, only when asked for
			opts.Log = newLogger(LogConfig{Level: a.logLevel, Format: "auto"}, e.stderr)
		}
		if *scenarioFlag != "" {
			if opts.Scenario, err = sandbox.LoadScenario(*scenarioFlag); err != nil {
				return usageErrorf("%v", err)
			}
		} else {
			opts.Scenario, opts.Amounts = simulation.Demo(cs, start, sc.Policy)
		}
		if *faultsFlag != "" {
			if opts.Faults, err = sandbox.ParseFaults(*faultsFlag); err != nil {
				return argErrorf("simulate: --faults: %v", err)
			}
		}
		draw := func(res *simulation.Result) error {
			if *htmlFlag != "" {
				if err := writePicture(*htmlFlag, res, sc.Policy.Calendar, calendar.WriteHTML); err != nil {
					return err
				}
			}
			if *svgFlag != "" {
				return writePicture(*svgFlag, res, sc.Policy.Calendar, calendar.WriteSVG)
			}
			return nil
		}
		if *format == "json" {
			res, err := simulation.Run(ctx, opts)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(e.stdout)
			for _, ev := range timeline(res, cs) {
				if err := enc.Encode(ev); err != nil {
					return fmt.Errorf("simulate: write the events: %w", err)
				}
			}
			return draw(res)
		}
		fmt.Fprintf(e.stdout, "billingd simulate: %s, %s → %s (%s); charges submitted %d days before the due date at %02d:%02d Brasília\n",
			plural(len(cs), "consent"), weekdayDate(start), weekdayDate(start.AddDays(*days-1)), plural(*days, "day"), sc.Policy.LeadDays, sc.SubmitHour, sc.SubmitMinute)
		res, err := simulation.Run(ctx, opts)
		if err != nil {
			return err
		}
		writeTimeline(e.stdout, res, cs)
		writeSummary(e.stdout, res)
		if *dbFlag != "" {
			fmt.Fprintf(e.stdout, "the run's database: %s, marked as simulated: billingd run refuses to bill on it; billingd run --read-only serves it to the operator commands\n", *dbFlag)
		} else {
			fmt.Fprintln(e.stdout, "nothing was stored (--db FILE keeps the run's database); next: billingd preview --consent-file FILE, or the README's \"Try the daemon on this machine\"")
		}
		return draw(res)
	}
	return cmd
}

// writePicture draws res into path with draw, atomically (a temporary file renamed
// over path), readable by all like any document.
func writePicture(path string, res *simulation.Result, cal *cycle.Calendar, draw func(io.Writer, *simulation.Result, *cycle.Calendar) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".billingd-calendar-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := draw(tmp, res, cal); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// klaviRetryReason is the reason a klavi_retry event gives.
const klaviRetryReason = "scheduled by Klavi for an attach-mode payment"

// timeline is the run's events with the retries Klavi ran itself for attach-mode
// payments (from the sandbox's ledger, event "klavi_retry", their status the one at
// the end of the run, At their creation) in their place, ordered by At.
func timeline(res *simulation.Result, cs []*consent.Consent) []simulation.Event {
	interval := make(map[string]cycle.Interval, len(cs))
	for _, c := range cs {
		interval[c.ID] = c.Interval()
	}
	evs := slices.Clone(res.Events)
	for _, l := range res.Ledger {
		if l.Kind != sandbox.KindAutoRetry {
			continue
		}
		amount := l.Amount
		evs = append(evs, simulation.Event{
			Day: cycle.DateOf(l.CreatedAt), Event: "klavi_retry", ConsentID: l.ConsentID, Cycle: l.Cycle,
			Attempt: l.Attempt, Date: l.Date, Amount: &amount, Status: l.Status, Reason: klaviRetryReason,
			At: l.CreatedAt.In(cycle.Brasilia), Interval: interval[l.ConsentID],
		})
	}
	slices.SortStableFunc(evs, func(a, b simulation.Event) int { return a.At.Compare(b.At) })
	return evs
}

// writeTimeline prints the run's timeline day by day.
func writeTimeline(w io.Writer, res *simulation.Result, cs []*consent.Consent) {
	var day cycle.Date
	for _, ev := range timeline(res, cs) {
		if d := cycle.DateOf(ev.At); d != day {
			day = d
			fmt.Fprintf(w, "\n%s\n", weekdayDate(day))
		}
		fmt.Fprintf(w, "  %s  %s\n", ev.At.In(cycle.Brasilia).Format("15:04"), describe(ev))
	}
}

// describe is one timeline line.
func describe(ev simulation.Event) string {
	var b strings.Builder
	if ev.Event == "klavi_retry" {
		fmt.Fprintf(&b, "%-15s %s cycle %d retry %d, dated %s, %s: %s (its status at the end of the run: %s)",
			ev.Event, ev.ConsentID, ev.Cycle, ev.Attempt, weekdayDate(ev.Date), ev.Amount.BRL(), klaviRetryReason, ev.Status)
		return b.String()
	}
	fmt.Fprintf(&b, "%-15s %s cycle %d", ev.Event, ev.ConsentID, ev.Cycle)
	if ev.Attempt > 0 {
		fmt.Fprintf(&b, " retry %d", ev.Attempt)
	}
	fmt.Fprintf(&b, ", dated %s", weekdayDate(ev.Date))
	if ev.Amount != nil {
		fmt.Fprintf(&b, ", %s", ev.Amount.BRL())
	}
	switch ev.Event {
	case "submitted":
		fmt.Fprintf(&b, " (%s, %s)", ev.Mode, ev.ClientRequestID)
	case "retry_submitted":
		fmt.Fprintf(&b, " (%s)", ev.ClientRequestID)
	case "rejected", "missed", "skipped", "unconfirmed", "failed", "retry_dropped":
		fmt.Fprintf(&b, ": %s", ev.Reason)
	}
	return b.String()
}

// writeSummary prints one row of counts per consent and their total: events of the
// run by kind (simulation.Summary), "dropped" the local retries recorded DROPPED and
// never sent (DESIGN.md, Retries), "Klavi retries" those Klavi ran for attach-mode
// payments (from the sandbox's ledger), "billed" the amount settled in reais.
func writeSummary(w io.Writer, res *simulation.Result) {
	fmt.Fprintln(w, "\nsummary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "consent\tinterval\tmode\tsubmitted\tcompleted\trejected\tretries\tdropped\tKlavi retries\tmissed\tskipped\tunconfirmed\tfailed\tbilled\tstate")
	var tot simulation.Summary
	for _, s := range res.Summaries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", s.ConsentID, s.Interval, s.Mode, s.Submitted, s.Completed,
			s.Rejected, s.Retries, s.Dropped, s.KlaviRetries, s.Missed, s.Skipped, s.Unconfirmed, s.Failed, s.Billed.BRL(), s.State)
		tot.Submitted += s.Submitted
		tot.Completed += s.Completed
		tot.Rejected += s.Rejected
		tot.Retries += s.Retries
		tot.Dropped += s.Dropped
		tot.KlaviRetries += s.KlaviRetries
		tot.Missed += s.Missed
		tot.Skipped += s.Skipped
		tot.Unconfirmed += s.Unconfirmed
		tot.Failed += s.Failed
		tot.Billed += s.Billed
	}
	fmt.Fprintf(tw, "total\t\t\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", tot.Submitted, tot.Completed, tot.Rejected, tot.Retries,
		tot.Dropped, tot.KlaviRetries, tot.Missed, tot.Skipped, tot.Unconfirmed, tot.Failed, tot.Billed.BRL())
	_ = tw.Flush()
	fmt.Fprintf(w, "\nsandbox ledger: %s, %d retries by billingd, %d by Klavi; %s charged more than once; %s; simulated in %s\n",
		plural(res.Payments, "original payment"), res.Stats.Accepted[sandbox.KindRetry], res.Stats.Accepted[sandbox.KindAutoRetry],
		plural(res.Duplicates, "cycle"), plural(res.Stats.Requests, "request"), res.Elapsed.Round(1e6))
}
