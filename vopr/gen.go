package vopr

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/retry"
	"github.com/klavi-billing/billingd/scheduler"
)

// The retryable reasons and the others a rejection may carry.
var (
	retryableReasons = klavi.DefaultRetryableReasons
	finalReasons     = []klavi.ReasonCode{klavi.ReasonUserRejected, klavi.ReasonDivergentAuthentication, klavi.ReasonOriginDestinationAccountsEqual}
)

// chance reports true with probability p.
func chance(r *rand.Rand, p float64) bool { return r.Float64() < p }

// between returns a number in [lo, hi].
func between(r *rand.Rand, lo, hi int) int { return lo + r.IntN(hi-lo+1) }

// pick returns one element of xs.
func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// genPolicy draws the scheduler's settings.
func genPolicy(r *rand.Rand) scheduler.Config {
	return scheduler.Config{
		Policy: scheduler.Policy{
			LeadDays:  pick(r, 2, 3, 3, 5, 10, between(r, 2, 10)),
			RetryMode: pick(r, consent.Local, consent.Attach, consent.Off),
			DueAdjust: pick(r, cycle.AdjustNone, cycle.AdjustNone, cycle.AdjustNextBusinessDay),
		},
		SubmitHour:          pick(r, 0, 9, 9, 23, between(r, 0, 23)),
		SubmitMinute:        pick(r, 0, 30, 59),
		Workers:             1,
		ClockTolerance:      clockTolerance,
		ClockProbeEvery:     time.Second,
		RefreshSchedule:     "off",
		RefreshEvery:        pick(r, 24*time.Hour, 3*24*time.Hour, 7*24*time.Hour),
		RefreshBeforeSubmit: chance(r, 0.3),
	}
}

// genConsent draws consent i of a world starting on from and lasting days.
func genConsent(r *rand.Rand, i int, from cycle.Date, days int) *consent.Consent {
	iv := pick(r, cycle.Weekly, cycle.Monthly, cycle.Monthly, cycle.Monthly, cycle.Quarterly, cycle.Semiannual, cycle.Yearly)
	ref := from.AddDays(between(r, -45, 40))
	switch {
	case chance(r, 0.3): // a month end: 29, 30 or 31, clamped in short months
		first := cycle.MustDate(ref.Year(), ref.Month(), 1)
		last := first.AddMonthsClamped(1).AddDays(-1)
		ref = cycle.MustDate(ref.Year(), ref.Month(), min(between(r, 29, 31), last.Day()))
	case iv == cycle.Yearly && chance(r, 0.2): // 29 February
		y := from.Year() - 1
		for !isLeap(y) {
			y--
		}
		ref = cycle.MustDate(y, time.February, 29)
	}
	var fixed klavi.Cents
	if chance(r, 0.6) {
		fixed = klavi.Cents(between(r, 1, 250_000))
	}
	id := fmt.Sprintf("consent-%02d", i)
	cc := sandbox.SampleConsent(id, iv, ref, fixed)
	pmc := cc.PaymentMethodConfig
	if fixed == 0 {
		switch {
		case chance(r, 0.25):
			pmc.MaximumVariableAmount = nil
		default:
			hi := klavi.Cents(between(r, 100, 500_000))
			pmc.MaximumVariableAmount = &hi
		}
		if chance(r, 0.2) {
			lo := klavi.Cents(between(r, 1, 100))
			pmc.MinimumVariableAmount = &lo
		}
	}
	accepted := chance(r, 0.75)
	pmc.IsRetryAccepted = &accepted
	if chance(r, 0.35) {
		base := from
		if ref.After(base) {
			base = ref
		}
		exp := base.AddDays(between(r, 5, days+30)).At(between(r, 0, 23), between(r, 0, 59))
		cc.ExpirationDateTime = &klavi.DateTime{Time: exp.UTC().Truncate(time.Second)}
	}
	c := &consent.Consent{CreatedConsent: *cc}
	if accepted && chance(r, 0.85) {
		c.Billing.AutoRetryStrategy = genStrategy(r, iv)
	}
	if chance(r, 0.6) {
		c.Billing.RetryMode = pick(r, consent.Local, consent.Attach, consent.Off)
	}
	if chance(r, 0.2) {
		adj := pick(r, cycle.AdjustNone, cycle.AdjustNextBusinessDay)
		c.Billing.DueDateAdjust = &adj
	}
	return c
}

// genStrategy draws a valid retry strategy for interval iv: 1..3 increasing days
// within its 5- or 7-day window.
func genStrategy(r *rand.Rand, iv cycle.Interval) *retry.Strategy {
	w := iv.RetryWindowDays()
	n := between(r, 1, 3)
	var days []int
	d := 0
	for range n {
		if d >= w {
			break
		}
		d = between(r, d+1, min(d+3, w))
		days = append(days, d)
	}
	return &retry.Strategy{Days: days, SkipWeekend: chance(r, 0.4)}
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

// genScenario draws how Klavi settles payments.
func genScenario(r *rand.Rand, cs []*consent.Consent) *sandbox.Scenario {
	sc := &sandbox.Scenario{
		Seed:           r.Uint64(),
		RejectFraction: pick(r, 0, 0.1, 0.3, 0.6, 0.9),
		RejectReason:   pick(r, retryableReasons...),
	}
	for _, c := range cs {
		for range between(r, 0, 4) {
			k := between(r, 0, 60)
			var att *int
			if chance(r, 0.5) {
				a := between(r, 0, 3)
				att = &a
			}
			rule := sandbox.Rule{ConsentID: c.ID, Cycle: &k, Attempt: att, Outcome: sandbox.Rejected}
			switch x := r.IntN(10); {
			case x < 5:
				rule.Reason = pick(r, retryableReasons...)
			case x < 7:
				rule.Reason = pick(r, finalReasons...)
			case x < 8:
				rule.Reason = pick(r, klavi.ReasonRevokedUser, klavi.ReasonRevokedMerchant)
			case x < 9:
				rule.Outcome, rule.Reason = sandbox.Canceled, ""
			default:
				rule.Outcome, rule.Reason = sandbox.Completed, ""
			}
			sc.Rules = append(sc.Rules, rule)
		}
	}
	return sc
}
