package sandbox

import (
	"container/heap"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
)

// Refusal rules: the names of the rules the sandbox enforces, as counted in
// Stats.Refusals and put at the start of a refusal's message.
const (
	RuleUnauthorized         = "unauthorized"                // 401: missing, unknown or expired token; bad keys
	RuleInvalidRequest       = "invalid_request"             // 400: body or path id breaks the API's field rules
	RuleNotFound             = "not_found"                   // 404: no such consent, or no such payment under it
	RuleDuplicate            = "duplicate_client_request_id" // 409: the clientRequestId was used before
	RuleConsentNotAuthorized = "consent_not_authorized"      // the consent is not CONSENT_AUTHORIZED (or has expired)
	RuleWindow               = "window"                      // date outside today+2..today+10
	RuleBeforeReference      = "before_reference"            // date before the consent's referenceStartDate
	RuleExpiry               = "expiry"                      // date after the consent's expiry
	RuleFixedAmount          = "fixed_amount"                // amount differs from fixedAmount
	RuleVariableAmount       = "variable_amount"             // amount outside minimum/maximumVariableAmount
	RuleAutoRetryStrategy    = "auto_retry_strategy"         // strategy invalid for the consent's interval, or retries not accepted
	RuleOnePerCycle          = "one_per_cycle"               // the cycle already has a payment not REJECTED/CANCELED
	RuleRetryAutoStrategy    = "retry_auto_strategy"         // the original carried autoRetryStrategy: Klavi retries it
	RuleRetryNotAccepted     = "retry_not_accepted"          // the consent has isRetryAccepted false
	RuleRetryNotRejected     = "retry_not_rejected"          // the original is not PAYMENT_REJECTED
	RuleRetryLimit           = "retry_limit"                 // the original has 3 retries already
	RuleRetryWindow          = "retry_window"                // date past the 5 (WEEKLY) or 7 days after the original's date
	RuleRetryNextCycle       = "retry_next_cycle"            // date on or after the next cycle's start
	RuleRetryTooSoon         = "retry_too_soon"              // date not after today (requested by 23:59 the day before)
	RuleRetrySameDay         = "retry_same_day"              // the original has a retry on that date already
	RuleInstantDate          = "instant_date"                // a scheduled instant payment dated in the past
	RuleAuthorization        = "authorization"               // authorizing a consent that is not awaiting it, or too late
	RulePermissions          = "insufficient_permissions"    // 409 drawn with Options.ConflictPermissions
	RuleConsentState         = "consent_state"               // 409: a /_sandbox/ consent change its state does not allow
	RuleCancelFinal          = "cancel_final"                // cancel of a payment already COMPLETED, REJECTED or CANCELED
	RuleCancelTooLate        = "cancel_too_late"             // cancel of a payment dated today or earlier (Brasília)
	RuleBadCursor            = "invalid_cursor"              // 400: a management list's cursor is not one the sandbox gave
)

// authorizeWithin is how long a consent may await authorization.
const authorizeWithin = 60 * time.Minute

// A refusal is a request refused by a rule.
type refusal struct {
	status int
	rule   string
	msg    string
	bare   bool // the message alone, without the rule (Klavi's exact text)
}

func (r *refusal) Error() string { return r.rule + ": " + r.msg }

func refuse(rule, format string, args ...any) *refusal {
	return &refusal{status: 416, rule: rule, msg: fmt.Sprintf(format, args...)}
}

type consentState struct {
	c       *klavi.CreatedConsent
	n       int // its number among consents created through the API; 0: seeded
	status  klavi.ConsentStatus
	reason  *klavi.StatusReason
	created time.Time
	updated time.Time // statusUpdateAt
	sched   cycle.Schedule
	expires time.Time // expirationDateTime; zero: never
	byCycle map[int][]*payment
	// payments holds every payment created under the consent, in creation order.
	payments []*payment
	dirty    bool // changed since it was last journaled
}

type payment struct {
	seq        int
	id         string
	consentID  string
	crid       string
	kind       Kind
	original   *payment
	cycle      int
	attempt    int
	date       cycle.Date
	amount     klavi.Cents
	status     klavi.PaymentStatus
	reason     *klavi.StatusReason
	createdAt  time.Time
	updatedAt  time.Time
	settleAt   time.Time // zero: not waiting to settle
	strategy   *retry.Strategy
	plan       []retry.Retry // attach mode: the planned retries not yet run
	planned    bool          // plan was computed
	retries    []*payment
	dropped    bool
	endToEnd   string
	remittance string
	cancel     *cancellation
	heapIndex  int
	dirty      bool // changed since it was last journaled
	// fresh: PENDING and in Server.fresh, shown PENDING until the clock passes
	// createdAt (see shown).
	fresh bool
}

// cancellation says who canceled a payment: from is INITIATOR (the cancel endpoint)
// or HOLDER (a scenario); by and byType are the canceller's document, if known.
type cancellation struct {
	from       string
	at         time.Time
	by, byType string
}

// statusAt is the status Klavi shows at now: a PENDING payment is SCHEDULED once the
// clock has moved past its creation.
func (p *payment) statusAt(now time.Time) klavi.PaymentStatus {
	if p.status == klavi.PaymentPending && now.After(p.createdAt) {
		return klavi.PaymentScheduled
	}
	return p.status
}

// shown is the status Server.statuses counts p under: statusAt at the clock's last
// reading under the lock, without reading the clock (a PENDING payment leaves fresh,
// and shows SCHEDULED, once ageFresh sees the clock past its creation).
func (p *payment) shown() klavi.PaymentStatus {
	if p.status == klavi.PaymentPending && !p.fresh {
		return klavi.PaymentScheduled
	}
	return p.status
}

// setStatus changes p's status and the counts Stats reads. Every change of a
// payment's status goes through it. Callers hold s.mu.
func (s *Server) setStatus(p *payment, st klavi.PaymentStatus) {
	s.statuses[p.shown()]--
	p.status = st
	if st != klavi.PaymentPending {
		p.fresh = false // left in s.fresh until ageFresh drops it
	}
	s.statuses[p.shown()]++
}

// countPayment adds a payment that has just joined the ledger to the counts Stats
// reads; a PENDING one is shown PENDING until ageFresh sees the clock past its
// creation. Callers hold s.mu.
func (s *Server) countPayment(p *payment) {
	if p.status == klavi.PaymentPending {
		p.fresh = true
		s.fresh = append(s.fresh, p)
	}
	s.statuses[p.shown()]++
}

// ageFresh moves the PENDING payments created before now from PENDING to SCHEDULED
// in the counts, as statusAt shows them. s.fresh is in creation order, so with a
// clock that does not go back the payments still shown PENDING are a suffix of it:
// each payment is looked at here once after it stops being fresh. Callers hold s.mu.
func (s *Server) ageFresh(now time.Time) {
	i := 0
	for ; i < len(s.fresh); i++ {
		p := s.fresh[i]
		if p.fresh && !now.After(p.createdAt) {
			break
		}
		if p.fresh {
			s.statuses[klavi.PaymentPending]--
			p.fresh = false
			s.statuses[p.shown()]++
		}
		s.fresh[i] = nil
	}
	s.fresh = s.fresh[i:]
}

// failed reports a payment that no longer holds its cycle.
func (p *payment) failed() bool {
	return p.status == klavi.PaymentRejected || p.status == klavi.PaymentCanceled
}

// settleQueue orders the payments waiting for their date by settle instant, then by
// creation.
type settleQueue []*payment

func (q settleQueue) Len() int { return len(q) }
func (q settleQueue) Less(i, j int) bool {
	if !q[i].settleAt.Equal(q[j].settleAt) {
		return q[i].settleAt.Before(q[j].settleAt)
	}
	return q[i].seq < q[j].seq
}
func (q settleQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].heapIndex, q[j].heapIndex = i, j
}
func (q *settleQueue) Push(x any) {
	p := x.(*payment)
	p.heapIndex = len(*q)
	*q = append(*q, p)
}
func (q *settleQueue) Pop() any {
	old := *q
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	p.heapIndex = -1
	return p
}

// advance moves every payment whose settle instant is not after now to its outcome,
// in settle order. Callers hold s.mu.
func (s *Server) advance(now time.Time) {
	for len(s.queue) > 0 && !s.queue[0].settleAt.After(now) {
		p := heap.Pop(&s.queue).(*payment)
		s.settle(p)
	}
	s.ageFresh(now)
}

// consentStatus is the consent's status at now: one awaiting authorization for more
// than 60 minutes is rejected (AUTHORIZATION_EXPIRED_TIME); an authorized one past
// its expirationDateTime has CONSENT_PERIOD_EXPIRED.
func (s *Server) consentStatus(cs *consentState, now time.Time) klavi.ConsentStatus {
	switch {
	case cs.status == klavi.ConsentAwaitingAuthorization && now.Sub(cs.created) > authorizeWithin:
		s.setConsentStatus(cs, klavi.ConsentRejected, &klavi.StatusReason{Code: klavi.ReasonAuthorizationExpiredTime, Message: "not authorized within 60 minutes"}, cs.created.Add(authorizeWithin))
	case cs.status == klavi.ConsentAuthorized && !cs.expires.IsZero() && now.After(cs.expires):
		s.setConsentStatus(cs, klavi.ConsentPeriodExpired, nil, cs.expires)
	}
	return cs.status
}

// settle ends p on its date per the scenario, and runs the attach-mode chain.
func (s *Server) settle(p *payment) {
	at := p.settleAt
	p.settleAt = time.Time{}
	p.updatedAt = at
	s.touchPayment(p)
	cs := s.consents[p.consentID]
	outcome, code := s.opts.Scenario.Decide(p.consentID, p.cycle, p.attempt)
	if cs != nil && cs.status == klavi.ConsentRevoked {
		outcome, code = Rejected, klavi.ReasonRevokedUser
		if cs.reason != nil && cs.reason.Code.ConsentGone() {
			code = cs.reason.Code
		}
	}
	switch outcome {
	case Completed:
		s.setStatus(p, klavi.PaymentCompleted)
		p.reason = nil
		p.endToEnd = s.endToEndID(p, cs, at)
	case Canceled:
		s.setStatus(p, klavi.PaymentCanceled)
		p.reason = &klavi.StatusReason{Code: code, Message: "canceled by the account holder (sandbox scenario)"}
		p.cancel = &cancellation{from: "HOLDER", at: at}
	default:
		s.setStatus(p, klavi.PaymentRejected)
		p.reason = &klavi.StatusReason{Code: code, Message: "rejected (sandbox scenario)"}
		if code.ConsentGone() && cs != nil {
			s.setConsentStatus(cs, klavi.ConsentRevoked, &klavi.StatusReason{Code: code}, at)
		}
	}
	s.log.Debug("sandbox payment settled", "payment_id", p.id, "consent_id", p.consentID, "status", p.status)
	root := p
	if p.kind == KindAutoRetry {
		root = p.original
	}
	s.touchPayment(root)
	if root.strategy == nil || p.kind == KindRetry || p.kind == KindInstant {
		return
	}
	// Attach mode. While Klavi-run retries remain, the original shows
	// PAYMENT_SCHEDULED with the last failure's reason; it ends COMPLETED when one
	// settles, REJECTED when the plan is used up (or the holder canceled one, or the
	// consent is gone).
	if p.status == klavi.PaymentCompleted {
		if root != p {
			s.setStatus(root, klavi.PaymentCompleted)
			root.reason, root.updatedAt = nil, at
			root.endToEnd = p.endToEnd
		}
		return
	}
	if !root.planned {
		root.planned = true
		var lim retry.Limits
		if cs != nil {
			lim = retry.Limits{Interval: cs.sched.Interval, NextCycleStart: cs.sched.Start(root.cycle + 1), Expiry: cs.sched.Expiry}
		}
		root.plan, _ = retry.Plan(root.date, *root.strategy, lim)
	}
	stop := len(root.plan) == 0 || p.status == klavi.PaymentCanceled || (cs != nil && cs.status == klavi.ConsentRevoked)
	if root != p {
		s.setStatus(root, klavi.PaymentRejected)
		root.reason, root.updatedAt = p.reason, at
	}
	if stop {
		root.plan = nil
		return
	}
	next := root.plan[0]
	root.plan = root.plan[1:]
	s.setStatus(root, klavi.PaymentScheduled)
	r := s.newPayment(at, root.consentID, "", KindAutoRetry, root.cycle, next.Date, root.amount)
	r.original, r.attempt = root, len(root.retries)+1
	r.remittance = root.remittance
	root.retries = append(root.retries, r)
	s.schedule(r)
}

// newPayment records a payment (PENDING) in the ledger.
func (s *Server) newPayment(now time.Time, consentID, crid string, kind Kind, k int, date cycle.Date, amount klavi.Cents) *payment {
	s.seq++
	idKind := idPayment
	if kind == KindInstant {
		idKind = idInstant
	}
	p := &payment{
		seq: s.seq, id: s.newID(idKind, s.seq), consentID: consentID, crid: crid,
		kind: kind, cycle: k, date: date, amount: amount, status: klavi.PaymentPending,
		createdAt: now, updatedAt: now, heapIndex: -1,
	}
	s.payments[p.id] = p
	s.ledger = append(s.ledger, p)
	s.countPayment(p)
	s.touchPayment(p)
	s.accepted[kind]++
	if cs := s.consents[consentID]; cs != nil && kind != KindInstant {
		cs.byCycle[p.cycle] = append(cs.byCycle[p.cycle], p)
		cs.payments = append(cs.payments, p)
	}
	return p
}

// schedule queues p to settle on its date at SettleHour (Brasília).
func (s *Server) schedule(p *payment) {
	p.settleAt = p.date.At(s.opts.SettleHour, 0)
	heap.Push(&s.queue, p)
}

// endToEndID is E + the creditor's ISPB + yyyyMMddHHmm (UTC) + 11 characters: 32.
func (s *Server) endToEndID(p *payment, cs *consentState, at time.Time) string {
	ispb := "00000000"
	if cs != nil && cs.c.CreditorAccount != nil && len(cs.c.CreditorAccount.ISPB) == 8 {
		ispb = cs.c.CreditorAccount.ISPB
	}
	h := fnv.New64a()
	h.Write([]byte(p.id))
	tail := strings.ToUpper(strconv.FormatUint(h.Sum64(), 36))
	tail = (strings.Repeat("0", 11) + tail)[len(tail):]
	return "E" + ispb + at.UTC().Format("200601021504") + tail
}

// today is the sandbox's Brasília date.
func today(now time.Time) cycle.Date { return cycle.DateOf(now) }

// checkPayment applies Klavi's rules to a new original payment under cs. A payment
// created earlier with the request's clientRequestId does not count against the
// one-per-cycle rule (it is the same payment, met again when the rules come
// first).
func (s *Server) checkPayment(now time.Time, cs *consentState, r *klavi.CreatePaymentRequest) (k int, err *refusal) {
	if st := s.consentStatus(cs, now); st != klavi.ConsentAuthorized {
		return 0, refuse(RuleConsentNotAuthorized, "consent is %s, not CONSENT_AUTHORIZED", st)
	}
	t := today(now)
	if first, last := t.AddDays(2), t.AddDays(10); r.Date.Before(first) || r.Date.After(last) {
		return 0, refuse(RuleWindow, "date %s is outside %s..%s: a recurring payment is created 2 to 10 days before its date", r.Date, first, last)
	}
	k, ok := cs.sched.Index(r.Date)
	if !ok {
		return 0, refuse(RuleBeforeReference, "date %s is before the consent's referenceStartDate %s", r.Date, cs.sched.Reference)
	}
	if exp := cs.sched.Expiry; !exp.IsZero() && r.Date.After(exp) {
		return 0, refuse(RuleExpiry, "date %s is after the consent's expiry %s", r.Date, exp)
	}
	if fixed, ok := cs.c.FixedAmount(); ok {
		if r.Amount != fixed {
			return 0, refuse(RuleFixedAmount, "amount %s differs from the consent's fixedAmount %s", r.Amount, fixed)
		}
	} else if e := cs.c.CheckVariableAmount(r.Amount); e != nil {
		return 0, refuse(RuleVariableAmount, "%v", e)
	}
	if st := r.AutoRetryStrategy; st != nil {
		if vs := st.Violations(cs.sched.Interval, cs.c.RetryAccepted()); len(vs) > 0 {
			return 0, refuse(RuleAutoRetryStrategy, "autoRetryStrategy.%s: %s", vs[0].Field, vs[0].Message)
		}
	}
	if p := livePayment(cs, k, r.ClientRequestID); p != nil {
		return 0, refuse(RuleOnePerCycle, "cycle %d already has payment %s (%s)", k, p.id, p.status)
	}
	return k, nil
}

// livePayment returns a payment of cycle k that is not REJECTED or CANCELED, other
// than one created with clientRequestId crid.
func livePayment(cs *consentState, k int, crid string) *payment {
	for _, p := range cs.byCycle[k] {
		if !p.failed() && (crid == "" || p.crid != crid) {
			return p
		}
	}
	return nil
}

// checkRetry applies Klavi's retry rules to a retry of orig dated date; a retry
// created earlier with clientRequestId crid is left out, as in checkPayment.
func (s *Server) checkRetry(now time.Time, cs *consentState, orig *payment, date cycle.Date, crid string) *refusal {
	if st := s.consentStatus(cs, now); st != klavi.ConsentAuthorized {
		return refuse(RuleConsentNotAuthorized, "consent is %s, not CONSENT_AUTHORIZED", st)
	}
	if orig.strategy != nil {
		return refuse(RuleRetryAutoStrategy, "payment %s carries an autoRetryStrategy: Klavi retries it", orig.id)
	}
	if !cs.c.RetryAccepted() {
		return refuse(RuleRetryNotAccepted, "the consent does not accept retries (isRetryAccepted false)")
	}
	if orig.status != klavi.PaymentRejected {
		return refuse(RuleRetryNotRejected, "payment %s is %s, not PAYMENT_REJECTED", orig.id, orig.statusAt(now))
	}
	var others []*payment
	for _, r := range orig.retries {
		if r.crid != crid {
			others = append(others, r)
		}
	}
	if len(others) >= retry.MaxRetries {
		return refuse(RuleRetryLimit, "payment %s has %d retries already, the limit", orig.id, len(others))
	}
	for _, r := range others {
		if r.date == date {
			return refuse(RuleRetrySameDay, "payment %s already has retry %s on %s", orig.id, r.id, date)
		}
	}
	if tomorrow := today(now).AddDays(1); date.Before(tomorrow) {
		return refuse(RuleRetryTooSoon, "date %s is not after today %s: a retry is requested by 23:59 of the day before its date", date, today(now))
	}
	w := cs.sched.Interval.RetryWindowDays()
	if last := orig.date.AddDays(w); date.After(last) {
		return refuse(RuleRetryWindow, "date %s is past %s, %d days after the original date %s", date, last, w, orig.date)
	}
	if next := cs.sched.Start(orig.cycle + 1); !next.IsZero() && !date.Before(next) {
		return refuse(RuleRetryNextCycle, "date %s is on or after the next cycle's start %s", date, next)
	}
	if exp := cs.sched.Expiry; !exp.IsZero() && date.After(exp) {
		return refuse(RuleExpiry, "date %s is after the consent's expiry %s", date, exp)
	}
	if p := livePayment(cs, orig.cycle, crid); p != nil {
		return refuse(RuleOnePerCycle, "cycle %d already has payment %s (%s)", orig.cycle, p.id, p.status)
	}
	return nil
}
