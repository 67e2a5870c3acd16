package clock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// A Scaled clock runs faster than real time from a fixed origin: it reads
//
//	Start + (real now − Epoch) × Rate
//
// Its reading depends only on its three parameters and the real clock, so separate
// processes given the same parameters (a daemon restarted many times, and the Klavi
// sandbox it talks to) share one timeline, and a restart resumes where the timeline
// is, not where it began. It is for process-level tests and demonstrations that need
// days to pass in seconds; production uses Real.
//
// The zero Rate is read as 1. Readings that would overflow time.Duration saturate.
// A Scaled clock is safe for concurrent use (it holds no mutable state).
type Scaled struct {
	// Start is the reading at Epoch.
	Start time.Time
	// Epoch is the real instant at which the clock reads Start.
	Epoch time.Time
	// Rate is how many virtual seconds pass per real second (> 0).
	Rate float64
	// Base is the real clock; nil is Real{}. Tests pass a Fake.
	Base Clock
}

// Now returns Start + (Base.Now() − Epoch) × Rate.
func (s *Scaled) Now() time.Time {
	rate := s.Rate
	if rate == 0 {
		rate = 1
	}
	elapsed := float64(Or(s.Base).Now().Sub(s.Epoch)) * rate
	// float64(math.MaxInt64) rounds up to 2^63, which does not convert back.
	switch {
	case elapsed >= math.MaxInt64:
		return s.Start.Add(math.MaxInt64)
	case elapsed <= math.MinInt64:
		return s.Start.Add(math.MinInt64)
	}
	return s.Start.Add(time.Duration(elapsed))
}

// Sleep waits d of the clock's time, d/Rate of real time, or until ctx is done (its
// error then). A wait another process asked for on the same timeline (a Retry-After
// of the Klavi sandbox, which runs on it too) takes its virtual length, not its
// real one: at 17,280×, one real second would be 4.8 virtual hours.
func (s *Scaled) Sleep(ctx context.Context, d time.Duration) error {
	rate := s.Rate
	if rate == 0 {
		rate = 1
	}
	return Sleep(ctx, time.Duration(float64(d)/rate))
}

// Sleep waits d of real time, or until ctx is done (its error then); d <= 0 returns
// ctx's error at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// String formats s in ParseScaled's syntax: start=RFC3339,epoch=UNIX_MS,rate=N.
// Epoch is written in whole milliseconds.
func (s *Scaled) String() string {
	return fmt.Sprintf("start=%s,epoch=%d,rate=%s", s.Start.UTC().Format(time.RFC3339Nano),
		s.Epoch.UnixMilli(), strconv.FormatFloat(s.Rate, 'g', -1, 64))
}

// ErrScaledSpec is wrapped by every error of ParseScaled.
var ErrScaledSpec = errors.New("scaled clock spec")

// ParseScaled reads a Scaled clock from its spec, three comma-separated key=value
// pairs in any order, each exactly once:
//
//	start=2026-12-01T03:00:00Z,epoch=1764558000000,rate=3600
//
// start is an RFC 3339 instant (the reading at epoch), epoch the real instant in Unix
// milliseconds, rate the virtual seconds per real second (a number > 0 and ≤ 1e6).
// The clock returned reads the real clock.
func ParseScaled(spec string) (*Scaled, error) {
	bad := func(format string, args ...any) (*Scaled, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrScaledSpec}, args...)...)
	}
	var (
		s    Scaled
		seen = map[string]bool{}
	)
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return bad("%q is not key=value (want start=RFC3339,epoch=UNIX_MS,rate=N)", kv)
		}
		if seen[k] {
			return bad("%s given twice", k)
		}
		seen[k] = true
		switch k {
		case "start":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return bad("start=%q: want an RFC 3339 instant such as 2026-12-01T03:00:00Z", v)
			}
			s.Start = t
		case "epoch":
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms <= 0 {
				return bad("epoch=%q: want a positive Unix time in milliseconds", v)
			}
			s.Epoch = time.UnixMilli(ms)
		case "rate":
			r, err := strconv.ParseFloat(v, 64)
			if err != nil || !(r > 0 && r <= 1e6) {
				return bad("rate=%q: want a number of virtual seconds per real second, more than 0 and at most 1e6", v)
			}
			s.Rate = r
		default:
			return bad("unknown key %q: want start, epoch and rate", k)
		}
	}
	for _, k := range []string{"start", "epoch", "rate"} {
		if !seen[k] {
			return bad("%s is missing (want start=RFC3339,epoch=UNIX_MS,rate=N)", k)
		}
	}
	return &s, nil
}
