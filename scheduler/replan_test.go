package scheduler

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage"
)

func TestScheduler_ReplanFollowsTheSettings(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil) // lead 3, 09:00
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	rec := h.add(c)
	require.Equal(t, at("2026-01-07", 9, 0), rec.NextDue.In(at("2026-01-07", 9, 0).Location()))

	// The daemon starts with lead 4 and submit time 10:30: the queued cycle moves.
	h.s.cfg.Policy.LeadDays, h.s.cfg.SubmitHour, h.s.cfg.SubmitMinute = 4, 10, 30
	res, err := h.s.Replan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ReplanResult{Consents: 1, Moved: 1}, res)
	got := mustConsent(t, h, c.ID)
	assert.True(t, got.NextDue.Equal(at("2026-01-06", 10, 30)), "%s", got.NextDue)
	due, err := h.db.DueBefore(context.Background(), at("2026-12-31", 0, 0), 10)
	require.NoError(t, err)
	require.Len(t, due, 1, "the old entry is gone")
	assert.True(t, due[0].At.Equal(at("2026-01-06", 10, 30)))

	res, err = h.s.Replan(context.Background())
	require.NoError(t, err)
	assert.Zero(t, res.Moved, "idempotent")

	h.runUntil(at("2026-01-06", 11, 0))
	a := h.attempt(c.ID, 0, 0)
	assert.Equal(t, storage.AttemptSubmitted, a.State, "submitted on D−4, as the preview under lead 4 says")
	calls := h.kl.createCalls()
	require.Len(t, calls, 1)
	assert.Equal(t, "2026-01-06", calls[0].Day.String())
}

func TestScheduler_FirstScanReplans(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json")
	c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10")
	h.add(c)
	h.s.cfg.Policy.LeadDays = 10 // D−10 = 31 Dec: already past, so due at once
	_, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, storage.AttemptSubmitted, h.attempt(c.ID, 0, 0).State, "the first scan re-planned, then submitted the now-late cycle")
}

func TestPolicy_PreviewStored(t *testing.T) {
	h := newHarness(t, at("2026-01-01", 8, 0), nil)
	c := loadExample(t, "monthly-31st.json") // attach; 31st of each month, clamped
	c.PaymentMethodConfig.ReferenceStartDate = d("2025-11-30")
	rec, err := h.s.AddConsent(c, d("2026-01-01"), "operator") // cycles 0 and 1 are before billFrom
	require.NoError(t, err)
	h.runUntil(at("2026-02-02", 0, 0)) // cycle 2 (31 Jan) submitted and completed
	rec = mustConsent(t, h, c.ID)
	atts, err := h.db.Attempts(context.Background(), c.ID)
	require.NoError(t, err)
	pol := h.s.Policy()
	pv := pol.PreviewStored(rec, atts, d("2025-11-01"), 5, nil)
	require.Len(t, pv.Cycles, 5)
	assert.Equal(t, StateNotBilled, pv.Cycles[0].State)
	assert.Equal(t, StateNotBilled, pv.Cycles[1].State)
	assert.Equal(t, StateDecided, pv.Cycles[2].State)
	require.Len(t, pv.Cycles[2].Stored, 1)
	assert.Equal(t, storage.AttemptCompleted, pv.Cycles[2].Stored[0].State)
	assert.NotEmpty(t, pv.Cycles[2].Stored[0].PaymentID)
	assert.Equal(t, StatePlanned, pv.Cycles[3].State)

	_, err = h.s.Revoke(c.ID, "moved away", "operator")
	require.NoError(t, err)
	rec = mustConsent(t, h, c.ID)
	pv = pol.PreviewStored(rec, atts, d("2026-01-15"), 3, nil)
	assert.Equal(t, StateDecided, pv.Cycles[0].State, "history stays")
	assert.Equal(t, StateStopped, pv.Cycles[1].State)
	assert.Contains(t, pv.Cycles[1].Reason, "revoked")

	aw := loadExample(t, "weekly-retries.json")
	aw.Status = "CONSENT_AWAITING_AUTHORIZATION"
	arec := h.add(aw)
	pv = pol.PreviewStored(arec, nil, d("2026-02-02"), 2, nil)
	assert.Equal(t, StateAwaiting, pv.Cycles[0].State)
}
