package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
)

// Store is what the API reads.
type Store interface {
	GetConsent(ctx context.Context, id string) (*storage.ConsentRecord, error)
	ListConsents(ctx context.Context, after string, limit int, state storage.ConsentState) ([]*storage.ConsentRecord, error)
	Attempts(ctx context.Context, consentID string) ([]*storage.Attempt, error)
	Attention(ctx context.Context, s storage.AttemptState, limit int) ([]*storage.Attempt, error)
	Amounts(ctx context.Context, id string) (map[int]klavi.Cents, error)
	Events(ctx context.Context, consentID string, after uint64, limit int) ([]storage.Event, bool, error)
	AttentionItems(ctx context.Context, s storage.AttemptState, after string, limit int) ([]storage.AttentionItem, string, error)
	AttentionCounts(ctx context.Context) (map[storage.AttemptState]int, error)
	AttemptsBetween(ctx context.Context, from, to cycle.Date, consentID, after string, limit int, keep func(*storage.Attempt) bool) ([]*storage.Attempt, string, error)
}

var _ Store = (*storage.DB)(nil)

// Scheduler is what the API changes through: every write goes through the scheduler,
// which serializes it with the billing of the same consent.
type Scheduler interface {
	AddConsent(c *consent.Consent, billFrom cycle.Date, actor string) (*storage.ConsentRecord, error)
	AddCreatedConsent(c *consent.Consent, redirectURL, actor string) (*storage.ConsentRecord, error)
	TrustClock() error
	Authorize(id, actor string) (*storage.ConsentRecord, error)
	Revoke(id, reason, actor string) (*storage.ConsentRecord, error)
	SetAmount(id string, k int, a klavi.Cents, actor string) error
	Resolve(k storage.AttemptKey, note, actor string) (*storage.Attempt, error)
	Policy() scheduler.Policy
	Scan(ctx context.Context) (scheduler.ScanResult, error)
	Poll(ctx context.Context) (scheduler.PollResult, error)
	Refresh(ctx context.Context) (scheduler.RefreshResult, error)
	RefreshConsent(ctx context.Context, id string) (scheduler.RefreshResult, error)
	Reconcile(ctx context.Context, consentID string) (scheduler.ReconcileResult, error)
	CancelPayment(ctx context.Context, consentID, paymentID, actor string) (*storage.Attempt, error)
	MissingAmounts() ([]scheduler.MissingAmount, error)
	Upcoming(from, to cycle.Date) (*scheduler.Upcoming, error)
	Report(month string) (*scheduler.Ledger, error)
}

var _ Scheduler = (*scheduler.Scheduler)(nil)

// Klavi is what the API calls at Klavi.
type Klavi interface {
	CreateConsent(ctx context.Context, req *klavi.CreateConsentRequest) (*klavi.Consent, error)
}

// Server is the admin API.
type Server struct {
	token string
	store Store
	sched Scheduler
	klavi Klavi // nil: consent creation at Klavi is unavailable
	clock clock.Clock
	log   *slog.Logger

	// webhooks: nil when none are wired (the feed and replays answer 503)
	webhooks Webhooks
}

// An Option sets an optional dependency of the Server.
type Option func(*Server)

// WithKlavi sets the client that creates consents at Klavi (nil, the default:
// POST /v1/klavi/consents answers 503).
func WithKlavi(k Klavi) Option { return func(s *Server) { s.klavi = k } }

// WithClock sets the clock of "today" and of attention ages (nil: the real clock).
func WithClock(c clock.Clock) Option { return func(s *Server) { s.clock = clock.Or(c) } }

// WithLogger sets the logger of failed requests and backups (nil: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) {
		if l != nil {
			s.log = l
		}
	}
}

// New returns the admin API over store and sched, guarded by the bearer token (""
// turns the API off: Handler returns nil).
func New(token string, store Store, sched Scheduler, opts ...Option) *Server {
	s := &Server{token: token, store: store, sched: sched, clock: clock.Real{}, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	return s
}

const maxBody = 1 << 20

// Handler returns the API's handler, or nil when no token is configured (the API is
// off). Mount it at "/v1/".
func (s *Server) Handler() http.Handler {
	if s.token == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/consents", s.listConsents)
	mux.HandleFunc("POST /v1/consents", s.addConsent)
	mux.HandleFunc("POST /v1/klavi/consents", s.createAtKlavi)
	mux.HandleFunc("GET /v1/consents/{id}", s.getConsent)
	mux.HandleFunc("POST /v1/consents/{id}/authorize", s.authorize)
	mux.HandleFunc("POST /v1/consents/{id}/revoke", s.revoke)
	mux.HandleFunc("PUT /v1/consents/{id}/cycles/{k}/amount", s.setAmount)
	mux.HandleFunc("GET /v1/consents/{id}/attempts", s.attempts)
	mux.HandleFunc("GET /v1/consents/{id}/preview", s.preview)
	mux.HandleFunc("GET /v1/attempts", s.attention)
	mux.HandleFunc("GET /v1/consents/{id}/events", s.events)
	mux.HandleFunc("GET /v1/attention", s.attentionList)
	mux.HandleFunc("POST /v1/attention/resolve", s.resolve)
	mux.HandleFunc("GET /v1/upcoming", s.upcoming)
	mux.HandleFunc("GET /v1/report", s.report)
	mux.HandleFunc("GET /v1/payments", s.payments)
	mux.HandleFunc("GET /v1/backup", s.backup)
	s.webhookRoutes(mux)
	mux.HandleFunc("POST /v1/scheduler/scan", func(w http.ResponseWriter, r *http.Request) {
		res, err := s.sched.Scan(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/scheduler/poll", func(w http.ResponseWriter, r *http.Request) {
		res, err := s.sched.Poll(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/scheduler/refresh", func(w http.ResponseWriter, r *http.Request) {
		var (
			res scheduler.RefreshResult
			err error
		)
		if id := r.URL.Query().Get("consent"); id != "" {
			res, err = s.sched.RefreshConsent(r.Context(), id)
		} else {
			res, err = s.sched.Refresh(r.Context())
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/reconcile", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("consent")
		if id != "" {
			if _, err := s.store.GetConsent(r.Context(), id); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		res, err := s.sched.Reconcile(r.Context(), id)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("POST /v1/consents/{id}/payments/{paymentId}/cancel", func(w http.ResponseWriter, r *http.Request) {
		a, err := s.sched.CancelPayment(r.Context(), r.PathValue("id"), r.PathValue("paymentId"), actorOf(r))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, attemptOf(a))
	})
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no route %s %s", r.Method, r.URL.Path), nil)
	})
	return s.auth(mux)
}

func (s *Server) auth(next http.Handler) http.Handler {
	want := []byte("Bearer " + s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="billingd"`)
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"), nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiError is the JSON body of every error.
type apiError struct {
	Error    string            `json:"error"`
	Problems []problem.Problem `json:"problems,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers err. The operator reads Klavi's own words in it (klavi.Describe,
// masked); the log line of a failed request takes the error alone.
func writeError(w http.ResponseWriter, code int, err error, probs problem.List) {
	writeJSON(w, code, apiError{Error: klavi.Describe(err), Problems: probs})
}

// fail maps an error to its status: the caller's mistakes are 4xx, the rest 500.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var probs problem.List
	code := http.StatusInternalServerError
	switch {
	case errors.As(err, &probs):
		code = http.StatusBadRequest
	case errors.Is(err, storage.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, storage.ErrExists), errors.Is(err, scheduler.ErrConflict), errors.Is(err, storage.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, scheduler.ErrNotLeader), errors.Is(err, storage.ErrFenced):
		code = http.StatusServiceUnavailable
	case errors.Is(err, scheduler.ErrInvalid), errors.Is(err, scheduler.ErrNoCanceller):
		code = http.StatusBadRequest
	case errors.Is(err, klavi.ErrDuplicateRequest):
		// Klavi holds a request with the same clientRequestId: the operator's
		// request conflicts with an earlier one.
		code = http.StatusConflict
	case errors.Is(err, klavi.ErrInvalidRequest), errors.Is(err, klavi.ErrRefused):
		// Klavi refused what the operator asked (its content, or a rule of
		// Klavi's): nothing was created, and sending it again changes nothing.
		code = http.StatusUnprocessableEntity
	case errors.Is(err, klavi.ErrUnavailable), errors.Is(err, klavi.ErrOutcomeUnknown):
		code = http.StatusGatewayTimeout
	}
	if code >= 500 {
		s.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, code, err, probs)
}

// readBody reads a JSON body of at most 1 MiB.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: want application/json", ct), nil)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body is larger than %d bytes", maxBody), nil)
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Errorf("read body: %v", err), nil)
		return nil, false
	}
	return body, true
}

// ConsentSummary is a consent in a list: no personal data. NextSubmitAt is when
// its next cycle's request goes out (Brasília, RFC 3339 with offset) and NextDueDate
// that cycle's due date; both are absent when nothing is scheduled (awaiting
// authorization, stopped).
type ConsentSummary struct {
	ID           string               `json:"id"`
	State        storage.ConsentState `json:"state"`
	StateReason  string               `json:"stateReason,omitempty"`
	Interval     cycle.Interval       `json:"interval"`
	Amount       *klavi.Cents         `json:"amount"`
	NextCycle    int                  `json:"nextCycle"`
	NextSubmitAt *time.Time           `json:"nextSubmitAt,omitempty"`
	NextDueDate  *cycle.Date          `json:"nextDueDate,omitempty"`
}

func (s *Server) summarize(r *storage.ConsentRecord) ConsentSummary {
	sum := ConsentSummary{ID: r.ID(), State: r.State, StateReason: r.StateReason, Interval: r.Consent.Interval(), NextCycle: r.NextCycle}
	if a, ok := r.Consent.FixedAmount(); ok {
		sum.Amount = &a
	}
	sum.NextSubmitAt, sum.NextDueDate = s.next(r)
	return sum
}

func (s *Server) listConsents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %v", err), nil)
		return
	}
	state := storage.ConsentState(q.Get("state"))
	if state != "" && !validState(state) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("state %q: want one of %v", state, storage.ConsentStates), nil)
		return
	}
	recs, err := s.store.ListConsents(r.Context(), q.Get("after"), limit, state)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]ConsentSummary, len(recs))
	for i, rec := range recs {
		out[i] = s.summarize(rec)
	}
	writeJSON(w, http.StatusOK, map[string]any{"consents": out})
}

func validState(s storage.ConsentState) bool {
	for _, x := range storage.ConsentStates {
		if x == s {
			return true
		}
	}
	return false
}

func intParam(v string, def, lo, hi int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q: want a number from %d to %d", v, lo, hi)
	}
	return n, nil
}

// pageParams reads the query of a page of numbered items: limit (100 by default,
// from 1 to hi) and after (a number, 0 when absent; want says what it must be).
// On a bad one it answers 400 and returns ok false.
func pageParams(w http.ResponseWriter, q url.Values, hi int, want string) (limit int, after uint64, ok bool) {
	limit, err := intParam(q.Get("limit"), 100, 1, hi)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %v", err), nil)
		return 0, 0, false
	}
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after %q: want %s", v, want), nil)
			return 0, 0, false
		}
	}
	return limit, after, true
}

func dateParam(v string) (cycle.Date, error) {
	if v == "" {
		return cycle.Date{}, nil
	}
	return cycle.ParseDate(v)
}

func (s *Server) addConsent(w http.ResponseWriter, r *http.Request) {
	billFrom, err := dateParam(r.URL.Query().Get("billFrom"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("billFrom: %v", err), nil)
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	c, err := consent.Decode(body)
	if err != nil {
		var l problem.List
		errors.As(err, &l)
		writeError(w, http.StatusBadRequest, fmt.Errorf("invalid consent: %d problems", len(l)), l)
		return
	}
	rec, err := s.sched.AddConsent(c, billFrom, actorOf(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, s.detail(rec))
}

// createRequest is the body of POST /v1/klavi/consents: Klavi's create-consent body
// and billingd's billing settings.
type createRequest struct {
	klavi.CreateConsentRequest
	Billing consent.Billing `json:"billing"`
}

// createResponse answers it.
type createResponse struct {
	ID          string              `json:"id"`
	Status      klavi.ConsentStatus `json:"status"`
	RedirectURL string              `json:"consentRedirectUrl"`
}

func (s *Server) createAtKlavi(w http.ResponseWriter, r *http.Request) {
	if s.klavi == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("no Klavi client is configured"), nil)
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req createRequest
	if l := problem.DecodeJSON(body, &req); len(l) > 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("invalid consent request: %d problems", len(l)), l)
		return
	}
	// Check billingd's own rules before asking Klavi: the consent must be one billingd
	// can bill once the payer authorizes it.
	probe := &consent.Consent{CreatedConsent: klavi.CreatedConsent{ID: "urn:billingd:pending", Status: klavi.ConsentAwaitingAuthorization, CreateConsentRequest: req.CreateConsentRequest}, Billing: req.Billing}
	if l := probe.Validate(); len(l) > 0 {
		writeError(w, http.StatusBadRequest, fmt.Errorf("invalid consent request: %d problems", len(l)), l)
		return
	}
	// The consent is stored billed from today (once authorized): a today billingd
	// doubts would leave it unstored after Klavi created it. Check first.
	if err := s.sched.TrustClock(); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.klavi.CreateConsent(r.Context(), &req.CreateConsentRequest)
	if err != nil {
		s.fail(w, r, fmt.Errorf("create consent at Klavi: %w", err))
		return
	}
	c := &consent.Consent{CreatedConsent: klavi.CreatedConsent{ID: res.ID, Status: res.Status, CreateConsentRequest: req.CreateConsentRequest}, Billing: req.Billing}
	if c.Status == "" {
		c.Status = klavi.ConsentAwaitingAuthorization
	}
	if _, err := s.sched.AddCreatedConsent(c, res.ConsentRedirectURL, actorOf(r)); err != nil {
		s.fail(w, r, fmt.Errorf("store consent %s created at Klavi: %w", res.ID, err))
		return
	}
	writeJSON(w, http.StatusCreated, createResponse{ID: res.ID, Status: c.Status, RedirectURL: res.ConsentRedirectURL})
}

func (s *Server) getConsent(w http.ResponseWriter, r *http.Request) {
	rec, err := s.store.GetConsent(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.detail(rec))
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	rec, err := s.sched.Authorize(r.PathValue("id"), actorOf(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.summarize(rec))
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason"`
	}
	if body, ok := readBody(w, r); !ok {
		return
	} else if len(strings.TrimSpace(string(body))) > 0 {
		if l := problem.DecodeJSON(body, &req); len(l) > 0 {
			writeError(w, http.StatusBadRequest, errors.New("invalid revoke request"), l)
			return
		}
	}
	if len(req.Reason) > 200 {
		writeError(w, http.StatusBadRequest, errors.New("reason is longer than 200 characters"), nil)
		return
	}
	rec, err := s.sched.Revoke(r.PathValue("id"), req.Reason, actorOf(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.summarize(rec))
}

func (s *Server) setAmount(w http.ResponseWriter, r *http.Request) {
	k, err := intParam(r.PathValue("k"), 0, 0, 1<<20)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("cycle: %v", err), nil)
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Amount *klavi.Cents `json:"amount"`
	}
	if l := problem.DecodeJSON(body, &req); len(l) > 0 {
		writeError(w, http.StatusBadRequest, errors.New("invalid amount request"), l)
		return
	}
	if req.Amount == nil {
		writeError(w, http.StatusBadRequest, errors.New("amount is required, e.g. {\"amount\": \"123.45\"}"), nil)
		return
	}
	if err := s.sched.SetAmount(r.PathValue("id"), k, *req.Amount, actorOf(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"consentId": r.PathValue("id"), "cycle": k, "amount": *req.Amount})
}

func (s *Server) attempts(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.store.GetConsent(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	list, err := s.store.Attempts(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"attempts": attemptsOf(list)})
}

func (s *Server) preview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := intParam(q.Get("cycles"), 12, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("cycles: %v", err), nil)
		return
	}
	from, err := dateParam(q.Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("from: %v", err), nil)
		return
	}
	if from.IsZero() {
		from = cycle.DateOf(s.clock.Now())
	}
	rec, err := s.store.GetConsent(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	amounts, err := s.store.Amounts(r.Context(), rec.ID())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	atts, err := s.store.Attempts(r.Context(), rec.ID())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.sched.Policy().PreviewStored(rec, atts, from, n, amounts))
}

func (s *Server) attention(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 10000)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("limit: %v", err), nil)
		return
	}
	states := storage.AttentionStates
	if v := q.Get("state"); v != "" {
		st := storage.AttemptState(strings.ToUpper(v))
		if !isAttention(st) {
			writeError(w, http.StatusBadRequest, fmt.Errorf("state %q: want one of %v (the states needing an operator; GET /v1/payments takes any attempt state)", v, states), nil)
			return
		}
		states = []storage.AttemptState{st}
	}
	out := []*storage.Attempt{}
	for _, st := range states {
		list, err := s.store.Attention(r.Context(), st, limit-len(out))
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = append(out, list...)
		if len(out) >= limit {
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"attempts": attemptsOf(out)})
}

// backup copies the database to a local snapshot first and streams that: the read
// transaction lasts as long as a local disk write, not as long as the client takes,
// so a slow client never holds up a write that must grow the file.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	snap, ok := s.store.(storage.Snapshotter)
	if !ok {
		writeError(w, http.StatusNotImplemented, errors.New("backup: this store has no file to copy; back up etcd with its own tools (etcdctl snapshot save)"), nil)
		return
	}
	f, n, err := snap.Snapshot(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="billingd.db"`)
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	if sent, err := io.Copy(w, f); err != nil {
		// Headers are gone; the client sees a short body against Content-Length.
		s.log.Error("backup transfer failed", "bytes", sent, "of", n, "err", err)
		return
	}
	s.log.Info("backup served", "bytes", n)
}
