package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
)

// fakeKlavi is a hand-written Klavi for scheduler tests: payments settle at 06:00 of
// their date with the outcome the test's function gives, creates outside the
// D−10..D−2 window are refused, a clientRequestId is usable once, and failures can be
// injected per call.
type fakeKlavi struct {
	mu    sync.Mutex
	clock clock.Clock
	// outcome decides how a payment settles (nil: completed).
	outcome func(p *fakePayment) (klavi.PaymentStatus, klavi.ReasonCode)
	// inject, when it returns non-nil for a create, makes that call fail: commit
	// says whether the payment is stored first ("commit, then lose the answer").
	inject func(op string, crid string) (err error, commit bool)

	payments map[string]*fakePayment // by payment id
	byCRID   map[string]*fakePayment
	creates  []fakeCall
	retries  []fakeCall
	gets     int
	finds    int
	// findErr, when it returns non-nil, makes that FindOrder call fail.
	findErr func(crid string) error
	// getErr, when it returns non-nil, makes that GetPayment call fail.
	getErr func(paymentID string) error
	// consentStatus is Klavi's status of each consent (absent: authorized).
	consentStatus map[string]klavi.ConsentStatus
	consentGets   int
	cancels       []string // payment ids
	// listReasons: the orders list carries each payment's statusReason (section 7
	// does not list the field; a Klavi may send it anyway).
	listReasons bool
}

type fakePayment struct {
	ID, ConsentID, CRID string
	Date                cycle.Date
	Amount              klavi.Cents
	Original            string // for retries
	Strategy            bool
	Status              klavi.PaymentStatus
	Reason              klavi.ReasonCode
}

type fakeCall struct {
	Day       cycle.Date // the Brasília day of the call
	ConsentID string
	CRID      string
	Date      cycle.Date
	Amount    klavi.Cents
	Strategy  bool
	Err       error
}

var _ Klavi = (*fakeKlavi)(nil)

func newFakeKlavi(c clock.Clock) *fakeKlavi {
	return &fakeKlavi{clock: c, payments: map[string]*fakePayment{}, byCRID: map[string]*fakePayment{}}
}

func (f *fakeKlavi) settle(p *fakePayment) {
	if p.Status.Final() || f.clock.Now().Before(p.Date.At(6, 0)) {
		return
	}
	p.Status, p.Reason = klavi.PaymentCompleted, ""
	if f.outcome != nil {
		p.Status, p.Reason = f.outcome(p)
	}
}

func (f *fakeKlavi) CreatePayment(_ context.Context, consentID string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	today := cycle.DateOf(f.clock.Now())
	call := fakeCall{Day: today, ConsentID: consentID, CRID: req.ClientRequestID, Date: req.Date, Amount: req.Amount, Strategy: req.AutoRetryStrategy != nil}
	defer func() { f.creates = append(f.creates, call) }()
	if l := req.Validate(); len(l) > 0 {
		call.Err = fmt.Errorf("%w: %v", klavi.ErrInvalidRequest, l)
		return nil, call.Err
	}
	if f.inject != nil {
		if err, commit := f.inject("create", req.ClientRequestID); err != nil {
			if commit {
				f.store(consentID, req.ClientRequestID, req.Date, req.Amount, "", req.AutoRetryStrategy != nil)
			}
			call.Err = err
			return nil, err
		}
	}
	if _, used := f.byCRID[req.ClientRequestID]; used {
		call.Err = fmt.Errorf("create payment: 409: %w", klavi.ErrDuplicateRequest)
		return nil, call.Err
	}
	if d := req.Date.DaysSince(today); d < 2 || d > 10 {
		call.Err = fmt.Errorf("create payment: 416 date %s is %d days away: %w", req.Date, d, klavi.ErrRefused)
		return nil, call.Err
	}
	p := f.store(consentID, req.ClientRequestID, req.Date, req.Amount, "", req.AutoRetryStrategy != nil)
	return &klavi.Payment{ID: p.ID, ClientRequestID: p.CRID, Amount: p.Amount, Currency: "BRL", Status: p.Status}, nil
}

func (f *fakeKlavi) store(consentID, crid string, date cycle.Date, amount klavi.Cents, orig string, strategy bool) *fakePayment {
	p := &fakePayment{ID: fmt.Sprintf("urn:fake:pay-%d", len(f.payments)+1), ConsentID: consentID, CRID: crid,
		Date: date, Amount: amount, Original: orig, Strategy: strategy, Status: klavi.PaymentPending}
	f.payments[p.ID], f.byCRID[crid] = p, p
	return p
}

func (f *fakeKlavi) RetryPayment(_ context.Context, consentID, paymentID string, req *klavi.RetryPaymentRequest) (*klavi.Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	today := cycle.DateOf(f.clock.Now())
	call := fakeCall{Day: today, ConsentID: consentID, CRID: req.ClientRequestID, Date: req.Date}
	defer func() { f.retries = append(f.retries, call) }()
	orig, ok := f.payments[paymentID]
	switch {
	case !ok:
		call.Err = fmt.Errorf("retry payment: 404: %w", klavi.ErrRefused)
	case orig.Strategy:
		call.Err = fmt.Errorf("retry payment: 416 payment carries an autoRetryStrategy: %w", klavi.ErrRefused)
	case !req.Date.After(today):
		call.Err = fmt.Errorf("retry payment: 416 a retry must be requested by the day before: %w", klavi.ErrRefused)
	}
	if call.Err != nil {
		return nil, call.Err
	}
	if _, used := f.byCRID[req.ClientRequestID]; used {
		call.Err = fmt.Errorf("retry payment: 409: %w", klavi.ErrDuplicateRequest)
		return nil, call.Err
	}
	p := f.store(consentID, req.ClientRequestID, req.Date, orig.Amount, paymentID, false)
	return &klavi.Payment{ID: p.ID, ClientRequestID: p.CRID, Amount: p.Amount, Status: p.Status}, nil
}

func (f *fakeKlavi) GetPayment(_ context.Context, consentID, paymentID string) (*klavi.Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets++
	if f.getErr != nil {
		if err := f.getErr(paymentID); err != nil {
			return nil, err
		}
	}
	p, ok := f.payments[paymentID]
	if !ok || p.ConsentID != consentID {
		return nil, fmt.Errorf("get payment: 404: %w", klavi.ErrRefused)
	}
	f.settle(p)
	out := &klavi.Payment{ID: p.ID, ConsentID: p.ConsentID, ClientRequestID: p.CRID, Date: p.Date, Amount: p.Amount, Status: p.Status}
	if p.Reason != "" {
		out.StatusReason = &klavi.StatusReason{Code: p.Reason}
	}
	return out, nil
}

func (f *fakeKlavi) createCalls() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.creates...)
}

func (f *fakeKlavi) retryCalls() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.retries...)
}

// paymentsOf returns the stored payments of a consent that are not retries.
func (f *fakeKlavi) originals(consentID string) []*fakePayment {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fakePayment
	for _, p := range f.payments {
		if p.ConsentID == consentID && p.Original == "" {
			out = append(out, p)
		}
	}
	return out
}

func (f *fakeKlavi) FindOrder(_ context.Context, consentID, crid string) (*klavi.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finds++
	if f.findErr != nil {
		if err := f.findErr(crid); err != nil {
			return nil, err
		}
	}
	p, ok := f.byCRID[crid]
	if !ok || p.ConsentID != consentID {
		return nil, fmt.Errorf("find order %s: %w", crid, klavi.ErrOrderNotFound)
	}
	f.settle(p)
	o := &klavi.Order{ID: p.ID, ClientRequestID: p.CRID, ConsentID: p.ConsentID, Date: p.Date, Amount: p.Amount,
		Currency: "BRL", Status: p.Status}
	if f.listReasons && p.Reason != "" {
		o.StatusReason = &klavi.StatusReason{Code: p.Reason}
	}
	return o, nil
}

func (f *fakeKlavi) GetConsent(_ context.Context, consentID string) (*klavi.Consent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.consentGets++
	st, ok := f.consentStatus[consentID]
	if !ok {
		st = klavi.ConsentAuthorized
	}
	return &klavi.Consent{ID: consentID, Status: st}, nil
}

func (f *fakeKlavi) CancelPayment(_ context.Context, consentID, paymentID string, r *klavi.CancelPaymentRequest) (*klavi.Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.payments[paymentID]
	if !ok || p.ConsentID != consentID {
		return nil, &klavi.APIError{StatusCode: 404, Endpoint: "cancel_payment"}
	}
	if p.Status.Final() || !p.Date.After(cycle.DateOf(f.clock.Now())) {
		return nil, &klavi.APIError{StatusCode: 422, Endpoint: "cancel_payment", Message: "only a payment scheduled for a later date can be canceled"}
	}
	p.Status = klavi.PaymentCanceled
	f.cancels = append(f.cancels, paymentID)
	return &klavi.Payment{ID: p.ID, ClientRequestID: p.CRID, Status: p.Status}, nil
}

func unknownErr(op string) error {
	return fmt.Errorf("%s: timeout: %w", op, klavi.ErrOutcomeUnknown)
}

// recordingKlavi records the autoRetryStrategy of every create, by clientRequestId.
type recordingKlavi struct {
	*fakeKlavi
	smu        sync.Mutex
	strategies map[string]*retry.Strategy
}

func newRecordingKlavi(f *fakeKlavi) *recordingKlavi {
	return &recordingKlavi{fakeKlavi: f, strategies: map[string]*retry.Strategy{}}
}

func (r *recordingKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	r.smu.Lock()
	if s := req.AutoRetryStrategy; s != nil {
		cp := *s
		cp.Days = append([]int(nil), s.Days...)
		r.strategies[req.ClientRequestID] = &cp
	} else {
		r.strategies[req.ClientRequestID] = nil
	}
	r.smu.Unlock()
	return r.fakeKlavi.CreatePayment(ctx, id, req)
}

// slowKlavi makes every create take some (fake) time: the clock moves on by step
// after each call, as it does in a long catch-up drain.
type slowKlavi struct {
	*fakeKlavi
	step time.Duration
	clk  interface{ Advance(time.Duration) time.Time }
}

func (s *slowKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	p, err := s.fakeKlavi.CreatePayment(ctx, id, req)
	s.clk.Advance(s.step)
	return p, err
}

// retryFaultKlavi injects failures into RetryPayment (the fake injects only creates).
type retryFaultKlavi struct {
	*fakeKlavi
	fault func(crid string) (err error, commit bool)
}

func (r *retryFaultKlavi) RetryPayment(ctx context.Context, consentID, paymentID string, req *klavi.RetryPaymentRequest) (*klavi.Payment, error) {
	if r.fault != nil {
		if err, commit := r.fault(req.ClientRequestID); err != nil {
			if commit { // Klavi stores it, then the answer is lost
				_, _ = r.fakeKlavi.RetryPayment(ctx, consentID, paymentID, req)
				r.fakeKlavi.mu.Lock()
				r.fakeKlavi.retries[len(r.fakeKlavi.retries)-1].Err = err
				r.fakeKlavi.mu.Unlock()
				return nil, err
			}
			r.fakeKlavi.mu.Lock()
			r.fakeKlavi.retries = append(r.fakeKlavi.retries, fakeCall{Day: cycle.DateOf(r.fakeKlavi.clock.Now()), ConsentID: consentID, CRID: req.ClientRequestID, Date: req.Date, Err: err})
			r.fakeKlavi.mu.Unlock()
			return nil, err
		}
	}
	return r.fakeKlavi.RetryPayment(ctx, consentID, paymentID, req)
}
