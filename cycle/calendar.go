package cycle

import (
	"sort"
	"sync"
	"time"

	"github.com/rickar/cal/v2"
	"github.com/rickar/cal/v2/br"
)

// ConscienciaNegra is the Dia Nacional de Zumbi e da Consciência Negra (20 Nov), a
// national holiday only from 2024 (Lei 14.759/2023). rickar/cal's br package does
// not carry it, and a plain "every 20 Nov" would be wrong for earlier years.
var ConscienciaNegra = &cal.Holiday{
	Name:      "Dia Nacional de Zumbi e da Consciência Negra",
	Type:      cal.ObservancePublic,
	Month:     time.November,
	Day:       20,
	StartYear: 2024,
	Func:      cal.CalcDayOfMonth,
}

// CarnavalSegunda is Carnival Monday (48 days before Easter). Like Carnival Tuesday
// (br.Carnaval) it is not a civil holiday in law, but banks and the payment system's
// business-day calendar close on both, and a charge moved "to the next business day"
// should not land on it.
var CarnavalSegunda = &cal.Holiday{
	Name:   "Segunda-feira de Carnaval",
	Type:   cal.ObservanceBank,
	Offset: -48,
	Func:   cal.CalcEasterOffset,
}

// NationalHolidays are the days the business calendar closes on everywhere in
// Brazil: rickar/cal's br.Holidays (national holidays plus Carnival Tuesday, Good
// Friday and Corpus Christi), CarnavalSegunda, and ConscienciaNegra from 2024.
var NationalHolidays = append(append([]*cal.Holiday{}, br.Holidays...), CarnavalSegunda, ConscienciaNegra)

// A Calendar tells Brazilian business days from weekends and holidays. A Calendar is
// safe for concurrent use. The zero Calendar is not usable; use NewCalendar.
type Calendar struct {
	holidays []*cal.Holiday
	extra    map[Date]bool

	mu    sync.RWMutex
	years map[int][]Date // computed holiday dates of each year seen, sorted
}

// NewCalendar returns a calendar of NationalHolidays plus the extra holiday dates
// given (a municipal holiday, a bank closure).
func NewCalendar(extra ...Date) *Calendar {
	c := &Calendar{
		holidays: NationalHolidays,
		extra:    make(map[Date]bool, len(extra)),
		years:    make(map[int][]Date),
	}
	for _, d := range extra {
		c.extra[d] = true
	}
	return c
}

// holidaysOf returns the national holidays of year y, computed once per year.
func (c *Calendar) holidaysOf(y int) []Date {
	c.mu.RLock()
	ds, ok := c.years[y]
	c.mu.RUnlock()
	if ok {
		return ds
	}
	ds = make([]Date, 0, len(c.holidays))
	for _, h := range c.holidays {
		actual, _ := h.Calc(y)
		if actual.IsZero() {
			continue
		}
		if d, ok := NewDate(actual.Date()); ok {
			ds = append(ds, d)
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].Before(ds[j]) })
	c.mu.Lock()
	c.years[y] = ds
	c.mu.Unlock()
	return ds
}

// IsHoliday reports whether d is a national holiday or one of the extra dates.
func (c *Calendar) IsHoliday(d Date) bool {
	if c.extra[d] {
		return true
	}
	for _, h := range c.holidaysOf(d.Year()) {
		if h == d {
			return true
		}
	}
	return false
}

// IsBusinessDay reports whether d is neither a weekend day nor a holiday.
func (c *Calendar) IsBusinessDay(d Date) bool {
	return !d.IsWeekend() && !c.IsHoliday(d)
}

// NextBusinessDay returns d if it is a business day, else the first business day
// after it.
func (c *Calendar) NextBusinessDay(d Date) Date {
	for !c.IsBusinessDay(d) {
		d = d.AddDays(1)
	}
	return d
}

// Holidays returns the holidays of year y (national and extra), sorted.
func (c *Calendar) Holidays(y int) []Date {
	out := append([]Date(nil), c.holidaysOf(y)...)
	for d := range c.extra {
		if d.Year() == y {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}
