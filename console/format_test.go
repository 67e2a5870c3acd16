package console

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

func TestBRL(t *testing.T) {
	for c, want := range map[klavi.Cents]string{0: "R$ 0,00", 5: "R$ 0,05", 2500: "R$ 25,00", 123456: "R$ 1.234,56",
		100000000: "R$ 1.000.000,00", -150: "-R$ 1,50"} {
		assert.Equal(t, want, BRL(c), "%d", c)
	}
	assert.Equal(t, "—", brlPtr(nil))
}

func TestInstant(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{cycle.MustDate(2026, 1, 9).At(9, 0), "2026-01-09 09:00 BRT"},
		{time.Date(2026, 1, 9, 12, 30, 0, 0, time.UTC), "2026-01-09 09:30 BRT"},
		{time.Date(2018, 12, 1, 12, 0, 0, 0, time.UTC), "2018-12-01 10:00 BRST"},
		{time.Time{}, "—"},
	} {
		assert.Equal(t, tc.want, Instant(tc.in))
	}
	assert.Equal(t, "2026-01-09 09:00:07 BRT", instantSec(cycle.MustDate(2026, 1, 9).At(9, 0).Add(7*time.Second)))
}

func TestDay(t *testing.T) {
	assert.Equal(t, "Fri 2026-01-09", Day(cycle.MustDate(2026, 1, 9)))
	assert.Equal(t, "—", Day(cycle.Date{}))
}

func TestAge(t *testing.T) {
	now := cycle.MustDate(2026, 1, 9).At(9, 0)
	for d, want := range map[time.Duration]string{40 * time.Second: "40s", 5 * time.Minute: "5m", 125 * time.Minute: "2h 5m",
		76 * time.Hour: "3d 4h", -time.Minute: "0s"} {
		assert.Equal(t, want, Age(now.Add(-d), now), "%v", d)
	}
	assert.Equal(t, "—", Age(time.Time{}, now))
}

func TestPercent(t *testing.T) {
	assert.Equal(t, "95,1%", Percent(951, 1000))
	assert.Equal(t, "100,0%", Percent(3, 3))
	assert.Equal(t, "—", Percent(0, 0))
}
