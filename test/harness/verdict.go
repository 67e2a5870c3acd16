package harness

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
)

// Violation categories, in the order the Verdict reports them.
const (
	CatDuplicate   = "duplicate charges"
	CatLost        = "lost cycles"
	CatUnconfirmed = "attempts left UNCONFIRMED"
	CatSubmitting  = "attempts left SUBMITTING"
	CatUnsettled   = "attempts or consents not settled"
	CatRetry       = "retries not as planned"
	CatMismatch    = "records disagreeing with Klavi"
)

// Categories lists the Cat* constants in the order the Verdict reports them.
var Categories = []string{CatDuplicate, CatLost, CatUnconfirmed, CatSubmitting, CatUnsettled, CatRetry, CatMismatch}

// maxListed bounds the messages printed per category; the count covers all.
const maxListed = 200

// Records is what the verdict reads of billingd's store: a bbolt file, or the
// records on etcd (*storage.DB and the engines' stores have these methods).
type Records interface {
	GetConsent(ctx context.Context, id string) (*storage.ConsentRecord, error)
	Attempts(ctx context.Context, consentID string) ([]*storage.Attempt, error)
	ListConsents(ctx context.Context, after string, limit int, state storage.ConsentState) ([]*storage.ConsentRecord, error)
}

// A Verdict is what Judge found: violations by category, and figures.
type Verdict struct {
	t *testing.T
	// Count counts the violations by category (the Cat* constants).
	Count    map[string]int
	Expected int // cycles billingd had to bill
	Billed   int // of those, cycles whose original payment reached Klavi
	// States counts billingd's attempts by state.
	States   map[storage.AttemptState]int
	scenario *sandbox.Scenario
	tick     time.Duration // see World.Tick
	// Late counts retries dropped because the scan came after their request day.
	Late int
	// tolerated categories are counted and logged, not failed.
	tolerated map[string]bool
}

func (v *Verdict) add(cat, format string, args ...any) {
	v.t.Helper()
	v.Count[cat]++
	report := v.t.Errorf
	if v.tolerated[cat] {
		report = v.t.Logf
	}
	switch n := v.Count[cat]; {
	case n <= maxListed:
		report("%s: %s", strings.TrimSuffix(cat, "s"), fmt.Sprintf(format, args...))
	case n == maxListed+1:
		report("%s: more than %d; the rest are counted, not listed", cat, maxListed)
	}
}

// klaviView indexes the sandbox's ledger.
type klaviView struct {
	byCRID   map[string]*sandbox.LedgerEntry
	children map[string][]*sandbox.LedgerEntry // original payment id → its retries, in creation order
	byCycle  map[string][]*sandbox.LedgerEntry // consent/cycle → every payment of the cycle
}

func cycleKey(id string, k int) string { return fmt.Sprintf("%s/%d", id, k) }

func index(ledger []sandbox.LedgerEntry) *klaviView {
	kv := &klaviView{byCRID: map[string]*sandbox.LedgerEntry{}, children: map[string][]*sandbox.LedgerEntry{},
		byCycle: map[string][]*sandbox.LedgerEntry{}}
	for i := range ledger {
		l := &ledger[i]
		if l.ClientRequestID != "" {
			kv.byCRID[l.ClientRequestID] = l
		}
		if l.OriginalPaymentID != "" {
			kv.children[l.OriginalPaymentID] = append(kv.children[l.OriginalPaymentID], l)
		}
		kv.byCycle[cycleKey(l.ConsentID, l.Cycle)] = append(kv.byCycle[cycleKey(l.ConsentID, l.Cycle)], l)
	}
	return kv
}

// describe says what a ledger entry is, for messages.
func describe(l *sandbox.LedgerEntry) string {
	if l == nil {
		return "nothing at Klavi"
	}
	s := fmt.Sprintf("%s %s %s dated %s", l.Kind, l.PaymentID, l.Status, l.Date)
	if l.Reason != "" {
		s += " (" + string(l.Reason) + ")"
	}
	if l.ResponseDropped {
		s += ", its answer dropped"
	}
	return s
}

func describeAttempt(a *storage.Attempt) string {
	if a == nil {
		return "no attempt in billingd's store"
	}
	s := fmt.Sprintf("billingd attempt %s %s", a.ClientRequestID, a.State)
	if a.PaymentID != "" {
		s += " payment " + a.PaymentID
	}
	if a.Sends > 0 {
		s += fmt.Sprintf(", %d sends", a.Sends)
	}
	if a.Reason != "" {
		s += ": " + a.Reason
	}
	return s
}

// Judge checks the run's outcome: the sandbox's ledger against the world and
// billingd's records. Each violation fails t with its consent, cycle, attempt,
// clientRequestId and states (categories in tolerate are logged instead); the
// Verdict counts them.
func Judge(t *testing.T, w *World, ledger []sandbox.LedgerEntry, db Records, tolerate ...string) *Verdict {
	ctx := context.Background()
	v := &Verdict{t: t, Count: map[string]int{}, States: map[storage.AttemptState]int{}, scenario: w.Scenario, tick: w.Tick,
		tolerated: map[string]bool{}}
	for _, c := range tolerate {
		v.tolerated[c] = true
	}
	kv := index(ledger)

	// Every payment at Klavi belongs to a consent of the run.
	for i := range ledger {
		if w.byID[ledger[i].ConsentID] == nil {
			v.add(CatMismatch, "payment %s at Klavi for unknown consent %s", ledger[i].PaymentID, ledger[i].ConsentID)
		}
	}

	for _, s := range w.subjects {
		id := s.c.ID
		rec, err := db.GetConsent(ctx, id)
		require.NoError(t, err, id)
		list, err := db.Attempts(ctx, id)
		require.NoError(t, err, id)
		attempts := map[storage.AttemptKey]*storage.Attempt{}
		cycles := map[int]bool{}
		for _, a := range list {
			attempts[a.AttemptKey] = a
			cycles[a.Cycle] = true
			v.States[a.State]++
			v.checkAttempt(s, a, kv)
		}
		for _, l := range ledger {
			if l.ConsentID == id {
				cycles[l.Cycle] = true
			}
		}
		expected := map[int]bool{}
		for _, k := range s.cycles {
			expected[k] = true
		}
		ks := make([]int, 0, len(cycles))
		for k := range cycles {
			ks = append(ks, k)
		}
		sort.Ints(ks)
		for _, k := range ks {
			if !expected[k] && !(s.fate == fateRevoked && k > s.fateCycle) {
				l := kv.byCRID[consent.ClientRequestID(id, k, 0)]
				if l != nil || attempts[storage.AttemptKey{ConsentID: id, Cycle: k}] != nil {
					v.add(CatMismatch, "%s cycle %d (due %s) is not billingd's to bill (bill from %s, expiry %s), yet: %s; %s",
						id, k, s.sched.Due(k), w.BillFrom, s.sched.Expiry, describe(l), describeAttempt(attempts[storage.AttemptKey{ConsentID: id, Cycle: k}]))
				}
			}
			v.checkCharges(s, k, kv)
		}
		for _, k := range s.cycles {
			v.Expected++
			orig := kv.byCRID[consent.ClientRequestID(id, k, 0)]
			a := attempts[storage.AttemptKey{ConsentID: id, Cycle: k}]
			if orig == nil {
				v.add(CatLost, "%s cycle %d due %s (%s, %s mode): no payment reached Klavi; %s",
					id, k, s.sched.Due(k), s.sched.Interval, s.mode, describeAttempt(a))
				continue
			}
			v.Billed++
			v.checkRetries(s, k, orig, attempts, kv)
		}
		switch want := storage.ConsentExpired; {
		case s.fate == fateRevoked:
			if rec.State != storage.ConsentRevoked {
				v.add(CatUnsettled, "%s: Klavi rejected cycle %d with REVOKED_USER, billingd's consent is %s (%s); %s",
					id, s.fateCycle, rec.State, rec.StateReason, describeAttempt(attempts[storage.AttemptKey{ConsentID: id, Cycle: s.fateCycle}]))
			}
		case rec.State != want:
			v.add(CatUnsettled, "%s: consent is %s (%s), want %s once its last cycle (expiry %s) was billed; next cycle %d",
				id, rec.State, rec.StateReason, want, s.sched.Expiry, rec.NextCycle)
		}
	}
	return v
}

// checkAttempt compares one of billingd's attempts with Klavi's ledger.
func (v *Verdict) checkAttempt(s *subject, a *storage.Attempt, kv *klaviView) {
	l := kv.byCRID[a.ClientRequestID]
	where := fmt.Sprintf("%s cycle %d attempt %d (%s)", s.c.ID, a.Cycle, a.Attempt, a.ClientRequestID)
	if want := consent.ClientRequestID(s.c.ID, a.Cycle, a.Attempt); a.ClientRequestID != want {
		v.add(CatMismatch, "%s: clientRequestId is not the derived %s", where, want)
	}
	switch a.State {
	case storage.AttemptUnconfirmed:
		v.add(CatUnconfirmed, "%s: %s; Klavi holds %s", where, describeAttempt(a), describe(l))
	case storage.AttemptSubmitting:
		v.add(CatSubmitting, "%s: %s; Klavi holds %s", where, describeAttempt(a), describe(l))
	case storage.AttemptSubmitted, storage.AttemptPlanned:
		v.add(CatUnsettled, "%s: %s after the run settled; Klavi holds %s", where, describeAttempt(a), describe(l))
	case storage.AttemptCompleted, storage.AttemptRejected:
		switch {
		case l == nil:
			v.add(CatMismatch, "%s: %s but Klavi has no payment with that clientRequestId", where, describeAttempt(a))
		case l.PaymentID != a.PaymentID:
			v.add(CatMismatch, "%s: billingd recorded payment %q, Klavi has %s", where, a.PaymentID, describe(l))
		case (a.State == storage.AttemptCompleted) != (l.Status == klavi.PaymentCompleted):
			v.add(CatMismatch, "%s: %s, Klavi says %s", where, describeAttempt(a), describe(l))
		}
	case storage.AttemptFailed, storage.AttemptMissed, storage.AttemptSkipped, storage.AttemptDropped:
		switch {
		case l != nil:
			v.add(CatMismatch, "%s: %s, yet Klavi holds %s", where, describeAttempt(a), describe(l))
		case a.Attempt > 0 && (a.State == storage.AttemptDropped && strings.Contains(a.Reason, "request day") &&
			!a.CreatedAt.Before(a.Date.At(0, 0).Add(-v.tick)) ||
			strings.Contains(a.Reason, "retry_too_soon")):
			// (Or Klavi refused the send as arriving on the retry's date: it left in the
			// last virtual minutes of its request day, which at this speed are
			// milliseconds, and Klavi holds nothing for it.)
			// Planned (the rejection seen) less than a scan's worth of virtual time
			// before its request day ended: the scan that would send it came after
			// midnight. The scan granularity of a sped-up clock, not a lost retry; the
			// plan goes on with the next date.
			v.Late++
			v.t.Logf("late rejection: %s dated %s planned at %s: %s", where, a.Date, a.CreatedAt.UTC().Format(time.RFC3339), a.Reason)
		case a.Attempt > 0:
			// A planned retry that was not sent (its request day passed first) or
			// that Klavi refused. The cycle's original is judged as a lost cycle.
			v.add(CatRetry, "%s dated %s: %s", where, a.Date, describeAttempt(a))
		}
	}
}

// checkCharges: at most one payment of a cycle moves money or may still move it.
// An attach-mode original shows COMPLETED when one of Klavi's retries completed; the
// pair is one charge.
func (v *Verdict) checkCharges(s *subject, k int, kv *klaviView) {
	var live []*sandbox.LedgerEntry
	for _, l := range kv.byCycle[cycleKey(s.c.ID, k)] {
		switch l.Status {
		case klavi.PaymentRejected, klavi.PaymentCanceled:
			continue
		case klavi.PaymentCompleted:
			if l.Kind == sandbox.KindOriginal && completedChild(kv.children[l.PaymentID]) {
				continue
			}
		}
		live = append(live, l)
	}
	if len(live) > 1 {
		var ds []string
		for _, l := range live {
			ds = append(ds, describe(l)+" key "+l.ClientRequestID)
		}
		v.add(CatDuplicate, "%s cycle %d due %s (%s mode) has %d charges: %s",
			s.c.ID, k, s.sched.Due(k), s.mode, len(live), strings.Join(ds, "; "))
	}
}

func completedChild(ls []*sandbox.LedgerEntry) bool {
	for _, l := range ls {
		if l.Status == klavi.PaymentCompleted {
			return true
		}
	}
	return false
}

// checkRetries: a rejected original is retried as its mode and strategy plan.
//   - local: for a rejection with a retryable reason, billingd requests retry n (key
//     attempt n, the plan's n-th date) while the previous one was rejected with a
//     retryable reason; never for other reasons, never beyond the plan; no Klavi-run
//     retries.
//   - attach: the original carries the planned days; Klavi runs a retry per planned
//     date while the previous attempt was rejected (not canceled, not revoked);
//     billingd sends none itself.
//   - off: no retry of any kind.
func (v *Verdict) checkRetries(s *subject, k int, orig *sandbox.LedgerEntry, attempts map[storage.AttemptKey]*storage.Attempt, kv *klaviView) {
	id := s.c.ID
	var local, auto []*sandbox.LedgerEntry
	for _, l := range kv.children[orig.PaymentID] {
		if l.Kind == sandbox.KindAutoRetry {
			auto = append(auto, l)
		} else {
			local = append(local, l)
		}
	}
	plan := policy.Plan(s.c, s.sched, k, s.sched.Due(k), nil).Retries
	where := fmt.Sprintf("%s cycle %d due %s (%s mode, strategy %v)", id, k, s.sched.Due(k), s.mode, s.c.Strategy())
	a0 := attempts[storage.AttemptKey{ConsentID: id, Cycle: k}]

	if s.mode != consent.Local && len(local) > 0 {
		v.add(CatRetry, "%s: billingd requested %d retries (first %s); only local mode does", where, len(local), local[0].ClientRequestID)
	}
	if s.mode != consent.Attach && len(auto) > 0 {
		v.add(CatRetry, "%s: Klavi ran %d retries, so the original carried a strategy; only attach mode sends one", where, len(auto))
	}
	switch s.mode {
	case consent.Local:
		prev, seen := orig, map[string]bool{}
		for n := 1; n <= len(plan) && prev.Status == klavi.PaymentRejected && retryable[prev.Reason]; n++ {
			crid := consent.ClientRequestID(id, k, n)
			r := kv.byCRID[crid]
			if a := attempts[storage.AttemptKey{ConsentID: id, Cycle: k, Attempt: n}]; r == nil && a != nil &&
				(a.State == storage.AttemptDropped || a.State == storage.AttemptFailed) {
				continue // reported by checkAttempt; billingd goes on with the next planned date
			}
			if r == nil {
				v.add(CatRetry, "%s: %s was rejected (%s), retry %d on %s (%s) never reached Klavi; %s; for the rejected one: %s",
					where, prev.PaymentID, prev.Reason, n, plan[n-1].Date, crid,
					describeAttempt(attempts[storage.AttemptKey{ConsentID: id, Cycle: k, Attempt: n}]),
					describeAttempt(attempts[storage.AttemptKey{ConsentID: id, Cycle: k, Attempt: n - 1}]))
				break
			}
			seen[crid] = true
			if r.OriginalPaymentID != orig.PaymentID || r.Date != plan[n-1].Date {
				v.add(CatRetry, "%s: retry %d (%s) is %s of %s, want the plan's date %s of %s",
					where, n, crid, describe(r), r.OriginalPaymentID, plan[n-1].Date, orig.PaymentID)
			}
			prev = r
		}
		for _, r := range local {
			if !seen[r.ClientRequestID] {
				v.add(CatRetry, "%s: unplanned retry %s (%s) after %s", where, r.ClientRequestID, describe(r), describe(orig))
			}
		}
	case consent.Attach:
		if a0 != nil && a0.State != storage.AttemptUnconfirmed && a0.State != storage.AttemptSubmitting {
			var sent []int
			if a0.Strategy != nil {
				sent = a0.Strategy.Days
			}
			var want []int
			for _, r := range plan {
				want = append(want, r.Day)
			}
			if fmt.Sprint(sent) != fmt.Sprint(want) {
				v.add(CatRetry, "%s: the original carried retry days %v, the plan keeps %v", where, sent, want)
			}
		}
		// What Klavi had to run follows the scenario's outcome of each attempt.
		expect := 0
		for n := 1; n <= len(plan); n++ {
			out, reason := v.scenario.Decide(id, k, n-1)
			if out != sandbox.Rejected || reason.ConsentGone() {
				break
			}
			expect = n
		}
		if len(auto) != expect {
			v.add(CatRetry, "%s: Klavi ran %d retries, the scenario and plan call for %d (%s)", where, len(auto), expect, describe(orig))
		}
		for i, r := range auto {
			if i < len(plan) && r.Date != plan[i].Date {
				v.add(CatRetry, "%s: Klavi's retry %d is dated %s, the plan says %s", where, i+1, r.Date, plan[i].Date)
			}
		}
	}
}
