package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
)

// ConsentState is where a consent stands in billingd's billing.
type ConsentState string

// Consent states.
const (
	// Active: billed on its cycles.
	ConsentActive ConsentState = "active"
	// AwaitingAuthorization: created at Klavi, the payer has not authorized it yet.
	ConsentAwaiting ConsentState = "awaiting_authorization"
	// Revoked: by the operator, the payer or the merchant. Nothing more is billed.
	ConsentRevoked ConsentState = "revoked"
	// Rejected: the payer refused it. Nothing is billed.
	ConsentRejected ConsentState = "rejected"
	// Expired: its expiry has passed, or it has no cycle left. Nothing more is billed.
	ConsentExpired ConsentState = "expired"
)

// ConsentStates lists every state, for metrics and listings.
var ConsentStates = []ConsentState{ConsentActive, ConsentAwaiting, ConsentRevoked, ConsentRejected, ConsentExpired}

// A ConsentRecord is a stored consent and its billing cursor.
type ConsentRecord struct {
	Consent *consent.Consent `json:"consent"`
	State   ConsentState     `json:"state"`
	// StateReason says why a consent stopped being billed.
	StateReason string    `json:"stateReason,omitempty"`
	AddedAt     time.Time `json:"addedAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	// BillFrom is the first date billingd is responsible for: cycles due before it
	// were never billingd's to bill and are neither submitted nor reported missed.
	BillFrom cycle.Date `json:"billFrom"`
	// NextCycle is the index of the next cycle whose original attempt is to be
	// submitted; NextDue is the instant of its entry in the due index (zero: none).
	NextCycle int       `json:"nextCycle"`
	NextDue   time.Time `json:"nextDue,omitzero"`
	// RedirectURL is where the payer authorizes a consent created through billingd.
	RedirectURL string `json:"redirectUrl,omitempty"`
	// RefreshedAt is when Klavi's view of the consent (get consent) was last read;
	// zero: never.
	RefreshedAt time.Time `json:"refreshedAt,omitzero"`
	// Version is the stored record's version this one was read at (0: not stored
	// yet, or stored before records had versions). A write of the record succeeds
	// only while the store still holds that version (ErrConflict otherwise), and the
	// stored version becomes Version+1; Apply advances Version when it commits. It is
	// the precondition of every write: two writers that read the same version cannot
	// both write (an operator's change is never lost to the scheduler's, on any
	// replica).
	Version uint64 `json:"version,omitempty"`

	// partial: read through the consent's terms (terms.go); Consent holds only
	// consent.Consent.Terms. staleTerms: read whole because the terms were missing or
	// stale; its next cursor write writes them again.
	partial, staleTerms bool
}

// Partial reports whether the record was read through its consent's terms
// (GetConsentAttempt): its Consent then holds only consent.Consent.Terms, and only
// its cursor and its consent's status can be written.
func (r *ConsentRecord) Partial() bool { return r.partial }

// ID returns the consent id.
func (r *ConsentRecord) ID() string { return r.Consent.ID }

// AttemptState is where one payment attempt stands.
type AttemptState string

// Attempt states. SUBMITTING is written (and synced) before a request is sent, so a
// crash at any point leaves either no attempt (nothing was sent) or a SUBMITTING one
// that is re-sent with the same clientRequestId.
const (
	// Submitting: about to be, or being, sent; the outcome is not yet known.
	AttemptSubmitting AttemptState = "SUBMITTING"
	// Submitted: Klavi accepted it (payment id known); its status is polled.
	AttemptSubmitted AttemptState = "SUBMITTED"
	// Completed: settled.
	AttemptCompleted AttemptState = "COMPLETED"
	// Rejected: Klavi or the payer's bank rejected it (or it was canceled).
	AttemptRejected AttemptState = "REJECTED"
	// Unconfirmed: the outcome is unknown and Klavi cannot tell (its orders list was
	// unavailable when the window closed). Never re-sent; reconciled again (every
	// hour by default) until Klavi's list answers.
	AttemptUnconfirmed AttemptState = "UNCONFIRMED"
	// Stuck: a submitted payment whose status Klavi has not told for longer than the
	// configured time (GET answers 404 or an unknown status) and which its orders
	// list does not settle either. Still polled; an operator looks.
	AttemptStuck AttemptState = "STUCK"
	// Failed: Klavi refused the request (a 4xx): nothing was created.
	AttemptFailed AttemptState = "FAILED"
	// Missed: the submission window closed before billingd could submit.
	AttemptMissed AttemptState = "MISSED"
	// Skipped: not submitted on purpose (a variable cycle with no amount set).
	AttemptSkipped AttemptState = "SKIPPED"
	// Planned: a local retry waiting for its request day.
	AttemptPlanned AttemptState = "PLANNED"
	// Dropped: a planned local retry that could not be sent (its request day had
	// passed, or the cycle was already paid or stopped).
	AttemptDropped AttemptState = "DROPPED"
)

// AttemptStates lists every attempt state, for listings and the errors that name
// the valid ones.
var AttemptStates = []AttemptState{AttemptSubmitting, AttemptSubmitted, AttemptCompleted, AttemptRejected, AttemptUnconfirmed,
	AttemptStuck, AttemptFailed, AttemptMissed, AttemptSkipped, AttemptPlanned, AttemptDropped}

// Final reports whether the attempt will not change by itself anymore.
func (s AttemptState) Final() bool {
	switch s {
	case AttemptSubmitting, AttemptSubmitted, AttemptPlanned, AttemptStuck:
		return false
	}
	return true
}

// needsAttention lists the states kept in the attention index for operators.
func (s AttemptState) needsAttention() bool {
	switch s {
	case AttemptUnconfirmed, AttemptMissed, AttemptFailed, AttemptSkipped, AttemptStuck:
		return true
	}
	return false
}

// An AttemptKey names one attempt: attempt 0 of a cycle is its original payment,
// attempt n ≥ 1 the local retry for the n-th planned retry date.
type AttemptKey struct {
	ConsentID string `json:"consentId"`
	Cycle     int    `json:"cycle"`
	Attempt   int    `json:"attempt"`
}

func (k AttemptKey) String() string { return fmt.Sprintf("%s/%d/%d", k.ConsentID, k.Cycle, k.Attempt) }

// An Attempt is one payment request billingd makes (or decided not to make) for a
// cycle, and everything it learned about it.
type Attempt struct {
	AttemptKey
	State           AttemptState      `json:"state"`
	ClientRequestID string            `json:"clientRequestId"`
	Date            cycle.Date        `json:"date"`
	Amount          klavi.Cents       `json:"amount"`
	Mode            consent.RetryMode `json:"mode,omitempty"`
	Strategy        *retry.Strategy   `json:"strategy,omitempty"`
	// PaymentID is Klavi's id once known; OriginalPaymentID the payment a retry retries.
	PaymentID         string              `json:"paymentId,omitempty"`
	OriginalPaymentID string              `json:"originalPaymentId,omitempty"`
	Status            klavi.PaymentStatus `json:"status,omitempty"`
	Reason            string              `json:"reason,omitempty"`
	Sends             int                 `json:"sends,omitempty"`
	Polls             int                 `json:"polls,omitempty"`
	// DueAt is the instant of the attempt's entry in the due index (planned retries
	// and submissions waiting for a re-send); NextPoll of its poll index entry.
	DueAt       time.Time `json:"dueAt,omitzero"`
	NextPoll    time.Time `json:"nextPoll,omitzero"`
	CreatedAt   time.Time `json:"createdAt"`
	SubmittedAt time.Time `json:"submittedAt,omitzero"`
	UpdatedAt   time.Time `json:"updatedAt"`
	// LastRetryDate bounds polling of an attach-mode payment whose Klavi-run retries
	// may still change its outcome.
	LastRetryDate cycle.Date `json:"lastRetryDate,omitzero"`
	// PlannedRetries is how many retry dates that strategy gives Klavi to run.
	PlannedRetries int `json:"plannedRetries,omitempty"`
	// Lookups counts the reads of Klavi's orders list for this attempt's
	// clientRequestId (reconciliation). Confirm is set when the list did not have the
	// payment but an earlier send may still be in flight at Klavi: the next pass
	// looks again, without sending, before deciding. It names what the last send
	// got: ConfirmRefused (a refusal) or ConfirmLost (no answer; window closed).
	Lookups int    `json:"lookups,omitempty"`
	Confirm string `json:"confirm,omitempty"`
	// UnknownSince is when Klavi first answered a status poll with 404 or a status
	// billingd does not know, for a payment not yet final; zero once it answers.
	UnknownSince time.Time `json:"unknownSince,omitzero"`
	// Resolved is set when an operator closed the attention item this attempt was
	// (its State is kept). It resolves that state only: an attempt that later enters
	// another attention state is an open item again.
	Resolved *Resolution `json:"resolved,omitempty"`
	// Version is the stored attempt's version this one was read at, with the
	// meaning of ConsentRecord.Version.
	Version uint64 `json:"version,omitempty"`
}

// A Resolution closes an attention item: who closed it, when and why.
type Resolution struct {
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	Note string    `json:"note"`
	// State is the attention state it resolved; Since when that item had opened.
	State AttemptState `json:"state"`
	Since time.Time    `json:"since,omitzero"`
}

// Open reports whether the attempt is an open attention item: in an attention state
// (AttentionStates) that no operator has resolved.
func (a *Attempt) Open() bool {
	return a.State.needsAttention() && (a.Resolved == nil || a.Resolved.State != a.State)
}

// A CycleAmount is the amount set for cycle Cycle of a variable consent.
type CycleAmount struct {
	ConsentID string
	Cycle     int
	Amount    klavi.Cents
}

// An Event is one line of a consent's timeline: a state change or an operator's
// action, stored in the same transaction as the change it describes. It carries no
// personal data. Cycle and Attempt are nil for consent-wide events (added,
// authorized, revoked, consent_stopped); Amount is nil when none is known.
type Event struct {
	// Seq orders a consent's events (the store's sequence; the API's cursor). It is
	// set by the store.
	Seq  uint64    `json:"-"`
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	// ConsentID is the consent whose timeline holds the event.
	ConsentID       string              `json:"consentId"`
	Cycle           *int                `json:"cycle,omitempty"`
	Attempt         *int                `json:"attempt,omitempty"`
	Date            cycle.Date          `json:"date,omitzero"`
	Amount          *klavi.Cents        `json:"amount,omitempty"`
	PaymentID       string              `json:"paymentId,omitempty"`
	ClientRequestID string              `json:"clientRequestId,omitempty"`
	Status          klavi.PaymentStatus `json:"status,omitempty"`
	// Actor is "billingd" for the scheduler's own work, the operator's name for an
	// operator's action.
	Actor  string `json:"actor"`
	Reason string `json:"reason,omitempty"`
}

// ActorBillingd is the actor of the scheduler's own events.
const ActorBillingd = "billingd"

// AttemptEvent returns an event about attempt a (its key, date, amount and ids).
func AttemptEvent(kind string, at time.Time, a *Attempt, actor, reason string) Event {
	c, n := a.Cycle, a.Attempt
	e := Event{At: at, Kind: kind, ConsentID: a.ConsentID, Cycle: &c, Attempt: &n, Date: a.Date,
		PaymentID: a.PaymentID, ClientRequestID: a.ClientRequestID, Status: a.Status, Actor: actor, Reason: reason}
	if a.Amount > 0 {
		amt := a.Amount
		e.Amount = &amt
	}
	return e
}

// ConsentEvent returns a consent-wide event.
func ConsentEvent(kind string, at time.Time, consentID, actor, reason string) Event {
	return Event{At: at, Kind: kind, ConsentID: consentID, Actor: actor, Reason: reason}
}

// DueKind says what a due-index entry will do when its instant comes.
type DueKind byte

// Due kinds, stored as the first byte of a due entry's value.
const (
	DueUnknown  DueKind = 0 // an entry written before schema 2 and not yet migrated
	DueOriginal DueKind = 1 // submit a cycle's original payment
	DueRetry    DueKind = 2 // send a planned local retry
	DueResend   DueKind = 3 // send again a submission whose outcome is unknown (same key)
	DueLookup   DueKind = 4 // look an attempt up in Klavi's orders list; nothing is sent
)

// Charges reports whether the entry may send a payment request.
func (k DueKind) Charges() bool { return k == DueOriginal || k == DueRetry || k == DueResend }

// Causes of a second look (Attempt.Confirm).
const (
	ConfirmRefused = "refused"
	ConfirmLost    = "lost"
)

// An Entry of a time index: attempt Key is to be acted on at At.
type Entry struct {
	At  time.Time
	Key AttemptKey
}

// A DueEntry is an entry of the due index with what it will do: its kind, and the
// amount in centavos it will charge (HasAmount false: a variable cycle with no
// amount set yet, or a lookup).
type DueEntry struct {
	Entry
	Kind      DueKind
	Amount    klavi.Cents
	HasAmount bool
}

// A DueItem is an entry of the due index: attempt Key is to be acted on at At.
type DueItem = Entry

// A PollItem is an entry of the poll index: attempt Key's status is fetched at At.
type PollItem = Entry

// Key encodings. Consent ids never contain NUL (klavi.CheckID: printable, 1..256), so NUL separates an
// id from what follows and keeps one consent's keys together and in cycle order.

func attemptKeyBytes(k AttemptKey) []byte {
	return appendAttemptKey(make([]byte, 0, len(k.ConsentID)+7), k)
}

// appendAttemptKey appends k's key (attemptKeyBytes) to b.
func appendAttemptKey(b []byte, k AttemptKey) []byte {
	b = append(b, k.ConsentID...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(k.Cycle))
	return binary.BigEndian.AppendUint16(b, uint16(k.Attempt))
}

var errBadKey = errors.New("malformed key")

func parseAttemptKey(b []byte) (AttemptKey, error) {
	if len(b) < 7 || b[len(b)-7] != 0 {
		return AttemptKey{}, errBadKey
	}
	n := len(b)
	return AttemptKey{
		ConsentID: string(b[:n-7]),
		Cycle:     int(binary.BigEndian.Uint32(b[n-6 : n-2])),
		Attempt:   int(binary.BigEndian.Uint16(b[n-2:])),
	}, nil
}

func consentPrefix(id string) []byte { return append(append(make([]byte, 0, len(id)+9), id...), 0) }

// timeKey prefixes an attempt key with an instant (Unix nanoseconds, big-endian), so
// the due and poll indexes iterate in time order and a scan stops at "now".
func timeKey(t time.Time, k AttemptKey) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(k.ConsentID)+7), uint64(t.UnixNano()))
	return appendAttemptKey(b, k)
}

func parseTimeKey(b []byte) (time.Time, AttemptKey, error) {
	if len(b) < 8 {
		return time.Time{}, AttemptKey{}, errBadKey
	}
	k, err := parseAttemptKey(b[8:])
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8]))), k, err
}

func attentionKey(s AttemptState, k AttemptKey) []byte {
	b := append(append(make([]byte, 0, len(s)+1+len(k.ConsentID)+7), s...), 0)
	return appendAttemptKey(b, k)
}

func amountKey(id string, k int) []byte {
	return binary.BigEndian.AppendUint32(consentPrefix(id), uint32(k))
}
