package admin

import (
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
	"github.com/klavi-billing/billingd/storage"
)

// The API answers with its own types, mapped from the store's records: a field the
// store adds is not shown until it is added here, and the JSON names are the API's
// contract (the store's records use the same names today).

// ConsentDetail is one consent as GET /v1/consents/{id} shows it: the stored
// consent, its billing state, the next submission instant and the due date of the
// cycle it submits; both are absent when nothing is scheduled (awaiting
// authorization, stopped). Version is the stored record's version (0: stored before
// records had versions).
type ConsentDetail struct {
	Consent      *consent.Consent     `json:"consent"`
	State        storage.ConsentState `json:"state"`
	StateReason  string               `json:"stateReason,omitempty"`
	AddedAt      time.Time            `json:"addedAt"`
	UpdatedAt    time.Time            `json:"updatedAt"`
	BillFrom     cycle.Date           `json:"billFrom"`
	NextCycle    int                  `json:"nextCycle"`
	RedirectURL  string               `json:"redirectUrl,omitempty"`
	RefreshedAt  time.Time            `json:"refreshedAt,omitzero"`
	Version      uint64               `json:"version,omitempty"`
	NextSubmitAt *time.Time           `json:"nextSubmitAt,omitempty"`
	NextDueDate  *cycle.Date          `json:"nextDueDate,omitempty"`
}

func (s *Server) detail(r *storage.ConsentRecord) ConsentDetail {
	d := ConsentDetail{Consent: r.Consent, State: r.State, StateReason: r.StateReason, AddedAt: r.AddedAt,
		UpdatedAt: r.UpdatedAt, BillFrom: r.BillFrom, NextCycle: r.NextCycle, RedirectURL: r.RedirectURL,
		RefreshedAt: r.RefreshedAt, Version: r.Version}
	d.NextSubmitAt, d.NextDueDate = s.next(r)
	return d
}

// Attempt is one payment attempt as the API shows it (GET /v1/consents/{id}/attempts,
// GET /v1/attempts, GET /v1/payments, a cancel's answer). Version is the stored
// attempt's version.
type Attempt struct {
	ConsentID         string               `json:"consentId"`
	Cycle             int                  `json:"cycle"`
	Attempt           int                  `json:"attempt"`
	State             storage.AttemptState `json:"state"`
	ClientRequestID   string               `json:"clientRequestId"`
	Date              cycle.Date           `json:"date"`
	Amount            klavi.Cents          `json:"amount"`
	Mode              consent.RetryMode    `json:"mode,omitempty"`
	Strategy          *retry.Strategy      `json:"strategy,omitempty"`
	PaymentID         string               `json:"paymentId,omitempty"`
	OriginalPaymentID string               `json:"originalPaymentId,omitempty"`
	Status            klavi.PaymentStatus  `json:"status,omitempty"`
	Reason            string               `json:"reason,omitempty"`
	Sends             int                  `json:"sends,omitempty"`
	Polls             int                  `json:"polls,omitempty"`
	DueAt             time.Time            `json:"dueAt,omitzero"`
	NextPoll          time.Time            `json:"nextPoll,omitzero"`
	CreatedAt         time.Time            `json:"createdAt"`
	SubmittedAt       time.Time            `json:"submittedAt,omitzero"`
	UpdatedAt         time.Time            `json:"updatedAt"`
	LastRetryDate     cycle.Date           `json:"lastRetryDate,omitzero"`
	PlannedRetries    int                  `json:"plannedRetries,omitempty"`
	Lookups           int                  `json:"lookups,omitempty"`
	Confirm           string               `json:"confirm,omitempty"`
	UnknownSince      time.Time            `json:"unknownSince,omitzero"`
	Resolved          *Resolution          `json:"resolved,omitempty"`
	Version           uint64               `json:"version,omitempty"`
}

func attemptOf(a *storage.Attempt) *Attempt {
	return &Attempt{ConsentID: a.ConsentID, Cycle: a.Cycle, Attempt: a.Attempt, State: a.State,
		ClientRequestID: a.ClientRequestID, Date: a.Date, Amount: a.Amount, Mode: a.Mode, Strategy: a.Strategy,
		PaymentID: a.PaymentID, OriginalPaymentID: a.OriginalPaymentID, Status: a.Status, Reason: a.Reason,
		Sends: a.Sends, Polls: a.Polls, DueAt: a.DueAt, NextPoll: a.NextPoll, CreatedAt: a.CreatedAt,
		SubmittedAt: a.SubmittedAt, UpdatedAt: a.UpdatedAt, LastRetryDate: a.LastRetryDate,
		PlannedRetries: a.PlannedRetries, Lookups: a.Lookups, Confirm: a.Confirm, UnknownSince: a.UnknownSince,
		Resolved: resolutionOf(a.Resolved, nil), Version: a.Version}
}

// attemptsOf maps a list of attempts; never nil, so an empty list is [].
func attemptsOf(list []*storage.Attempt) []*Attempt {
	out := make([]*Attempt, len(list))
	for i, a := range list {
		out[i] = attemptOf(a)
	}
	return out
}

// Resolution is how an operator closed an attention item.
type Resolution struct {
	At    time.Time            `json:"at"`
	By    string               `json:"by"`
	Note  string               `json:"note"`
	State storage.AttemptState `json:"state"`
	Since time.Time            `json:"since,omitzero"`
}

// resolutionOf maps r (nil: nil); loc, when not nil, is the zone At is shown in.
func resolutionOf(r *storage.Resolution, loc *time.Location) *Resolution {
	if r == nil {
		return nil
	}
	v := &Resolution{At: r.At, By: r.By, Note: r.Note, State: r.State, Since: r.Since}
	if loc != nil {
		v.At = v.At.In(loc)
	}
	return v
}

// Event is a timeline event as the API shows it: its instant in Brasília.
type Event struct {
	At              time.Time           `json:"at"`
	Kind            string              `json:"kind"`
	ConsentID       string              `json:"consentId"`
	Cycle           *int                `json:"cycle,omitempty"`
	Attempt         *int                `json:"attempt,omitempty"`
	Date            cycle.Date          `json:"date,omitzero"`
	Amount          *klavi.Cents        `json:"amount,omitempty"`
	PaymentID       string              `json:"paymentId,omitempty"`
	ClientRequestID string              `json:"clientRequestId,omitempty"`
	Status          klavi.PaymentStatus `json:"status,omitempty"`
	Actor           string              `json:"actor"`
	Reason          string              `json:"reason,omitempty"`
}

func eventOf(e storage.Event) Event {
	return Event{At: e.At.In(cycle.Brasilia), Kind: e.Kind, ConsentID: e.ConsentID, Cycle: e.Cycle, Attempt: e.Attempt,
		Date: e.Date, Amount: e.Amount, PaymentID: e.PaymentID, ClientRequestID: e.ClientRequestID, Status: e.Status,
		Actor: e.Actor, Reason: e.Reason}
}
