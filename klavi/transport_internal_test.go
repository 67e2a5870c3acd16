package klavi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestExpBackoff(t *testing.T) {
	lo, hi := 500*time.Millisecond, 10*time.Second
	for _, tc := range []struct {
		n    int
		u    float64
		want time.Duration
	}{
		{1, 0, 250 * time.Millisecond}, // half of 500ms, no jitter
		{1, 0.999999, 500 * time.Millisecond},
		{2, 0, 500 * time.Millisecond}, // 1s
		{5, 0, 4 * time.Second},        // 8s
		{6, 0, 5 * time.Second},        // 16s capped at 10s
		{6, 0.5, 7500 * time.Millisecond},
		{64, 0, 5 * time.Second}, // no overflow
		{0, 0, 250 * time.Millisecond},
	} {
		got := expBackoff(lo, hi, tc.n, tc.u)
		assert.InDelta(t, float64(tc.want), float64(got), float64(time.Millisecond), "attempt %d, u %v", tc.n, tc.u)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 2, 25, 13, 0, 0, 0, time.UTC)
	assert.Equal(t, 7*time.Second, parseRetryAfter("7", now))
	assert.Equal(t, 7*time.Second, parseRetryAfter(" 7 ", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("0", now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("-3", now))
	assert.Equal(t, 24*time.Hour, parseRetryAfter("9999999", now), "capped at a day")
	assert.Equal(t, 90*time.Second, parseRetryAfter(now.Add(90*time.Second).Format(http.TimeFormat), now))
	assert.Equal(t, time.Duration(0), parseRetryAfter(now.Add(-time.Minute).Format(http.TimeFormat), now))
	assert.Equal(t, time.Duration(0), parseRetryAfter("soon", now))
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"cpf 52998224725 invalid":            "cpf *********25 invalid",
		"CNPJ 11.222.333/0001-81 blocked":    "CNPJ ****************81 blocked",
		"date 2026-03-05 outside the window": "date 2026-03-05 outside the window",
		"amount 1333.04 above 500.00":        "amount 1333.04 above 500.00",
		"contact ana.souza@example.com":      "contact a********@e******.com",
		"bad token Bearer eyJhbGciOi.x.y":    "bad token Bearer [redacted]",
		"key SK-live-abcdefghij leaked":      "key [redacted] leaked",
		"line\nbreak\ttab":                   "line break tab",
	} {
		assert.Equal(t, want, sanitize(in, "SK-live-abcdefghij", "AK"), in)
	}
	long := sanitize(strings.Repeat("a", 500))
	assert.Equal(t, maxMessageLen+1, len([]rune(long)), "truncated, with an ellipsis")
}

// readLimited returns what io.ReadAll(io.LimitReader(r, limit)) did, bytes and
// error, whatever the sizes of the reads and wherever the limit falls.
func TestReadLimited_SameAsReadAll(t *testing.T) {
	boom := errors.New("connection reset")
	for _, size := range []int{0, 1, 511, 512, 513, 1000, 4096, 5000} {
		data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		for _, limit := range []int64{0, 1, 511, 512, 513, int64(size) - 1, int64(size), int64(size) + 1, 1 << 20} {
			readers := map[string]func() io.Reader{
				"whole":      func() io.Reader { return bytes.NewReader(data) },
				"one byte":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
				"half":       func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
				"data + EOF": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
				"error":      func() io.Reader { return io.MultiReader(bytes.NewReader(data), iotest.ErrReader(boom)) },
				"timeout":    func() io.Reader { return iotest.TimeoutReader(bytes.NewReader(data)) },
			}
			for name, r := range readers {
				want, wantErr := io.ReadAll(io.LimitReader(r(), limit))
				got, err := readLimited(r(), limit)
				assert.Equal(t, string(want), string(got), "%s, %d bytes, limit %d", name, size, limit)
				assert.Equal(t, wantErr, err, "%s, %d bytes, limit %d", name, size, limit)
			}
		}
	}
}
