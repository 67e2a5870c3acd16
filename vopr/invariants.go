package vopr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/retry"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
)

// The invariants. Each is a function named for the promise it checks; a broken
// promise ends the run with a message that says what happened and why it is wrong.

// onPost checks a payment create or retry as it leaves billingd, before Klavi sees it.
func (w *world) onPost(p *request) {
	w.res.Posts++
	c := w.byID[p.consentID]
	if c == nil {
		w.fail("knownConsent", "billingd sent a payment for consent %q, which it was never given", p.consentID)
	}
	key := w.clientRequestIDDerived(c, p)
	w.sameKeySameRequest(p)
	att := w.postAfterDurableSubmitting(key, p)
	w.noDecisionOnDoubtedClock("send "+p.body.ClientRequestID, key.ConsentID)
	if p.retry {
		w.retryWithinWindow(c, key, att, p)
	} else {
		w.paymentWithinWindow(c, key, p)
		w.amountAsAgreed(c, key, p)
	}
	if _, ok := w.firstPost[p.body.ClientRequestID]; !ok {
		w.firstPost[p.body.ClientRequestID] = w.local()
	}
}

// parseKey reads (cycle, attempt) out of a clientRequestId of consent id.
func parseKey(id, crid string) (k, a int, ok bool) {
	rest, found := strings.CutPrefix(crid, "billingd-"+consent.Hash(id)+"-")
	if !found {
		return 0, 0, false
	}
	ks, as, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	k, err1 := strconv.Atoi(ks)
	a, err2 := strconv.Atoi(as)
	return k, a, err1 == nil && err2 == nil && k >= 0 && a >= 0
}

// clientRequestIDDerived: every clientRequestId is consent.ClientRequestID(consent,
// cycle, attempt); an original's cycle is the one its date is due in.
func (w *world) clientRequestIDDerived(c *consent.Consent, p *request) storage.AttemptKey {
	crid := p.body.ClientRequestID
	k, a, ok := parseKey(c.ID, crid)
	if !ok || crid != consent.ClientRequestID(c.ID, k, a) {
		w.fail("clientRequestIDDerived", "%s sent with clientRequestId %q, which is not derived from (consent, cycle, attempt): a re-send under a new key can create a second payment",
			kindOf(p), crid)
	}
	if !p.retry {
		if a != 0 {
			w.fail("clientRequestIDDerived", "an original payment of %s cycle %d sent with the key of attempt %d (%s)", c.ID, k, a, crid)
		}
		if got, ok := w.scheds[c.ID].Index(p.body.Date); !ok || got != k {
			w.fail("clientRequestIDDerived", "payment %s is dated %s, which is not in cycle %d of %s", crid, p.body.Date, k, c.ID)
		}
	} else if a < 1 || a > 3 {
		w.fail("clientRequestIDDerived", "retry %s has attempt %d, outside 1..3", crid, a)
	}
	return storage.AttemptKey{ConsentID: c.ID, Cycle: k, Attempt: a}
}

// sameKeySameRequest: a clientRequestId always carries the same payment (date,
// amount, consent): Klavi answers a re-send with the payment it first created.
func (w *world) sameKeySameRequest(p *request) {
	crid := p.body.ClientRequestID
	prev, ok := w.sent[crid]
	if !ok {
		w.sent[crid] = p.body
		return
	}
	if prev.Date != p.body.Date || prev.Amount != p.body.Amount {
		w.fail("sameKeySameRequest", "clientRequestId %s was sent for %s %s and again for %s %s",
			crid, prev.Date, prev.Amount, p.body.Date, p.body.Amount)
	}
}

// postAfterDurableSubmitting: no POST without its SUBMITTING record committed first,
// with the same key, date and amount; and only for a consent still billed.
func (w *world) postAfterDurableSubmitting(key storage.AttemptKey, p *request) *storage.Attempt {
	att, err := w.reader.GetAttempt(w.ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		w.fail("postAfterDurableSubmitting", "%s %s sent with no attempt %s in the store: a crash now would forget a payment Klavi may create",
			kindOf(p), p.body.ClientRequestID, key)
	}
	if err != nil {
		panic(err)
	}
	if att.State != storage.AttemptSubmitting || att.ClientRequestID != p.body.ClientRequestID || att.Date != p.body.Date ||
		(!p.retry && att.Amount != p.body.Amount) {
		w.fail("postAfterDurableSubmitting", "%s %s (date %s, amount %s) sent while the store holds attempt %s as %s with key %s, date %s, amount %s",
			kindOf(p), p.body.ClientRequestID, p.body.Date, p.body.Amount, key, att.State, att.ClientRequestID, att.Date, att.Amount)
	}
	rec, err := w.reader.GetConsent(w.ctx, key.ConsentID)
	if err != nil {
		panic(err)
	}
	billed := rec.State == storage.ConsentActive || p.retry && rec.State == storage.ConsentExpired
	if !billed {
		w.fail("postAfterDurableSubmitting", "%s %s sent for consent %s, which the store holds as %s", kindOf(p), p.body.ClientRequestID, key.ConsentID, rec.State)
	}
	return att
}

// noDecisionOnDoubtedClock: nothing is sent and nothing is decided (MISSED, FAILED,
// SKIPPED) while billingd's clock is off Klavi's by more than the tolerance.
func (w *world) noDecisionOnDoubtedClock(what, consentID string) {
	// A request takes at most a minute of latency, and the Date header has a
	// one-second grain: a step is either ≤ 0.8 or ≥ 1.2 tolerance.
	if off := w.offset; off > clockTolerance || off < -clockTolerance {
		w.fail("noDecisionOnDoubtedClock", "%s of %s decided while billingd's clock is %s off Klavi's (tolerance %s)", what, consentID, off, clockTolerance)
	}
}

// paymentWithinWindow: an original payment is dated on its cycle's due date, from 2 to
// 10 days after billingd's today, never after the consent's expiry.
func (w *world) paymentWithinWindow(c *consent.Consent, key storage.AttemptKey, p *request) {
	s := w.scheds[c.ID]
	d, today := p.body.Date, cycle.DateOf(w.local())
	if due := s.Due(key.Cycle); d != due {
		w.fail("paymentWithinWindow", "payment %s dated %s, but cycle %d of %s is due on %s", p.body.ClientRequestID, d, key.Cycle, c.ID, due)
	}
	if d.Before(today.AddDays(scheduler.WindowClosesDays)) || d.After(today.AddDays(scheduler.WindowOpensDays)) {
		w.fail("paymentWithinWindow", "payment %s dated %s sent on %s: outside D-10..D-2", p.body.ClientRequestID, d, today)
	}
	if !s.Expiry.IsZero() && d.After(s.Expiry) {
		w.fail("paymentWithinWindow", "payment %s dated %s, after the consent's expiry %s", p.body.ClientRequestID, d, s.Expiry)
	}
	if st := p.body.AutoRetryStrategy; st != nil {
		if !c.RetryAccepted() {
			w.fail("retryWithinWindow", "payment %s carries a retry strategy, but consent %s does not accept retries", p.body.ClientRequestID, c.ID)
		}
		plan, _ := retry.Plan(s.Due(key.Cycle), *st, retry.Limits{Interval: s.Interval, NextCycleStart: s.Start(key.Cycle + 1), Expiry: s.Expiry})
		if len(plan) != len(st.Days) {
			w.fail("retryWithinWindow", "payment %s carries retry days %v, of which only %d fall inside the window and before the next cycle", p.body.ClientRequestID, st.Days, len(plan))
		}
	}
}

// retryWithinWindow: a local retry is sent only for a consent that accepts retries,
// after its original was rejected with a retryable reason, dated after today, within
// the 5/7-day window of the original's date, before the next cycle and the expiry.
func (w *world) retryWithinWindow(c *consent.Consent, key storage.AttemptKey, att *storage.Attempt, p *request) {
	s := w.scheds[c.ID]
	crid, d, today := p.body.ClientRequestID, p.body.Date, cycle.DateOf(w.local())
	if !c.RetryAccepted() {
		w.fail("retryWithinWindow", "retry %s sent for consent %s, which does not accept retries", crid, c.ID)
	}
	if att.Mode != consent.Local {
		w.fail("retryWithinWindow", "retry %s sent by billingd for a %s-mode consent", crid, att.Mode)
	}
	orig := w.payment(p.paymentID)
	if orig == nil || orig.ConsentID != c.ID || orig.Cycle != key.Cycle || orig.Kind != sandbox.KindOriginal {
		w.fail("retryWithinWindow", "retry %s of payment %s, which is not the original payment of %s cycle %d", crid, p.paymentID, c.ID, key.Cycle)
	}
	if orig.Status != klavi.PaymentRejected || !retryable(orig.Reason) {
		w.fail("retryWithinWindow", "retry %s sent while the original %s is %s (%s): only a retryable rejection is retried", crid, orig.PaymentID, orig.Status, orig.Reason)
	}
	last := orig.Date.AddDays(s.Interval.RetryWindowDays())
	switch {
	case !d.After(today):
		w.fail("retryWithinWindow", "retry %s dated %s sent on %s: a retry is requested by the day before its date", crid, d, today)
	case !d.After(orig.Date) || d.After(last):
		w.fail("retryWithinWindow", "retry %s dated %s, outside the %d-day window %s..%s of the original's date", crid, d, s.Interval.RetryWindowDays(), orig.Date.AddDays(1), last)
	case !d.Before(s.Start(key.Cycle + 1)):
		w.fail("retryWithinWindow", "retry %s dated %s, on or after the next cycle's start %s", crid, d, s.Start(key.Cycle+1))
	case !s.Expiry.IsZero() && d.After(s.Expiry):
		w.fail("retryWithinWindow", "retry %s dated %s, after the consent's expiry %s", crid, d, s.Expiry)
	}
}

func retryable(r klavi.ReasonCode) bool {
	for _, x := range klavi.DefaultRetryableReasons {
		if r == x {
			return true
		}
	}
	return r == ""
}

// amountAsAgreed: a fixed consent is billed its fixed amount; a variable one the
// amount the operator set for that cycle, within the consent's limits.
func (w *world) amountAsAgreed(c *consent.Consent, key storage.AttemptKey, p *request) {
	a := p.body.Amount
	if fixed, ok := c.FixedAmount(); ok {
		if a != fixed {
			w.fail("amountAsAgreed", "payment %s for %s, but consent %s has the fixed amount %s", p.body.ClientRequestID, a, c.ID, fixed)
		}
		return
	}
	set, ok, err := w.reader.Amount(w.ctx, c.ID, key.Cycle)
	if err != nil {
		panic(err)
	}
	if !ok || set != a {
		w.fail("amountAsAgreed", "payment %s for %s, but the amount set for cycle %d of %s is %s (set: %v)", p.body.ClientRequestID, a, key.Cycle, c.ID, set, ok)
	}
	if err := c.CheckVariableAmount(a); err != nil {
		w.fail("amountAsAgreed", "payment %s: %v", p.body.ClientRequestID, err)
	}
}

// payment returns Klavi's ledger entry of a payment id, nil when it has none.
func (w *world) payment(id string) *sandbox.LedgerEntry {
	for _, e := range w.sb.Ledger() {
		if e.PaymentID == id {
			return &e
		}
	}
	return nil
}

// onEvent checks what the scheduler reports as it decides.
func (w *world) onEvent(e scheduler.Event) {
	switch e.Kind {
	case scheduler.EventLookup, scheduler.EventAdded, scheduler.EventAmountSet:
		return
	}
	if e.ConsentID != "" {
		w.tracef("event %s %s/%d/%d %s %s %s", e.Kind, e.ConsentID, e.Cycle, e.Attempt, e.Date, e.Status, e.Reason)
	} else {
		w.tracef("event %s %s", e.Kind, e.Reason)
	}
	switch e.Kind {
	case scheduler.EventMissed, scheduler.EventFailed, scheduler.EventSkipped:
		w.noDecisionOnDoubtedClock(string(e.Kind)+" "+e.ClientRequestID, e.ConsentID)
	case scheduler.EventSubmitted, scheduler.EventRetrySubmitted:
		w.recordedPaymentExists(e)
	}
}

// recordedPaymentExists: a payment billingd records as submitted is one Klavi holds,
// under the same clientRequestId. Anything else is a cycle billingd thinks is billed
// and nobody is charged for (or one charged under another record).
func (w *world) recordedPaymentExists(e scheduler.Event) {
	p := w.payment(e.PaymentID)
	if p == nil {
		w.fail("recordedPaymentExists", "billingd records %s/%d/%d as submitted with payment %q, which Klavi does not hold",
			e.ConsentID, e.Cycle, e.Attempt, e.PaymentID)
	}
	if p.ClientRequestID != e.ClientRequestID {
		w.fail("recordedPaymentExists", "billingd records payment %s for key %s, but Klavi created it for key %q",
			e.PaymentID, e.ClientRequestID, p.ClientRequestID)
	}
}

// finalChecks runs the end-of-run invariants over the store and Klavi's ledger.
func (w *world) finalChecks() {
	if w.violation != nil || w.ctx.Err() != nil {
		return
	}
	ledger := w.sb.Ledger()
	w.oneSettledPaymentPerCycle(ledger)
	atts := map[storage.AttemptKey]*storage.Attempt{}
	for _, c := range w.consents {
		list, err := w.reader.Attempts(w.ctx, c.ID)
		if err != nil {
			panic(err)
		}
		for _, a := range list {
			atts[a.AttemptKey] = a
		}
	}
	w.klaviAndBillingdAgree(ledger, atts)
	for _, c := range w.consents {
		w.everyCycleEnds(c, atts)
		w.previewCameTrue(c, atts)
	}
}

// oneSettledPaymentPerCycle: Klavi settled at most one payment per cycle.
func (w *world) oneSettledPaymentPerCycle(ledger []sandbox.LedgerEntry) {
	// An attach-mode original settled by one of Klavi's own retries shows that
	// retry's COMPLETED too; the charge is the retry's.
	mirror := map[string]bool{}
	for _, e := range ledger {
		if e.Kind == sandbox.KindAutoRetry && e.Status == klavi.PaymentCompleted {
			mirror[e.OriginalPaymentID] = true
		}
	}
	seen := map[storage.AttemptKey]string{}
	for _, e := range ledger {
		if e.Status != klavi.PaymentCompleted || e.Kind == sandbox.KindInstant || mirror[e.PaymentID] {
			continue
		}
		k := storage.AttemptKey{ConsentID: e.ConsentID, Cycle: e.Cycle}
		if prev, ok := seen[k]; ok {
			w.fail("oneSettledPaymentPerCycle", "cycle %d of %s was charged twice: payments %s and %s both settled", e.Cycle, e.ConsentID, prev, e.PaymentID)
		}
		seen[k] = e.PaymentID
	}
}

// klaviAndBillingdAgree: every payment Klavi holds under a billingd key is the one
// billingd recorded for it, and a settled one is recorded settled (or left open for
// an operator); every payment billingd recorded settled is settled at Klavi.
func (w *world) klaviAndBillingdAgree(ledger []sandbox.LedgerEntry, atts map[storage.AttemptKey]*storage.Attempt) {
	byID := map[string]sandbox.LedgerEntry{}
	for _, e := range ledger {
		byID[e.PaymentID] = e
		if e.ClientRequestID == "" {
			continue
		}
		k, a, ok := parseKey(e.ConsentID, e.ClientRequestID)
		if !ok {
			w.fail("klaviAndBillingdAgree", "Klavi holds payment %s under key %q, not one billingd derives", e.PaymentID, e.ClientRequestID)
		}
		att := atts[storage.AttemptKey{ConsentID: e.ConsentID, Cycle: k, Attempt: a}]
		open := att != nil && (att.State == storage.AttemptUnconfirmed || att.State == storage.AttemptStuck)
		switch {
		case att == nil:
			w.fail("klaviAndBillingdAgree", "Klavi holds payment %s (%s) for key %s, of which billingd has no record", e.PaymentID, e.Status, e.ClientRequestID)
		case open:
		case att.PaymentID != e.PaymentID:
			w.fail("klaviAndBillingdAgree", "Klavi holds payment %s (%s) for key %s, but billingd recorded %q (%s)", e.PaymentID, e.Status, e.ClientRequestID, att.PaymentID, att.State)
		case e.Status == klavi.PaymentCompleted && att.State == storage.AttemptSubmitted && !att.NextPoll.IsZero():
			// Settled at Klavi since billingd's last poll; its next poll is scheduled
			// (the world may end between the two).
		case e.Status == klavi.PaymentCompleted && att.State != storage.AttemptCompleted:
			w.fail("klaviAndBillingdAgree", "payment %s of %s settled at Klavi, but billingd holds it as %s (%s): a charge billingd does not know of", e.PaymentID, att.AttemptKey, att.State, att.Reason)
		}
	}
	for _, a := range atts {
		if a.PaymentID == "" {
			continue
		}
		e, ok := byID[a.PaymentID]
		if !ok {
			w.fail("klaviAndBillingdAgree", "billingd holds attempt %s as %s with payment %s, which Klavi does not hold", a.AttemptKey, a.State, a.PaymentID)
		}
		if a.State == storage.AttemptCompleted && e.Status != klavi.PaymentCompleted {
			w.fail("klaviAndBillingdAgree", "billingd holds %s as COMPLETED, but Klavi's payment %s is %s", a.AttemptKey, a.PaymentID, e.Status)
		}
	}
}

// everyCycleEnds: every cycle from the first one billed up to the consent's cursor
// has an original attempt in a final state or an attention item, and an active
// consent's cursor is not stuck behind the present: no cycle is skipped silently.
func (w *world) everyCycleEnds(c *consent.Consent, atts map[storage.AttemptKey]*storage.Attempt) {
	rec, err := w.reader.GetConsent(w.ctx, c.ID)
	if err != nil {
		panic(err)
	}
	s := w.scheds[c.ID]
	today := cycle.DateOf(w.now())
	bound := today.AddDays(-12) // a cycle's window and retries end well within this
	for k := w.initialNext[c.ID]; k < rec.NextCycle; k++ {
		a := atts[storage.AttemptKey{ConsentID: c.ID, Cycle: k}]
		if a == nil {
			if rec.State != storage.ConsentActive && k == rec.NextCycle-1 {
				continue
			}
			w.fail("everyCycleEnds", "cycle %d of %s (due %s) was passed over with no attempt: a silently skipped cycle", k, c.ID, s.Due(k))
		}
	}
	if rec.State == storage.ConsentActive && s.Exists(rec.NextCycle) && s.Due(rec.NextCycle).Before(bound) {
		w.fail("everyCycleEnds", "consent %s is active and its next cycle %d was due on %s, long past (today %s)", c.ID, rec.NextCycle, s.Due(rec.NextCycle), today)
	}
	for _, a := range atts {
		if a.ConsentID != c.ID || !a.Date.Before(bound) {
			continue
		}
		switch a.State {
		case storage.AttemptSubmitting, storage.AttemptPlanned, storage.AttemptSubmitted:
			w.fail("everyCycleEnds", "attempt %s dated %s is still %s on %s: it never reached a final state (%s)", a.AttemptKey, a.Date, a.State, today, a.Reason)
		}
	}
}

// previewCameTrue: for every cycle nothing disturbed (no fault, crash, clock step,
// Klavi refusal or operator action before it ended), the run did what the preview
// computed before it said: the same date, amount and submit day, the same retry
// dates, MISSED or SKIPPED where the preview said so.
func (w *world) previewCameTrue(c *consent.Consent, atts map[storage.AttemptKey]*storage.Attempt) {
	rec, err := w.reader.GetConsent(w.ctx, c.ID)
	if err != nil {
		panic(err)
	}
	quietUntil := w.disturbed
	if t, ok := w.consentDist[c.ID]; ok && (quietUntil.IsZero() || t.Before(quietUntil)) {
		quietUntil = t
	}
	for _, cp := range w.preview[c.ID].Cycles {
		if cp.Index < w.initialNext[c.ID] || w.cycleDist[storage.AttemptKey{ConsentID: c.ID, Cycle: cp.Index}] {
			continue
		}
		ends := cp.Due
		if n := len(cp.Retries); n > 0 {
			ends = cp.Retries[n-1].Date
		}
		endsAt := ends.AddDays(2).At(0, 0)
		if !quietUntil.IsZero() && !endsAt.Before(quietUntil) || !endsAt.Before(w.now()) {
			continue
		}
		key := storage.AttemptKey{ConsentID: c.ID, Cycle: cp.Index}
		a := atts[key]
		want := func(format string, args ...any) {
			w.fail("previewCameTrue", "cycle %d of %s: the preview said %s; the run did otherwise: %v", cp.Index, c.ID, fmt.Sprintf(format, args...), describeAttempt(a))
		}
		switch {
		case a == nil && rec.State != storage.ConsentActive && cp.Index >= rec.NextCycle:
			// Billing stopped (Klavi rejected a payment with a revocation reason, or
			// the consent expired): later cycles are not billed.
		case a == nil:
			want("%s due %s", cp.State, cp.Due)
		case cp.State == scheduler.StateMissed:
			if a.State != storage.AttemptMissed {
				want("MISSED")
			}
		case cp.Amount == nil:
			if a.State != storage.AttemptSkipped {
				want("SKIPPED (no amount set)")
			}
		default:
			if a.Date != cp.Due || a.Amount != *cp.Amount {
				want("date %s amount %s", cp.Due, *cp.Amount)
			}
			if a.State != storage.AttemptCompleted && a.State != storage.AttemptRejected {
				want("a payment that settles or is rejected")
			}
			if sent := w.firstPost[a.ClientRequestID]; cycle.DateOf(sent) != cp.SubmitOn {
				want("submission on %s (sent on %s)", cp.SubmitOn, cycle.DateOf(sent))
			}
			mode := w.cfg.Policy.RetryModeOf(c)
			if mode == consent.Attach && len(cp.Retries) > 0 {
				if a.Strategy == nil || len(a.Strategy.Days) != len(cp.Retries) {
					want("retry days %v sent to Klavi", cp.Retries)
				}
			}
			if mode == consent.Local {
				for n := 1; n <= len(cp.Retries); n++ {
					r := atts[storage.AttemptKey{ConsentID: c.ID, Cycle: cp.Index, Attempt: n}]
					if r != nil && r.Date != cp.Retries[n-1].Date {
						want("retry %d on %s", n, cp.Retries[n-1].Date)
					}
				}
			}
		}
	}
}

func describeAttempt(a *storage.Attempt) string {
	if a == nil {
		return "no attempt"
	}
	return fmt.Sprintf("attempt %s %s date %s amount %s (%s)", a.AttemptKey, a.State, a.Date, a.Amount, a.Reason)
}
