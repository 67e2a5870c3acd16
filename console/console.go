package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
)

// Store is what the console reads: a subset of admin.Store, so the store the admin
// API reads serves the console too.
type Store interface {
	GetConsent(ctx context.Context, id string) (*storage.ConsentRecord, error)
	ListConsents(ctx context.Context, after string, limit int, state storage.ConsentState) ([]*storage.ConsentRecord, error)
	GetAttempt(ctx context.Context, k storage.AttemptKey) (*storage.Attempt, error)
	Attempts(ctx context.Context, consentID string) ([]*storage.Attempt, error)
	Amounts(ctx context.Context, id string) (map[int]klavi.Cents, error)
	Events(ctx context.Context, consentID string, after uint64, limit int) ([]storage.Event, bool, error)
	AttentionItems(ctx context.Context, s storage.AttemptState, after string, limit int) ([]storage.AttentionItem, string, error)
	AttentionCounts(ctx context.Context) (map[storage.AttemptState]int, error)
	AttemptsBetween(ctx context.Context, from, to cycle.Date, consentID, after string, limit int, keep func(*storage.Attempt) bool) ([]*storage.Attempt, string, error)
}

var _ Store = (storage.Store)(nil)

// Scheduler is what the console asks and changes through: a subset of
// admin.Scheduler. The plans, the agenda and the report are the scheduler's own
// (the same as the CLI and the JSON API show); every action goes through it, so it is
// serialized with billing and recorded in the consent's timeline.
type Scheduler interface {
	Resolve(k storage.AttemptKey, note, actor string) (*storage.Attempt, error)
	Policy() scheduler.Policy
	MissingAmounts() ([]scheduler.MissingAmount, error)
	Upcoming(from, to cycle.Date) (*scheduler.Upcoming, error)
	Report(month string) (*scheduler.Ledger, error)
}

var _ Scheduler = (*scheduler.Scheduler)(nil)

// Status is the daemon's health as the overview shows it.
type Status struct {
	// Role is this replica's part ("" with one process; else what /readyz says,
	// e.g. "(leader, fence 12)").
	Role string
	// NotReady says why the daemon is not ready ("" when it is).
	NotReady string
	// Clock is what the scheduler thinks of its clock.
	Clock scheduler.ClockState
}

// Console is the web console: server-rendered pages over the store and the scheduler.
type Console struct {
	adminToken, readOnlyToken string
	store                     Store
	sched                     Scheduler
	status                    func() Status
	clock                     clock.Clock
	log                       *slog.Logger
	prefix                    string
	keys                      keys
	cop                       *http.CrossOriginProtection
	pages                     map[string]*template.Template
}

// An Option sets an optional setting of the Console.
type Option func(*Console)

// WithReadOnlyToken sets the token of read-only sessions ("", the default: none).
func WithReadOnlyToken(t string) Option { return func(c *Console) { c.readOnlyToken = t } }

// WithStatus sets where the overview reads the daemon's health (nil: not shown).
func WithStatus(f func() Status) Option { return func(c *Console) { c.status = f } }

// WithClock sets the clock of "today", of ages and of session expiry (nil: real time).
func WithClock(k clock.Clock) Option { return func(c *Console) { c.clock = clock.Or(k) } }

// WithLogger sets the logger of logins and failures (nil: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *Console) {
		if l != nil {
			c.log = l
		}
	}
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path the console is served under.
const Prefix = "/ui/"

// New returns the console over store and sched, for sessions opened with the admin
// token (or the read-only token of WithReadOnlyToken). An empty admin token turns the
// console off: Handler returns nil.
func New(adminToken string, store Store, sched Scheduler, opts ...Option) *Console {
	c := &Console{adminToken: adminToken, store: store, sched: sched, clock: clock.Real{}, log: slog.Default(),
		prefix: Prefix, cop: http.NewCrossOriginProtection()}
	for _, o := range opts {
		o(c)
	}
	c.keys = newKeys(c.adminToken, c.readOnlyToken)
	c.pages = parsePages()
	return c
}

func parsePages() map[string]*template.Template {
	base := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, _ := fs.Glob(templateFS, "templates/*.html")
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, n))
	}
	return out
}

// csp is the Content-Security-Policy of every answer: only this origin's own files,
// no inline script or style, no framing, forms post only here.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; " +
	"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// Handler returns the console's handler, or nil when no admin token is configured.
// Mount it at Prefix ("/ui/").
func (c *Console) Handler() http.Handler {
	if c.adminToken == "" {
		return nil
	}
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui/login", c.loginPage)
	mux.HandleFunc("POST /ui/login", c.login)
	mux.Handle("POST /ui/logout", c.action(RoleReadOnly, c.logout))
	mux.Handle("GET /ui/{$}", c.view(c.overview))
	mux.Handle("GET /ui/upcoming", c.view(c.upcoming))
	mux.Handle("GET /ui/attention", c.view(c.attention))
	mux.Handle("POST /ui/attention/resolve", c.action(RoleAdmin, c.resolve))
	mux.Handle("GET /ui/consents", c.view(c.consents))
	mux.Handle("GET /ui/consents/{id}", c.view(c.consent))
	mux.Handle("GET /ui/payments", c.view(c.payments))
	mux.Handle("GET /ui/payments.csv", c.view(c.paymentsCSV))
	mux.Handle("GET /ui/report", c.view(c.report))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := c.sessionOf(w, r); !ok {
			c.toLogin(w, r)
			return
		}
		c.errorPage(w, r, http.StatusNotFound, fmt.Errorf("no page %s %s", r.Method, r.URL.Path))
	})
	return headers(mux)
}

// headers sets the security headers of every answer, errors and static files
// included.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// request is what a page handler gets: the session and the CSRF token of its forms.
type request struct {
	*http.Request
	s    session
	csrf string
	now  time.Time
}

// view guards a page: no session, to the login page.
func (c *Console) view(h func(http.ResponseWriter, *request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.sessionOf(w, r)
		if !ok {
			c.toLogin(w, r)
			return
		}
		h(w, &request{Request: r, s: s, csrf: c.keys.csrf(s), now: c.clock.Now()})
	})
}

// action guards a form post: a session (401 without), a same-origin request and
// its CSRF token (403 without), and a role at least need (403 for a read-only
// session on an admin action).
func (c *Console) action(need Role, h func(http.ResponseWriter, *request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := c.sessionOf(w, r)
		if !ok {
			c.errorPage(w, r, http.StatusUnauthorized, errors.New("no session: log in first"))
			return
		}
		if err := c.cop.Check(r); err != nil {
			c.log.Warn("console: cross-origin post refused", "path", r.URL.Path, "role", s.Role)
			c.errorPage(w, r, http.StatusForbidden, errors.New("cross-origin request refused"))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if !tokenEqual(r.PostFormValue("csrf"), c.keys.csrf(s)) {
			c.log.Warn("console: post without a valid CSRF token refused", "path", r.URL.Path, "role", s.Role)
			c.errorPage(w, r, http.StatusForbidden, errors.New("missing or wrong CSRF token: reload the page and try again"))
			return
		}
		if need == RoleAdmin && s.Role != RoleAdmin {
			c.log.Warn("console: read-only session tried an action", "path", r.URL.Path)
			c.errorPage(w, r, http.StatusForbidden, errors.New("this session is read-only: log in with the admin token to act"))
			return
		}
		h(w, &request{Request: r, s: s, csrf: c.keys.csrf(s), now: c.clock.Now()})
	})
}

func (c *Console) toLogin(w http.ResponseWriter, r *http.Request) {
	to := c.prefix + "login"
	if r.Method == http.MethodGet && r.URL.Path != c.prefix+"login" {
		to += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// page is what every page template gets.
type page struct {
	Title   string
	Nav     string
	Role    Role
	CSRF    string
	Now     string
	Flash   string
	Error   string
	Data    any
	LoginIn bool
}

// render writes the page named name.
func (c *Console) render(w http.ResponseWriter, code int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "render error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func (c *Console) pageOf(r *request, title, nav string, data any) page {
	p := page{Title: title, Nav: nav, Role: r.s.Role, CSRF: r.csrf, Now: Instant(r.now), Data: data, LoginIn: true}
	p.Flash = c.flash(r)
	return p
}

// flash is the note a page shows after an action, built from the store, never from
// the link's text: ?resolved=ID/K/N shows an attention item that is resolved, and
// nothing for one that is not (a crafted link cannot put words on the page).
func (c *Console) flash(r *request) string {
	// An attempt key, ID/K/N (consent ids hold no "/").
	parts := strings.Split(r.URL.Query().Get("resolved"), "/")
	if len(parts) != 3 {
		return ""
	}
	k, err1 := strconv.Atoi(parts[1])
	n, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		return ""
	}
	key := storage.AttemptKey{ConsentID: parts[0], Cycle: k, Attempt: n}
	a, err := c.store.GetAttempt(r.Context(), key)
	if err != nil || a.Resolved == nil {
		return ""
	}
	return fmt.Sprintf("Resolved %s (%s) by %s.", key, a.Resolved.State, a.Resolved.By)
}

// errorPage answers an error as a page (with the navigation when there is a session).
func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, code int, err error) {
	p := page{Title: http.StatusText(code), Error: err.Error(), Now: Instant(c.clock.Now())}
	if s, ok := c.sessionOf(w, r); ok {
		p.Role, p.CSRF, p.LoginIn = s.Role, c.keys.csrf(s), true
	}
	c.render(w, code, "error", p)
}

// fail answers an error of the store or the scheduler.
func (c *Console) fail(w http.ResponseWriter, r *request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, storage.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, scheduler.ErrConflict), errors.Is(err, storage.ErrConflict):
		code = http.StatusConflict
	case errors.Is(err, scheduler.ErrInvalid), errors.Is(err, scheduler.ErrRange):
		code = http.StatusBadRequest
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, scheduler.ErrNotLeader), errors.Is(err, storage.ErrFenced):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 {
		// The store's or the cluster's own words stay in the log.
		c.log.Error("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		err = fmt.Errorf("%s: the request failed; the operator log has the cause", http.StatusText(code))
		if code == http.StatusServiceUnavailable {
			err = errors.New("this replica cannot serve that now (not the leader, or the store is unreachable); try again, or use the leader")
		}
	}
	c.errorPage(w, r.Request, code, err)
}
