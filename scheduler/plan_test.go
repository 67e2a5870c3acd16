package scheduler

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
)

func d(s string) cycle.Date {
	dt, err := cycle.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return dt
}

func loadExample(t testing.TB, name string) *consent.Consent {
	t.Helper()
	data, err := os.ReadFile("../examples/consents/" + name)
	require.NoError(t, err)
	c, err := consent.Decode(data)
	require.NoError(t, err)
	return c
}

var policy = Policy{LeadDays: 3, RetryMode: consent.Attach, Calendar: cycle.NewCalendar()}

func TestPolicy_PreviewStates(t *testing.T) {
	c := loadExample(t, "monthly-31st.json") // due 31/10, 30/11, 31/12 …; lead 3
	tests := []struct {
		from     string
		first    int
		state    State
		submitOn string
	}{
		{"2025-10-20", 0, StatePlanned, "2025-10-28"},
		{"2025-10-28", 0, StatePlanned, "2025-10-28"}, // the submit day itself
		{"2025-10-29", 0, StateLate, "2025-10-29"},    // one day late: submitted at once
		{"2025-10-29", 0, StateLate, "2025-10-29"},
		{"2025-10-30", 0, StateMissed, "2025-10-28"}, // D−1: the window has closed
		{"2025-10-31", 0, StateMissed, "2025-10-28"},
		{"2025-11-01", 1, StatePlanned, "2025-11-27"},
	}
	for _, tt := range tests {
		pv := policy.Preview(c, d(tt.from), 3, nil)
		require.Len(t, pv.Cycles, 3)
		first := pv.Cycles[0]
		assert.Equal(t, tt.first, first.Index, tt.from)
		assert.Equal(t, tt.state, first.State, tt.from)
		assert.Equal(t, tt.submitOn, first.SubmitOn.String(), tt.from)
		for _, later := range pv.Cycles[1:] {
			assert.Equal(t, StatePlanned, later.State)
		}
		if first.State == StateMissed {
			assert.Empty(t, first.Retries, "%s: a missed cycle is never sent, so its retries are not shown", tt.from)
		} else {
			assert.NotEmpty(t, first.Retries, tt.from)
		}
	}
	// D−2 is the last day: from = 29 Oct with due 31 Oct is late, 30 Oct is missed.
	p := policy.Plan(c, policy.Schedule(c), 0, d("2025-10-29"), nil)
	assert.Equal(t, d("2025-10-29"), p.Deadline)
}

func TestPolicy_PreviewLeadDays(t *testing.T) {
	c := loadExample(t, "monthly-31st.json")
	for lead := 2; lead <= 10; lead++ {
		pol := policy
		pol.LeadDays = lead
		pv := pol.Preview(c, d("2025-10-01"), 1, nil)
		assert.Equal(t, d("2025-10-31").AddDays(-lead), pv.Cycles[0].SubmitOn)
	}
}

func TestPolicy_PreviewRetriesAndAmounts(t *testing.T) {
	t.Run("fixed amount and attach retries", func(t *testing.T) {
		pv := policy.Preview(loadExample(t, "monthly-31st.json"), d("2025-10-20"), 1, nil)
		cp := pv.Cycles[0]
		require.NotNil(t, cp.Amount)
		assert.Equal(t, klavi.Cents(9990), *cp.Amount)
		// Fri 31 Oct 2025, [1,3,5] skipWeekend: Sat 1 → Mon 3; Mon 3 taken → Tue 4; Wed 5.
		assert.Equal(t, []retry.Retry{{Day: 1, Date: d("2025-11-03")}, {Day: 3, Date: d("2025-11-04")}, {Day: 5, Date: d("2025-11-05")}}, cp.Retries)
		assert.Empty(t, cp.Dropped)
		assert.Equal(t, consent.Attach, pv.RetryMode)
	})
	t.Run("variable amount is null unless set", func(t *testing.T) {
		c := loadExample(t, "variable-amount.json")
		pv := policy.Preview(c, d("2026-02-01"), 2, nil)
		assert.Nil(t, pv.Cycles[0].Amount)
		set := klavi.Cents(123_45)
		pv = policy.Preview(c, d("2026-02-01"), 2, func(k int) *klavi.Cents {
			if k == 1 {
				return &set
			}
			return nil
		})
		assert.Nil(t, pv.Cycles[0].Amount)
		require.NotNil(t, pv.Cycles[1].Amount)
		assert.Equal(t, set, *pv.Cycles[1].Amount)
		assert.Equal(t, consent.Local, pv.RetryMode)
	})
	t.Run("no retries when not accepted", func(t *testing.T) {
		pv := policy.Preview(loadExample(t, "yearly-leap-day.json"), d("2025-01-01"), 3, nil)
		for _, cp := range pv.Cycles {
			assert.Empty(t, cp.Retries)
		}
		assert.Equal(t, []string{"2025-02-28", "2026-02-28", "2027-02-28"},
			[]string{pv.Cycles[0].Due.String(), pv.Cycles[1].Due.String(), pv.Cycles[2].Due.String()})
	})
	t.Run("weekly retries dropped at the next cycle", func(t *testing.T) {
		c := loadExample(t, "weekly-retries.json") // Mondays, [1,2,3] skipWeekend
		pv := policy.Preview(c, d("2026-01-01"), 1, nil)
		cp := pv.Cycles[0]
		assert.Equal(t, "2026-01-05", cp.Due.String())
		assert.Equal(t, []retry.Retry{{Day: 1, Date: d("2026-01-06")}, {Day: 2, Date: d("2026-01-07")}, {Day: 3, Date: d("2026-01-08")}}, cp.Retries)
		// Thursday due: [1,2,3] skipWeekend → Fri, Mon, Tue; Mon is the next cycle's start.
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-08")
		cp = policy.Preview(c, d("2026-01-01"), 1, nil).Cycles[0]
		assert.Equal(t, []retry.Retry{{Day: 1, Date: d("2026-01-09")}, {Day: 2, Date: d("2026-01-12")}, {Day: 3, Date: d("2026-01-13")}}, cp.Retries)
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-09") // Friday: +1 Sat→Mon 12, +2 Sun→Tue 13, +3 Mon taken→Wed 14
		cp = policy.Preview(c, d("2026-01-01"), 1, nil).Cycles[0]
		assert.Equal(t, []retry.Retry{{Day: 1, Date: d("2026-01-12")}, {Day: 2, Date: d("2026-01-13")}, {Day: 3, Date: d("2026-01-14")}}, cp.Retries)
		assert.Empty(t, cp.Dropped)
	})
	t.Run("expiry ends the preview", func(t *testing.T) {
		c := loadExample(t, "expiring-quarterly.json") // 20/01, 20/04, 20/07, 20/10, 20/01/2027; expires 31/01/2027
		pv := policy.Preview(c, d("2026-01-01"), 12, nil)
		require.Len(t, pv.Cycles, 5)
		assert.Equal(t, "2027-01-20", pv.Cycles[4].Due.String())
		// The last cycle's retries stop at expiry: 20 Jan 2027 + [1,7] skipWeekend → 21, 27 (both ≤ 31 Jan).
		assert.Len(t, pv.Cycles[4].Retries, 2)
	})
	t.Run("next business day", func(t *testing.T) {
		c := loadExample(t, "next-business-day.json") // the 15th, next business day
		pv := policy.Preview(c, d("2026-02-01"), 3, nil)
		assert.Equal(t, "2026-02-18", pv.Cycles[0].Due.String(), "Sun 15 Feb → Carnival Mon, Tue → Wed 18")
		assert.Equal(t, "2026-02-15", pv.Cycles[0].Start.String())
		assert.Equal(t, "2026-02-15", pv.Cycles[0].SubmitOn.String())
		assert.Equal(t, "2026-03-16", pv.Cycles[1].Due.String(), "Sun 15 Mar → Mon 16")
	})
}

// benchConsents builds n consents of random intervals and references from the examples.
func benchConsents(b *testing.B, n int) []*consent.Consent {
	names := []string{"monthly-31st.json", "weekly-retries.json", "yearly-leap-day.json", "variable-amount.json", "expiring-quarterly.json", "next-business-day.json"}
	r := rand.New(rand.NewPCG(1, 1))
	out := make([]*consent.Consent, n)
	for i := range out {
		c := loadExample(b, names[i%len(names)])
		c.ID = fmt.Sprintf("urn:bench:consent-%d", i)
		c.ExpirationDateTime = nil
		c.PaymentMethodConfig.Interval = cycle.Intervals[r.IntN(5)]
		c.PaymentMethodConfig.ReferenceStartDate = cycle.MustDate(2020+r.IntN(6), time.Month(1+r.IntN(12)), 1+r.IntN(28))
		out[i] = c
	}
	return out
}

// BenchmarkPreview10k previews 12 cycles of each of 10,000 consents per op.
func BenchmarkPreview10k(b *testing.B) {
	cs := benchConsents(b, 10000)
	from := d("2026-11-26")
	b.ResetTimer()
	for b.Loop() {
		for _, c := range cs {
			pv := policy.Preview(c, from, 12, nil)
			if len(pv.Cycles) != 12 {
				b.Fatal("short preview")
			}
		}
	}
}
