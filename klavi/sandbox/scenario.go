package sandbox

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"

	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
)

// An Outcome is how a payment ends on its date.
type Outcome string

// Outcomes.
const (
	Completed Outcome = "completed" // PAYMENT_COMPLETED
	Rejected  Outcome = "rejected"  // PAYMENT_REJECTED with a statusReason
	Canceled  Outcome = "canceled"  // CANCELED by the holder
)

func (o Outcome) valid() bool { return o == Completed || o == Rejected || o == Canceled }

// A Rule scripts the outcome of the payments it matches.
type Rule struct {
	// ConsentID is a consent id, or "*" for every consent.
	ConsentID string `json:"consentId"`
	// Cycle is the cycle index (Schedule.Index of the payment's date); nil matches
	// every cycle.
	Cycle *int `json:"cycle,omitempty"`
	// Attempt is 0 for the original payment and n for its nth retry (local or run by
	// Klavi); nil matches every attempt.
	Attempt *int `json:"attempt,omitempty"`
	// Outcome of the matched payments.
	Outcome Outcome `json:"outcome"`
	// Reason is the statusReason code of a rejection (default NOT_INFORMED).
	Reason klavi.ReasonCode `json:"reason,omitempty"`
}

// A Scenario decides deterministically how each payment ends: the first Rule that
// matches wins; then, with RejectFraction, a payment whose hash of (Seed, consent,
// cycle, attempt) falls below the fraction is rejected with RejectReason; anything
// else ends as Default (completed). The zero Scenario, and a nil *Scenario,
// complete every payment.
type Scenario struct {
	Rules          []Rule           `json:"rules,omitempty"`
	Default        Outcome          `json:"default,omitempty"`
	DefaultReason  klavi.ReasonCode `json:"defaultReason,omitempty"`
	RejectFraction float64          `json:"rejectFraction,omitempty"`
	RejectReason   klavi.ReasonCode `json:"rejectReason,omitempty"`
	Seed           uint64           `json:"seed,omitempty"`
}

// ParseScenario reads a scenario from JSON and validates it; the error lists every
// problem with its path.
func ParseScenario(data []byte) (*Scenario, error) {
	var s Scenario
	if l := problem.DecodeJSON(data, &s); len(l) > 0 {
		return nil, l
	}
	if l := s.Validate(); len(l) > 0 {
		return nil, l
	}
	return &s, nil
}

// LoadScenario reads a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	s, err := ParseScenario(data)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	return s, nil
}

// Validate lists every problem of s.
func (s *Scenario) Validate() problem.List {
	var l problem.List
	for i, r := range s.Rules {
		p := problem.Index("rules", i)
		if r.ConsentID == "" {
			l.Addf(problem.Join(p, "consentId"), `is required: a consent id or "*"`)
		} else if r.ConsentID != "*" && !ValidID(r.ConsentID) {
			l.Addf(problem.Join(p, "consentId"), `is not a consent id (1..256 printable characters, no '/' or space) or "*"`)
		}
		if r.Cycle != nil && *r.Cycle < 0 {
			l.Addf(problem.Join(p, "cycle"), "must not be negative")
		}
		if r.Attempt != nil && (*r.Attempt < 0 || *r.Attempt > 3) {
			l.Addf(problem.Join(p, "attempt"), "must be 0 (the original) to 3 (the third retry)")
		}
		if !r.Outcome.valid() {
			l.Addf(problem.Join(p, "outcome"), "must be completed, rejected or canceled")
		}
		checkReason(&l, problem.Join(p, "reason"), r.Reason)
	}
	if s.Default != "" && !s.Default.valid() {
		l.Addf("default", "must be completed, rejected or canceled")
	}
	checkReason(&l, "defaultReason", s.DefaultReason)
	if !(s.RejectFraction >= 0 && s.RejectFraction <= 1) {
		l.Addf("rejectFraction", "must be between 0 and 1")
	}
	checkReason(&l, "rejectReason", s.RejectReason)
	return l
}

func checkReason(l *problem.List, path string, r klavi.ReasonCode) {
	if r != "" && !r.Valid() {
		l.Addf(path, "%q is not a Klavi status reason code (one of %s)", r, klavi.ReasonCodeList())
	}
}

// Decide returns the outcome of attempt a (0: the original) of cycle k of consentID,
// and the rejection reason when it is not Completed.
func (s *Scenario) Decide(consentID string, k, a int) (Outcome, klavi.ReasonCode) {
	if s == nil {
		return Completed, ""
	}
	for _, r := range s.Rules {
		if (r.ConsentID == "*" || r.ConsentID == consentID) &&
			(r.Cycle == nil || *r.Cycle == k) && (r.Attempt == nil || *r.Attempt == a) {
			return r.Outcome, reasonOr(r.Outcome, r.Reason)
		}
	}
	if s.RejectFraction > 0 && unit(s.Seed, consentID, k, a) < s.RejectFraction {
		return Rejected, reasonOr(Rejected, s.RejectReason)
	}
	if s.Default == "" {
		return Completed, ""
	}
	return s.Default, reasonOr(s.Default, s.DefaultReason)
}

func reasonOr(o Outcome, r klavi.ReasonCode) klavi.ReasonCode {
	switch {
	case o == Completed:
		return ""
	case r != "":
		return r
	}
	return klavi.ReasonNotInformed
}

// unit hashes (seed, consent, cycle, attempt) to a number in [0, 1).
func unit(seed uint64, consentID string, k, a int) float64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seed)
	h.Write(b[:])
	h.Write([]byte(consentID))
	binary.LittleEndian.PutUint64(b[:], uint64(k)<<8|uint64(a&0xff))
	h.Write(b[:])
	return float64(mix(h.Sum64())>>11) / (1 << 53)
}

// mix is MurmurHash3's 64-bit finalizer: it spreads every input bit over the high
// bits that unit keeps.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
