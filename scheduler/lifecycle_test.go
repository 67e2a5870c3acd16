package scheduler

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

func TestJudgeConsent(t *testing.T) {
	rows := []struct {
		cur    storage.ConsentState
		st     klavi.ConsentStatus
		change consentChange
		next   storage.ConsentState
	}{
		{storage.ConsentAwaiting, klavi.ConsentAwaitingAuthorization, consentUnchanged, storage.ConsentAwaiting},
		{storage.ConsentAwaiting, klavi.ConsentAuthorized, consentAuthorized, storage.ConsentActive},
		{storage.ConsentAwaiting, klavi.ConsentRejected, consentStopped, storage.ConsentRejected},
		{storage.ConsentAwaiting, klavi.ConsentExpired, consentStopped, storage.ConsentExpired},
		{storage.ConsentActive, klavi.ConsentAuthorized, consentUnchanged, storage.ConsentActive},
		{storage.ConsentActive, klavi.ConsentRevoked, consentStopped, storage.ConsentRevoked},
		{storage.ConsentActive, klavi.ConsentPeriodExpired, consentStopped, storage.ConsentExpired},
		{storage.ConsentActive, klavi.ConsentStatus("SOMETHING_NEW"), consentUnchanged, storage.ConsentActive},
		{storage.ConsentRevoked, klavi.ConsentAuthorized, consentUnchanged, storage.ConsentRevoked},
	}
	for _, r := range rows {
		t.Run(string(r.cur)+"/"+string(r.st), func(t *testing.T) {
			change, next := judgeConsent(r.cur, r.st)
			assert.Equal(t, r.change, change)
			assert.Equal(t, r.next, next)
		})
	}
}

func TestScheduler_ConsentLifecycle(t *testing.T) {
	ctx := context.Background()
	t.Run("authorized at Klavi: billing starts by itself", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		c.Status = klavi.ConsentAwaitingAuthorization
		h.kl.consentStatus = map[string]klavi.ConsentStatus{c.ID: klavi.ConsentAwaitingAuthorization}
		h.add(c)
		res, err := h.s.Refresh(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Read)
		assert.Equal(t, storage.ConsentAwaiting, mustConsent(t, h, c.ID).State)
		h.kl.consentStatus[c.ID] = klavi.ConsentAuthorized
		res, err = h.s.Refresh(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Authorized)
		h.runUntil(at("2026-01-20", 0, 0))
		assert.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
	})
	t.Run("rejected at Klavi: never billed", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		c.Status = klavi.ConsentAwaitingAuthorization
		h.kl.consentStatus = map[string]klavi.ConsentStatus{c.ID: klavi.ConsentRejected}
		h.add(c)
		_, err := h.s.Refresh(ctx)
		require.NoError(t, err)
		assert.Equal(t, storage.ConsentRejected, mustConsent(t, h, c.ID).State)
		h.runUntil(at("2026-03-01", 0, 0))
		assert.Empty(t, h.kl.createCalls())
	})
	t.Run("revoked at the bank: billing stops and scheduled payments are canceled", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-31")
		h.add(c)
		h.runUntil(at("2026-01-22", 10, 0)) // cycle 0 (31 Jan) submitted on 21 Jan
		a := h.attempt(c.ID, 0, 0)
		require.Equal(t, storage.AttemptSubmitted, a.State)
		h.kl.consentStatus = map[string]klavi.ConsentStatus{c.ID: klavi.ConsentRevoked}
		res, err := h.s.Refresh(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Stopped)
		_, err = h.s.Poll(ctx) // the next poll cancels what is scheduled
		require.NoError(t, err)
		rec := mustConsent(t, h, c.ID)
		assert.Equal(t, storage.ConsentRevoked, rec.State)
		assert.Equal(t, []string{a.PaymentID}, h.kl.cancels, "the payment dated 31 Jan is canceled")
		a = h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptRejected, a.State)
		assert.Equal(t, klavi.PaymentCanceled, a.Status)
		h.runUntil(at("2026-04-01", 0, 0))
		assert.Len(t, h.kl.createCalls(), 1, "nothing more is billed")
		assertNoneStuck(t, h, c.ID)
	})
	t.Run("an active consent read less than RefreshEvery ago is not read again", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), nil)
		c := loadExample(t, "monthly-31st.json")
		h.add(c)
		res, err := h.s.Refresh(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Read)
		h.clock.Set(at("2026-01-01", 20, 0))
		res, err = h.s.Refresh(ctx)
		require.NoError(t, err)
		assert.Equal(t, 0, res.Read)
		h.clock.Set(at("2026-01-02", 8, 1))
		res, err = h.s.Refresh(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, res.Read)
	})
	t.Run("revoked by the operator: scheduled payments are canceled too", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-31")
		h.add(c)
		h.runUntil(at("2026-01-22", 10, 0))
		a := h.attempt(c.ID, 0, 0)
		require.Equal(t, storage.AttemptSubmitted, a.State)
		_, err := h.s.Revoke(c.ID, "customer left", "maria")
		require.NoError(t, err)
		_, err = h.s.Poll(context.Background()) // the next poll cancels what is scheduled
		require.NoError(t, err)
		assert.Equal(t, []string{a.PaymentID}, h.kl.cancels, "the payment dated 31 Jan does not settle")
		a = h.attempt(c.ID, 0, 0)
		assert.Equal(t, storage.AttemptRejected, a.State)
		assert.Equal(t, klavi.PaymentCanceled, a.Status)
		h.runUntil(at("2026-03-01", 0, 0))
		assert.Len(t, h.kl.createCalls(), 1)
		assertNoneStuck(t, h, c.ID)
	})
	t.Run("read before submission: a revocation stops the next charge", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.RefreshBeforeSubmit = true })
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
		h.add(c)
		h.runUntil(at("2026-01-20", 0, 0))
		require.Equal(t, storage.AttemptCompleted, h.attempt(c.ID, 0, 0).State)
		gets := h.kl.consentGets
		assert.Equal(t, 1, gets, "read once before the first submission")
		h.kl.consentStatus = map[string]klavi.ConsentStatus{c.ID: klavi.ConsentRevoked}
		h.runUntil(at("2026-03-01", 0, 0))
		assert.Len(t, h.kl.createCalls(), 1, "cycle 1 is not sent")
		assert.Equal(t, storage.ConsentRevoked, mustConsent(t, h, c.ID).State)
		_, ok := h.attemptOK(c.ID, 1, 0)
		assert.False(t, ok)
	})
	t.Run("operator cancel of a scheduled payment", func(t *testing.T) {
		h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
		c := loadExample(t, "monthly-31st.json")
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-31")
		h.add(c)
		h.runUntil(at("2026-01-22", 10, 0))
		a := h.attempt(c.ID, 0, 0)
		got, err := h.s.CancelPayment(ctx, c.ID, a.PaymentID, "")
		if c.CreditorAccount == nil || c.CreditorAccount.Holder == nil {
			require.ErrorIs(t, err, ErrNoCanceller)
			h.s.cfg.Canceller = &klavi.Person{IdentifierType: klavi.CNPJ, Identifier: "12345678000199"}
			got, err = h.s.CancelPayment(ctx, c.ID, a.PaymentID, "")
		}
		require.NoError(t, err)
		assert.Equal(t, storage.AttemptRejected, got.State)
		_, err = h.s.CancelPayment(ctx, c.ID, a.PaymentID, "")
		require.ErrorIs(t, err, ErrConflict, "already final")
		_, err = h.s.CancelPayment(ctx, c.ID, "no-such-payment", "")
		require.ErrorIs(t, err, storage.ErrNotFound)
	})
}

// countingStore counts the consent sweeps (ListConsents pages) a Scheduler reads.
type countingStore struct {
	storage.Store
	pages map[storage.ConsentState]int
}

func (c *countingStore) ListConsents(ctx context.Context, after string, limit int, st storage.ConsentState) ([]*storage.ConsentRecord, error) {
	c.pages[st]++
	return c.Store.ListConsents(ctx, after, limit, st)
}

func TestScheduler_RefreshSweepsOnlyWhatCanNeedIt(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	h.add(loadExample(t, "monthly-31st.json"))
	cs := &countingStore{Store: h.db, pages: map[storage.ConsentState]int{}}
	s, err := New(h.s.cfg, cs, h.kl, WithClock(h.clock))
	require.NoError(t, err)
	ctx := context.Background()
	res, err := s.Refresh(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Read)
	assert.Zero(t, cs.pages[storage.ConsentAwaiting], "no consent awaits authorization: no sweep for them")
	swept := cs.pages[storage.ConsentActive]
	assert.Positive(t, swept)

	h.clock.Set(at("2026-01-01", 8, 30)) // the refresh job runs every few minutes
	_, err = s.Refresh(ctx)
	require.NoError(t, err)
	assert.Equal(t, swept, cs.pages[storage.ConsentActive], "active consents are swept at most every RefreshEvery/24")

	h.clock.Set(at("2026-01-01", 9, 1))
	_, err = s.Refresh(ctx)
	require.NoError(t, err)
	assert.Greater(t, cs.pages[storage.ConsentActive], swept)
}

// cancelLostKlavi cancels the payment, then loses the answer.
type cancelLostKlavi struct{ *fakeKlavi }

func (k *cancelLostKlavi) CancelPayment(ctx context.Context, consentID, paymentID string, r *klavi.CancelPaymentRequest) (*klavi.Payment, error) {
	if _, err := k.fakeKlavi.CancelPayment(ctx, consentID, paymentID, r); err != nil {
		return nil, err
	}
	return nil, &klavi.APIError{StatusCode: 422, Endpoint: "cancel_payment", Message: "payment already canceled"}
}

func TestScheduler_CancelWhoseAnswerWasLost(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
	h.useKlavi(&cancelLostKlavi{h.kl})
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-31")
	h.add(c)
	h.runUntil(at("2026-01-22", 10, 0))
	a := h.attempt(c.ID, 0, 0)
	got, err := h.s.CancelPayment(context.Background(), c.ID, a.PaymentID, "maria")
	require.NoError(t, err, "Klavi canceled it: the refusal of the retry is looked past")
	assert.Equal(t, storage.AttemptRejected, got.State)
	assert.Equal(t, klavi.PaymentCanceled, got.Status)
}

func TestScheduler_RefreshConsentReadsNow(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), func(c *Config) { c.Policy.LeadDays = 10 })
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-31")
	h.add(c)
	_, err := h.s.Refresh(context.Background()) // read a moment ago
	require.NoError(t, err)
	h.kl.consentStatus = map[string]klavi.ConsentStatus{c.ID: klavi.ConsentRevoked} // revoked at the bank
	res, err := h.s.Refresh(context.Background())
	require.NoError(t, err)
	assert.Zero(t, res.Read, "the periodic refresh waits for refresh_every")
	res, err = h.s.RefreshConsent(context.Background(), c.ID)
	require.NoError(t, err)
	assert.Equal(t, RefreshResult{Read: 1, Stopped: 1}, res, "the forced read sees it at once")
	assert.Equal(t, storage.ConsentRevoked, mustConsent(t, h, c.ID).State)
	_, err = h.s.RefreshConsent(context.Background(), "urn:no:such")
	require.ErrorIs(t, err, storage.ErrNotFound)
}
