package retry

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
)

func d(s string) cycle.Date {
	dt, err := cycle.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return dt
}

func dates(rs []Retry) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Date.String()
	}
	return out
}

func TestStrategy_Validate(t *testing.T) {
	tests := []struct {
		name     string
		s        Strategy
		iv       cycle.Interval
		accepted bool
		want     []string // substrings, one per expected violation
	}{
		{"valid monthly", Strategy{Days: []int{1, 3, 7}}, cycle.Monthly, true, nil},
		{"valid weekly", Strategy{Days: []int{1, 5}, SkipWeekend: true}, cycle.Weekly, true, nil},
		{"single day", Strategy{Days: []int{2}}, cycle.Yearly, true, nil},
		{"not accepted", Strategy{Days: []int{1}}, cycle.Monthly, false, []string{"isRetryAccepted"}},
		{"empty", Strategy{}, cycle.Monthly, true, []string{"got none"}},
		{"four days", Strategy{Days: []int{1, 2, 3, 4}}, cycle.Monthly, true, []string{"got 4"}},
		{"zero day", Strategy{Days: []int{0, 2}}, cycle.Monthly, true, []string{"days[0]: 0 is not ≥ 1"}},
		{"negative", Strategy{Days: []int{-1}}, cycle.Monthly, true, []string{"days[0]: -1 is not ≥ 1"}},
		{"weekly past 5", Strategy{Days: []int{1, 6}}, cycle.Weekly, true, []string{"days[1]: 6 is past the 5-day retry window of a WEEKLY consent"}},
		{"monthly past 7", Strategy{Days: []int{8}}, cycle.Monthly, true, []string{"days[0]: 8 is past the 7-day"}},
		{"not increasing", Strategy{Days: []int{3, 2}}, cycle.Monthly, true, []string{"days[1]: 2 does not follow 3"}},
		{"repeated", Strategy{Days: []int{2, 2}}, cycle.Monthly, true, []string{"days[1]: 2 does not follow 2"}},
		{"everything wrong", Strategy{Days: []int{9, 0, 0, 4}}, cycle.Weekly, false,
			[]string{"isRetryAccepted", "got 4", "days[0]: 9 is past", "days[1]: 0 is not", "days[1]: 0 does not follow 9", "days[2]: 0 is not", "days[2]: 0 does not follow 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := tt.s.Violations(tt.iv, tt.accepted)
			err := tt.s.Validate(tt.iv, tt.accepted)
			if tt.want == nil {
				assert.Empty(t, vs)
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrStrategy)
			assert.Len(t, vs, len(tt.want), "%v", vs)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestPlan_WorkedExamples(t *testing.T) {
	// Klavi's two worked examples: settlement Thursday 5 March 2026.
	settle := d("2026-03-05")
	require.Equal(t, "Thursday", settle.Weekday().String())
	lim := Limits{Interval: cycle.Monthly}

	p, dr := Plan(settle, Strategy{Days: []int{1, 2, 3}}, lim)
	assert.Equal(t, []string{"2026-03-06", "2026-03-07", "2026-03-08"}, dates(p))
	assert.Empty(t, dr)

	p, dr = Plan(settle, Strategy{Days: []int{1, 2, 3}, SkipWeekend: true}, lim)
	assert.Equal(t, []string{"2026-03-06", "2026-03-09", "2026-03-10"}, dates(p))
	assert.Equal(t, []int{1, 2, 3}, []int{p[0].Day, p[1].Day, p[2].Day})
	assert.Empty(t, dr)
}

func TestPlan_Drops(t *testing.T) {
	t.Run("bumped past the monthly window", func(t *testing.T) {
		// Fri 6 Mar 2026: day 7 is Fri 13 (in window); days 1,2 → Sat, Sun → Mon 9, Tue 10.
		p, dr := Plan(d("2026-03-06"), Strategy{Days: []int{1, 2, 7}, SkipWeekend: true}, Limits{Interval: cycle.Monthly})
		assert.Equal(t, []string{"2026-03-09", "2026-03-10", "2026-03-13"}, dates(p))
		assert.Empty(t, dr)
		// Mon 2 Mar 2026: day 5 = Sat 7 → Mon 9 (D+7, inside), day 6 = Sun 8 → Tue 10 (D+8, outside).
		p, dr = Plan(d("2026-03-02"), Strategy{Days: []int{5, 6}, SkipWeekend: true}, Limits{Interval: cycle.Monthly})
		assert.Equal(t, []string{"2026-03-09"}, dates(p))
		require.Len(t, dr, 1)
		assert.Equal(t, 6, dr[0].Day)
		assert.Equal(t, "2026-03-10", dr[0].Date.String())
		assert.True(t, strings.HasPrefix(dr[0].Reason, ReasonPastWindow), dr[0].Reason)
	})
	t.Run("weekly window is 5 days", func(t *testing.T) {
		// Tue 3 Mar 2026: day 4 = Sat 7 → Mon 9 = D+6 > D+5.
		p, dr := Plan(d("2026-03-03"), Strategy{Days: []int{1, 4}, SkipWeekend: true}, Limits{Interval: cycle.Weekly})
		assert.Equal(t, []string{"2026-03-04"}, dates(p))
		require.Len(t, dr, 1)
		assert.Contains(t, dr[0].Reason, "5 days after 2026-03-03 ends on 2026-03-08")
	})
	t.Run("on the next cycle's start", func(t *testing.T) {
		p, dr := Plan(d("2026-03-05"), Strategy{Days: []int{1, 2, 5}}, Limits{Interval: cycle.Weekly, NextCycleStart: d("2026-03-10")})
		assert.Equal(t, []string{"2026-03-06", "2026-03-07"}, dates(p))
		require.Len(t, dr, 1)
		assert.Equal(t, "2026-03-10", dr[0].Date.String())
		assert.True(t, strings.HasPrefix(dr[0].Reason, ReasonNextCycle))
	})
	t.Run("after expiry", func(t *testing.T) {
		p, dr := Plan(d("2026-03-05"), Strategy{Days: []int{1, 3}}, Limits{Interval: cycle.Monthly, Expiry: d("2026-03-07")})
		assert.Equal(t, []string{"2026-03-06"}, dates(p))
		require.Len(t, dr, 1)
		assert.True(t, strings.HasPrefix(dr[0].Reason, ReasonExpired))
	})
	t.Run("invalid day", func(t *testing.T) {
		p, dr := Plan(d("2026-03-05"), Strategy{Days: []int{0, 1}}, Limits{Interval: cycle.Monthly})
		assert.Equal(t, []string{"2026-03-06"}, dates(p))
		require.Len(t, dr, 1)
		assert.Equal(t, ReasonInvalidDay, dr[0].Reason)
	})
}

func FuzzPlan(f *testing.F) {
	f.Add(int32(739680), 1, 2, 3, true, uint8(2), 31)
	f.Add(int32(739680), 5, 6, 7, false, uint8(1), 7)
	f.Add(int32(700000), -1, 0, 9, true, uint8(5), 0)
	f.Fuzz(func(t *testing.T, rata int32, a, b, c int, skip bool, iv uint8, next int) {
		settle, ok := cycle.FromRata(rata)
		if !ok || settle.Year() > 9000 {
			t.Skip()
		}
		interval := cycle.Interval(iv%5 + 1)
		lim := Limits{Interval: interval}
		if next > 0 {
			lim.NextCycleStart = settle.AddDays(next % 400)
		}
		s := Strategy{Days: []int{a, b, c}, SkipWeekend: skip}
		p, dr := Plan(settle, s, lim)
		require.Equal(t, len(s.Days), len(p)+len(dr), "every day is planned or dropped")
		last := settle
		for _, r := range p {
			require.True(t, r.Date.After(last), "planned dates strictly increase: %v", p)
			require.False(t, r.Date.After(settle.AddDays(interval.RetryWindowDays())), "inside the window")
			if skip {
				require.False(t, r.Date.IsWeekend(), "no weekend with skipWeekend")
			}
			if !lim.NextCycleStart.IsZero() {
				require.True(t, r.Date.Before(lim.NextCycleStart))
			}
			require.GreaterOrEqual(t, r.Date.DaysSince(settle), r.Day, "never earlier than its day")
			last = r.Date
		}
		for _, x := range dr {
			require.NotEmpty(t, x.Reason)
		}
		// A strategy that validates never has a day dropped for being invalid, and
		// without skipWeekend or a cycle bound, nothing at all is dropped.
		if s.Validate(interval, true) == nil && !skip && lim.NextCycleStart.IsZero() {
			require.Empty(t, dr)
		}
	})
}

func BenchmarkPlan(b *testing.B) {
	s := Strategy{Days: []int{1, 2, 3}, SkipWeekend: true}
	lim := Limits{Interval: cycle.Monthly, NextCycleStart: d("2026-04-05")}
	settle := d("2026-03-05")
	for b.Loop() {
		_, _ = Plan(settle, s, lim)
	}
}
