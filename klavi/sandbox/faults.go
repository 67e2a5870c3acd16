package sandbox

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Faults make the sandbox misbehave the way a remote API does, on API endpoints only
// (never on /_sandbox/*). Each request draws at most one fault, from a generator
// seeded with Seed, so a run that sends the same requests in the same order meets
// the same faults. Fractions are of requests, and add up to at most 1.
type Faults struct {
	// Latency is added to every API request before it is handled.
	Latency time.Duration
	// Err5xx answers 503 without handling the request.
	Err5xx float64
	// Err429 answers 429 with Retry-After (RetryAfter, default 1s) without handling.
	Err429     float64
	RetryAfter time.Duration
	// Timeout never answers: the request hangs until the client gives up (its
	// connection or context ends) or the server is closed. Nothing is handled.
	Timeout float64
	// Drop handles the request (a create is committed), then closes the connection
	// without an answer.
	Drop float64
	// Seed seeds the draws.
	Seed uint64
}

// Fault kinds, as counted in Stats.Faults.
const (
	FaultLatency = "latency"
	Fault5xx     = "5xx"
	Fault429     = "429"
	FaultTimeout = "timeout"
	FaultDrop    = "drop"
)

// ParseFaults parses the --faults flag: comma-separated key=value pairs among
// latency=DURATION, 5xx=FRACTION, 429=FRACTION, retry-after=DURATION,
// timeout=FRACTION, drop=FRACTION, seed=N. The empty string is no faults.
//
//	latency=20ms,5xx=0.05,429=0.02,timeout=0.01,drop=0.01,seed=42
func ParseFaults(spec string) (Faults, error) {
	var f Faults
	if strings.TrimSpace(spec) == "" {
		return f, nil
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Faults{}, fmt.Errorf("faults: %q is not key=value", kv)
		}
		var err error
		switch strings.ToLower(k) {
		case "latency":
			f.Latency, err = time.ParseDuration(v)
		case "retry-after", "retry_after":
			f.RetryAfter, err = time.ParseDuration(v)
		case "5xx":
			f.Err5xx, err = strconv.ParseFloat(v, 64)
		case "429":
			f.Err429, err = strconv.ParseFloat(v, 64)
		case "timeout":
			f.Timeout, err = strconv.ParseFloat(v, 64)
		case "drop":
			f.Drop, err = strconv.ParseFloat(v, 64)
		case "seed":
			f.Seed, err = strconv.ParseUint(v, 10, 64)
		default:
			return Faults{}, fmt.Errorf("faults: unknown key %q: want latency, 5xx, 429, retry-after, timeout, drop or seed", k)
		}
		if err != nil {
			return Faults{}, fmt.Errorf("faults: %s=%q: %v", k, v, err)
		}
	}
	return f, f.Validate()
}

// Validate reports fractions outside 0..1 or adding up to more than 1, and negative
// durations.
func (f Faults) Validate() error {
	for _, x := range []struct {
		name string
		v    float64
	}{{"5xx", f.Err5xx}, {"429", f.Err429}, {"timeout", f.Timeout}, {"drop", f.Drop}} {
		if !(x.v >= 0 && x.v <= 1) {
			return fmt.Errorf("faults: %s=%v: want a fraction between 0 and 1", x.name, x.v)
		}
	}
	if sum := f.Err5xx + f.Err429 + f.Timeout + f.Drop; sum > 1+1e-9 {
		return fmt.Errorf("faults: the fractions add up to %v, more than 1", sum)
	}
	if f.Latency < 0 || f.RetryAfter < 0 {
		return fmt.Errorf("faults: latency and retry-after must not be negative")
	}
	return nil
}

// String formats f in ParseFaults' syntax.
func (f Faults) String() string {
	var parts []string
	add := func(k string, v float64) {
		if v > 0 {
			parts = append(parts, k+"="+strconv.FormatFloat(v, 'g', -1, 64))
		}
	}
	if f.Latency > 0 {
		parts = append(parts, "latency="+f.Latency.String())
	}
	add("5xx", f.Err5xx)
	add("429", f.Err429)
	if f.RetryAfter > 0 {
		parts = append(parts, "retry-after="+f.RetryAfter.String())
	}
	add("timeout", f.Timeout)
	add("drop", f.Drop)
	if f.Seed != 0 {
		parts = append(parts, "seed="+strconv.FormatUint(f.Seed, 10))
	}
	return strings.Join(parts, ",")
}

func (f Faults) any() bool { return f.Err5xx+f.Err429+f.Timeout+f.Drop > 0 }

// injector draws the fault of each request.
type injector struct {
	f   Faults
	mu  sync.Mutex
	rng *rand.Rand
}

func newInjector(f Faults) *injector {
	return &injector{f: f, rng: rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))}
}

// draw returns the fault kind of the next request, or "".
func (in *injector) draw() string {
	if !in.f.any() {
		return ""
	}
	in.mu.Lock()
	u := in.rng.Float64()
	in.mu.Unlock()
	for _, x := range []struct {
		kind string
		p    float64
	}{{Fault5xx, in.f.Err5xx}, {Fault429, in.f.Err429}, {FaultTimeout, in.f.Timeout}, {FaultDrop, in.f.Drop}} {
		if u < x.p {
			return x.kind
		}
		u -= x.p
	}
	return ""
}
