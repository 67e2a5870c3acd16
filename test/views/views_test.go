// Package views checks the operator views against a store built by a simulated run.
// `billingd simulate --db FILE --format json` bills the example consents for 150 days
// and prints its events. The database is marked as a simulation's: `billingd run`
// refuses it (exit 3), and `billingd run --read-only` opens it read-only on a test
// clock at the run's end, deciding nothing and writing nothing (Klavi is unreachable
// too), while the admin API answers its reads; the store stays as the run left it.
// Through the real CLI:
//   - `billingd report --month M` of every month of the run holds, per interval and
//     outcome, the counts and centavo sums of the run's events dated in M;
//   - `billingd payments upcoming` over the 10 days after the run lists what a longer
//     run of the same simulation (10 days more) does in those days: every original
//     it submits or skips, at the same instant, for the same amount, and every retry
//     already planned (a second, 38-day run ends with one planned);
//   - `billingd consent show ID` of each example consent has, in its timeline, the
//     run's events of that consent (same kind, cycle, attempt, instant, date, amount,
//     clientRequestId, status), and a plan that starts where the store and the run
//     say: the next cycle after the last one decided, at the consent's next due date
//     and submission, for the stored amount.
//
// Each difference is printed. Run it with
//
//	go test -count=1 -v ./test/views/
//
// It is part of `make test` (a few seconds); -short skips it.
package views

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/internal/logtest"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/simulation"
	"github.com/klavi-billing/billingd/test/proc"
)

const (
	token  = "views-test-admin-token-0123456789"
	from   = "2026-02-01"
	days   = 150
	window = 10 // days after the run that payments upcoming is checked over
)

func TestViews_AgreeWithSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("process test: builds and runs the binary")
	}
	dir := t.TempDir()
	bin := proc.Build(t, dir)
	env := cleanEnv()

	t.Run("150 days", func(t *testing.T) {
		r := simulated(t, bin, env, days)
		// Refused: a run never writes into an existing database.
		out, err := exec.Command(bin, "simulate", "--db", r.db, "--days", "1").CombinedOutput()
		require.Equal(t, 2, exitCode(err), "simulate --db on an existing file: %s", out)
		require.Contains(t, string(out), "exists")

		t.Run("report", func(t *testing.T) { checkReport(t, r.cli, r.events, r.start, r.end) })
		t.Run("payments upcoming", func(t *testing.T) { checkUpcoming(t, r.cli, r.longer, r.end, false) })
		t.Run("consent show", func(t *testing.T) { checkConsentShow(t, r.cli, r.events, r.end) })
	})
	// The demo scenario rejects the variable consent's cycle 1 (due 10 March, local
	// retries 2 and 4 days after): a run ending on 10 March leaves its first retry
	// planned for the next day.
	t.Run("38 days, a retry planned", func(t *testing.T) {
		r := simulated(t, bin, env, 38)
		checkUpcoming(t, r.cli, r.longer, r.end, true)
	})
}

// run is a simulated run of the example consents from the first day, its database
// opened by a daemon on a test clock at the run's end, and a run of the same
// simulation window days longer.
type run struct {
	db             string
	events, longer []simulation.Event
	start, end     cycle.Date // the first day, the first day after the run
	cli            cliFunc
}

func simulated(t *testing.T, bin string, env []string, n int) *run {
	t.Helper()
	dir := t.TempDir()
	r := &run{db: filepath.Join(dir, "sim.db")}
	r.events = simulate(t, bin, env, "--db", r.db, "--days", fmt.Sprint(n))
	r.longer = simulate(t, bin, env, "--days", fmt.Sprint(n+window))
	require.NotEmpty(t, r.events)
	var err error
	r.start, err = cycle.ParseDate(from)
	require.NoError(t, err)
	r.end = r.start.AddDays(n)
	t.Logf("simulated %d days from %s: %d events (%d in the %d-day run)", n, from, len(r.events), len(r.longer), n+window)
	r.cli = startDaemon(t, bin, dir, r.db, env, r.end.At(0, 0))
	return r
}

// cleanEnv is the test's environment without billingd's own variables: the commands
// read only what the test gives them.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BILLINGD_") && !strings.HasPrefix(kv, "KLAVI_") {
			out = append(out, kv)
		}
	}
	return out
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// simulate runs `billingd simulate --format json` from the first day with extra
// flags and returns billingd's events, one per line of its output. The retries
// Klavi ran itself (klavi_retry, read from the sandbox's ledger) are not billingd's
// events: its store and views do not hold them, so they are left out.
func simulate(t *testing.T, bin string, env []string, flags ...string) []simulation.Event {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"simulate", "--format", "json", "--from", from}, flags...)...)
	var stdout, stderr bytes.Buffer
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &stdout, &stderr
	require.NoError(t, cmd.Run(), "billingd simulate %v: %s", flags, stderr.String())
	var evs []simulation.Event
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev simulation.Event
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "event line %s", sc.Text())
		require.False(t, ev.At.IsZero(), "event line without its instant: %s", sc.Text())
		if ev.Event == "klavi_retry" {
			continue
		}
		evs = append(evs, ev)
	}
	require.NoError(t, sc.Err())
	return evs
}

// cliFunc runs a billingd operator command against the daemon and decodes its JSON
// output into out.
type cliFunc func(t *testing.T, out any, args ...string)

// startDaemon runs `billingd run --read-only` on the database with Klavi at a closed
// loopback port and the test clock at now, waits for its admin API, and returns how
// to run operator commands against it, after `billingd run` without --read-only has
// refused the database (a simulation's) with exit 3 and written nothing to it. The
// daemon is stopped at the end of the test.
func startDaemon(t *testing.T, bin, dir, dbPath string, env []string, now time.Time) cliFunc {
	t.Helper()
	addr := proc.FreePort(t)
	cfgPath := filepath.Join(dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
storage:
  path: %s
klavi:
  base_url: http://%s
  access_key: ak
  secret_key: sk
  timeout: 1s
  max_attempts: 2
  backoff_min: 10ms
  backoff_max: 50ms
http:
  listen: %s
  admin_token: %s
log:
  format: json
`, dbPath, proc.FreePort(t), addr, token)), 0o600))
	clockEnv := fmt.Sprintf("BILLINGD_TEST_CLOCK=start=%s,epoch=%d,rate=1", now.UTC().Format(time.RFC3339), time.Now().UnixMilli())
	before, err := os.ReadFile(dbPath)
	require.NoError(t, err)
	refused := exec.Command(bin, "run", "--config", cfgPath)
	refused.Env = append(env, clockEnv)
	out, err := refused.CombinedOutput()
	require.Equal(t, 3, exitCode(err), "billingd run on a simulated store: %s", out)
	require.Contains(t, string(out), "billingd: open "+dbPath+": the store was made by billingd simulate")
	after, err := os.ReadFile(dbPath)
	require.NoError(t, err)
	require.Equal(t, before, after, "the refused run wrote nothing to the database")

	d := exec.Command(bin, "run", "--config", cfgPath, "--read-only")
	logs := &logtest.Buffer{}
	d.Env, d.Stdout, d.Stderr = append(env, clockEnv), logs, logs
	require.NoError(t, d.Start())
	t.Cleanup(func() {
		_ = d.Process.Signal(syscall.SIGTERM)
		_ = d.Wait()
		if now, err := os.ReadFile(dbPath); err != nil || !bytes.Equal(now, before) {
			t.Errorf("billingd run --read-only changed the database (read: %v)", err)
		}
		if t.Failed() {
			t.Logf("billingd run logs:\n%s", logs.String())
		}
	})
	proc.WaitHTTP(t, "http://"+addr+"/healthz", 30*time.Second)
	// The admin API answers once the database is verified.
	deadline := time.Now().Add(30 * time.Second)
	for proc.Try("GET", "http://"+addr+"/v1/report?month=2026-02", token, 5*time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the admin API did not answer within 30s; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cliEnv := append(env, "BILLINGD_ADDR=http://"+addr, "BILLINGD_ADMIN_TOKEN="+token, "BILLINGD_CONFIG="+cfgPath)
	return func(t *testing.T, out any, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Env, cmd.Stdout, cmd.Stderr = cliEnv, &stdout, &stderr
		require.NoError(t, cmd.Run(), "billingd %s: %s", strings.Join(args, " "), stderr.String())
		require.NoError(t, json.Unmarshal(stdout.Bytes(), out), "billingd %s: %s", strings.Join(args, " "), stdout.String())
	}
}

// money prints an amount, or "-" for none.
func money(c *klavi.Cents) string {
	if c == nil {
		return "-"
	}
	return c.String()
}

// diff reports, one line each, what is only in want and what is only in got
// (multisets of lines); it fails the test when they differ.
func diff(t *testing.T, what string, want, got []string) {
	t.Helper()
	count := map[string]int{}
	for _, l := range want {
		count[l]++
	}
	for _, l := range got {
		count[l]--
	}
	var lines []string
	for l, n := range count {
		for ; n > 0; n-- {
			lines = append(lines, "  only in the simulation: "+l)
		}
		for ; n < 0; n++ {
			lines = append(lines, "  only in billingd's view: "+l)
		}
	}
	if len(lines) > 0 {
		sort.Strings(lines)
		t.Errorf("%s: %d differences\n%s", what, len(lines), strings.Join(lines, "\n"))
	}
}

type ledgerKey struct {
	month    string
	interval cycle.Interval
	outcome  scheduler.Outcome
}

func (k ledgerKey) String() string { return fmt.Sprintf("%s %s %s", k.month, k.interval, k.outcome) }

// checkReport: each month's report holds the counts and sums of the events dated in
// that month, by interval and outcome; its totals are the sums of its rows.
func checkReport(t *testing.T, cli cliFunc, events []simulation.Event, start, end cycle.Date) {
	want := map[ledgerKey]scheduler.Sum{}
	months := map[string]bool{}
	for d := start; d.Before(end); d = d.AddDays(1) {
		months[d.String()[:7]] = true
	}
	for _, e := range events {
		o, ok := simulation.OutcomeOf(e.Event)
		if e.Event == "retry_dropped" {
			continue // no payment: the ledger does not count it
		}
		require.True(t, ok, "an event kind the ledger does not know: %s", e.Event)
		k := ledgerKey{e.Date.String()[:7], e.Interval, o}
		s := want[k]
		s.Count++
		if e.Amount != nil {
			s.Amount += *e.Amount
		}
		want[k] = s
		months[k.month] = true
	}
	got := map[ledgerKey]scheduler.Sum{}
	outcomes := map[scheduler.Outcome]bool{}
	for _, m := range slices.Sorted(maps.Keys(months)) {
		var rep struct {
			Month string `json:"month"`
			Rows  []struct {
				Interval cycle.Interval    `json:"interval"`
				Outcome  scheduler.Outcome `json:"outcome"`
				Count    int               `json:"count"`
				Amount   klavi.Cents       `json:"amount"`
			} `json:"rows"`
			Totals map[scheduler.Outcome]scheduler.Sum `json:"totals"`
		}
		cli(t, &rep, "report", "--month", m, "--format", "json")
		require.Equal(t, m, rep.Month)
		totals := map[scheduler.Outcome]scheduler.Sum{}
		for _, r := range rep.Rows {
			s := totals[r.Outcome]
			s.Count += r.Count
			s.Amount += r.Amount
			totals[r.Outcome] = s
			if r.Count > 0 || r.Amount != 0 {
				got[ledgerKey{m, r.Interval, r.Outcome}] = scheduler.Sum{Count: r.Count, Amount: r.Amount}
				outcomes[r.Outcome] = true
			}
		}
		for o, s := range totals {
			if rep.Totals[o] != s {
				t.Errorf("report %s: totals[%s] is %d / %s, its rows sum to %d / %s", m, o, rep.Totals[o].Count, rep.Totals[o].Amount, s.Count, s.Amount)
			}
		}
	}
	line := func(k ledgerKey, s scheduler.Sum) string { return fmt.Sprintf("%s: %d, %s", k, s.Count, s.Amount) }
	var w, g []string
	for k, s := range want {
		w = append(w, line(k, s))
	}
	for k, s := range got {
		g = append(g, line(k, s))
	}
	diff(t, "report cells (month interval outcome: count, amount)", w, g)
	t.Logf("%d ledger cells over %d months from %d events", len(want), len(months), len(events))
	for _, o := range []scheduler.Outcome{scheduler.OutcomeSubmitted, scheduler.OutcomeRetried, scheduler.OutcomeCompleted,
		scheduler.OutcomeRejected, scheduler.OutcomeSkipped, scheduler.OutcomeMissed} {
		if !outcomes[o] {
			t.Errorf("the run does not exercise the outcome %s", o)
		}
	}
}

type upcomingItem struct {
	ConsentID string               `json:"consentId"`
	Cycle     int                  `json:"cycle"`
	Attempt   int                  `json:"attempt"`
	Kind      scheduler.ChargeKind `json:"kind"`
	SubmitAt  time.Time            `json:"submitAt"`
	DueDate   cycle.Date           `json:"dueDate"`
	Amount    *klavi.Cents         `json:"amount"`
}

type upcoming struct {
	Items []upcomingItem `json:"items"`
	Days  []struct {
		Date     cycle.Date   `json:"date"`
		Count    int          `json:"count"`
		Amount   *klavi.Cents `json:"amount"`
		NoAmount int          `json:"noAmount"`
	} `json:"days"`
	Total struct {
		Count    int          `json:"count"`
		Amount   *klavi.Cents `json:"amount"`
		NoAmount int          `json:"noAmount"`
	} `json:"total"`
}

func chargeLine(kind, id string, k, n int, at time.Time, date cycle.Date, amount *klavi.Cents) string {
	return fmt.Sprintf("%s %s cycle %d attempt %d at %s dated %s amount %s", kind, id, k, n, at.UTC().Format(time.RFC3339), date, money(amount))
}

// checkUpcoming: the charges listed for the days after the run are what the longer
// run does then.
func checkUpcoming(t *testing.T, cli cliFunc, longer []simulation.Event, end cycle.Date, wantRetry bool) {
	to := end.AddDays(window - 1)
	var up upcoming
	cli(t, &up, "payments", "upcoming", "--from", end.String(), "--to", to.String(), "--format", "json")
	require.NotEmpty(t, up.Items, "nothing upcoming from %s to %s", end, to)

	var predicted, predictedRetries []string
	var predictedSum klavi.Cents
	for _, c := range up.Items {
		switch {
		case c.Kind == scheduler.ChargeOriginal && c.Amount == nil:
			predicted = append(predicted, chargeLine("skipped", c.ConsentID, c.Cycle, c.Attempt, c.SubmitAt, c.DueDate, nil))
		case c.Kind == scheduler.ChargeOriginal:
			predicted = append(predicted, chargeLine("submitted", c.ConsentID, c.Cycle, c.Attempt, c.SubmitAt, c.DueDate, c.Amount))
			predictedSum += *c.Amount
		case c.Kind == scheduler.ChargeRetry:
			predictedRetries = append(predictedRetries, chargeLine("retry_submitted", c.ConsentID, c.Cycle, c.Attempt, c.SubmitAt, c.DueDate, c.Amount))
		default:
			t.Errorf("upcoming lists a %s (a run without faults has none): %+v", c.Kind, c)
		}
	}
	var happened, retries []string
	var happenedSum klavi.Cents
	for _, e := range longer {
		if d := cycle.DateOf(e.At); d.Before(end) || d.After(to) {
			continue
		}
		switch e.Event {
		case "submitted", "skipped":
			happened = append(happened, chargeLine(e.Event, e.ConsentID, e.Cycle, e.Attempt, e.At, e.Date, e.Amount))
			if e.Amount != nil {
				happenedSum += *e.Amount
			}
		case "retry_submitted":
			retries = append(retries, chargeLine(e.Event, e.ConsentID, e.Cycle, e.Attempt, e.At, e.Date, e.Amount))
		}
	}
	t.Logf("%s..%s: upcoming lists %d originals and %d retries; the longer run submits or skips %d originals and sends %d retries",
		end, to, len(predicted), len(predictedRetries), len(happened), len(retries))
	diff(t, "originals (upcoming vs what the longer run does)", happened, predicted)
	if predictedSum != happenedSum {
		t.Errorf("originals' sum: upcoming %s, the longer run %s", predictedSum, happenedSum)
	}
	// A retry planned now is sent; the longer run may also send retries of
	// rejections still to come.
	if wantRetry && len(predictedRetries) == 0 {
		t.Errorf("upcoming lists no retry from %s to %s", end, to)
	}
	for _, r := range predictedRetries {
		if !slices.Contains(retries, r) {
			t.Errorf("upcoming lists %s; the longer run does not send it (it sends %v)", r, retries)
		}
	}

	// Its day totals and total are the sums of its items.
	type sum struct {
		count, noAmount int
		amount          klavi.Cents
	}
	perDay := map[cycle.Date]sum{}
	var total sum
	for _, c := range up.Items {
		d := cycle.DateOf(c.SubmitAt)
		s := perDay[d]
		s.count++
		if c.Amount == nil {
			s.noAmount++
		} else {
			s.amount += *c.Amount
			total.amount += *c.Amount
		}
		perDay[d] = s
	}
	total.count = len(up.Items)
	for _, s := range perDay {
		total.noAmount += s.noAmount
	}
	var w, g []string
	for d, s := range perDay {
		w = append(w, fmt.Sprintf("%s: %d charges, %s, %d without an amount", d, s.count, s.amount, s.noAmount))
	}
	for _, d := range up.Days {
		g = append(g, fmt.Sprintf("%s: %d charges, %s, %d without an amount", d.Date, d.Count, money(d.Amount), d.NoAmount))
	}
	w = append(w, fmt.Sprintf("total: %d charges, %s, %d without an amount", total.count, total.amount, total.noAmount))
	g = append(g, fmt.Sprintf("total: %d charges, %s, %d without an amount", up.Total.Count, money(up.Total.Amount), up.Total.NoAmount))
	diff(t, "upcoming's day totals (sums of its items vs its days)", w, g)
}

type timelineEvent struct {
	At              time.Time    `json:"at"`
	Kind            string       `json:"kind"`
	Cycle           int          `json:"cycle"`
	Attempt         int          `json:"attempt"`
	Date            cycle.Date   `json:"date"`
	Amount          *klavi.Cents `json:"amount"`
	ClientRequestID string       `json:"clientRequestId"`
	Status          string       `json:"status"`
}

type consentShow struct {
	Consent struct {
		ID           string       `json:"id"`
		State        string       `json:"state"`
		Interval     string       `json:"interval"`
		Amount       *klavi.Cents `json:"amount"`
		NextCycle    *int         `json:"nextCycle"`
		NextDueDate  *cycle.Date  `json:"nextDueDate"`
		NextSubmitAt *time.Time   `json:"nextSubmitAt"`
	} `json:"consent"`
	Plan struct {
		ConsentID string `json:"consentId"`
		Interval  string `json:"interval"`
		Cycles    []struct {
			Index    int          `json:"index"`
			Due      cycle.Date   `json:"dueDate"`
			SubmitOn cycle.Date   `json:"submitOn"`
			State    string       `json:"state"`
			Amount   *klavi.Cents `json:"amount"`
			Stored   []struct {
				Attempt         int         `json:"attempt"`
				State           string      `json:"state"`
				Amount          klavi.Cents `json:"amount"`
				ClientRequestID string      `json:"clientRequestId"`
			} `json:"stored"`
		} `json:"cycles"`
	} `json:"plan"`
	Events []timelineEvent `json:"events"`
}

func eventLine(kind string, k, n int, at time.Time, date cycle.Date, amount *klavi.Cents, key, status string) string {
	return fmt.Sprintf("%s cycle %d attempt %d at %s dated %s amount %s key %s status %s",
		kind, k, n, at.UTC().Format(time.RFC3339), date, money(amount), key, status)
}

// checkConsentShow: each example consent's timeline holds the run's events of that
// consent, and its plan starts after the last cycle the run decided, where the
// consent's record says.
func checkConsentShow(t *testing.T, cli cliFunc, events []simulation.Event, end cycle.Date) {
	files, err := filepath.Glob("../../examples/consents/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	simKinds := map[string]bool{}
	for _, k := range []string{"submitted", "retry_submitted", "completed", "rejected", "missed", "skipped", "failed", "unconfirmed"} {
		_, ok := simulation.OutcomeOf(k)
		require.True(t, ok, k)
		simKinds[k] = true
	}
	simKinds["retry_dropped"] = true // in the timeline too, with no ledger outcome
	checked := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		c, err := consent.Decode(raw)
		require.NoError(t, err, f)
		t.Run(c.ID, func(t *testing.T) {
			var show consentShow
			cli(t, &show, "consent", "show", c.ID, "--format", "json")
			require.Equal(t, c.ID, show.Consent.ID)
			require.Equal(t, c.ID, show.Plan.ConsentID)

			var want, got []string
			lastDecided := -1 // the last cycle whose original the run submitted, skipped or missed
			for _, e := range events {
				if e.ConsentID != c.ID {
					continue
				}
				want = append(want, eventLine(e.Event, e.Cycle, e.Attempt, e.At, e.Date, e.Amount, e.ClientRequestID, string(e.Status)))
				if e.Attempt == 0 && (e.Event == "submitted" || e.Event == "skipped" || e.Event == "missed") {
					lastDecided = max(lastDecided, e.Cycle)
				}
			}
			amountSet := map[int]klavi.Cents{}
			for _, e := range show.Events {
				if e.Kind == "amount_set" && e.Amount != nil {
					amountSet[e.Cycle] = *e.Amount
				}
				if simKinds[e.Kind] {
					got = append(got, eventLine(e.Kind, e.Cycle, e.Attempt, e.At, e.Date, e.Amount, e.ClientRequestID, e.Status))
				}
			}
			diff(t, c.ID+" timeline (kind cycle attempt at date amount key status)", want, got)
			checked += len(want)

			// The plan is the store's: it starts at the consent's next cycle, on
			// its next due date and submission day; the run decided every cycle
			// before it and none from it on.
			cv := show.Consent
			require.NotEmpty(t, show.Plan.Cycles, "%s: an empty plan", c.ID)
			if cv.State != "active" {
				t.Logf("%s is %s: its plan says why", c.ID, cv.State)
				return
			}
			require.NotNil(t, cv.NextCycle, "%s: active with no next cycle", c.ID)
			require.NotNil(t, cv.NextDueDate)
			require.NotNil(t, cv.NextSubmitAt)
			first := show.Plan.Cycles[0]
			if first.Index != *cv.NextCycle || first.Due != *cv.NextDueDate || first.SubmitOn != cycle.DateOf(*cv.NextSubmitAt) {
				t.Errorf("%s: the plan starts at cycle %d due %s submitted on %s; the consent's next is cycle %d due %s submitted %s",
					c.ID, first.Index, first.Due, first.SubmitOn, *cv.NextCycle, *cv.NextDueDate, cv.NextSubmitAt.Format(time.RFC3339))
			}
			if lastDecided >= 0 && *cv.NextCycle != lastDecided+1 {
				t.Errorf("%s: next cycle %d; the run decided cycles up to %d", c.ID, *cv.NextCycle, lastDecided)
			}
			if !cv.NextSubmitAt.After(end.AddDays(-1).At(0, 0)) {
				t.Errorf("%s: next submission %s is before the run's end %s", c.ID, cv.NextSubmitAt.Format(time.RFC3339), end)
			}
			for _, cp := range show.Plan.Cycles {
				if cp.State != string(scheduler.StatePlanned) && cp.State != string(scheduler.StateLate) {
					// A decided cycle in the plan is one the run acted on.
					if cp.Index > lastDecided {
						t.Errorf("%s cycle %d is %s in the plan; the run decided cycles up to %d", c.ID, cp.Index, cp.State, lastDecided)
					}
					continue
				}
				if cp.Index <= lastDecided {
					t.Errorf("%s cycle %d is %s in the plan; the run decided it", c.ID, cp.Index, cp.State)
				}
				var wantAmount *klavi.Cents
				if a, ok := amountSet[cp.Index]; ok {
					wantAmount = &a
				} else if cv.Amount != nil {
					wantAmount = cv.Amount
				}
				if money(cp.Amount) != money(wantAmount) {
					t.Errorf("%s cycle %d: the plan's amount is %s; the store's is %s", c.ID, cp.Index, money(cp.Amount), money(wantAmount))
				}
			}
		})
	}
	t.Logf("%d events of %d consents checked against their timelines", checked, len(files))
	if checked != len(events) {
		t.Errorf("the run has %d events, %d of them of the example consents", len(events), checked)
	}
}
