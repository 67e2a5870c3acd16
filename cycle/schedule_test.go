package cycle

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cyc formats a cycle as "start–end" with dd/mm dates, the way the Pix rules write them.
func cyc(c Cycle) string {
	f := func(x Date) string { return fmt.Sprintf("%02d/%02d", x.Day(), int(x.Month())) }
	return f(c.Start) + "–" + f(c.End)
}

func TestSchedule_MonthEndClamp(t *testing.T) {
	// The sequence the Pix Automático rules give for a 31 Oct reference.
	s := Schedule{Reference: d("2025-10-31"), Interval: Monthly}
	want := []string{"31/10–29/11", "30/11–30/12", "31/12–30/01", "31/01–27/02", "28/02–30/03", "31/03–29/04", "30/04–30/05"}
	for k, w := range want {
		assert.Equal(t, w, cyc(s.Cycle(k)), "cycle %d", k)
	}
}

func TestSchedule_Cycles(t *testing.T) {
	tests := []struct {
		name   string
		ref    string
		iv     Interval
		starts []string // cycles 0.. in order
	}{
		{"weekly across year end", "2025-12-24", Weekly, []string{"2025-12-24", "2025-12-31", "2026-01-07", "2026-01-14"}},
		{"weekly across leap day", "2024-02-22", Weekly, []string{"2024-02-22", "2024-02-29", "2024-03-07"}},
		{"monthly on the 31st in a leap year", "2024-01-31", Monthly, []string{"2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"}},
		{"monthly on the 30th", "2025-01-30", Monthly, []string{"2025-01-30", "2025-02-28", "2025-03-30", "2025-04-30"}},
		{"monthly on the 29th in a common year", "2025-01-29", Monthly, []string{"2025-01-29", "2025-02-28", "2025-03-29"}},
		{"monthly across year end", "2025-11-15", Monthly, []string{"2025-11-15", "2025-12-15", "2026-01-15", "2026-02-15"}},
		{"quarterly on the 31st", "2025-08-31", Quarterly, []string{"2025-08-31", "2025-11-30", "2026-02-28", "2026-05-31", "2026-08-31"}},
		{"quarterly on the 31st into a leap Feb", "2023-11-30", Quarterly, []string{"2023-11-30", "2024-02-29", "2024-05-30"}},
		{"semiannual on the 31st", "2025-08-31", Semiannual, []string{"2025-08-31", "2026-02-28", "2026-08-31", "2027-02-28", "2027-08-31"}},
		{"semiannual across the century", "2099-12-31", Semiannual, []string{"2099-12-31", "2100-06-30", "2100-12-31"}},
		{"yearly on 29 Feb", "2024-02-29", Yearly, []string{"2024-02-29", "2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29", "2029-02-28"}},
		{"yearly on 29 Feb across 2100", "2096-02-29", Yearly, []string{"2096-02-29", "2097-02-28", "2098-02-28", "2099-02-28", "2100-02-28", "2101-02-28", "2102-02-28", "2103-02-28", "2104-02-29"}},
		{"yearly on 31 Dec", "2025-12-31", Yearly, []string{"2025-12-31", "2026-12-31", "2027-12-31"}},
		// DST-era references: 2018-11-04 had no midnight in Brasília.
		{"weekly from the day with no midnight", "2018-11-04", Weekly, []string{"2018-11-04", "2018-11-11", "2018-11-18"}},
		{"monthly from the day with no midnight", "2018-11-04", Monthly, []string{"2018-11-04", "2018-12-04", "2019-01-04", "2019-02-04"}},
		{"monthly across DST end", "2019-01-17", Monthly, []string{"2019-01-17", "2019-02-17", "2019-03-17"}},
		{"yearly across DST starts", "2017-10-15", Yearly, []string{"2017-10-15", "2018-10-15", "2019-10-15"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Schedule{Reference: d(tt.ref), Interval: tt.iv}
			require.NoError(t, s.Validate())
			for k, w := range tt.starts {
				c := s.Cycle(k)
				assert.Equal(t, w, c.Start.String(), "start of cycle %d", k)
				assert.Equal(t, c.Start, c.Due, "due of cycle %d", k)
				if k+1 < len(tt.starts) {
					assert.Equal(t, d(tt.starts[k+1]).AddDays(-1), c.End, "end of cycle %d", k)
				}
			}
		})
	}
}

func TestSchedule_Index(t *testing.T) {
	s := Schedule{Reference: d("2025-10-31"), Interval: Monthly}
	tests := []struct {
		date string
		want int
		ok   bool
	}{
		{"2025-10-30", 0, false},
		{"2025-10-31", 0, true},
		{"2025-11-29", 0, true},
		{"2025-11-30", 1, true},
		{"2025-12-30", 1, true},
		{"2025-12-31", 2, true},
		{"2026-02-27", 3, true},
		{"2026-02-28", 4, true},
		{"2026-03-30", 4, true},
		{"2026-03-31", 5, true},
	}
	for _, tt := range tests {
		k, ok := s.Index(d(tt.date))
		assert.Equal(t, tt.ok, ok, tt.date)
		if tt.ok {
			assert.Equal(t, tt.want, k, tt.date)
		}
	}
}

func TestSchedule_Expiry(t *testing.T) {
	s := Schedule{Reference: d("2025-01-10"), Interval: Monthly, Expiry: d("2025-04-10")}
	assert.True(t, s.Exists(3), "a due date on the expiry date is billable")
	assert.False(t, s.Exists(4))
	assert.False(t, s.Exists(-1))
	s.Expiry = d("2025-04-09")
	assert.False(t, s.Exists(3))
	s.Expiry = d("2024-12-31")
	assert.Error(t, s.Validate())
}

func TestSchedule_NextBusinessDay(t *testing.T) {
	cal := NewCalendar(d("2026-01-20")) // an extra, municipal holiday (São Sebastião, Rio)
	s := Schedule{Reference: d("2025-11-15"), Interval: Monthly, Adjust: AdjustNextBusinessDay, Calendar: cal}
	tests := []struct {
		k    int
		due  string
		note string
	}{
		{0, "2025-11-17", "Sat 15 Nov (Proclamação da República) → Mon 17"},
		{1, "2025-12-15", "Mon 15 Dec is a business day"},
		{2, "2026-01-15", "Thu"},
		{3, "2026-02-18", "Sun 15 Feb → Carnival Mon 16 → Carnival Tue 17 → Wed 18"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.due, s.Due(tt.k).String(), tt.note)
	}
	s.Reference = d("2026-01-20")
	assert.Equal(t, "2026-01-21", s.Due(0).String(), "extra holiday")
}

func TestSchedule_FirstDueOnOrAfter(t *testing.T) {
	s := Schedule{Reference: d("2025-10-31"), Interval: Monthly}
	assert.Equal(t, 0, s.FirstDueOnOrAfter(d("2020-01-01")))
	assert.Equal(t, 0, s.FirstDueOnOrAfter(d("2025-10-31")))
	assert.Equal(t, 1, s.FirstDueOnOrAfter(d("2025-11-01")))
	assert.Equal(t, 1, s.FirstDueOnOrAfter(d("2025-11-30")))
	assert.Equal(t, 2, s.FirstDueOnOrAfter(d("2025-12-01")))
	// An adjusted due date can sit inside the next cycle's days.
	a := Schedule{Reference: d("2025-11-15"), Interval: Weekly, Adjust: AdjustNextBusinessDay}
	assert.Equal(t, "2025-11-17", a.Due(0).String())
	assert.Equal(t, 0, a.FirstDueOnOrAfter(d("2025-11-17")))
	assert.Equal(t, 1, a.FirstDueOnOrAfter(d("2025-11-18")))
}

func TestSchedule_OutOfRange(t *testing.T) {
	s := Schedule{Reference: d("9999-06-01"), Interval: Monthly}
	assert.False(t, s.Start(6).IsZero())
	assert.True(t, s.Start(7).IsZero())
	assert.False(t, s.Exists(7))
	assert.True(t, s.Cycle(6).End.IsZero())
	w := Schedule{Reference: d("9999-12-20"), Interval: Weekly}
	assert.True(t, w.Start(2).IsZero())
	assert.True(t, w.Start(math.MaxInt).IsZero())
	assert.True(t, s.Start(math.MaxInt).IsZero())
	assert.True(t, s.Start(-1).IsZero())
}

// randomRef returns a reference date between 1990 and 2090, biased towards month ends
// and leap days where the arithmetic is hardest.
func randomRef(r *rand.Rand) Date {
	y := 1990 + r.IntN(100)
	m := time.Month(1 + r.IntN(12))
	day := 1 + r.IntN(DaysIn(y, m))
	if r.IntN(3) == 0 {
		day = DaysIn(y, m) - r.IntN(3)
	}
	return MustDate(y, m, day)
}

// TestSchedule_Properties checks, for thousands of random references and intervals,
// that cycles are contiguous, never overlap, never drift, start on the reference day
// or the month's last day, and that Index agrees with Start.
func TestSchedule_Properties(t *testing.T) {
	r := rand.New(rand.NewPCG(20251031, 1))
	for i := 0; i < 5000; i++ {
		ref := randomRef(r)
		iv := Intervals[r.IntN(len(Intervals))]
		s := Schedule{Reference: ref, Interval: iv}
		_, _, refDay := ref.Civil()
		n := 60
		if iv == Weekly {
			n = 260
		}
		prev := s.Cycle(0)
		require.Equal(t, ref, prev.Start)
		for k := 1; k < n; k++ {
			c := s.Cycle(k)
			// contiguous, no overlap
			require.Equal(t, prev.End.AddDays(1), c.Start, "ref %s %s cycle %d", ref, iv, k)
			require.True(t, c.Start.Before(c.End) || iv == Weekly && c.End.DaysSince(c.Start) == 6)
			// no drift: the k-th start is exactly k periods from the reference
			if m := iv.Months(); m > 0 {
				y, mo, day := c.Start.Civil()
				ry, rmo, _ := ref.Civil()
				require.Equal(t, (ry*12+int(rmo)-1)+k*m, y*12+int(mo)-1, "ref %s %s cycle %d", ref, iv, k)
				// on the reference day, or on the month's last day when it is shorter
				if refDay <= DaysIn(y, mo) {
					require.Equal(t, refDay, day, "ref %s %s cycle %d", ref, iv, k)
				} else {
					require.Equal(t, DaysIn(y, mo), day, "ref %s %s cycle %d", ref, iv, k)
				}
			} else {
				require.Equal(t, 7*k, c.Start.DaysSince(ref))
				require.Equal(t, 6, c.End.DaysSince(c.Start))
			}
			// Index of every day of the previous cycle is k-1 (spot-checked at both ends
			// and one random day inside).
			for _, x := range []Date{prev.Start, prev.End, prev.Start.AddDays(r.IntN(prev.End.DaysSince(prev.Start) + 1))} {
				got, ok := s.Index(x)
				require.True(t, ok)
				require.Equal(t, k-1, got, "index of %s (ref %s %s)", x, ref, iv)
			}
			prev = c
		}
		_, ok := s.Index(ref.AddDays(-1))
		require.False(t, ok)
	}
}

func BenchmarkSchedule_Cycle(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 7))
	const n = 1024
	ss := make([]Schedule, n)
	ks := make([]int, n)
	for i := range ss {
		ss[i] = Schedule{Reference: randomRef(r), Interval: Intervals[r.IntN(len(Intervals))]}
		ks[i] = r.IntN(120)
	}
	i := 0
	var sink Cycle
	for b.Loop() {
		sink = ss[i&(n-1)].Cycle(ks[i&(n-1)])
		i++
	}
	_ = sink
}

func BenchmarkSchedule_CycleNextBusinessDay(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	const n = 1024
	cal := NewCalendar()
	ss := make([]Schedule, n)
	ks := make([]int, n)
	for i := range ss {
		ss[i] = Schedule{Reference: randomRef(r), Interval: Intervals[r.IntN(len(Intervals))], Adjust: AdjustNextBusinessDay, Calendar: cal}
		ks[i] = r.IntN(120)
	}
	i := 0
	var sink Cycle
	for b.Loop() {
		sink = ss[i&(n-1)].Cycle(ks[i&(n-1)])
		i++
	}
	_ = sink
}
