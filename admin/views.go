package admin

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
)

// ActorHeader names who makes an operator request, for the consent's timeline
// (printable, at most MaxActorLen characters; default "operator").
const ActorHeader = "X-Billingd-Actor"

// MaxActorLen bounds an actor's name; MaxNoteLen a resolution note.
const (
	MaxActorLen = 64
	MaxNoteLen  = 500
)

// StateAmountMissing is the attention state of a variable cycle with no amount set
// whose submission is near (scheduler.MissingAmounts). It is worked out when read,
// not stored: it ends when the amount is set, or when the cycle is SKIPPED.
const StateAmountMissing = "AMOUNT_MISSING"

// actorOf returns the request's actor: the ActorHeader with anything not printable
// dropped, cut to MaxActorLen characters; "operator" when empty.
func actorOf(r *http.Request) string {
	var b strings.Builder
	n := 0
	for _, c := range strings.TrimSpace(r.Header.Get(ActorHeader)) {
		if c == utf8.RuneError || !unicode.IsPrint(c) {
			continue
		}
		if n == MaxActorLen {
			break
		}
		b.WriteRune(c)
		n++
	}
	if s := strings.TrimSpace(b.String()); s != "" {
		return s
	}
	return scheduler.ActorOperator
}

// next returns the instant of a consent's due entry (in Brasília) and its cycle's due
// date, or nils when none is scheduled.
func (s *Server) next(r *storage.ConsentRecord) (*time.Time, *cycle.Date) {
	if r.NextDue.IsZero() {
		return nil, nil
	}
	t := r.NextDue.In(cycle.Brasilia)
	d := s.sched.Policy().Schedule(r.Consent).Due(r.NextCycle)
	return &t, &d
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	limit, after, ok := pageParams(w, r.URL.Query(), 10000, "the next cursor of an earlier page")
	if !ok {
		return
	}
	id := r.PathValue("id")
	if _, err := s.store.GetConsent(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	list, more, err := s.store.Events(r.Context(), id, after, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]Event, len(list))
	for i, e := range list {
		out[i] = eventOf(e)
	}
	next := ""
	if more && len(list) > 0 {
		next = strconv.FormatUint(list[len(list)-1].Seq, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out, "next": next})
}

// AttentionItem is an open attention item in GET /v1/attention.
type AttentionItem struct {
	ConsentID string `json:"consentId"`
	Cycle     int    `json:"cycle"`
	Attempt   int    `json:"attempt"`
	// State is an attempt state of storage.AttentionStates, or AMOUNT_MISSING.
	State string     `json:"state"`
	Date  cycle.Date `json:"date"`
	// Amount in centavos ("12.34"); null when none is known.
	Amount          *klavi.Cents `json:"amount"`
	Reason          string       `json:"reason"`
	ClientRequestID string       `json:"clientRequestId"`
	PaymentID       string       `json:"paymentId,omitempty"`
	// Since is when the item opened (Brasília); AgeSeconds how long ago, at the read.
	Since      time.Time   `json:"since"`
	AgeSeconds int64       `json:"ageSeconds"`
	Resolved   *Resolution `json:"resolved,omitempty"`
	// Endpoint and EventID name a WEBHOOK_DEAD item's endpoint and first event.
	Endpoint string `json:"endpoint,omitempty"`
	EventID  string `json:"eventId,omitempty"`
}

func itemOf(a *storage.Attempt, since, now time.Time) AttentionItem {
	it := AttentionItem{ConsentID: a.ConsentID, Cycle: a.Cycle, Attempt: a.Attempt, State: string(a.State), Date: a.Date,
		Reason: a.Reason, ClientRequestID: a.ClientRequestID, PaymentID: a.PaymentID,
		Since: since.In(cycle.Brasilia), AgeSeconds: int64(max(now.Sub(since), 0) / time.Second)}
	if a.Amount > 0 {
		amt := a.Amount
		it.Amount = &amt
	}
	it.Resolved = resolutionOf(a.Resolved, cycle.Brasilia)
	return it
}

func missingItem(m scheduler.MissingAmount, now time.Time) AttentionItem {
	return AttentionItem{ConsentID: m.ConsentID, Cycle: m.Cycle, State: StateAmountMissing, Date: m.DueDate,
		Reason: fmt.Sprintf("variable consent: no amount is set for cycle %d (due %s), submitted %s; it will be skipped unless one is set",
			m.Cycle, m.DueDate, m.SubmitAt.Format("2006-01-02 15:04 MST")),
		ClientRequestID: m.ClientRequestID, Since: m.Since, AgeSeconds: int64(max(now.Sub(m.Since), 0) / time.Second)}
}

const amountCursor = "amount:"

// attentionList serves GET /v1/attention?state=&limit=&after=: the open items
// (stored ones in state then key order, then AMOUNT_MISSING ones), the counts of
// every state, and the cursor of the next page.
func (s *Server) attentionList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %v", err), nil)
		return
	}
	state := strings.ToUpper(q.Get("state"))
	if state != "" && state != StateAmountMissing && state != StateWebhookDead && !isAttention(storage.AttemptState(state)) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("state %q: want one of %v, %s or %s", q.Get("state"), storage.AttentionStates, StateAmountMissing, StateWebhookDead), nil)
		return
	}
	now := s.clock.Now()
	after := q.Get("after")
	items, next := []AttentionItem{}, ""
	missingFrom := -1 // the offset in the AMOUNT_MISSING list to read from; -1: none
	deadFrom := ""    // WEBHOOK_DEAD items come last; their page's cursor ("-": none)
	switch {
	case strings.HasPrefix(after, webhookCursor) || state == StateWebhookDead:
		deadFrom = strings.TrimPrefix(after, webhookCursor)
		if deadFrom == "" {
			deadFrom = "-"
		}
	case strings.HasPrefix(after, amountCursor):
		n, err := strconv.Atoi(strings.TrimPrefix(after, amountCursor))
		if err != nil || n < 0 || state != "" && state != StateAmountMissing {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after %q: want the next cursor of an earlier page", after), nil)
			return
		}
		missingFrom = n
	case state == StateAmountMissing:
		missingFrom = 0
	default:
		list, nx, err := s.store.AttentionItems(r.Context(), storage.AttemptState(state), after, limit)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, it := range list {
			items = append(items, itemOf(it.Attempt, it.Since, now))
		}
		next = nx
		if nx == "" && state == "" {
			missingFrom = 0
		}
	}
	missing, err := s.sched.MissingAmounts()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if missingFrom >= 0 && len(items) < limit {
		rest := missing[min(missingFrom, len(missing)):]
		take := min(limit-len(items), len(rest))
		for _, m := range rest[:take] {
			items = append(items, missingItem(m, now))
		}
		if take < len(rest) {
			next = amountCursor + strconv.Itoa(missingFrom+take)
		}
	} else if missingFrom >= 0 && len(missing) > missingFrom {
		next = amountCursor + strconv.Itoa(missingFrom)
	}
	if deadFrom == "" && next == "" && state == "" {
		deadFrom = "-" // the stored items and AMOUNT_MISSING are all listed: then the dead letters
	}
	if deadFrom != "" {
		from := strings.TrimPrefix(deadFrom, "-")
		if len(items) < limit {
			dead, nx, err := s.deadLetters(r.Context(), from, limit-len(items), now)
			if err != nil {
				s.failWebhook(w, r, err)
				return
			}
			items, next = append(items, dead...), nx
		} else if d, _, err := s.deadLetters(r.Context(), from, 1, now); err == nil && len(d) > 0 {
			next = webhookCursor + from
		}
	}
	counts, err := s.store.AttentionCounts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	dead, err := s.deadCount(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := map[string]int{StateAmountMissing: len(missing)}
	if s.webhooks != nil {
		out[StateWebhookDead] = dead
	}
	for st, n := range counts {
		out[string(st)] = n
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "counts": out, "next": next})
}

func isAttention(st storage.AttemptState) bool { return slices.Contains(storage.AttentionStates, st) }

// resolveRequest is the body of POST /v1/attention/resolve.
type resolveRequest struct {
	// Webhook names the endpoint of a WEBHOOK_DEAD item (cycle and attempt unused).
	Webhook   string `json:"webhook,omitempty"`
	ConsentID string `json:"consentId"`
	Cycle     *int   `json:"cycle"`
	Attempt   int    `json:"attempt"`
	Note      string `json:"note"`
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req resolveRequest
	if l := problem.DecodeJSON(body, &req); len(l) > 0 {
		writeError(w, http.StatusBadRequest, errors.New("invalid resolve request"), l)
		return
	}
	req.Note = strings.TrimSpace(req.Note)
	if req.Webhook != "" {
		s.resolveDead(w, r, req)
		return
	}
	switch {
	case req.ConsentID == "" || req.Cycle == nil:
		writeError(w, http.StatusBadRequest, errors.New(`consentId and cycle are required, e.g. {"consentId": "...", "cycle": 3, "attempt": 0, "note": "..."}`), nil)
		return
	case *req.Cycle < 0 || req.Attempt < 0:
		writeError(w, http.StatusBadRequest, errors.New("cycle and attempt are numbers from 0"), nil)
		return
	case req.Note == "":
		writeError(w, http.StatusBadRequest, errors.New("note is required: say what was done"), nil)
		return
	case utf8.RuneCountInString(req.Note) > MaxNoteLen:
		writeError(w, http.StatusBadRequest, fmt.Errorf("note is longer than %d characters", MaxNoteLen), nil)
		return
	}
	a, err := s.sched.Resolve(storage.AttemptKey{ConsentID: req.ConsentID, Cycle: *req.Cycle, Attempt: req.Attempt}, req.Note, actorOf(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	since := a.UpdatedAt
	if a.Resolved != nil && !a.Resolved.Since.IsZero() {
		since = a.Resolved.Since
	}
	writeJSON(w, http.StatusOK, itemOf(a, since, s.clock.Now()))
}

// upcoming serves GET /v1/upcoming?from=&to= (Brasília dates; default today to
// today+7; at most scheduler.MaxUpcomingDays days).
func (s *Server) upcoming(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := dateParam(q.Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from: %v", err), nil)
		return
	}
	to, err := dateParam(q.Get("to"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("to: %v", err), nil)
		return
	}
	if from.IsZero() {
		from = cycle.DateOf(s.clock.Now())
	}
	if to.IsZero() {
		to = from.AddDays(7)
	}
	up, err := s.sched.Upcoming(from, to)
	if errors.Is(err, scheduler.ErrRange) {
		writeError(w, http.StatusBadRequest, err, nil)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, up)
}

// report serves GET /v1/report?month=YYYY-MM (default: the current Brasília month).
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	month := r.URL.Query().Get("month")
	if month == "" {
		month = cycle.DateOf(s.clock.Now()).String()[:7]
	}
	l, err := s.sched.Report(month)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

// CSVHeader is the header row of GET /v1/payments?format=csv. Amounts are
// "1234.56", times RFC 3339 with the Brasília offset; no personal data.
var CSVHeader = []string{"consentId", "cycle", "attempt", "state", "date", "amount", "mode", "paymentId", "clientRequestId",
	"status", "reason", "createdAt", "submittedAt", "updatedAt", "resolvedAt"}

// NextCursorHeader carries the next page's cursor of a CSV page ("" or absent: none).
const NextCursorHeader = "X-Next-Cursor"

// payments serves GET /v1/payments?from=&to=&state=&consent=&limit=&cursor=&format=:
// attempts whose date (the payment's date at Klavi) is in [from, to] (Brasília dates;
// default the current month; at most 366 days), optionally of one state and one
// consent, in date then key order, paged.
func (s *Server) payments(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %v", err), nil)
		return
	}
	format := q.Get("format")
	if format == "" {
		format = "json"
	}
	if format != "json" && format != "csv" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("format %q: want json or csv", format), nil)
		return
	}
	from, err := dateParam(q.Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from: %v", err), nil)
		return
	}
	to, err := dateParam(q.Get("to"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("to: %v", err), nil)
		return
	}
	today := cycle.DateOf(s.clock.Now())
	if from.IsZero() {
		from = today.AddDays(1 - today.Day())
	}
	if to.IsZero() {
		to = from.AddMonthsClamped(1).AddDays(-1)
	}
	if to.Before(from) || to.DaysSince(from) > 366 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from %s to %s: want from ≤ to, at most 366 days apart", from, to), nil)
		return
	}
	state := storage.AttemptState(strings.ToUpper(q.Get("state")))
	if state != "" && !validAttemptState(state) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("state %q: want one of %v", q.Get("state"), storage.AttemptStates), nil)
		return
	}
	var keep func(*storage.Attempt) bool
	if state != "" {
		keep = func(a *storage.Attempt) bool { return a.State == state }
	}
	list, next, err := s.store.AttemptsBetween(r.Context(), from, to, q.Get("consent"), q.Get("cursor"), limit, keep)
	if errors.Is(err, storage.ErrBadCursor) {
		writeError(w, http.StatusBadRequest, err, nil)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if format == "json" {
		writeJSON(w, http.StatusOK, map[string]any{"payments": attemptsOf(list), "next": next})
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set(NextCursorHeader, next)
	cw := csv.NewWriter(w)
	_ = cw.Write(CSVHeader)
	for _, a := range list {
		_ = cw.Write(CSVRow(a))
	}
	cw.Flush()
}

// CSVRow is an attempt as a row under CSVHeader.
func CSVRow(a *storage.Attempt) []string {
	t := func(x time.Time) string {
		if x.IsZero() {
			return ""
		}
		return x.In(cycle.Brasilia).Format(time.RFC3339)
	}
	resolved := ""
	if a.Resolved != nil {
		resolved = t(a.Resolved.At)
	}
	return []string{a.ConsentID, strconv.Itoa(a.Cycle), strconv.Itoa(a.Attempt), string(a.State), a.Date.String(), a.Amount.String(),
		string(a.Mode), a.PaymentID, a.ClientRequestID, string(a.Status), a.Reason, t(a.CreatedAt), t(a.SubmittedAt), t(a.UpdatedAt), resolved}
}

func validAttemptState(st storage.AttemptState) bool {
	return slices.Contains(storage.AttemptStates, st)
}
