package sandbox

import (
	"bytes"
	"container/heap"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
)

// API paths (klavi-api.md), as the client sends them.
const (
	pathAuth     = "/payment/customer/v1/auth"
	pathInstant  = "/payment/customer/v1/instant/payments"
	pathConsents = "/payment/customer/v1/automatic/consents"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// Options configure a Server. The zero Options are usable: real clock, any non-empty
// keys accepted, tokens valid for an hour, every payment completed, no faults.
type Options struct {
	// Clock is the sandbox's notion of now (nil: the real clock). Today, the payment
	// window, token expiry and settlement all follow it.
	Clock clock.Clock
	// AccessKey and SecretKey are the keys the auth endpoint accepts; when both are
	// empty it accepts any non-empty pair.
	AccessKey, SecretKey string
	// TokenTTL is the lifetime of an access token (default 1h).
	TokenTTL time.Duration
	// Scenario decides how payments end (nil: all complete).
	Scenario *Scenario
	// Faults to inject on API endpoints.
	Faults Faults
	// Logger (nil: slog.Default()). Nothing personal is logged.
	Logger *slog.Logger
	// SettleHour is the Brasília hour (1..23) at which payments settle on their date;
	// 0 means the default, 6.
	SettleHour int
	// RulesBeforeIdempotency makes a create check the business rules before the
	// clientRequestId, so a re-send of a committed payment can meet a 416 (say, once
	// its window has closed) instead of the 409. Klavi does not document its order;
	// this lets callers test that they survive either.
	RulesBeforeIdempotency bool
}

// A Server is an in-process fake Klavi. It is an http.Handler, safe for concurrent
// use; its state lives in memory and moves only with its clock (see the package
// documentation).
type Server struct {
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	mux    *http.ServeMux
	faults *injector
	done   chan struct{}
	once   sync.Once

	mu          sync.Mutex
	consents    map[string]*consentState
	payments    map[string]*payment
	ledger      []*payment
	queue       settleQueue
	crids       map[string]string // clientRequestId → id of what it created
	tokens      map[string]time.Time
	seq         int
	consentSeq  int
	script      []string
	requests    int
	tokensGiven int
	accepted    map[Kind]int
	refusals    map[string]int
	faultCounts map[string]int
}

// New returns a sandbox with opts.
func New(opts Options) *Server {
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.SettleHour <= 0 || opts.SettleHour > 23 {
		opts.SettleHour = 6
	}
	s := &Server{
		opts:        opts,
		clock:       clock.Or(opts.Clock),
		log:         opts.Logger,
		faults:      newInjector(opts.Faults),
		done:        make(chan struct{}),
		consents:    map[string]*consentState{},
		payments:    map[string]*payment{},
		crids:       map[string]string{},
		tokens:      map[string]time.Time{},
		accepted:    map[Kind]int{},
		refusals:    map[string]int{},
		faultCounts: map[string]int{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	m := http.NewServeMux()
	m.Handle("POST "+pathAuth, s.api(false, s.handleAuth))
	m.Handle("POST "+pathInstant, s.api(true, s.handleInstant))
	m.Handle("POST "+pathConsents, s.api(true, s.handleCreateConsent))
	m.Handle("POST "+pathConsents+"/{consentId}/payments", s.api(true, s.handleCreatePayment))
	m.Handle("GET "+pathConsents+"/{consentId}/payments/{paymentId}", s.api(true, s.handleGetPayment))
	m.Handle("GET "+pathConsents+"/{consentId}/payments/{paymentId}/status", s.api(true, s.handleGetStatus))
	m.Handle("POST "+pathConsents+"/{consentId}/payments/{paymentId}/retry", s.api(true, s.handleRetry))
	m.HandleFunc("GET /_sandbox/ledger", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Ledger()) })
	m.HandleFunc("GET /_sandbox/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Stats()) })
	m.HandleFunc("POST /_sandbox/consents", s.handleSeed)
	m.HandleFunc("GET /_sandbox/consents/{consentId}", s.handleConsentStatus)
	m.HandleFunc("/_sandbox/authorize/{id}", s.handleAuthorize)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeReply(w, errReply(&refusal{status: 404, rule: RuleNotFound, msg: "no such endpoint"}))
	})
	s.mux = m
	return s
}

// ServeHTTP serves Klavi's API and the sandbox's own /_sandbox/ endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close releases the requests a timeout fault holds. The Server still answers
// afterwards, without hanging.
func (s *Server) Close() { s.once.Do(func() { close(s.done) }) }

// ScriptFaults makes the next API requests other than auth meet the given fault
// kinds, in order ("" for none), before the random Faults apply again. Tests use it
// to drop exactly one answer.
func (s *Server) ScriptFaults(kinds ...string) {
	s.mu.Lock()
	s.script = append(s.script, kinds...)
	s.mu.Unlock()
}

// AddConsent seeds a consent as if it had been created and authorized at Klavi; its
// status is c.Status (CONSENT_AUTHORIZED when empty). c is validated; it is copied,
// so the caller may reuse it.
func (s *Server) AddConsent(c *consent.Consent) error {
	if c == nil {
		return errors.New("add consent: nil consent")
	}
	if l := c.Validate(); len(l) > 0 {
		return fmt.Errorf("add consent %s: %w", c.ID, l)
	}
	cc := *c
	st := cc.Status
	if st == "" {
		st = klavi.ConsentAuthorized
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.consents[cc.ID]; ok {
		return fmt.Errorf("add consent %s: already known", cc.ID)
	}
	s.addConsent(&cc, st, s.clock.Now())
	return nil
}

func (s *Server) addConsent(c *consent.Consent, st klavi.ConsentStatus, now time.Time) *consentState {
	cs := &consentState{c: c, status: st, created: now, sched: c.Schedule(cycle.AdjustNone, nil), byCycle: map[int][]*payment{}}
	if c.ExpirationDateTime != nil {
		cs.expires = c.ExpirationDateTime.Time
	}
	s.consents[c.ID] = cs
	if _, used := s.crids[c.ClientRequestID]; !used && c.ClientRequestID != "" {
		s.crids[c.ClientRequestID] = c.ID
	}
	return cs
}

// SetConsentStatus changes a consent's status, e.g. to CONSENT_REVOKED with
// reason REVOKED_USER; payments that settle afterwards under a revoked consent are
// rejected with that reason.
func (s *Server) SetConsentStatus(id string, st klavi.ConsentStatus, reason klavi.ReasonCode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.consents[id]
	if cs == nil {
		return fmt.Errorf("set consent status: no consent %s", id)
	}
	s.advance(s.clock.Now())
	cs.status, cs.reason = st, nil
	if reason != "" {
		cs.reason = &klavi.StatusReason{Code: reason}
	}
	return nil
}

// Ledger returns every payment the sandbox accepted, in creation order, with its
// status at the clock's now.
func (s *Server) Ledger() []LedgerEntry {
	now := s.lockNow()
	defer s.mu.Unlock()
	out := make([]LedgerEntry, len(s.ledger))
	for i, p := range s.ledger {
		e := LedgerEntry{
			PaymentID: p.id, ConsentID: p.consentID, ClientRequestID: p.crid, Kind: p.kind,
			Cycle: p.cycle, Attempt: p.attempt, Date: p.date, Amount: p.amount,
			Status: p.statusAt(now), CreatedAt: p.createdAt, ResponseDropped: p.dropped,
		}
		if p.original != nil {
			e.OriginalPaymentID = p.original.id
		}
		if p.reason != nil {
			e.Reason = p.reason.Code
		}
		out[i] = e
	}
	return out
}

// Stats returns the sandbox's counters at the clock's now.
func (s *Server) Stats() Stats {
	now := s.lockNow()
	defer s.mu.Unlock()
	st := Stats{
		Requests: s.requests, TokensIssued: s.tokensGiven, Consents: len(s.consents),
		Accepted: map[Kind]int{}, Statuses: map[klavi.PaymentStatus]int{},
		Refusals: map[string]int{}, Faults: map[string]int{},
	}
	for k, v := range s.accepted {
		st.Accepted[k] = v
	}
	for k, v := range s.refusals {
		st.Refusals[k] = v
	}
	for k, v := range s.faultCounts {
		st.Faults[k] = v
	}
	for _, p := range s.ledger {
		st.Statuses[p.statusAt(now)]++
	}
	return st
}

// A reply is what a handler answers; created is the payment it committed, if any.
type reply struct {
	status  int
	body    any
	rule    string
	created *payment
}

// errorBody is Klavi's error shape, plus the sandbox's rule name and, for a 400,
// every problem with its path.
type errorBody struct {
	StatusCode int          `json:"statusCode"`
	Error      string       `json:"error"`
	Message    string       `json:"message"`
	Rule       string       `json:"rule,omitempty"`
	Problems   problem.List `json:"problems,omitempty"`
}

func errReply(rf *refusal) reply {
	return reply{status: rf.status, rule: rf.rule, body: errorBody{
		StatusCode: rf.status, Error: http.StatusText(rf.status), Message: rf.Error(), Rule: rf.rule,
	}}
}

func invalid(l problem.List) reply {
	r := errReply(&refusal{status: 400, rule: RuleInvalidRequest, msg: l.Error()})
	b := r.body.(errorBody)
	b.Problems = l
	r.body = b
	return r
}

// api wraps an API handler with fault injection, bearer auth and refusal counting.
func (s *Server) api(needToken bool, h func(r *http.Request) reply) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fault := s.drawFault(needToken)
		if d := s.opts.Faults.Latency; d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
			case <-s.done:
			}
			t.Stop()
		}
		switch fault {
		case Fault5xx:
			writeReply(w, errReply(&refusal{status: 503, rule: "fault", msg: "sandbox fault: service unavailable"}))
			return
		case Fault429:
			ra := s.opts.Faults.RetryAfter
			if ra <= 0 {
				ra = time.Second
			}
			w.Header().Set("Retry-After", fmt.Sprint(int((ra+time.Second-1)/time.Second)))
			writeReply(w, errReply(&refusal{status: 429, rule: "fault", msg: "sandbox fault: too many requests"}))
			return
		case FaultTimeout:
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
			return
		}
		var rep reply
		if needToken && !s.validToken(r) {
			rep = errReply(&refusal{status: 401, rule: RuleUnauthorized, msg: "missing, unknown or expired access token"})
		} else {
			rep = h(r)
		}
		if rep.rule != "" {
			s.mu.Lock()
			s.refusals[rep.rule]++
			s.mu.Unlock()
			s.log.Debug("sandbox refused a request", "path", r.URL.Path, "rule", rep.rule, "status", rep.status)
		}
		if fault == FaultDrop {
			if rep.created != nil {
				s.mu.Lock()
				rep.created.dropped = true
				s.mu.Unlock()
			}
			dropConnection(w)
			return
		}
		writeReply(w, rep)
	})
}

// drawFault counts the request and picks its fault: a scripted one first (not for
// auth), else a random draw.
func (s *Server) drawFault(needToken bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	var f string
	if needToken && len(s.script) > 0 {
		f, s.script = s.script[0], s.script[1:]
	} else {
		f = s.faults.draw()
	}
	if s.opts.Faults.Latency > 0 {
		s.faultCounts[FaultLatency]++
	}
	if f != "" {
		s.faultCounts[f]++
	}
	return f
}

// dropConnection closes the connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
		return
	}
	panic(http.ErrAbortHandler) // HTTP/2 or a recorder: abort the response instead
}

func writeReply(w http.ResponseWriter, rep reply) { writeJSON(w, rep.status, rep.body) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"statusCode":500,"error":"Internal Server Error","message":"encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// lockNow takes the sandbox's lock and brings its state up to the clock's now, which
// it returns. The caller unlocks s.mu.
func (s *Server) lockNow() time.Time {
	s.mu.Lock()
	now := s.clock.Now()
	s.advance(now)
	return now
}

// readValid decodes a request body strictly and checks it with the klavi package's
// rules (Validate), listing every problem.
func readValid[T any, P interface {
	*T
	Validate() problem.List
}](r *http.Request, req P) problem.List {
	if l := readJSON(r, req); len(l) > 0 {
		return l
	}
	return req.Validate()
}

// readJSON decodes a request body into v, listing every problem.
func readJSON(r *http.Request, v any) problem.List {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBodyBytes))
	if err != nil {
		var l problem.List
		l.Addf("", "read body: %v", err)
		return l
	}
	return problem.DecodeJSON(data, v)
}

func (s *Server) validToken(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	return ok && s.clock.Now().Before(exp)
}

type authBody struct {
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
}

func (s *Server) handleAuth(r *http.Request) reply {
	var b authBody
	if l := readJSON(r, &b); len(l) > 0 {
		return invalid(l)
	}
	ok := b.AccessKey != "" && b.SecretKey != ""
	if s.opts.AccessKey != "" || s.opts.SecretKey != "" {
		ok = subtle.ConstantTimeCompare([]byte(b.AccessKey), []byte(s.opts.AccessKey)) == 1 &&
			subtle.ConstantTimeCompare([]byte(b.SecretKey), []byte(s.opts.SecretKey)) == 1
	}
	if !ok {
		return errReply(&refusal{status: 401, rule: RuleUnauthorized, msg: "invalid accessKey or secretKey"})
	}
	var raw [16]byte
	rand.Read(raw[:])
	tok := "sbx-" + hex.EncodeToString(raw[:])
	s.mu.Lock()
	now := s.clock.Now()
	if len(s.tokens) > 1024 {
		for t, exp := range s.tokens {
			if !now.Before(exp) {
				delete(s.tokens, t)
			}
		}
	}
	s.tokens[tok] = now.Add(s.opts.TokenTTL)
	s.tokensGiven++
	s.mu.Unlock()
	return reply{status: 200, body: map[string]any{"accessToken": tok, "expireIn": int64(s.opts.TokenTTL / time.Second)}}
}

// duplicate refuses a clientRequestId used before by any create. Callers hold s.mu.
func (s *Server) duplicate(crid string) *refusal {
	if id, used := s.crids[crid]; used {
		return &refusal{status: 409, rule: RuleDuplicate, msg: fmt.Sprintf("clientRequestId %q was already used (by %s)", crid, id)}
	}
	return nil
}

func redirectURL(r *http.Request, id string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/_sandbox/authorize/" + url.PathEscape(id)
}

func (s *Server) handleCreateConsent(r *http.Request) reply {
	var req klavi.CreateConsentRequest
	if l := readValid(r, &req); len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.mu.Unlock()
	if rf := s.duplicate(req.ClientRequestID); rf != nil {
		return errReply(rf)
	}
	s.consentSeq++
	id := fmt.Sprintf("urn:sandbox:consent-%06d", s.consentSeq)
	c := &consent.Consent{ID: id, Status: klavi.ConsentAwaitingAuthorization, CreateConsentRequest: req}
	s.addConsent(c, klavi.ConsentAwaitingAuthorization, now)
	s.log.Debug("sandbox consent created", "consent_id", id)
	return reply{status: 201, body: klavi.Consent{
		ID: id, ClientRequestID: req.ClientRequestID, Status: klavi.ConsentAwaitingAuthorization,
		ConsentRedirectURL: redirectURL(r, id),
	}}
}

// pathIDs reads and validates the path ids named.
func pathIDs(r *http.Request, names ...string) ([]string, problem.List) {
	var l problem.List
	ids := make([]string, len(names))
	for i, n := range names {
		ids[i] = r.PathValue(n)
		if !klavi.ValidResourceID(ids[i]) {
			l.Addf(n, "is not a valid id: want urn:<namespace>:<id>, at most 256 characters")
		}
	}
	return ids, l
}

func notFound(format string, args ...any) reply {
	return errReply(&refusal{status: 404, rule: RuleNotFound, msg: fmt.Sprintf(format, args...)})
}

func (s *Server) handleCreatePayment(r *http.Request) reply {
	ids, l := pathIDs(r, "consentId")
	var req klavi.CreatePaymentRequest
	if l = append(l, readValid(r, &req)...); len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.mu.Unlock()
	cs := s.consents[ids[0]]
	if cs == nil {
		return notFound("no consent %s", ids[0])
	}
	if !s.opts.RulesBeforeIdempotency {
		if rf := s.duplicate(req.ClientRequestID); rf != nil {
			return errReply(rf)
		}
	}
	k, rf := s.checkPayment(now, cs, &req)
	if rf != nil {
		return errReply(rf)
	}
	if rf := s.duplicate(req.ClientRequestID); rf != nil {
		return errReply(rf)
	}
	p := s.newPayment(now, cs.c.ID, req.ClientRequestID, KindOriginal, k, req.Date, req.Amount)
	if st := req.AutoRetryStrategy; st != nil {
		cp := *st
		cp.Days = append([]int(nil), st.Days...)
		p.strategy = &cp
	}
	p.remittance = req.RemittanceInformation
	s.crids[req.ClientRequestID] = p.id
	s.schedule(p)
	s.log.Debug("sandbox payment accepted", "payment_id", p.id, "consent_id", p.consentID, "cycle", k, "client_request_id", p.crid)
	return reply{status: 201, body: s.view(p, now), created: p}
}

func (s *Server) handleRetry(r *http.Request) reply {
	ids, l := pathIDs(r, "consentId", "paymentId")
	var req klavi.RetryPaymentRequest
	if l = append(l, readValid(r, &req)...); len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.mu.Unlock()
	cs, orig, nf := s.lookup(ids[0], ids[1])
	if nf != nil {
		return *nf
	}
	if orig.original != nil {
		orig = orig.original // a retry of a retry retries the original
	}
	if !s.opts.RulesBeforeIdempotency {
		if rf := s.duplicate(req.ClientRequestID); rf != nil {
			return errReply(rf)
		}
	}
	if rf := s.checkRetry(now, cs, orig, req.Date); rf != nil {
		return errReply(rf)
	}
	if rf := s.duplicate(req.ClientRequestID); rf != nil {
		return errReply(rf)
	}
	p := s.newPayment(now, cs.c.ID, req.ClientRequestID, KindRetry, orig.cycle, req.Date, orig.amount)
	p.original, p.attempt, p.remittance = orig, len(orig.retries)+1, orig.remittance
	orig.retries = append(orig.retries, p)
	s.crids[req.ClientRequestID] = p.id
	s.schedule(p)
	s.log.Debug("sandbox retry accepted", "payment_id", p.id, "consent_id", p.consentID, "cycle", p.cycle, "attempt", p.attempt)
	return reply{status: 201, body: s.view(p, now), created: p}
}

// lookup finds a consent and one of its payments. Callers hold s.mu.
func (s *Server) lookup(consentID, paymentID string) (*consentState, *payment, *reply) {
	cs := s.consents[consentID]
	if cs == nil {
		nf := notFound("no consent %s", consentID)
		return nil, nil, &nf
	}
	p := s.payments[paymentID]
	if p == nil || p.consentID != consentID {
		nf := notFound("no payment %s under consent %s", paymentID, consentID)
		return nil, nil, &nf
	}
	return cs, p, nil
}

func (s *Server) handleGetPayment(r *http.Request) reply {
	ids, l := pathIDs(r, "consentId", "paymentId")
	if len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.mu.Unlock()
	_, p, nf := s.lookup(ids[0], ids[1])
	if nf != nil {
		return *nf
	}
	return reply{status: 200, body: s.view(p, now)}
}

func (s *Server) handleGetStatus(r *http.Request) reply {
	ids, l := pathIDs(r, "consentId", "paymentId")
	if len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.mu.Unlock()
	_, p, nf := s.lookup(ids[0], ids[1])
	if nf != nil {
		return *nf
	}
	v := s.view(p, now)
	return reply{status: 200, body: klavi.PaymentStatusInfo{ID: v.ID, Status: v.Status, StatusReason: v.StatusReason, StatusUpdateAt: v.StatusUpdateAt}}
}

// view is the payment resource as GET returns it. Callers hold s.mu.
func (s *Server) view(p *payment, now time.Time) klavi.Payment {
	v := klavi.Payment{
		ID: p.id, ClientRequestID: p.crid, ConsentID: p.consentID, Date: p.date, EndToEndID: p.endToEnd,
		Amount: p.amount, Currency: klavi.Currency, RemittanceInformation: p.remittance,
		Status: p.statusAt(now), Cancellation: p.cancel,
		CreateAt: p.createdAt.UTC().Truncate(time.Second), StatusUpdateAt: p.updatedAt.UTC().Truncate(time.Second),
		PaymentMethod: "AUTOMATIC_PIX", PaymentMethodConfig: &klavi.PaymentMethodInfo{},
	}
	if p.reason != nil {
		rc := *p.reason
		v.StatusReason = &rc
	}
	if p.original != nil {
		v.PaymentMethodConfig.OriginalPaymentID = p.original.id
	}
	if cs := s.consents[p.consentID]; cs != nil {
		v.InstitutionID = cs.c.InstitutionID
	}
	return v
}

// instantAwaiting is the status of an instant payment until the payer authorizes it.
const instantAwaiting = klavi.PaymentStatus(klavi.ConsentAwaitingAuthorization)

func (s *Server) handleInstant(r *http.Request) reply {
	var req klavi.InstantPaymentRequest
	if l := readValid(r, &req); len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.mu.Unlock()
	if rf := s.duplicate(req.ClientRequestID); rf != nil {
		return errReply(rf)
	}
	if !req.Date.IsZero() && req.Date.Before(today(now)) {
		return errReply(refuse(RuleInstantDate, "date %s is in the past (today is %s)", req.Date, today(now)))
	}
	p := s.newPayment(now, "", req.ClientRequestID, KindInstant, 0, req.Date, req.Amount)
	p.status = instantAwaiting
	p.remittance = req.RemittanceInformation
	s.crids[req.ClientRequestID] = p.id
	return reply{status: 200, created: p, body: klavi.InstantPayment{
		ID: p.id, ClientRequestID: p.crid, Amount: p.amount, Currency: klavi.Currency,
		Status: p.status, ConsentRedirectURL: redirectURL(r, p.id),
	}}
}

// handleAuthorize is where consentRedirectUrl points: it authorizes a consent (or
// an instant payment) awaiting authorization, if it has waited 60 minutes at most.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		writeJSON(w, 405, errorBody{StatusCode: 405, Error: http.StatusText(405), Message: "use GET or POST"})
		return
	}
	id := r.PathValue("id")
	now := s.lockNow()
	defer s.mu.Unlock()
	if cs := s.consents[id]; cs != nil {
		switch st := s.consentStatus(cs, now); {
		case st == klavi.ConsentAwaitingAuthorization:
			cs.status = klavi.ConsentAuthorized
		case cs.reason != nil && cs.reason.Code == klavi.ReasonAuthorizationExpiredTime:
			writeReply(w, errReply(&refusal{status: 410, rule: RuleAuthorization, msg: "not authorized within 60 minutes: the consent is rejected"}))
			return
		default:
			writeReply(w, errReply(&refusal{status: 409, rule: RuleAuthorization, msg: fmt.Sprintf("consent is %s, not awaiting authorization", st)}))
			return
		}
		writeJSON(w, 200, klavi.Consent{ID: id, ClientRequestID: cs.c.ClientRequestID, Status: cs.status})
		return
	}
	p := s.payments[id]
	if p == nil || p.kind != KindInstant {
		writeReply(w, notFound("nothing to authorize under %s", id))
		return
	}
	if p.status != instantAwaiting {
		writeReply(w, errReply(&refusal{status: 409, rule: RuleAuthorization, msg: fmt.Sprintf("payment is %s, not awaiting authorization", p.status)}))
		return
	}
	if now.Sub(p.createdAt) > authorizeWithin {
		p.status, p.updatedAt = klavi.PaymentRejected, now
		p.reason = &klavi.StatusReason{Code: klavi.ReasonAuthorizationExpiredTime}
		writeReply(w, errReply(&refusal{status: 410, rule: RuleAuthorization, msg: "not authorized within 60 minutes: the payment is rejected"}))
		return
	}
	p.status, p.updatedAt = klavi.PaymentScheduled, now
	if p.date.IsZero() || !p.date.After(today(now)) {
		p.settleAt = now // immediate: settles now
		heap.Push(&s.queue, p)
	} else {
		s.schedule(p)
	}
	s.advance(now)
	writeJSON(w, 200, klavi.InstantPayment{ID: p.id, ClientRequestID: p.crid, Amount: p.amount, Currency: klavi.Currency, Status: p.status})
}

func (s *Server) handleConsentStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("consentId")
	now := s.lockNow()
	defer s.mu.Unlock()
	cs := s.consents[id]
	if cs == nil {
		writeReply(w, notFound("no consent %s", id))
		return
	}
	st := s.consentStatus(cs, now)
	writeJSON(w, 200, klavi.Consent{ID: id, ClientRequestID: cs.c.ClientRequestID, Status: st, StatusReason: cs.reason})
}

// handleSeed adds the consents of the body: one consent JSON object (the consent
// file format) or an array of them. Nothing is added unless all are valid.
func (s *Server) handleSeed(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err != nil {
		writeReply(w, errReply(&refusal{status: 400, rule: RuleInvalidRequest, msg: "read body: " + err.Error()}))
		return
	}
	cs, l := parseConsents(data)
	if len(l) > 0 {
		writeReply(w, invalid(l))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range cs {
		if _, ok := s.consents[c.ID]; ok {
			writeReply(w, errReply(&refusal{status: 409, rule: RuleDuplicate, msg: fmt.Sprintf("consent %s is already known", c.ID)}))
			return
		}
	}
	now := s.clock.Now()
	for _, c := range cs {
		st := c.Status
		if st == "" {
			st = klavi.ConsentAuthorized
		}
		s.addConsent(c, st, now)
	}
	writeJSON(w, 201, map[string]int{"added": len(cs)})
}

// parseConsents decodes one consent (the consent file format) or a JSON array of
// them, validating each; problems carry the index of their consent ("[2].id").
func parseConsents(data []byte) ([]*consent.Consent, problem.List) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		c, err := consent.Decode(data)
		if err != nil {
			return nil, asProblems(err)
		}
		return []*consent.Consent{c}, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(trimmed, &raws); err != nil {
		var l problem.List
		l.Addf("", "not a JSON array of consents: %v", err)
		return nil, l
	}
	var out []*consent.Consent
	var l problem.List
	seen := map[string]bool{}
	for i, raw := range raws {
		c, err := consent.Decode(raw)
		if err != nil {
			l.Merge(problem.Index("", i), asProblems(err))
			continue
		}
		if seen[c.ID] {
			l.Addf(problem.Join(problem.Index("", i), "id"), "%s appears twice", c.ID)
		}
		seen[c.ID] = true
		out = append(out, c)
	}
	if len(l) > 0 {
		return nil, l
	}
	return out, nil
}

func asProblems(err error) problem.List {
	var l problem.List
	if errors.As(err, &l) {
		return l
	}
	l.Addf("", "%v", err)
	return l
}
