package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/storage/kv"
)

// The feed: every event of every timeline, in one order, for the merchant's webhooks
// and for consumers who pull (GET /v1/events). Added after schema 2 without changing
// it (new buckets only; bolt lays them out when a writer opens the file). Events
// stored before these buckets existed are in their timelines but not in the feed.
//
//	outbox    consent id ‖ 0 ‖ sequence → event instant (Unix ns): events written
//	          and not yet published; putEvents writes the entry in the transaction
//	          of the event itself
//	feed      position (8 bytes) → consent id ‖ 0 ‖ sequence: the published
//	          events, positions 1, 2, 3, … without gaps
//	feed_ids  event id → position
//	webhooks  delivery state of each webhook endpoint:
//	          "c" ‖ 0 ‖ endpoint                    → cursor (position, 8 bytes)
//	          "b" ‖ 0 ‖ endpoint ‖ 0 ‖ consent id   → WebhookBacklog (JSON)
//	          "t" ‖ 0 ‖ endpoint ‖ 0 ‖ next try (8) ‖ consent id → nil (retry timers)
//	          "d" ‖ 0 ‖ endpoint ‖ 0 ‖ consent id   → dead since (Unix ns)
//	meta      feed_next → the next position (8 bytes)
//
// Why an outbox and a relay rather than a feed keyed by the event's instant: a
// writer's instant is taken before its commit, so a reader that had moved past an
// instant could miss an event committed later with an earlier one, and a global
// counter written by every writer would make every write of a distributed engine
// conflict with every other. Writers put only their own outbox keys (no shared key);
// one publisher (the leader's dispatcher, fenced) numbers them into the feed. The
// feed's positions are then final, dense and in commit order within each consent,
// so a cursor is one number and nothing committed behind it can be skipped.
var (
	bucketOutbox   = []byte("outbox")
	bucketFeed     = []byte("feed")
	bucketFeedIDs  = []byte("feed_ids")
	bucketWebhooks = []byte("webhooks")

	keyFeedNext = []byte("feed_next")
)

// EventID is the id of the event seq of a consent's timeline stored at instant at:
// "evt_" and 26 base32 characters of a SHA-256 of the three. It is stable (the same
// stored event always has the same id, on every replica and after a copy between
// engines) and unique: an event written again after a restore from a backup reuses
// a sequence number but not its instant.
func EventID(consentID string, seq uint64, at time.Time) string {
	h := sha256.New()
	h.Write(consentPrefix(consentID))
	h.Write(binary.BigEndian.AppendUint64(nil, seq))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())))
	return "evt_" + strings.ToLower(eventIDEncoding.EncodeToString(h.Sum(nil)[:16]))
}

var eventIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// A FeedEvent is an event as the feed holds it: its position, its id and the event.
type FeedEvent struct {
	Pos   uint64
	ID    string
	Event Event
}

// FeedStatus is the state of the feed: the last position handed out (0: none), and
// the events written but not yet published (and the instant of the oldest).
type FeedStatus struct {
	Head         uint64
	Outbox       int
	OutboxOldest time.Time
}

func posKey(pos uint64) []byte { return binary.BigEndian.AppendUint64(nil, pos) }

// Publish moves up to limit events from the outbox into the feed, in outbox order
// (consent id, then sequence: each consent's events keep their order), numbering
// them from the feed's next position, in one transaction fenced by fence. It returns
// how many it published. Events of the same consent are never published out of
// order: a later event is written only after an earlier one is committed.
func (db *DB) Publish(ctx context.Context, fence kv.Fence, limit int) (int, error) {
	if m := db.kv.MaxOps(); m > 0 {
		limit = min(limit, max((m-1)/3, 1))
	}
	var keys [][]byte
	err := db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketOutbox)
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < limit; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	var n int
	err = db.kv.Update(ctx, kv.Write{Fence: fence}, func(tx kv.Tx) error {
		n = 0
		meta, outbox := tx.Bucket(bucketMeta), tx.Bucket(bucketOutbox)
		feed, ids := tx.Bucket(bucketFeed), tx.Bucket(bucketFeedIDs)
		next := uint64(1)
		if v := meta.Get(keyFeedNext); len(v) == 8 {
			next = binary.BigEndian.Uint64(v)
		}
		for _, k := range keys {
			if outbox.Get(k) == nil {
				continue // published meanwhile (a run before a conflict)
			}
			raw := getEvent(tx, k)
			i := bytes.IndexByte(k, 0)
			if raw == nil || i < 0 || len(k) != i+9 {
				// An outbox entry with no event cannot be published; it goes.
				db.log.Warn("outbox entry without its event dropped", "key", fmt.Sprintf("%x", k))
				if err := outbox.Delete(k); err != nil {
					return err
				}
				continue
			}
			var e Event
			if err := json.Unmarshal(raw, &e); err != nil {
				return fmt.Errorf("%w: event %x: %v", ErrCorrupt, k, err)
			}
			id := EventID(string(k[:i]), binary.BigEndian.Uint64(k[i+1:]), e.At)
			if err := feed.Put(posKey(next), k); err != nil {
				return err
			}
			if err := ids.Put([]byte(id), posKey(next)); err != nil {
				return err
			}
			if err := outbox.Delete(k); err != nil {
				return err
			}
			next++
			n++
		}
		return meta.Put(keyFeedNext, posKey(next))
	})
	db.wrote(err)
	if err != nil {
		return 0, fmt.Errorf("publish: %w", err)
	}
	return n, nil
}

// Feed returns up to limit events of the feed after position after (0: from the
// first), in position order.
func (db *DB) Feed(ctx context.Context, after uint64, limit int) ([]FeedEvent, error) {
	var out []FeedEvent
	err := db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketFeed)
		c := b.Cursor()
		for k, v := c.Seek(posKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			fe, err := feedEvent(tx, k, v)
			if err != nil {
				return err
			}
			out = append(out, fe)
		}
		return nil
	})
	return out, err
}

// FeedAt returns the events at the given positions, in the order given; a position
// not (yet) in the feed is ErrNotFound.
func (db *DB) FeedAt(ctx context.Context, positions []uint64) ([]FeedEvent, error) {
	out := make([]FeedEvent, 0, len(positions))
	err := db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketFeed)
		for _, p := range positions {
			v := b.Get(posKey(p))
			if v == nil {
				return fmt.Errorf("feed position %d: %w", p, ErrNotFound)
			}
			fe, err := feedEvent(tx, posKey(p), v)
			if err != nil {
				return err
			}
			out = append(out, fe)
		}
		return nil
	})
	return out, err
}

func feedEvent(tx kv.Tx, k, v []byte) (FeedEvent, error) {
	i := bytes.IndexByte(v, 0)
	if len(k) != 8 || i < 0 || len(v) != i+9 {
		return FeedEvent{}, fmt.Errorf("%w: feed entry %x", ErrCorrupt, k)
	}
	var e Event
	raw := getEvent(tx, v)
	if raw == nil {
		return FeedEvent{}, fmt.Errorf("feed position %d: %w", binary.BigEndian.Uint64(k), ErrNotFound)
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return FeedEvent{}, fmt.Errorf("feed position %d: %w: record %q: %v", binary.BigEndian.Uint64(k), ErrCorrupt, v, err)
	}
	e.Seq = binary.BigEndian.Uint64(v[i+1:])
	return FeedEvent{Pos: binary.BigEndian.Uint64(k), ID: EventID(e.ConsentID, e.Seq, e.At), Event: e}, nil
}

// FeedPosition returns the position of the event with the given id, or ErrNotFound
// (an unknown id, or an event not published yet).
func (db *DB) FeedPosition(ctx context.Context, id string) (uint64, error) {
	var pos uint64
	err := db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketFeedIDs)
		v := b.Get([]byte(id))
		if len(v) != 8 {
			return fmt.Errorf("event %s: %w", id, ErrNotFound)
		}
		pos = binary.BigEndian.Uint64(v)
		return nil
	})
	return pos, err
}

// FeedStatus returns the feed's head and what waits in the outbox (a walk of the
// outbox's keys and values: it is short unless publishing stopped).
func (db *DB) FeedStatus(ctx context.Context) (FeedStatus, error) {
	var st FeedStatus
	err := db.view(ctx, func(tx kv.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyFeedNext); len(v) == 8 {
			st.Head = binary.BigEndian.Uint64(v) - 1
		}
		b := tx.Bucket(bucketOutbox)
		return b.ForEach(func(_, v []byte) error {
			st.Outbox++
			if len(v) == 8 {
				if at := time.Unix(0, int64(binary.BigEndian.Uint64(v))); st.OutboxOldest.IsZero() || at.Before(st.OutboxOldest) {
					st.OutboxOldest = at
				}
			}
			return nil
		})
	})
	return st, err
}

// A WebhookBacklog is what waits for one webhook endpoint from one consent after a
// failed delivery: the consent's events the endpoint has not yet received, in order
// (its later events wait behind the first, so that the endpoint receives them in
// order), and the retry state of the first.
type WebhookBacklog struct {
	Endpoint  string `json:"-"`
	ConsentID string `json:"-"`
	// Parked are the feed positions waiting, oldest first; the first is the one
	// being retried.
	Parked []uint64 `json:"parked"`
	// Since is the instant of the oldest waiting event (the first).
	Since time.Time `json:"since"`
	// Attempts counts the failed deliveries of the first event; FirstFailure is
	// when the first of them failed.
	Attempts     int       `json:"attempts"`
	FirstFailure time.Time `json:"firstFailure"`
	// NextTry is when the first event is tried again (none while Dead).
	NextTry   time.Time `json:"nextTry"`
	LastError string    `json:"lastError,omitempty"`
	// Dead: the first event failed for longer than the endpoint's maximum age; it
	// waits for an operator (replay or resolve), and so do the ones behind it.
	Dead bool `json:"dead,omitempty"`
	// Version is the record's version; ApplyWebhook writes only while it holds.
	Version uint64 `json:"version"`
}

// A WebhookChange is one atomic write of an endpoint's delivery state.
type WebhookChange struct {
	Endpoint string
	// MoveCursor moves the endpoint's cursor from From to To; the change fails with
	// ErrConflict when the stored cursor is not From (0 when none is stored).
	MoveCursor bool
	From, To   uint64
	// Put writes backlogs, Del deletes them; each only while the store holds the
	// version it carries (0: none stored), ErrConflict otherwise.
	Put, Del []*WebhookBacklog
	Fence    kv.Fence
}

func whKey(kind byte, endpoint string, rest ...[]byte) []byte {
	b := append([]byte{kind, 0}, endpoint...)
	if len(rest) > 0 {
		b = append(b, 0)
	}
	for _, r := range rest {
		b = append(b, r...)
	}
	return b
}

func backlogKey(ep, consentID string) []byte { return whKey('b', ep, []byte(consentID)) }
func deadKey(ep, consentID string) []byte    { return whKey('d', ep, []byte(consentID)) }
func timerKey(ep string, at time.Time, consentID string) []byte {
	return whKey('t', ep, unixNano(at), []byte(consentID))
}

// ApplyWebhook commits ch atomically (fenced by ch.Fence), or writes nothing.
func (db *DB) ApplyWebhook(ctx context.Context, ch *WebhookChange) error {
	err := db.kv.Update(ctx, kv.Write{Fence: ch.Fence, Batch: true}, func(tx kv.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if ch.MoveCursor {
			ck := whKey('c', ch.Endpoint)
			var stored uint64
			if v := b.Get(ck); len(v) == 8 {
				stored = binary.BigEndian.Uint64(v)
			}
			if stored != ch.From {
				return fmt.Errorf("webhook %s: cursor: %w (read %d, stored %d)", ch.Endpoint, ErrConflict, ch.From, stored)
			}
			if err := b.Put(ck, posKey(ch.To)); err != nil {
				return err
			}
		}
		for _, w := range ch.Del {
			if err := putBacklog(b, ch.Endpoint, w, true); err != nil {
				return err
			}
		}
		for _, w := range ch.Put {
			if err := putBacklog(b, ch.Endpoint, w, false); err != nil {
				return err
			}
		}
		return nil
	})
	db.wrote(err)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, w := range ch.Put {
		w.Version++
	}
	return nil
}

// putBacklog writes (or, with del, deletes) w and its timer and dead-letter entries.
func putBacklog(b kv.Bucket, ep string, w *WebhookBacklog, del bool) error {
	key := backlogKey(ep, w.ConsentID)
	var prev *WebhookBacklog
	if raw := b.Get(key); raw != nil {
		prev = &WebhookBacklog{}
		if err := json.Unmarshal(raw, prev); err != nil {
			return fmt.Errorf("%w: webhook backlog %q: %v", ErrCorrupt, key, err)
		}
	}
	stored := uint64(0)
	if prev != nil {
		stored = prev.Version
	}
	if stored != w.Version {
		return fmt.Errorf("webhook %s, consent %s: %w (read at version %d, stored %d)", ep, w.ConsentID, ErrConflict, w.Version, stored)
	}
	if prev != nil {
		if err := b.Delete(timerKey(ep, prev.NextTry, w.ConsentID)); err != nil {
			return err
		}
		if prev.Dead && (del || !w.Dead) {
			if err := b.Delete(deadKey(ep, w.ConsentID)); err != nil {
				return err
			}
		}
	}
	if del {
		return b.Delete(key)
	}
	next := *w
	next.Version++
	next.Parked = slices.Clone(w.Parked)
	if err := putJSON(b, key, &next); err != nil {
		return err
	}
	if w.Dead {
		if prev == nil || !prev.Dead {
			return b.Put(deadKey(ep, w.ConsentID), unixNano(w.FirstFailure))
		}
		return nil
	}
	return b.Put(timerKey(ep, w.NextTry, w.ConsentID), nil)
}

// WebhookCursor returns an endpoint's cursor (every feed position up to it was
// delivered, filtered out or parked in a backlog) and whether one is stored.
func (db *DB) WebhookCursor(ctx context.Context, ep string) (uint64, bool, error) {
	var (
		pos uint64
		ok  bool
	)
	err := db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if v := b.Get(whKey('c', ep)); len(v) == 8 {
			pos, ok = binary.BigEndian.Uint64(v), true
		}
		return nil
	})
	return pos, ok, err
}

// StartWebhook stores the cursor of an endpoint that has none: the feed's head, so
// that a new endpoint receives the events published from now on. It returns the
// endpoint's cursor.
func (db *DB) StartWebhook(ctx context.Context, fence kv.Fence, ep string) (uint64, error) {
	var pos uint64
	err := db.kv.Update(ctx, kv.Write{Fence: fence}, func(tx kv.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if v := b.Get(whKey('c', ep)); len(v) == 8 {
			pos = binary.BigEndian.Uint64(v)
			return nil
		}
		pos = 0
		if v := tx.Bucket(bucketMeta).Get(keyFeedNext); len(v) == 8 {
			pos = binary.BigEndian.Uint64(v) - 1
		}
		return b.Put(whKey('c', ep), posKey(pos))
	})
	db.wrote(err)
	return pos, err
}

// WebhookBacklog returns the backlog of one endpoint and consent, or ErrNotFound.
func (db *DB) WebhookBacklog(ctx context.Context, ep, consentID string) (*WebhookBacklog, error) {
	var w *WebhookBacklog
	err := db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		w = &WebhookBacklog{Endpoint: ep, ConsentID: consentID}
		return getJSON(b, backlogKey(ep, consentID), w)
	})
	if err != nil {
		return nil, fmt.Errorf("webhook %s, consent %s: %w", ep, consentID, err)
	}
	return w, nil
}

// WebhookBacklogs returns every backlog of an endpoint, in consent id order.
func (db *DB) WebhookBacklogs(ctx context.Context, ep string) ([]*WebhookBacklog, error) {
	var out []*WebhookBacklog
	err := db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		prefix := whKey('b', ep, nil)
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			w := &WebhookBacklog{Endpoint: ep, ConsentID: string(k[len(prefix):])}
			if err := json.Unmarshal(v, w); err != nil {
				return fmt.Errorf("%w: webhook backlog %q: %v", ErrCorrupt, k, err)
			}
			out = append(out, w)
		}
		return nil
	})
	return out, err
}

// WebhookDue returns up to limit backlogs of an endpoint whose next try is at or
// before now, earliest first (dead ones have none).
func (db *DB) WebhookDue(ctx context.Context, ep string, now time.Time, limit int) ([]*WebhookBacklog, error) {
	var out []*WebhookBacklog
	err := db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		prefix := whKey('t', ep, nil)
		end := uint64(now.UnixNano())
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
			rest := k[len(prefix):]
			if len(rest) < 8 || binary.BigEndian.Uint64(rest[:8]) > end {
				break
			}
			id := string(rest[8:])
			w := &WebhookBacklog{Endpoint: ep, ConsentID: id}
			if err := getJSON(b, backlogKey(ep, id), w); err != nil {
				return err
			}
			out = append(out, w)
		}
		return nil
	})
	return out, err
}

// WebhookDeadLetters returns up to limit dead backlogs of every endpoint, in
// endpoint then consent order, after the cursor after ("" from the first), and the
// cursor of the next page ("" when none).
func (db *DB) WebhookDeadLetters(ctx context.Context, after string, limit int) ([]*WebhookBacklog, string, error) {
	from, err := decodeCursor(after)
	if err != nil {
		return nil, "", err
	}
	var (
		out  []*WebhookBacklog
		next string
	)
	err = db.view(ctx, func(tx kv.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		prefix := []byte{'d', 0}
		c := b.Cursor()
		k, _ := c.Seek(prefix)
		if from != nil {
			if k, _ = c.Seek(from); k != nil && bytes.Equal(k, from) {
				k, _ = c.Next()
			}
		}
		var last []byte
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(out) == limit {
				next = encodeCursor(last)
				break
			}
			rest := k[2:]
			i := bytes.IndexByte(rest, 0)
			if i < 0 {
				return fmt.Errorf("%w: dead letter key %x", ErrCorrupt, k)
			}
			ep, id := string(rest[:i]), string(rest[i+1:])
			w := &WebhookBacklog{Endpoint: ep, ConsentID: id}
			if err := getJSON(b, backlogKey(ep, id), w); err != nil {
				return err
			}
			out = append(out, w)
			last = bytes.Clone(k)
		}
		return nil
	})
	return out, next, err
}
