package scheduler

import (
	"fmt"
	"strings"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
	"github.com/klavi-billing/billingd/storage"
)

// Plan states of a stored consent's preview, beyond planned, late and missed.
const (
	// StateDecided: billingd has already acted on the cycle; Stored says how it
	// stands (its attempts, their states and Klavi's payment ids).
	StateDecided State = "decided"
	// StateNotBilled: due before the consent's billFrom: never billingd's to bill.
	StateNotBilled State = "not_billed"
	// StateStopped: the consent is no longer billed (revoked, rejected, expired);
	// Reason says why.
	StateStopped State = "stopped"
	// StateAwaiting: the payer has not authorized the consent yet.
	StateAwaiting State = "awaiting_authorization"
)

// A StoredAttempt is one attempt of a decided cycle, as the store holds it.
type StoredAttempt struct {
	Attempt         int                  `json:"attempt"`
	State           storage.AttemptState `json:"state"`
	Date            cycle.Date           `json:"date"`
	Amount          klavi.Cents          `json:"amount"`
	ClientRequestID string               `json:"clientRequestId"`
	PaymentID       string               `json:"paymentId,omitempty"`
	Status          klavi.PaymentStatus  `json:"status,omitempty"`
	Reason          string               `json:"reason,omitempty"`
}

// PreviewStored is Preview for a stored consent: what the daemon will do, merged with
// what it already did. A cycle with stored attempts shows them (StateDecided, the
// original's state in Stored[0]); a cycle due before billFrom is StateNotBilled; the
// undecided cycles of a stopped consent are StateStopped with the reason, those of a
// consent awaiting authorization StateAwaiting; the rest is the plan, seen from
// from. amounts gives the amounts set for variable cycles.
func (p Policy) PreviewStored(rec *storage.ConsentRecord, atts []*storage.Attempt, from cycle.Date, n int, amounts map[int]klavi.Cents) Preview {
	pv := p.Preview(rec.Consent, from, n, func(k int) *klavi.Cents {
		if a, ok := amounts[k]; ok {
			return &a
		}
		return nil
	})
	byCycle := map[int][]*storage.Attempt{}
	for _, a := range atts {
		byCycle[a.Cycle] = append(byCycle[a.Cycle], a)
	}
	for i := range pv.Cycles {
		cp := &pv.Cycles[i]
		if stored := byCycle[cp.Index]; len(stored) > 0 {
			cp.State, cp.Stored = StateDecided, nil
			for _, a := range stored {
				cp.Stored = append(cp.Stored, StoredAttempt{Attempt: a.Attempt, State: a.State, Date: a.Date, Amount: a.Amount,
					ClientRequestID: a.ClientRequestID, PaymentID: a.PaymentID, Status: a.Status, Reason: a.Reason})
			}
			for _, a := range stored {
				if a.State == storage.AttemptCompleted { // settled: nothing more is retried
					cp.Retries, cp.Dropped = []retry.Retry{}, []retry.Dropped{}
				}
			}
			if a := stored[0]; a.Attempt == 0 {
				amt := a.Amount
				cp.Amount = &amt
				switch a.State {
				case storage.AttemptMissed, storage.AttemptSkipped, storage.AttemptFailed:
					// Nothing reached Klavi: there is nothing to retry.
					cp.Retries, cp.Dropped = []retry.Retry{}, []retry.Dropped{}
				}
			}
			continue
		}
		switch {
		case cp.Due.Before(rec.BillFrom):
			cp.State, cp.Reason = StateNotBilled, fmt.Sprintf("due before %s, the first date billingd bills", rec.BillFrom)
		case rec.State == storage.ConsentAwaiting:
			cp.State, cp.Reason = StateAwaiting, "the payer has not authorized the consent yet"
		case rec.State != storage.ConsentActive && !(rec.State == storage.ConsentExpired && cp.Index < rec.NextCycle):
			cp.State, cp.Reason = StateStopped, strings.TrimSpace(fmt.Sprintf("consent %s: %s", rec.State, rec.StateReason))
		case cp.Index < rec.NextCycle:
			// Passed over with no attempt (a stale cursor): say so rather than plan it.
			cp.State, cp.Reason = StateStopped, "passed over: billingd's cursor is past this cycle"
		}
	}
	return pv
}
