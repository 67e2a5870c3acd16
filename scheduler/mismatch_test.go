package scheduler

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// misstatingKlavi answers creates and status polls with another amount than the
// payment was created with (a reais/centavos mix-up: ×100), and, when date is set,
// creates with another date; what it stores is what billingd sent.
type misstatingKlavi struct {
	*fakeKlavi
	amount bool
	date   bool
}

func (m *misstatingKlavi) misstate(p *klavi.Payment, withDate bool) *klavi.Payment {
	if p == nil {
		return nil
	}
	cp := *p
	if m.amount {
		cp.Amount *= 100
	}
	if m.date && withDate {
		cp.Date = cp.Date.AddDays(1)
	}
	return &cp
}

func (m *misstatingKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	p, err := m.fakeKlavi.CreatePayment(ctx, id, req)
	if p != nil {
		p.Date = req.Date // the fake's create answer has no date; Klavi's carries it
	}
	return m.misstate(p, true), err
}

// GetPayment misstates the amount only: a poll's date is not compared.
func (m *misstatingKlavi) GetPayment(ctx context.Context, consentID, paymentID string) (*klavi.Payment, error) {
	p, err := m.fakeKlavi.GetPayment(ctx, consentID, paymentID)
	return m.misstate(p, false), err
}

// Was wrong: a create answer or a status poll whose amount was not the one sent was
// recorded as if it were (a R$ 99,90 charge followed to COMPLETED while Klavi said
// R$ 9.999,00), with no log line, event or metric.
func TestMismatch_KlaviAnswersAnotherAmount(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	mk := &misstatingKlavi{fakeKlavi: h.kl, amount: true, date: true}
	h.useKlavi(mk)
	c := loadExample(t, "monthly-31st.json")
	h.add(c)
	h.runUntil(at("2026-01-31", 12, 0)) // cycle 3 (due 31 Jan) created 28 Jan, settled 31 Jan

	a := h.attempt(c.ID, 3, 0)
	assert.Equal(t, storage.AttemptCompleted, a.State, "the payment is followed as Klavi tells it")
	assert.Equal(t, klavi.Cents(99_90), a.Amount, "the attempt keeps what billingd sent")

	var mine []Event
	for _, e := range h.eventsOf(EventMismatch) {
		if e.Cycle == 3 {
			mine = append(mine, e)
		}
	}
	// Observed (the metric): the create answer, then every status poll.
	require.Greater(t, len(mine), 2)
	assert.Equal(t, "amount: sent 99.90, Klavi's payment has 9990.00; date: sent 2026-01-31, Klavi's payment has 2026-02-01", mine[0].Reason)
	for _, e := range mine[1:] {
		assert.Equal(t, "amount: sent 99.90, Klavi's payment has 9990.00", e.Reason, "a poll's date is not compared")
	}
	assert.Equal(t, klavi.PaymentCompleted, mine[len(mine)-1].Status)

	// The consent's timeline holds two, for operators and webhooks: the create
	// answer's and the poll's that ended the payment.
	evs, _, err := h.db.Events(context.Background(), c.ID, 0, 1000)
	require.NoError(t, err)
	n := 0
	for _, e := range evs {
		if e.Kind == string(EventMismatch) && e.Cycle != nil && *e.Cycle == 3 {
			n++
			assert.True(t, strings.HasPrefix(e.Reason, "amount: sent 99.90"), e.Reason)
		}
	}
	assert.Equal(t, 2, n)
}

func TestMismatch_SameAnswersSayNothing(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	h.add(c)
	h.runUntil(at("2026-03-05", 12, 0))
	require.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 3, 0).State)
	assert.Empty(t, h.eventsOf(EventMismatch))
}

func TestMismatch(t *testing.T) {
	a := &storage.Attempt{Amount: 99_90, Date: cycle.MustDate(2026, 1, 31)}
	assert.Empty(t, mismatch(a, 99_90, cycle.MustDate(2026, 1, 31), true))
	assert.Empty(t, mismatch(a, 0, cycle.Date{}, true), "a field the answer leaves out is not compared")
	assert.Empty(t, mismatch(a, 99_90, cycle.MustDate(2026, 2, 1), false), "the date only where asked")
	assert.Equal(t, "amount: sent 99.90, Klavi's payment has 99.91", mismatch(a, 99_91, cycle.Date{}, true))
	assert.Equal(t, "date: sent 2026-01-31, Klavi's payment has 2026-02-01", mismatch(a, 99_90, cycle.MustDate(2026, 2, 1), true))
}

// misstatingList answers the orders list with the amount ×100 (the status poll
// answers 404, so the list tells the status).
type misstatingList struct{ *fakeKlavi }

func (m misstatingList) FindOrder(ctx context.Context, consentID, crid string) (*klavi.Order, error) {
	o, err := m.fakeKlavi.FindOrder(ctx, consentID, crid)
	if o != nil {
		o.Amount *= 100
	}
	return o, err
}

// Was wrong: a STUCK payment whose status was taken from Klavi's orders list was not
// held to its amount there, as a status poll's answer is.
func TestMismatch_StuckPaymentsListAmount(t *testing.T) {
	h := newHarness(t, at("2026-02-25", 8, 0), nil)
	c := localWeekly(t, h, nil)
	h.kl.getErr = func(string) error { return &klavi.APIError{StatusCode: 404, Endpoint: "get_payment"} }
	h.useKlavi(misstatingList{h.kl})
	h.add(c)
	h.runUntil(at("2026-03-12", 0, 0))
	a := h.attempt(c.ID, 0, 0)
	require.True(t, a.State.Final(), "status told by the orders list: %s", a.State)
	var mine []Event
	for _, e := range h.eventsOf(EventMismatch) {
		if e.Cycle == 0 && e.Attempt == 0 {
			mine = append(mine, e)
		}
	}
	require.NotEmpty(t, mine)
	assert.Equal(t, "amount: sent 25.00, Klavi's payment has 2500.00", mine[len(mine)-1].Reason)
}
