package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/storage"
)

// EndpointStatus is what `billingd webhooks list` and the metrics show of an
// endpoint.
type EndpointStatus struct {
	Name string `json:"name"`
	// URL without its query, user and password (they may hold credentials).
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// Cursor: every feed position up to it was delivered, filtered out or is
	// waiting in a backlog; Head is the feed's last position.
	Cursor uint64 `json:"cursor"`
	Head   uint64 `json:"head"`
	// Backlog counts the events the endpoint has not received yet: not yet
	// published, after its cursor, and waiting behind a failed delivery.
	Backlog int `json:"backlog"`
	// Waiting counts the consents whose events wait behind a failed delivery, and
	// Dead those of them dead-lettered.
	Waiting int `json:"waitingConsents"`
	Dead    int `json:"deadLetters"`
	// Oldest is the instant of the oldest event not yet received (nil: none).
	Oldest *time.Time `json:"oldestUndelivered,omitempty"`
}

// Status returns the state of every configured endpoint. It reads the store only
// (every replica can answer).
func (d *Dispatcher) Status(ctx context.Context) ([]EndpointStatus, error) {
	fs, err := d.store.FeedStatus(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]EndpointStatus, 0, len(d.cfg.Endpoints))
	for _, ep := range d.cfg.Endpoints {
		st := EndpointStatus{Name: ep.Name, URL: redactURL(ep.URL), Events: slices.Clone(ep.Events), Head: fs.Head, Backlog: fs.Outbox}
		if st.Events == nil {
			st.Events = []string{}
		}
		var oldest time.Time
		older := func(t time.Time) {
			if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
				oldest = t
			}
		}
		older(fs.OutboxOldest)
		cur, ok, err := d.store.WebhookCursor(ctx, ep.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			cur = fs.Head // it starts at the head when the dispatcher first sees it
		}
		st.Cursor = cur
		if fs.Head > cur {
			st.Backlog += int(fs.Head - cur)
			if next, err := d.store.FeedAt(ctx, []uint64{cur + 1}); err == nil && len(next) == 1 {
				older(next[0].Event.At)
			}
		}
		bls, err := d.store.WebhookBacklogs(ctx, ep.Name)
		if err != nil {
			return nil, err
		}
		for _, b := range bls {
			st.Backlog += len(b.Parked)
			if len(b.Parked) > 0 {
				st.Waiting++
				older(b.Since)
			}
			if b.Dead {
				st.Dead++
			}
		}
		if !oldest.IsZero() {
			st.Oldest = &oldest
		}
		out = append(out, st)
	}
	return out, nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func (d *Dispatcher) endpoint(name string) (*Endpoint, error) {
	ep, ok := d.eps[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (configured: %v)", ErrUnknownEndpoint, name, d.Endpoints())
	}
	return ep, nil
}

// A Replay says what to deliver again to an endpoint; exactly one field is set.
type Replay struct {
	// From: every event after this feed position, in order (the cursor moves back
	// to it, and the endpoint's backlogs, dead ones too, are folded into it).
	From *uint64 `json:"from,omitempty"`
	// EventID: that one event, again (queued behind the consent's waiting events).
	EventID string `json:"eventId,omitempty"`
	// ConsentID: the consent's waiting events, now (a dead letter is revived: its
	// first event gets max_age again).
	ConsentID string `json:"consentId,omitempty"`
	// Dead: every dead letter of the endpoint, as ConsentID does one.
	Dead bool `json:"dead,omitempty"`
}

// ReplayResult says what a Replay did.
type ReplayResult struct {
	Endpoint string `json:"endpoint"`
	// Cursor is the endpoint's cursor after the replay.
	Cursor uint64 `json:"cursor"`
	// Requeued counts the events queued again; Revived the backlogs retried now.
	Requeued int    `json:"requeued"`
	Revived  int    `json:"revived"`
	Note     string `json:"note,omitempty"`
}

// Replay queues events of an endpoint again (see Replay). The running dispatcher
// (the leader's) delivers them on its next pass. Writes are versioned: one that
// meets a concurrent change of the dispatcher is read and made again.
func (d *Dispatcher) Replay(ctx context.Context, endpoint string, r Replay) (ReplayResult, error) {
	ep, err := d.endpoint(endpoint)
	if err != nil {
		return ReplayResult{}, err
	}
	n := 0
	for _, set := range []bool{r.From != nil, r.EventID != "", r.ConsentID != "", r.Dead} {
		if set {
			n++
		}
	}
	if n != 1 {
		return ReplayResult{}, fmt.Errorf("%w: name exactly one of from, eventId, consentId, dead", ErrInvalid)
	}
	res := ReplayResult{Endpoint: ep.Name}
	switch {
	case r.From != nil:
		err = d.retrying(ctx, func() error { return d.rewind(ctx, ep, *r.From, &res) })
	case r.EventID != "":
		err = d.retrying(ctx, func() error { return d.requeue(ctx, ep, r.EventID, &res) })
	case r.ConsentID != "":
		err = d.retrying(ctx, func() error {
			b, err := d.store.WebhookBacklog(ctx, ep.Name, r.ConsentID)
			if errors.Is(err, storage.ErrNotFound) {
				res.Note = "nothing of this consent waits for the endpoint"
				return nil
			}
			if err != nil {
				return err
			}
			res.Revived = 1
			return d.revive(ctx, b)
		})
	default:
		err = d.retrying(ctx, func() error {
			res.Revived = 0
			after := ""
			for {
				list, next, err := d.store.WebhookDeadLetters(ctx, after, 500)
				if err != nil {
					return err
				}
				for _, b := range list {
					if b.Endpoint != ep.Name {
						continue
					}
					if err := d.revive(ctx, b); err != nil {
						return err
					}
					res.Revived++
				}
				if next == "" {
					return nil
				}
				after = next
			}
		})
	}
	if err != nil {
		return res, err
	}
	if res.Cursor, _, err = d.store.WebhookCursor(ctx, ep.Name); err != nil {
		return res, err
	}
	d.log.Info("webhooks: replay", "endpoint", ep.Name, "from", r.From, "event_id", r.EventID, "consent_id", r.ConsentID,
		"dead", r.Dead, "requeued", res.Requeued, "revived", res.Revived, "cursor", res.Cursor)
	return res, nil
}

// retrying runs fn again while it meets a concurrent change (ErrConflict).
func (d *Dispatcher) retrying(ctx context.Context, fn func() error) error {
	var err error
	for range 10 {
		if err = fn(); !errors.Is(err, storage.ErrConflict) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// revive makes a backlog due now, with a fresh max_age.
func (d *Dispatcher) revive(ctx context.Context, b *storage.WebhookBacklog) error {
	now := d.clock.Now()
	b.Dead, b.Attempts, b.FirstFailure, b.NextTry = false, 0, now, now
	return d.store.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: b.Endpoint, Put: []*storage.WebhookBacklog{b}})
}

// rewind moves the cursor back to from, folding the backlogs into it first (a
// chunk at a time, each in one transaction: the cursor goes below a backlog's
// first event in the transaction that deletes the backlog, so no event is lost in
// between; the events between are delivered again, same ids).
func (d *Dispatcher) rewind(ctx context.Context, ep *Endpoint, from uint64, res *ReplayResult) error {
	cur, ok, err := d.store.WebhookCursor(ctx, ep.Name)
	if err != nil {
		return err
	}
	if !ok || from > cur {
		return fmt.Errorf("%w: position %d is after the endpoint's cursor %d: those events are still to be delivered", ErrInvalid, from, cur)
	}
	for range 1000 {
		bls, err := d.store.WebhookBacklogs(ctx, ep.Name)
		if err != nil {
			return err
		}
		if len(bls) == 0 {
			break
		}
		bls = bls[:min(len(bls), d.batch())]
		if cur, _, err = d.store.WebhookCursor(ctx, ep.Name); err != nil {
			return err
		}
		to := cur
		for _, b := range bls {
			if len(b.Parked) > 0 {
				to = min(to, b.Parked[0]-1)
			}
		}
		if err := d.store.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: ep.Name, MoveCursor: true, From: cur, To: to, Del: bls}); err != nil {
			return err
		}
	}
	if cur, _, err = d.store.WebhookCursor(ctx, ep.Name); err != nil {
		return err
	}
	if from < cur {
		if err := d.store.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: ep.Name, MoveCursor: true, From: cur, To: from}); err != nil {
			return err
		}
		cur = from
	}
	head, err := d.store.FeedStatus(ctx)
	if err != nil {
		return err
	}
	res.Requeued = int(head.Head - min(cur, head.Head))
	return nil
}

// requeue queues one delivered event again, behind the consent's waiting events.
func (d *Dispatcher) requeue(ctx context.Context, ep *Endpoint, id string, res *ReplayResult) error {
	pos, err := d.store.FeedPosition(ctx, id)
	if err != nil {
		return err
	}
	fe, err := d.store.FeedAt(ctx, []uint64{pos})
	if err != nil {
		return err
	}
	cur, _, err := d.store.WebhookCursor(ctx, ep.Name)
	if err != nil {
		return err
	}
	if pos > cur {
		res.Note = "the event is not delivered yet; it will be"
		return nil
	}
	e := fe[0].Event
	b, err := d.store.WebhookBacklog(ctx, ep.Name, e.ConsentID)
	now := d.clock.Now()
	switch {
	case errors.Is(err, storage.ErrNotFound):
		b = &storage.WebhookBacklog{Endpoint: ep.Name, ConsentID: e.ConsentID, Since: e.At, FirstFailure: now, NextTry: now}
	case err != nil:
		return err
	}
	i, found := slices.BinarySearch(b.Parked, pos)
	if found {
		res.Note = "the event already waits to be delivered"
		return nil
	}
	b.Parked = slices.Insert(b.Parked, i, pos)
	if i == 0 {
		b.Since = e.At
	}
	res.Requeued = 1
	if b.Dead {
		res.Note = "the consent is dead-lettered for this endpoint: replay it (--consent) to deliver"
	}
	return d.store.ApplyWebhook(ctx, &storage.WebhookChange{Endpoint: ep.Name, Put: []*storage.WebhookBacklog{b}})
}

// Resolve gives up the first event of a dead letter (an operator decided the
// endpoint will not get it, with a note): the consent's events behind it are
// delivered from now on. It returns the backlog as it was. The note is free text and
// is not kept: the log line says only its length.
func (d *Dispatcher) Resolve(ctx context.Context, endpoint, consentID, note, actor string) (*storage.WebhookBacklog, error) {
	ep, err := d.endpoint(endpoint)
	if err != nil {
		return nil, err
	}
	var was storage.WebhookBacklog
	err = d.retrying(ctx, func() error {
		b, err := d.store.WebhookBacklog(ctx, ep.Name, consentID)
		if err != nil {
			return err
		}
		if !b.Dead {
			return fmt.Errorf("%w: the events of consent %s for endpoint %s are not dead-lettered (replay them instead)", ErrInvalid, consentID, ep.Name)
		}
		was = *b
		was.Parked = slices.Clone(b.Parked)
		ch := &storage.WebhookChange{Endpoint: ep.Name}
		if len(b.Parked) <= 1 {
			ch.Del = []*storage.WebhookBacklog{b}
			return d.store.ApplyWebhook(ctx, ch)
		}
		rest, err := d.store.FeedAt(ctx, b.Parked[1:2])
		if err != nil {
			return err
		}
		now := d.clock.Now()
		b.Parked, b.Since = b.Parked[1:], rest[0].Event.At
		b.Dead, b.Attempts, b.FirstFailure, b.NextTry, b.LastError = false, 0, now, now, ""
		ch.Put = []*storage.WebhookBacklog{b}
		return d.store.ApplyWebhook(ctx, ch)
	})
	if err != nil {
		return nil, err
	}
	// The note and the actor are an operator's free text: the log says only that
	// they were given (redact.Text, redact.Name).
	d.log.Warn("webhooks: dead letter resolved: its first event is given up", "endpoint", ep.Name, "consent_id", consentID,
		"position", was.Parked[0], "actor", redact.Name(actor), "note", redact.Text(note))
	return &was, nil
}

// A DeadLetter is a dead-lettered backlog as the attention list shows it.
type DeadLetter struct {
	Endpoint  string    `json:"endpoint"`
	ConsentID string    `json:"consentId"`
	EventID   string    `json:"eventId"`
	Type      string    `json:"type"`
	Position  uint64    `json:"position"`
	Waiting   int       `json:"waiting"`
	Attempts  int       `json:"attempts"`
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError"`
}

// DeadLetters returns up to limit dead letters of the configured endpoints after
// the cursor after, and the next page's cursor ("" when none).
func (d *Dispatcher) DeadLetters(ctx context.Context, after string, limit int) ([]DeadLetter, string, error) {
	list, next, err := d.store.WebhookDeadLetters(ctx, after, limit)
	if err != nil {
		return nil, "", err
	}
	out := make([]DeadLetter, 0, len(list))
	for _, b := range list {
		if _, ok := d.eps[b.Endpoint]; !ok || len(b.Parked) == 0 {
			continue
		}
		dl := DeadLetter{Endpoint: b.Endpoint, ConsentID: b.ConsentID, Position: b.Parked[0], Waiting: len(b.Parked),
			Attempts: b.Attempts, Since: b.FirstFailure, LastError: b.LastError}
		if fe, err := d.store.FeedAt(ctx, b.Parked[:1]); err == nil {
			dl.EventID, dl.Type = fe[0].ID, fe[0].Event.Kind
		}
		out = append(out, dl)
	}
	return out, next, nil
}

// Events returns up to limit events of the feed after position after, for
// consumers who pull (GET /v1/events): the same payloads the webhooks carry.
func (d *Dispatcher) Events(ctx context.Context, after uint64, limit int) ([]Payload, error) {
	list, err := d.store.Feed(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Payload, len(list))
	for i, fe := range list {
		out[i] = PayloadOf(fe)
	}
	return out, nil
}
