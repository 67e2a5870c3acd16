package cycle

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCalendar_Holidays(t *testing.T) {
	c := NewCalendar()
	tests := []struct {
		date    string
		holiday bool
		why     string
	}{
		{"2025-01-01", true, "Ano Novo"},
		{"2025-03-03", true, "Carnival Monday 2025 (banks closed)"},
		{"2025-03-04", true, "Carnival Tuesday 2025"},
		{"2025-04-18", true, "Good Friday 2025"},
		{"2025-04-21", true, "Tiradentes"},
		{"2025-05-01", true, "Dia do Trabalhador"},
		{"2025-06-19", true, "Corpus Christi 2025"},
		{"2025-09-07", true, "Independência"},
		{"2025-10-12", true, "Nossa Senhora Aparecida"},
		{"2025-11-02", true, "Finados"},
		{"2025-11-15", true, "República"},
		{"2025-11-20", true, "Consciência Negra, national since 2024"},
		{"2024-11-20", true, "Consciência Negra 2024"},
		{"2023-11-20", false, "Consciência Negra was not national before 2024"},
		{"2019-11-20", false, "not national in 2019"},
		{"2025-12-25", true, "Natal"},
		{"2025-12-24", false, "Christmas Eve is a business day"},
		{"2026-02-17", true, "Carnival Tuesday 2026"},
		{"2025-03-05", false, "Ash Wednesday"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.holiday, c.IsHoliday(d(tt.date)), "%s: %s", tt.date, tt.why)
	}
}

func TestCalendar_NextBusinessDay(t *testing.T) {
	c := NewCalendar(d("2025-11-21"))
	assert.Equal(t, "2025-03-05", c.NextBusinessDay(d("2025-03-01")).String(), "Sat → Sun → Carnival Mon → Carnival Tue → Wed")
	assert.Equal(t, "2025-11-24", c.NextBusinessDay(d("2025-11-20")).String(), "Thu holiday → extra Fri → weekend → Mon")
	assert.Equal(t, "2025-11-19", c.NextBusinessDay(d("2025-11-19")).String(), "a business day stays")
	assert.Equal(t, "2025-12-26", c.NextBusinessDay(d("2025-12-25")).String(), "Natal (Thu) → Fri")
}

func TestCalendar_HolidaysList(t *testing.T) {
	c := NewCalendar(d("2025-07-09"))
	hs := c.Holidays(2025)
	assert.Len(t, hs, 14)
	for i := 1; i < len(hs); i++ {
		assert.True(t, hs[i-1].Before(hs[i]))
	}
	assert.Len(t, NewCalendar().Holidays(2023), 12, "no Consciência Negra before 2024")
}
