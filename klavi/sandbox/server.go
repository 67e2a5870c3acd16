package sandbox

import (
	"container/heap"
	crand "crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/clock"
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

// A Server is an in-process fake Klavi. It is an http.Handler, safe for concurrent
// use; its state lives in memory (and, with Options.Journal, on disk) and moves only
// with its clock (see the package documentation).
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
	consentList []*consentState // in creation order
	payments    map[string]*payment
	ledger      []*payment
	queue       settleQueue
	crids       map[string]string // clientRequestId → id of what it created
	tokens      map[string]time.Time
	seq         int
	consentSeq  int
	draws       *rand.Rand // ConflictPermissions
	script      []string
	requests    int
	tokensGiven int
	accepted    map[Kind]int
	refusals    map[string]int
	faultCounts map[string]int
	// statuses counts the ledger's payments by the status Stats shows (payment.shown),
	// kept up to date wherever a status changes so that Stats walks nothing; fresh
	// holds, in creation order, the payments shown PENDING until the clock passes
	// their creation (ageFresh).
	statuses map[klavi.PaymentStatus]int
	fresh    []*payment

	jr            *journal    // nil: no Options.Journal
	reqlog        *requestLog // nil: no Options.RequestLog
	dirtyConsents []*consentState
	dirtyPayments []*payment
}

// New returns a sandbox with opts. It panics when opts are invalid (see
// Options.Validate) or opts.Journal cannot be opened: use Open to get the error.
func New(opts Options) *Server {
	s, err := Open(opts)
	if err != nil {
		panic(err)
	}
	return s
}

// Open returns a sandbox with opts, after checking them (Options.Validate). With
// opts.Journal it replays the journal (see journal.go): the error wraps
// ErrJournalCorrupt when it is damaged other than by a torn last record.
func Open(opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
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
		draws:       rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5851f42d4c957f2d)),
		accepted:    map[Kind]int{},
		refusals:    map[string]int{},
		faultCounts: map[string]int{},
		statuses:    map[klavi.PaymentStatus]int{},
	}
	if opts.ClockOffset != 0 {
		s.clock = offsetClock{c: s.clock, d: opts.ClockOffset}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if opts.Journal != "" {
		if err := s.openJournal(opts.Journal); err != nil {
			return nil, err
		}
	}
	if opts.RequestLog != "" {
		var err error
		if s.reqlog, err = openRequestLog(opts.RequestLog); err != nil {
			return nil, err
		}
	}
	s.mux = s.routes()
	return s, nil
}

func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	m.Handle("POST "+pathAuth, s.api(false, s.handleAuth))
	m.Handle("POST "+pathInstant, s.api(true, s.handleInstant))
	m.Handle("POST "+pathConsents, s.api(true, s.handleCreateConsent))
	m.Handle("GET "+pathConsents+"/{consentId}", s.api(true, s.handleGetConsent))
	m.Handle("POST "+pathConsents+"/{consentId}/payments", s.api(true, s.handleCreatePayment))
	m.Handle("GET "+pathConsents+"/{consentId}/payments/{paymentId}", s.api(true, s.handleGetPayment))
	m.Handle("GET "+pathConsents+"/{consentId}/payments/{paymentId}/status", s.api(true, s.handleGetStatus))
	m.Handle("POST "+pathConsents+"/{consentId}/payments/{paymentId}/retry", s.api(true, s.handleRetry))
	s.routeManagement(m)
	m.HandleFunc("GET /_sandbox/ledger", func(w http.ResponseWriter, r *http.Request) { s.writeJSON(w, 200, s.Ledger()) })
	m.HandleFunc("GET /_sandbox/stats", func(w http.ResponseWriter, r *http.Request) { s.writeJSON(w, 200, s.Stats()) })
	m.HandleFunc("POST /_sandbox/consents", s.local(s.handleSeed))
	m.HandleFunc("GET /_sandbox/consents/{consentId}", s.local(s.handleConsentStatus))
	m.HandleFunc("/_sandbox/authorize/{id}", s.local(s.handleAuthorize))
	m.HandleFunc("POST /_sandbox/consents/{consentId}/{action}", s.local(s.handleConsentAction))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeReply(w, errReply(&refusal{status: 404, rule: RuleNotFound, msg: "no such endpoint"}))
	})
	return m
}

// ServeHTTP serves Klavi's API and the sandbox's own /_sandbox/ endpoints. Every
// answer carries a Date header from the sandbox's clock (Options.ClockOffset
// included), as Klavi's carry its own.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Date", s.clock.Now().UTC().Format(http.TimeFormat))
	if s.reqlog != nil {
		var rec *RequestRecord
		if rec, r = s.reqlog.arrive(s, r); rec != nil {
			defer s.reqlog.write(s, rec)
		}
	}
	s.mux.ServeHTTP(w, r)
}

// Close releases the requests a timeout fault holds and closes the journal, if
// any, once what was appended is durable. The Server still answers afterwards,
// without hanging; with a journal, every answer is then a 500.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		if s.jr != nil {
			if err := s.jr.close(); err != nil {
				s.log.Error("sandbox journal close", "error", err)
			}
		}
		if s.reqlog != nil {
			if err := s.reqlog.close(); err != nil {
				s.log.Error("sandbox request log close", "error", err)
			}
		}
	})
}

// ScriptFaults makes the next API requests other than auth and the management API
// meet the given fault
// kinds, in order ("" for none), before the random Faults apply again. Tests use it
// to drop exactly one answer.
func (s *Server) ScriptFaults(kinds ...string) {
	s.mu.Lock()
	s.script = append(s.script, kinds...)
	s.mu.Unlock()
}

// errConsentKnown is AddConsent's error for a consent id the sandbox already holds.
var errConsentKnown = errors.New("already known")

// AddConsent seeds consents as if they had been created and authorized at Klavi;
// each one's status is its Status (CONSENT_AUTHORIZED when empty). Each is
// validated and copied, so the caller may reuse them; nothing is added unless all
// are valid and new.
func (s *Server) AddConsent(cs ...*klavi.CreatedConsent) error {
	var cp []*klavi.CreatedConsent
	for _, c := range cs {
		if c == nil {
			return errors.New("add consent: nil consent")
		}
		if l := c.Validate(); len(l) > 0 {
			return fmt.Errorf("add consent %s: %w", c.ID, l)
		}
		cc := *c
		cp = append(cp, &cc)
	}
	s.mu.Lock()
	seen := map[string]bool{}
	for _, c := range cp {
		if _, ok := s.consents[c.ID]; ok || seen[c.ID] {
			s.unlock()
			return fmt.Errorf("add consent %s: %w", c.ID, errConsentKnown)
		}
		seen[c.ID] = true
	}
	now := s.clock.Now()
	for _, c := range cp {
		st := c.Status
		if st == "" {
			st = klavi.ConsentAuthorized
		}
		s.addConsent(c, st, now, 0)
	}
	s.unlock()
	return s.sync()
}

// HasConsent reports whether the sandbox holds a consent with id (seeded, created
// or replayed from the journal).
func (s *Server) HasConsent(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.consents[id]
	return ok
}

// addConsent records a consent; n is its number among the consents created through
// the API (0 for a seeded one). Callers hold s.mu.
func (s *Server) addConsent(c *klavi.CreatedConsent, st klavi.ConsentStatus, now time.Time, n int) *consentState {
	c.Status = st
	cs := &consentState{c: c, status: st, created: now, updated: now, n: n, sched: c.Schedule(cycle.AdjustNone, nil), byCycle: map[int][]*payment{}}
	if c.ExpirationDateTime != nil {
		cs.expires = c.ExpirationDateTime.Time
	}
	s.consents[c.ID] = cs
	s.consentList = append(s.consentList, cs)
	if _, used := s.crids[c.ClientRequestID]; !used && c.ClientRequestID != "" {
		s.crids[c.ClientRequestID] = c.ID
	}
	s.touchConsent(cs)
	return cs
}

// SetConsentStatus changes a consent's status, e.g. to CONSENT_REVOKED with
// reason REVOKED_USER; payments that settle afterwards under a revoked consent are
// rejected with that reason. It does not check that the change is one Klavi makes
// (AuthorizeConsent, RevokeConsent, RejectConsent and ExpireConsent do).
func (s *Server) SetConsentStatus(id string, st klavi.ConsentStatus, reason klavi.ReasonCode) error {
	now := s.lockNow()
	cs := s.consents[id]
	if cs == nil {
		s.unlock()
		return fmt.Errorf("set consent status: no consent %s", id)
	}
	var rc *klavi.StatusReason
	if reason != "" {
		rc = &klavi.StatusReason{Code: reason}
	}
	s.setConsentStatus(cs, st, rc, now)
	s.unlock()
	return s.sync()
}

// setConsentStatus changes cs's status at instant at. Callers hold s.mu.
func (s *Server) setConsentStatus(cs *consentState, st klavi.ConsentStatus, reason *klavi.StatusReason, at time.Time) {
	cs.status, cs.reason, cs.updated = st, reason, at
	s.touchConsent(cs)
}

// Ledger returns every payment the sandbox accepted, in creation order, with its
// status at the clock's now.
func (s *Server) Ledger() []LedgerEntry {
	now := s.lockNow()
	defer s.unlock()
	out := make([]LedgerEntry, len(s.ledger))
	for i, p := range s.ledger {
		e := LedgerEntry{
			PaymentID: p.id, ConsentID: p.consentID, ClientRequestID: p.crid, Kind: p.kind,
			Cycle: p.cycle, Attempt: p.attempt, Date: p.date, Amount: p.amount,
			Status: p.statusAt(now), CreatedAt: p.createdAt.Round(0).UTC(), ResponseDropped: p.dropped,
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

// Stats returns the sandbox's counters at the clock's now. It copies counters kept
// as the ledger changes and walks no payment, so polling it costs the same with a
// ledger of ten payments or of a million. Statuses assumes the clock does not go
// back, as settlement does: a payment shown SCHEDULED is not shown PENDING again.
func (s *Server) Stats() Stats {
	s.lockNow()
	defer s.unlock()
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
	for k, v := range s.statuses {
		if v != 0 {
			st.Statuses[k] = v
		}
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
	if rf.bare {
		return reply{status: rf.status, rule: rf.rule, body: errorBody{StatusCode: rf.status, Error: http.StatusText(rf.status), Message: rf.msg}}
	}
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
		fault := s.drawFault(needToken && !strings.HasPrefix(r.URL.Path, "/payment/management/"))
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
		case Fault5xx, Fault429, FaultTimeout:
			noteFault(r, fault)
		}
		switch fault {
		case Fault5xx:
			s.writeReply(w, errReply(&refusal{status: 503, rule: "fault", msg: "sandbox fault: service unavailable"}))
			return
		case Fault429:
			ra := s.opts.Faults.RetryAfter
			if ra <= 0 {
				ra = time.Second
			}
			w.Header().Set("Retry-After", fmt.Sprint(int((ra+time.Second-1)/time.Second)))
			s.writeReply(w, errReply(&refusal{status: 429, rule: "fault", msg: "sandbox fault: too many requests"}))
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
		noteReply(r, rep, fault == FaultDrop)
		if fault == FaultDrop {
			if rep.created != nil {
				s.mu.Lock()
				rep.created.dropped = true
				s.touchPayment(rep.created)
				s.unlock()
			}
			if s.sync() == nil {
				dropConnection(w)
				return
			}
		}
		s.writeReply(w, rep)
	})
}

// local wraps a /_sandbox/ handler: no faults, no token.
func (s *Server) local(h func(r *http.Request) reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.writeReply(w, h(r)) }
}

// drawFault counts the request and picks its fault: a scripted one first (not for
// auth nor the management API, whose reads a client may make at any moment), else a
// random draw.
func (s *Server) drawFault(scriptable bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	var f string
	if scriptable && len(s.script) > 0 {
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

func (s *Server) writeReply(w http.ResponseWriter, rep reply) { s.writeJSON(w, rep.status, rep.body) }

// writeJSON writes an answer once every state change made so far is durable (see
// Options.Journal); when the journal cannot be written it answers 500 instead.
func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	if err := s.sync(); err != nil {
		status, v = 500, errorBody{StatusCode: 500, Error: http.StatusText(500), Message: "journal: " + err.Error()}
	}
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"statusCode":500,"error":"Internal Server Error","message":"encode answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// lockNow takes the sandbox's lock and brings its state up to the clock's now, which
// it returns. The caller releases the lock with s.unlock.
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
	crand.Read(raw[:])
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

// replay is the answer to a payment or retry create under consentID whose
// clientRequestId was used before, or nil when it was not: 409, or with
// DuplicateExisting 201 with the payment it created when that payment is under the
// same consent. Callers hold s.mu.
func (s *Server) replay(now time.Time, crid, consentID string) *reply {
	rf := s.duplicate(crid)
	if rf == nil {
		return nil
	}
	if s.opts.Duplicate == DuplicateExisting {
		if p := s.payments[s.crids[crid]]; p != nil && p.consentID == consentID && p.kind != KindInstant {
			return &reply{status: 201, body: s.view(p, now)}
		}
	}
	rep := errReply(rf)
	return &rep
}

// permissionRefused draws, with Options.ConflictPermissions, whether this create is
// refused with seed 000's 409 "Insufficient permissions requested". Callers hold
// s.mu.
func (s *Server) permissionRefused() *reply {
	if s.opts.ConflictPermissions <= 0 || s.draws.Float64() >= s.opts.ConflictPermissions {
		return nil
	}
	rep := errReply(&refusal{status: 409, rule: RulePermissions, msg: "Insufficient permissions requested", bare: true})
	return &rep
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
	defer s.unlock()
	if rep := s.permissionRefused(); rep != nil {
		return *rep
	}
	if rf := s.duplicate(req.ClientRequestID); rf != nil {
		return errReply(rf)
	}
	s.consentSeq++
	id := s.newID(idConsent, s.consentSeq)
	c := &klavi.CreatedConsent{ID: id, CreateConsentRequest: req}
	cs := s.addConsent(c, klavi.ConsentAwaitingAuthorization, now, s.consentSeq)
	s.log.Debug("sandbox consent created", "consent_id", id)
	return reply{status: 201, body: s.consentView(cs, now, r, false)}
}

// pathIDs reads and validates the path ids named. The mux matches the escaped path
// and hands each segment over unescaped, so an id may carry any character that
// ValidID allows.
func pathIDs(r *http.Request, names ...string) ([]string, problem.List) {
	var l problem.List
	ids := make([]string, len(names))
	for i, n := range names {
		ids[i] = r.PathValue(n)
		if !ValidID(ids[i]) {
			l.Addf(n, "is not a valid id: want 1..256 printable characters, no '/' or white space")
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
	defer s.unlock()
	cs := s.consents[ids[0]]
	if cs == nil {
		return notFound("no consent %s", ids[0])
	}
	if rep := s.permissionRefused(); rep != nil {
		return *rep
	}
	keyFirst := s.opts.CheckOrder != CheckRulesFirst
	if keyFirst {
		if rep := s.replay(now, req.ClientRequestID, cs.c.ID); rep != nil {
			return *rep
		}
	}
	k, rf := s.checkPayment(now, cs, &req)
	if rf != nil {
		return errReply(rf)
	}
	if rep := s.replay(now, req.ClientRequestID, cs.c.ID); rep != nil {
		return *rep
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
	defer s.unlock()
	cs, orig, nf := s.lookup(ids[0], ids[1])
	if nf != nil {
		return *nf
	}
	if orig.original != nil {
		orig = orig.original // a retry of a retry retries the original
	}
	if rep := s.permissionRefused(); rep != nil {
		return *rep
	}
	if s.opts.CheckOrder != CheckRulesFirst {
		if rep := s.replay(now, req.ClientRequestID, cs.c.ID); rep != nil {
			return *rep
		}
	}
	if rf := s.checkRetry(now, cs, orig, req.Date, req.ClientRequestID); rf != nil {
		return errReply(rf)
	}
	if rep := s.replay(now, req.ClientRequestID, cs.c.ID); rep != nil {
		return *rep
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
	defer s.unlock()
	_, p, nf := s.lookup(ids[0], ids[1])
	if nf != nil {
		return *nf
	}
	return reply{status: 200, body: s.view(p, now)}
}

// handleGetConsent serves GET .../consents/{consentId}: the consent with every
// field (consentRedirectUrl while it awaits authorization), or 404.
func (s *Server) handleGetConsent(r *http.Request) reply {
	ids, l := pathIDs(r, "consentId")
	if len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.unlock()
	cs := s.consents[ids[0]]
	if cs == nil {
		return notFound("no consent %s", ids[0])
	}
	return reply{status: 200, body: s.consentView(cs, now, r, true)}
}

func (s *Server) handleGetStatus(r *http.Request) reply {
	ids, l := pathIDs(r, "consentId", "paymentId")
	if len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.unlock()
	_, p, nf := s.lookup(ids[0], ids[1])
	if nf != nil {
		return *nf
	}
	v := s.view(p, now)
	return reply{status: 200, body: wireStatus{ID: v.ID, Status: v.Status, StatusReason: v.StatusReason, StatusUpdateAt: v.StatusUpdateAt}}
}

// view is the payment resource as GET returns it. Callers hold s.mu.
func (s *Server) view(p *payment, now time.Time) wirePayment {
	v := wirePayment{
		ID: p.id, AppID: s.opts.AppID, ClientRequestID: p.crid, ConsentID: p.consentID, EndToEndID: p.endToEnd,
		Amount: s.amount(p.amount), Currency: klavi.Currency, RemittanceInformation: p.remittance,
		Status: s.enum(string(p.statusAt(now))), StatusReason: s.reason(p.reason),
		CreateAt: dateTime(p.createdAt), StatusUpdateAt: dateTime(p.updatedAt),
		PaymentMethod: "AUTOMATIC_PIX", PaymentMethodConfig: &wireMethodInfo{},
	}
	if !p.date.IsZero() {
		v.Date = p.date.String()
	}
	if c := p.cancel; c != nil {
		v.Cancellation = &wireCancellation{CancelledFrom: c.from, CancelledAt: dateTime(c.at)}
		if c.byType != "" {
			v.Cancellation.CancelledBy = &wireDocument{Identifier: c.by, IdentifierType: c.byType}
		}
	}
	if p.original != nil {
		v.PaymentMethodConfig.OriginalPaymentID = p.original.id
	}
	if cs := s.consents[p.consentID]; cs != nil {
		v.InstitutionID = cs.c.InstitutionID
	}
	return v
}

// consentView is a consent as Klavi shows it at now: with full, every field GET
// .../consents/{id} returns; else what its creation answers. consentRedirectUrl is
// present while it awaits authorization (r nil: never). Callers hold s.mu.
func (s *Server) consentView(cs *consentState, now time.Time, r *http.Request, full bool) wireConsent {
	st := s.consentStatus(cs, now)
	v := wireConsent{ID: cs.c.ID, ClientRequestID: cs.c.ClientRequestID, Status: s.enum(string(st)), StatusReason: s.reason(cs.reason)}
	if st == klavi.ConsentAwaitingAuthorization && r != nil {
		v.ConsentRedirectURL = redirectURL(r, cs.c.ID)
	}
	if !full {
		return v
	}
	v.CreateAt, v.StatusUpdateAt = dateTime(cs.created), dateTime(cs.updated)
	if cs.c.ExpirationDateTime != nil {
		v.ExpirationDateTime = dateTime(cs.c.ExpirationDateTime.Time)
	}
	if m := cs.c.PaymentMethodConfig; m != nil {
		w := &wireMethodConfig{
			ContractID: m.ContractID, FixedAmount: s.optAmount(m.FixedAmount),
			MinimumVariableAmount: s.optAmount(m.MinimumVariableAmount), MaximumVariableAmount: s.optAmount(m.MaximumVariableAmount),
			Currency: m.Currency, Interval: m.Interval.String(), ReferenceStartDate: m.ReferenceStartDate.String(),
			IsRetryAccepted: m.IsRetryAccepted,
		}
		if d := m.ContractDebtor; d != nil {
			w.ContractDebtor = &wirePerson{IdentifierType: string(d.IdentifierType), Identifier: d.Identifier, Name: d.Name}
		}
		if f := m.FirstPayment; f != nil {
			w.FirstPayment = &wireFirstPayment{RemittanceInformation: f.RemittanceInformation, Amount: s.amount(f.Amount), Currency: f.Currency}
			if !f.Date.IsZero() {
				w.FirstPayment.Date = f.Date.String()
			}
		}
		v.PaymentMethodConfig = w
	}
	return v
}

// instantAwaiting is the status of an instant payment until the payer authorizes it.
const instantAwaiting = klavi.PaymentStatus(klavi.ConsentAwaitingAuthorization)

func (s *Server) instantView(p *payment, r *http.Request) wireInstant {
	v := wireInstant{ID: p.id, ClientRequestID: p.crid, Amount: s.amount(p.amount), Currency: klavi.Currency,
		Status: s.enum(string(p.status)), StatusReason: s.reason(p.reason)}
	if p.status == instantAwaiting && r != nil {
		v.ConsentRedirectURL = redirectURL(r, p.id)
	}
	return v
}

func (s *Server) handleInstant(r *http.Request) reply {
	var req klavi.InstantPaymentRequest
	if l := readValid(r, &req); len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.unlock()
	if rep := s.permissionRefused(); rep != nil {
		return *rep
	}
	if rf := s.duplicate(req.ClientRequestID); rf != nil {
		return errReply(rf)
	}
	if !req.Date.IsZero() && req.Date.Before(today(now)) {
		return errReply(refuse(RuleInstantDate, "date %s is in the past (today is %s)", req.Date, today(now)))
	}
	p := s.newPayment(now, "", req.ClientRequestID, KindInstant, 0, req.Date, req.Amount)
	s.setStatus(p, instantAwaiting)
	p.remittance = req.RemittanceInformation
	s.crids[req.ClientRequestID] = p.id
	return reply{status: 200, created: p, body: s.instantView(p, r)}
}

// handleAuthorize is where consentRedirectUrl points: it authorizes a consent (or
// an instant payment) awaiting authorization, if it has waited 60 minutes at most.
func (s *Server) handleAuthorize(r *http.Request) reply {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return reply{status: 405, body: errorBody{StatusCode: 405, Error: http.StatusText(405), Message: "use GET or POST"}}
	}
	id := r.PathValue("id")
	now := s.lockNow()
	defer s.unlock()
	if cs := s.consents[id]; cs != nil {
		if rf := s.authorizeConsent(cs, now); rf != nil {
			return errReply(rf)
		}
		return reply{status: 200, body: s.consentView(cs, now, nil, false)}
	}
	p := s.payments[id]
	if p == nil || p.kind != KindInstant {
		return notFound("nothing to authorize under %s", id)
	}
	if p.status != instantAwaiting {
		return errReply(&refusal{status: 409, rule: RuleAuthorization, msg: fmt.Sprintf("payment is %s, not awaiting authorization", p.status)})
	}
	if now.Sub(p.createdAt) > authorizeWithin {
		s.setStatus(p, klavi.PaymentRejected)
		p.updatedAt = now
		p.reason = &klavi.StatusReason{Code: klavi.ReasonAuthorizationExpiredTime}
		s.touchPayment(p)
		return errReply(&refusal{status: 410, rule: RuleAuthorization, msg: "not authorized within 60 minutes: the payment is rejected"})
	}
	s.setStatus(p, klavi.PaymentScheduled)
	p.updatedAt = now
	if p.date.IsZero() || !p.date.After(today(now)) {
		p.settleAt = now // immediate: settles now
		heap.Push(&s.queue, p)
	} else {
		s.schedule(p)
	}
	s.touchPayment(p)
	s.advance(now)
	return reply{status: 200, body: s.instantView(p, nil)}
}

func (s *Server) handleConsentStatus(r *http.Request) reply {
	id := r.PathValue("consentId")
	now := s.lockNow()
	defer s.unlock()
	cs := s.consents[id]
	if cs == nil {
		return notFound("no consent %s", id)
	}
	return reply{status: 200, body: s.consentView(cs, now, r, false)}
}

// handleSeed adds the consents of the body: one consent JSON object (the consent
// file format) or an array of them. Nothing is added unless all are valid.
func (s *Server) handleSeed(r *http.Request) reply {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 64<<20))
	if err != nil {
		return errReply(&refusal{status: 400, rule: RuleInvalidRequest, msg: "read body: " + err.Error()})
	}
	cs, l := parseConsents(data)
	if len(l) > 0 {
		return invalid(l)
	}
	if err := s.AddConsent(cs...); err != nil {
		if errors.Is(err, errConsentKnown) {
			return errReply(&refusal{status: 409, rule: RuleDuplicate, msg: err.Error()})
		}
		return errReply(&refusal{status: 400, rule: RuleInvalidRequest, msg: err.Error()})
	}
	return reply{status: 201, body: map[string]int{"added": len(cs)}}
}

// parseConsents decodes one consent (the consent file format) or a JSON array of
// them, validating each; problems carry the index of their consent ("[2].id").
func parseConsents(data []byte) ([]*klavi.CreatedConsent, problem.List) {
	cs, err := problem.DecodeMany(data, "consents", decodeConsent, func(c *klavi.CreatedConsent) string { return c.ID })
	if err != nil {
		return nil, asProblems(err)
	}
	return cs, nil
}

// decodeConsent reads one consent file. Its billing object is billingd's business,
// not Klavi's: it is accepted as it is and dropped.
func decodeConsent(data []byte) (*klavi.CreatedConsent, error) {
	var c struct {
		klavi.CreatedConsent
		Billing json.RawMessage `json:"billing"`
	}
	if l := problem.DecodeJSON(data, &c); len(l) > 0 {
		return nil, l
	}
	if l := c.Validate(); len(l) > 0 {
		return nil, l
	}
	return &c.CreatedConsent, nil
}

func asProblems(err error) problem.List {
	var l problem.List
	if errors.As(err, &l) {
		return l
	}
	l.Addf("", "%v", err)
	return l
}
