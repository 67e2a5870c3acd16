package cycle

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func d(s string) Date {
	dt, err := ParseDate(s)
	if err != nil {
		panic(err)
	}
	return dt
}

func TestParseDate(t *testing.T) {
	good := []string{"2025-01-01", "2024-02-29", "2000-02-29", "0001-01-01", "9999-12-31", "2018-11-04", "2025-12-31"}
	for _, s := range good {
		t.Run(s, func(t *testing.T) {
			dt, err := ParseDate(s)
			require.NoError(t, err)
			assert.Equal(t, s, dt.String())
		})
	}
	bad := []string{
		"", "2025-02-30", "2025-2-3", "25-01-01", "2025-13-01", "2025-00-10", "2025-01-00",
		"2025-04-31", "2023-02-29", "1900-02-29", "0000-01-01", "2025/01/01", "2025-01-01T00:00:00Z",
		" 2025-01-01", "2025-01-1a", "+025-01-01", "２０２５-01-01",
	}
	for _, s := range bad {
		t.Run("bad/"+s, func(t *testing.T) {
			_, err := ParseDate(s)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrDate)
		})
	}
}

func TestDate_CivilRoundTrip(t *testing.T) {
	// Every day over four centuries, against the standard library.
	ref := time.Date(1800, 1, 1, 12, 0, 0, 0, time.UTC)
	prev := MustDate(1799, 12, 31)
	for i := 0; i < 400*366; i++ {
		tm := ref.AddDate(0, 0, i)
		dt, ok := NewDate(tm.Year(), tm.Month(), tm.Day())
		require.True(t, ok, tm)
		y, m, dd := dt.Civil()
		require.Equal(t, [3]int{tm.Year(), int(tm.Month()), tm.Day()}, [3]int{y, int(m), dd})
		require.Equal(t, tm.Weekday(), dt.Weekday(), tm)
		require.Equal(t, 1, dt.DaysSince(prev), tm)
		require.Equal(t, tm.Format(time.DateOnly), dt.String())
		txt, err := dt.MarshalText()
		require.NoError(t, err)
		require.Equal(t, tm.Format(time.DateOnly), string(txt))
		prev = dt
	}
}

func TestDate_AddMonthsClamped(t *testing.T) {
	tests := []struct {
		from string
		n    int
		want string
	}{
		{"2025-01-31", 1, "2025-02-28"},
		{"2024-01-31", 1, "2024-02-29"},
		{"2025-01-31", 2, "2025-03-31"},
		{"2025-03-31", 1, "2025-04-30"},
		{"2025-12-15", 1, "2026-01-15"},
		{"2025-12-31", 2, "2026-02-28"},
		{"2024-02-29", 12, "2025-02-28"},
		{"2024-02-29", 48, "2028-02-29"},
		{"2000-02-29", 1200, "2100-02-28"},
		{"2025-08-31", 6, "2026-02-28"},
		{"2025-05-31", 3, "2025-08-31"},
		{"2025-11-30", -1, "2025-10-30"},
		{"2025-03-31", -1, "2025-02-28"},
	}
	for _, tt := range tests {
		got := d(tt.from).AddMonthsClamped(tt.n)
		assert.Equal(t, tt.want, got.String(), "%s %+d months", tt.from, tt.n)
	}
}

func TestDateOf(t *testing.T) {
	tests := []struct {
		instant string
		want    string
	}{
		{"2025-03-05T02:59:59Z", "2025-03-04"}, // 23:59:59 in Brasília (UTC-3)
		{"2025-03-05T03:00:00Z", "2025-03-05"},
		{"2025-12-31T23:30:00Z", "2025-12-31"},
		{"2026-01-01T02:59:00Z", "2025-12-31"},
		// 2018-11-04: DST began at midnight, clocks jumped 00:00 → 01:00 (UTC-2).
		{"2018-11-04T02:59:59Z", "2018-11-03"},
		{"2018-11-04T03:00:00Z", "2018-11-04"}, // 01:00 local, the day's first instant
		{"2019-02-17T01:59:59Z", "2019-02-16"}, // 23:59:59 UTC-2, DST's last second
		{"2019-02-17T02:00:00Z", "2019-02-16"}, // 23:00 again, UTC-3
		{"2019-02-17T03:00:00Z", "2019-02-17"},
	}
	for _, tt := range tests {
		tm, err := time.Parse(time.RFC3339, tt.instant)
		require.NoError(t, err)
		assert.Equal(t, tt.want, DateOf(tm).String(), tt.instant)
	}
}

func TestDate_At(t *testing.T) {
	// 2018-11-04 had no 00:00 in Brasília; At normalizes forward and stays on the day.
	at := MustDate(2018, 11, 4).At(0, 0)
	assert.Equal(t, "2018-11-04T01:00:00-02:00", at.Format(time.RFC3339))
	assert.Equal(t, "2018-11-04", DateOf(at).String())
	assert.Equal(t, "2025-03-05T12:00:00Z", MustDate(2025, 3, 5).At(9, 0).UTC().Format(time.RFC3339))
}

func TestDate_JSON(t *testing.T) {
	var v struct {
		D Date `json:"d"`
	}
	require.NoError(t, json.Unmarshal([]byte(`{"d":"2024-02-29"}`), &v))
	assert.Equal(t, MustDate(2024, 2, 29), v.D)
	b, err := json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, `{"d":"2024-02-29"}`, string(b))
	require.Error(t, json.Unmarshal([]byte(`{"d":"2023-02-29"}`), &v))
	// The zero Date round-trips as "".
	v.D = Date{}
	b, err = json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, `{"d":""}`, string(b))
	v.D = MustDate(2020, 1, 1)
	require.NoError(t, json.Unmarshal(b, &v))
	assert.True(t, v.D.IsZero())
}

func TestDate_Rata(t *testing.T) {
	dt := MustDate(2025, 10, 31)
	back, ok := FromRata(dt.Rata())
	require.True(t, ok)
	assert.Equal(t, dt, back)
	_, ok = FromRata(0)
	assert.False(t, ok)
	assert.Equal(t, int32(1), MustDate(1, 1, 1).Rata())
}

func TestParseInterval(t *testing.T) {
	for in, want := range map[string]Interval{
		"WEEKLY": Weekly, "monthly": Monthly, "Quarterly": Quarterly, "SEMIANNUAL": Semiannual,
		"semi-annual": Semiannual, "Semi Annual": Semiannual, "semi_annual": Semiannual, "yearly": Yearly,
	} {
		got, err := ParseInterval(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "DAILY", "annual", "month"} {
		_, err := ParseInterval(in)
		assert.ErrorIs(t, err, ErrInterval, in)
	}
}

func FuzzParseDate(f *testing.F) {
	for _, s := range []string{"2025-01-31", "2024-02-29", "2025-02-30", "2025-2-3", "", "9999-12-31", "0000-00-00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dt, err := ParseDate(s)
		if err != nil {
			return
		}
		// Whatever parses must round-trip exactly and agree with the standard library.
		require.Equal(t, s, dt.String())
		tm, terr := time.Parse("2006-01-02", s)
		require.NoError(t, terr)
		y, m, dd := dt.Civil()
		require.Equal(t, [3]int{tm.Year(), int(tm.Month()), tm.Day()}, [3]int{y, int(m), dd})
		require.Equal(t, tm.Weekday(), dt.Weekday())
	})
}

func BenchmarkParseDate(b *testing.B) {
	for b.Loop() {
		_, _ = ParseDate("2025-10-31")
	}
}

func BenchmarkDate_AddMonthsClamped(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	ds := make([]Date, 1024)
	for i := range ds {
		ds[i] = MustDate(2000+r.IntN(50), time.Month(1+r.IntN(12)), 1+r.IntN(28))
	}
	i := 0
	for b.Loop() {
		_ = ds[i&1023].AddMonthsClamped(i & 255)
		i++
	}
}

// AppendText appends what MarshalText returns, which is String's form; an encoder
// that uses it writes the same JSON.
func TestDate_AppendText(t *testing.T) {
	dates := []Date{{}, MustDate(MinYear, 1, 1), MustDate(MaxYear, 12, 31), MustDate(2024, 2, 29), MustDate(999, 9, 9)}
	for range 1000 {
		dates = append(dates, Date{rd: rand.Int32N(MustDate(MaxYear, 12, 31).rd) + 1})
	}
	for _, dt := range dates {
		mt, err := dt.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, dt.String(), string(mt))
		y, m, dd := dt.Civil()
		if !dt.IsZero() {
			assert.Equal(t, fmt.Sprintf("%04d-%02d-%02d", y, m, dd), string(mt))
		}
		at, err := dt.AppendText([]byte("x="))
		require.NoError(t, err)
		assert.Equal(t, "x="+string(mt), string(at))
		b, err := jsonv1.Marshal(struct{ D Date }{dt})
		require.NoError(t, err)
		assert.Equal(t, `{"D":"`+string(mt)+`"}`, string(b))
	}
	buf := make([]byte, 0, 16)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = MustDate(2026, 3, 5).AppendText(buf) }))
}

// UnmarshalText reads the bytes as ParseDate reads a string, errors included,
// without copying a valid date.
func TestDate_UnmarshalTextAsParseDate(t *testing.T) {
	for _, s := range []string{"2026-03-05", "2024-02-29", "2025-02-29", "2025-2-3", "2025-13-01", "x025-01-01", "2026-03-05 ", "25-01-01"} {
		want, werr := ParseDate(s)
		var got Date
		gerr := got.UnmarshalText([]byte(s))
		if werr != nil {
			require.Error(t, gerr, s)
			assert.Equal(t, werr.Error(), gerr.Error(), s)
			continue
		}
		require.NoError(t, gerr, s)
		assert.Equal(t, want, got, s)
	}
	b := []byte("2026-03-05")
	var d Date
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = d.UnmarshalText(b) }))
	var iv Interval
	mb := []byte("MONTHLY")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = iv.UnmarshalText(mb) }))
	require.NoError(t, iv.UnmarshalText([]byte("semi-annual")))
	assert.Equal(t, Semiannual, iv)
}
