package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/webhook"
)

// StateWebhookDead is the attention state of a dead letter: a consent's events an
// endpoint did not take for longer than webhooks.max_age (webhook.Dispatcher). It is
// resolved by a replay (billingd webhooks replay) or by giving the first event up
// (POST /v1/attention/resolve with "webhook").
const StateWebhookDead = "WEBHOOK_DEAD"

// webhookCursor prefixes the attention list's cursor within the dead letters.
const webhookCursor = "webhook:"

// Webhooks is what the API reads and changes of the merchant's webhooks.
type Webhooks interface {
	Status(ctx context.Context) ([]webhook.EndpointStatus, error)
	Replay(ctx context.Context, endpoint string, r webhook.Replay) (webhook.ReplayResult, error)
	Resolve(ctx context.Context, endpoint, consentID, note, actor string) (*storage.WebhookBacklog, error)
	DeadLetters(ctx context.Context, after string, limit int) ([]webhook.DeadLetter, string, error)
	Events(ctx context.Context, after uint64, limit int) ([]webhook.Payload, error)
}

var _ Webhooks = (*webhook.Dispatcher)(nil)

// WithWebhooks sets the webhooks (nil, the default: GET /v1/events, /v1/webhooks
// and replays answer 503, and the attention list has no WEBHOOK_DEAD items).
func WithWebhooks(w Webhooks) Option {
	return func(s *Server) {
		if w != nil {
			s.webhooks = w
		}
	}
}

func (s *Server) webhookRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/events", s.feed)
	mux.HandleFunc("GET /v1/webhooks", s.webhookStatus)
	mux.HandleFunc("POST /v1/webhooks/{name}/replay", s.webhookReplay)
}

func (s *Server) noWebhooks(w http.ResponseWriter) bool {
	if s.webhooks == nil {
		writeError(w, http.StatusServiceUnavailable, errors.New("webhooks are not available in this process"), nil)
		return true
	}
	return false
}

// failWebhook maps the webhook package's errors, then the others as fail does.
func (s *Server) failWebhook(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, webhook.ErrUnknownEndpoint):
		writeError(w, http.StatusNotFound, err, nil)
	case errors.Is(err, webhook.ErrInvalid), errors.Is(err, storage.ErrBadCursor):
		writeError(w, http.StatusBadRequest, err, nil)
	default:
		s.fail(w, r, err)
	}
}

// feed serves GET /v1/events?after=POSITION&limit=N: the events of every consent,
// in feed order, as the webhooks carry them; next is the position to ask after
// (the last one given, or after itself when none: poll again with it).
func (s *Server) feed(w http.ResponseWriter, r *http.Request) {
	if s.noWebhooks(w) {
		return
	}
	limit, after, ok := pageParams(w, r.URL.Query(), 1000, "a position (the next of an earlier page, or 0)")
	if !ok {
		return
	}
	list, err := s.webhooks.Events(r.Context(), after, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	next := after
	if len(list) > 0 {
		next = list[len(list)-1].Position
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": list, "next": strconv.FormatUint(next, 10), "more": len(list) == limit})
}

func (s *Server) webhookStatus(w http.ResponseWriter, r *http.Request) {
	if s.noWebhooks(w) {
		return
	}
	st, err := s.webhooks.Status(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": st})
}

func (s *Server) webhookReplay(w http.ResponseWriter, r *http.Request) {
	if s.noWebhooks(w) {
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req webhook.Replay
	if l := problem.DecodeJSON(body, &req); len(l) > 0 {
		writeError(w, http.StatusBadRequest, errors.New("invalid replay request"), l)
		return
	}
	res, err := s.webhooks.Replay(r.Context(), r.PathValue("name"), req)
	if err != nil {
		s.failWebhook(w, r, err)
		return
	}
	s.log.Info("webhook replay requested", "endpoint", r.PathValue("name"), "actor", redact.Name(actorOf(r)))
	writeJSON(w, http.StatusOK, res)
}

// deadItem is a dead letter as an attention item.
func deadItem(d webhook.DeadLetter, now time.Time) AttentionItem {
	return AttentionItem{ConsentID: d.ConsentID, State: StateWebhookDead, Endpoint: d.Endpoint, EventID: d.EventID,
		Reason: fmt.Sprintf("webhook %s: event %s (%s) failed %d times since %s (%s); %d event(s) of the consent wait: replay or resolve",
			d.Endpoint, d.EventID, d.Type, d.Attempts, d.Since.In(cycle.Brasilia).Format("2006-01-02 15:04 MST"), d.LastError, d.Waiting),
		Since: d.Since.In(cycle.Brasilia), AgeSeconds: int64(max(now.Sub(d.Since), 0) / time.Second)}
}

// deadLetters returns up to limit WEBHOOK_DEAD items after the cursor after (without
// its prefix) and the attention list's next cursor ("" when none).
func (s *Server) deadLetters(ctx context.Context, after string, limit int, now time.Time) ([]AttentionItem, string, error) {
	if s.webhooks == nil || limit <= 0 {
		return nil, "", nil
	}
	list, next, err := s.webhooks.DeadLetters(ctx, after, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]AttentionItem, len(list))
	for i, d := range list {
		out[i] = deadItem(d, now)
	}
	if next != "" {
		next = webhookCursor + next
	}
	return out, next, nil
}

// deadCount is the number of open WEBHOOK_DEAD items (0 without webhooks).
func (s *Server) deadCount(ctx context.Context) (int, error) {
	if s.webhooks == nil {
		return 0, nil
	}
	st, err := s.webhooks.Status(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range st {
		n += e.Dead
	}
	return n, nil
}

// resolveDead gives up the first event of a dead letter (POST /v1/attention/resolve
// with "webhook": the endpoint's name).
func (s *Server) resolveDead(w http.ResponseWriter, r *http.Request, req resolveRequest) {
	if s.noWebhooks(w) {
		return
	}
	if req.ConsentID == "" || strings.TrimSpace(req.Note) == "" {
		writeError(w, http.StatusBadRequest, errors.New(`consentId and note are required, e.g. {"webhook": "shop", "consentId": "...", "note": "..."}`), nil)
		return
	}
	was, err := s.webhooks.Resolve(r.Context(), req.Webhook, req.ConsentID, req.Note, actorOf(r))
	if err != nil {
		s.failWebhook(w, r, err)
		return
	}
	now := s.clock.Now()
	writeJSON(w, http.StatusOK, AttentionItem{ConsentID: req.ConsentID, State: StateWebhookDead, Endpoint: req.Webhook,
		Reason: "resolved: the first waiting event is given up; the later ones are delivered", Since: was.FirstFailure.In(cycle.Brasilia),
		AgeSeconds: int64(max(now.Sub(was.FirstFailure), 0) / time.Second)})
}
