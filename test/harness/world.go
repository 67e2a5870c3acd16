package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/retry"
	"github.com/klavi-billing/billingd/scheduler"
)

// The billing rules of a run, shared by billingd's config and the verdict:
// originals are submitted LeadDays before their due date, at SubmitHour:00 in
// Brasília.
const (
	LeadDays   = 5
	SubmitHour = 9
	SubmitTime = "09:00"
)

// policy is billingd's policy under the config the test writes.
var policy = scheduler.Policy{LeadDays: LeadDays, RetryMode: consent.Off}

// retryable is billingd's default retryable_reasons.
var retryable = func() map[klavi.ReasonCode]bool {
	m := map[klavi.ReasonCode]bool{}
	for _, r := range klavi.DefaultRetryableReasons {
		m[r] = true
	}
	return m
}()

// What the scenario does to a consent beyond the seeded rejection fraction.
type fate string

const (
	fateNormal    fate = ""
	fateRevoked   fate = "revoked"   // the original of one cycle is rejected REVOKED_USER
	fateRefused   fate = "refused"   // every attempt of one cycle is rejected, not retryable
	fateCanceled  fate = "canceled"  // the original of one cycle is canceled by the holder
	fateRetryable fate = "retryable" // every attempt of one cycle is rejected, retryable
)

// A subject is one consent of the run and what the Verdict expects of it.
type subject struct {
	c     *consent.Consent
	sched cycle.Schedule
	mode  consent.RetryMode
	// cycles are the indexes of the cycles billingd must bill: due on or after
	// billFrom and on or before the expiry, up to the revoked cycle.
	cycles []int
	fate   fate
	// fateCycle is the cycle the fate applies to (-1: none).
	fateCycle int
}

// World is the generated input of a run.
type World struct {
	Start    time.Time  // the virtual instant the run begins at
	BillFrom cycle.Date // the first date billingd bills
	End      cycle.Date // the last expiry of any consent
	subjects []*subject
	byID     map[string]*subject
	Scenario *sandbox.Scenario
	// Tick is how much virtual time passes between two of billingd's scans (the
	// scan runs every real second): a local retry planned less than a tick before
	// its request day ends may find that day over when the next scan runs.
	Tick time.Duration
}

// Month-end and leap-day reference dates whose cycles clamp inside a run that starts
// on 20 Jan 2027 (31 Jan, 28 Feb).
var monthEnds = map[cycle.Interval][]cycle.Date{
	cycle.Monthly: {
		cycle.MustDate(2026, 10, 31), cycle.MustDate(2026, 11, 30), cycle.MustDate(2026, 12, 31),
		cycle.MustDate(2026, 8, 29), cycle.MustDate(2026, 12, 30), cycle.MustDate(2027, 1, 31),
	},
	cycle.Quarterly:  {cycle.MustDate(2026, 11, 30), cycle.MustDate(2026, 10, 31)},
	cycle.Semiannual: {cycle.MustDate(2026, 8, 31), cycle.MustDate(2026, 7, 31)},
	cycle.Yearly:     {cycle.MustDate(2024, 2, 29), cycle.MustDate(2026, 1, 31), cycle.MustDate(2026, 2, 28)},
}

var weeklyStrategies = [][]int{{1, 2, 3}, {2, 4}, {1, 3, 5}, {2}, {1, 2}, {3, 5}}
var otherStrategies = [][]int{{1, 3, 7}, {2, 5}, {1, 2, 3}, {7}, {3, 6}, {2, 4, 6}}

// Generate makes n consents whose cycles fall inside the run: every interval, month-end
// references, retry modes local, attach and off with assorted strategies, expiries
// near the end of the run (so that billing ends by itself), and a scenario of
// rejections.
func Generate(n int, start time.Time, days int, rng *rand.Rand, seed uint64) *World {
	first := cycle.DateOf(start)
	w := &World{Start: start, BillFrom: first.AddDays(3), byID: map[string]*subject{}}
	scen := &sandbox.Scenario{RejectFraction: 0.25, RejectReason: klavi.ReasonNotInformed, Seed: seed}
	lastDue := first.AddDays(days - 1)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("urn:crash:consent-%05d", i)
		var iv cycle.Interval
		switch x := rng.IntN(100); {
		case x < 40:
			iv = cycle.Weekly
		case x < 70:
			iv = cycle.Monthly
		case x < 80:
			iv = cycle.Quarterly
		case x < 90:
			iv = cycle.Semiannual
		default:
			iv = cycle.Yearly
		}
		// A due date somewhere in the run, and a reference that many periods back.
		anchor := w.BillFrom.AddDays(rng.IntN(max(1, lastDue.DaysSince(w.BillFrom)-6)))
		var ref cycle.Date
		switch {
		case iv == cycle.Weekly:
			ref = anchor.AddDays(-7 * rng.IntN(5))
		case rng.IntN(2) == 0:
			list := monthEnds[iv]
			ref = list[rng.IntN(len(list))]
		default:
			ref = anchor.AddMonthsClamped(-iv.Months() * (1 + rng.IntN(2)))
		}
		expDay := lastDue.AddDays(-rng.IntN(6))
		if expDay.Before(ref) {
			// A short run ends before a late month-end reference begins: a
			// consent the sandbox would refuse to take.
			ref = anchor.AddMonthsClamped(-iv.Months())
		}
		c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(id, iv, ref, klavi.Cents(12_34+i%100))}
		exp := expDay.At(23, 59)
		c.ExpirationDateTime = &klavi.DateTime{Time: exp.Add(59 * time.Second).UTC()}
		switch x := rng.IntN(100); {
		case x < 40:
			c.Billing.RetryMode = consent.Local
		case x < 80:
			c.Billing.RetryMode = consent.Attach
		default:
			c.Billing.RetryMode = consent.Off
		}
		list := otherStrategies
		if iv == cycle.Weekly {
			list = weeklyStrategies
		}
		if c.Billing.RetryMode != consent.Off || rng.IntN(2) == 0 {
			c.Billing.AutoRetryStrategy = &retry.Strategy{Days: list[rng.IntN(len(list))], SkipWeekend: rng.IntN(3) == 0}
		}
		s := &subject{c: c, sched: policy.Schedule(c), mode: policy.RetryModeOf(c), fateCycle: -1}
		for k := s.sched.FirstDueOnOrAfter(w.BillFrom); s.sched.Exists(k); k++ {
			s.cycles = append(s.cycles, k)
		}
		if exp := s.sched.Expiry; exp.After(w.End) {
			w.End = exp
		}
		if len(s.cycles) > 0 {
			switch x := rng.IntN(100); {
			case x < 3:
				s.fate = fateRevoked
			case x < 6:
				s.fate = fateRefused
			case x < 7:
				s.fate = fateCanceled
			case x < 10:
				s.fate = fateRetryable
			}
		}
		if s.fate != fateNormal {
			j := rng.IntN(len(s.cycles))
			s.fateCycle = s.cycles[j]
			k, zero := s.fateCycle, 0
			r := sandbox.Rule{ConsentID: id, Cycle: &k}
			switch s.fate {
			case fateRevoked:
				r.Attempt, r.Outcome, r.Reason = &zero, sandbox.Rejected, klavi.ReasonRevokedUser
				s.cycles = s.cycles[:j+1] // nothing is billed after the revocation
			case fateRefused:
				r.Outcome, r.Reason = sandbox.Rejected, klavi.ReasonDivergentAuthentication
			case fateCanceled:
				r.Attempt, r.Outcome = &zero, sandbox.Canceled
			case fateRetryable:
				r.Outcome, r.Reason = sandbox.Rejected, klavi.ReasonInfrastructureFailure
			}
			scen.Rules = append(scen.Rules, r)
		}
		w.subjects = append(w.subjects, s)
		w.byID[id] = s
	}
	w.Scenario = scen
	return w
}

// SubmitDays counts, for each date, the originals billingd submits on it (due
// LeadDays later). A random world can leave a day with none.
func (w *World) SubmitDays() map[cycle.Date]int {
	days := map[cycle.Date]int{}
	for _, s := range w.subjects {
		for _, k := range s.cycles {
			days[s.sched.Due(k).AddDays(-LeadDays)]++
		}
	}
	return days
}

// Write stores the consents and the scenario as the files billingd and the sandbox read.
func (w *World) Write(consentsFile, scenarioFile string) error {
	cs := make([]*consent.Consent, len(w.subjects))
	for i, s := range w.subjects {
		cs[i] = s.c
	}
	raw, err := json.Marshal(cs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(consentsFile, raw, 0o600); err != nil {
		return err
	}
	if raw, err = json.Marshal(w.Scenario); err != nil {
		return err
	}
	return os.WriteFile(scenarioFile, raw, 0o600)
}

// Import stores w's consents in db, billed from w.BillFrom, as `billingd consent
// import --bill-from` does on a bbolt file (it has no etcd form: the HA suite
// imports in-process). It returns how many were added.
func (w *World) Import(ctx context.Context, db scheduler.Store, clk clock.Clock) (int, error) {
	sch, err := scheduler.New(scheduler.Config{Policy: policy, SubmitHour: SubmitHour}, db, nil, scheduler.WithClock(clk))
	if err != nil {
		return 0, err
	}
	cs := make([]*consent.Consent, len(w.subjects))
	for i, s := range w.subjects {
		cs[i] = s.c
	}
	added, _, err := sch.AddConsents(ctx, cs, w.BillFrom)
	return added, err
}

// Counts summarizes the generated World for the log.
func (w *World) Counts() string {
	ivs, modes, fates := map[cycle.Interval]int{}, map[consent.RetryMode]int{}, map[fate]int{}
	cycles, monthEnd := 0, 0
	for _, s := range w.subjects {
		ivs[s.sched.Interval]++
		modes[s.mode]++
		if s.fate != fateNormal {
			fates[s.fate]++
		}
		cycles += len(s.cycles)
		for _, k := range s.cycles {
			if d := s.sched.Due(k); d.AddDays(1).Day() == 1 {
				monthEnd++
			}
		}
	}
	return fmt.Sprintf("%d cycles due (%d on a month's last day), intervals %v, retry modes %v, scenario fates %v",
		cycles, monthEnd, ivs, modes, fates)
}

// Token is the admin API's bearer token in the configs Config writes.
const Token = "crash-test-admin-token-0123456789"

// Config is billingd's config for a run; storage is the YAML of its storage
// section, without the "storage:" line itself: "  path: /x/billingd.db\n", and
// sections are further top-level sections (leader:, webhooks:), appended as they
// are. Durations of the scheduler and the token are on the test clock (virtual);
// the Klavi timeout and backoff are real. confirmAfter is given in virtual time: on
// the sped-up clock a create can stay in flight for klavi.timeout × max_attempts of
// real time, which is hours of it.
func Config(storage, sandboxAddr, listen string, klaviTimeout, confirmAfter time.Duration, sections ...string) string {
	return fmt.Sprintf(`
billing:
  lead_days: %d
  submit_time: "%s"
  retry_mode: "off"
storage:
%sklavi:
  base_url: http://%s
  access_key: ak
  secret_key: sk
  timeout: %s
  max_attempts: 3
  backoff_min: 5ms
  backoff_max: 100ms
  rate_limit: 2000
  rate_burst: 200
  token_refresh_before: 1h
scheduler:
  scan_schedule: "@every 1s"
  poll_schedule: "@every 1s"
  workers: 32
  poll_min_interval: 30m
  poll_max_interval: 6h
  resend_min_interval: 10m
  resend_max_interval: 2h
  confirm_after: %s
  shutdown_timeout: 10s
http:
  listen: %s
  admin_token: %s
log:
  format: json
`, LeadDays, SubmitTime, storage, sandboxAddr, klaviTimeout, confirmAfter, listen, Token) + strings.Join(sections, "")
}
