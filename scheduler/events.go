package scheduler

import (
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

// EventKind names something the scheduler did or learned.
type EventKind string

// Event kinds. The first seven are the timeline of `billingd simulate`.
const (
	EventSubmitted      EventKind = "submitted"       // a cycle's payment was accepted by Klavi
	EventRetrySubmitted EventKind = "retry_submitted" // a local retry was accepted by Klavi
	EventCompleted      EventKind = "completed"       // a payment settled
	EventRejected       EventKind = "rejected"        // a payment was rejected (final)
	EventMissed         EventKind = "missed"          // the window closed before submission
	EventSkipped        EventKind = "skipped"         // not submitted on purpose (no variable amount)
	EventUnconfirmed    EventKind = "unconfirmed"     // the outcome is unknown and Klavi cannot tell yet
	EventFailed         EventKind = "failed"          // Klavi refused the request; nothing was created
	EventResend         EventKind = "resend_pending"  // outcome unknown for now; it will be re-sent, same key
	EventRetryPlanned   EventKind = "retry_planned"   // a local retry is scheduled
	EventRetryDropped   EventKind = "retry_dropped"   // a planned local retry cannot be sent
	EventConsentStopped EventKind = "consent_stopped" // revoked or expired: billing stopped
	// EventLookup: Klavi's orders list was read for an attempt's clientRequestId
	// (reconciliation). Reason is "<lookup>:<resolution>": lookup found, not_found or
	// unavailable; resolution adopted, refused, resent, confirm, lapsed or unresolved.
	EventLookup   EventKind = "lookup"
	EventStuck    EventKind = "stuck"    // a payment's status is unknown past Config.StuckAfter
	EventCanceled EventKind = "canceled" // a scheduled payment was canceled at Klavi
	// EventMismatch: Klavi's payment is not the one billingd asked for (Reason: its
	// amount or date, both values); the attempt is followed as Klavi tells it.
	EventMismatch EventKind = "payment_mismatch"
	// EventClockDoubt: the clock disagrees with Klavi's or stepped back; decisions
	// pause (Reason says why). EventClockTrusted: they agree again.
	EventClockDoubt   EventKind = "clock_doubt"
	EventClockTrusted EventKind = "clock_trusted"

	// Operator actions (and Klavi's answers about a consent), stored in the consent's
	// timeline with their actor and reason.
	EventAdded      EventKind = "added"      // the consent was stored
	EventAuthorized EventKind = "authorized" // the payer authorized it: billing starts
	EventRevoked    EventKind = "revoked"    // the operator stopped billing it
	EventAmountSet  EventKind = "amount_set" // the amount of a variable cycle was set
	EventResolved   EventKind = "resolved"   // an operator closed an attention item
)

// An Event is one thing the scheduler did or learned, for metrics, logs and the
// simulation's timeline. It carries no personal data.
type Event struct {
	Kind            EventKind
	At              time.Time
	ConsentID       string
	Interval        cycle.Interval
	Mode            consent.RetryMode
	Cycle           int
	Attempt         int
	Date            cycle.Date
	Amount          klavi.Cents
	ClientRequestID string
	PaymentID       string
	Status          klavi.PaymentStatus
	Reason          string
	// Retries is, for a submitted attach-mode payment, how many retry dates its
	// strategy gives Klavi to run.
	Retries int
}
