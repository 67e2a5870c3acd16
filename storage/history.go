package storage

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage/kv"
)

// Schema 2: each consent's timeline (events), attention items that know since when
// they are open, due entries that know what they will charge, and attempts indexed
// by date (the ledger).
//
//	events     consent id ‖ 0 ‖ sequence (8 bytes) → Event (JSON)
//	dates      date (Rata Die, 4 bytes) ‖ attempt key → nil
//	attention  state ‖ 0 ‖ attempt key → since (Unix ns, 8 bytes): open items only
//	due        instant ‖ attempt key → kind (1 byte) [‖ amount in centavos (8 bytes)]

// ErrBadCursor: a paging cursor that this store did not hand out.
var ErrBadCursor = errors.New("malformed cursor")

func eventKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(consentPrefix(id), seq)
}

func dateKey(d cycle.Date, k AttemptKey) []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(k.ConsentID)+7), uint32(d.Rata()))
	return appendAttemptKey(b, k)
}

func encodeCursor(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }

func decodeCursor(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%w %q", ErrBadCursor, s)
	}
	return b, nil
}

// indexAttempt keeps the attention and dates indexes in step with a write of a (prev
// is the stored record it replaces, nil when new). An attention item keeps the
// instant it opened while the attempt stays in that state.
func indexAttempt(tx kv.Tx, prev *attemptHead, a *Attempt) error {
	attention := tx.Bucket(bucketAttention)
	prevOpen := prev != nil && prev.open()
	if prevOpen && (!a.Open() || prev.State != a.State) {
		if err := attention.Delete(attentionKey(prev.State, a.AttemptKey)); err != nil {
			return err
		}
	}
	if a.Open() && !(prevOpen && prev.State == a.State) {
		if err := attention.Put(attentionKey(a.State, a.AttemptKey), unixNano(a.UpdatedAt)); err != nil {
			return err
		}
	}
	// Most writes of an attempt (a status poll, a reason) keep its date: its entry is
	// already there, and putting it again would dirty a page of the dates index (and
	// the branch pages above it) in every such commit.
	if prev != nil && prev.Date == a.Date {
		return nil
	}
	dates := tx.Bucket(bucketDates)
	if prev != nil && !prev.Date.IsZero() {
		if err := dates.Delete(dateKey(prev.Date, a.AttemptKey)); err != nil {
			return err
		}
	}
	if !a.Date.IsZero() {
		return dates.Put(dateKey(a.Date, a.AttemptKey), nil)
	}
	return nil
}

func unixNano(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(t.UnixNano()))
}

// putAmount stores a variable cycle's amount, and the amount of that cycle's due
// entry when it is the consent's next one.
func putAmount(tx kv.Tx, ca CycleAmount) error {
	id := []byte(ca.ConsentID)
	if tx.Bucket(bucketConsents).Get(id) == nil {
		return fmt.Errorf("consent %s: %w", ca.ConsentID, ErrNotFound)
	}
	if err := tx.Bucket(bucketAmounts).Put(amountKey(ca.ConsentID, ca.Cycle), binary.BigEndian.AppendUint64(nil, uint64(ca.Amount))); err != nil {
		return err
	}
	var cur consentCursor
	if err := getJSON(tx.Bucket(bucketCursors), id, &cur); err != nil || cur.NextCycle != ca.Cycle || cur.NextDue.IsZero() {
		return nil
	}
	due := tx.Bucket(bucketDue)
	key := timeKey(cur.NextDue, AttemptKey{ConsentID: ca.ConsentID, Cycle: ca.Cycle})
	if v := due.Get(key); v != nil && (len(v) == 0 || DueKind(v[0]) == DueOriginal) {
		return due.Put(key, encodeDue(DueOriginal, ca.Amount, true))
	}
	return nil
}

func encodeDue(k DueKind, amount klavi.Cents, ok bool) []byte {
	if !ok {
		return []byte{byte(k)}
	}
	return binary.BigEndian.AppendUint64([]byte{byte(k)}, uint64(amount))
}

func decodeDue(v []byte) (k DueKind, amount klavi.Cents, ok bool) {
	if len(v) == 0 {
		return DueUnknown, 0, false
	}
	if len(v) == 9 {
		return DueKind(v[0]), klavi.Cents(binary.BigEndian.Uint64(v[1:])), true
	}
	return DueKind(v[0]), 0, false
}

// dueValue works out what the due entry for attempt k will do, from the change being
// applied (ch may be nil) and what is stored.
func dueValue(tx kv.Tx, ch *Change, k AttemptKey) ([]byte, error) {
	kind, amount, ok, err := dueOf(tx, ch, k)
	if err != nil {
		return nil, err
	}
	return encodeDue(kind, amount, ok), nil
}

func dueOf(tx kv.Tx, ch *Change, k AttemptKey) (DueKind, klavi.Cents, bool, error) {
	var a *Attempt
	if ch != nil {
		for i := len(ch.Attempts) - 1; i >= 0 && a == nil; i-- {
			if ch.Attempts[i].AttemptKey == k {
				a = ch.Attempts[i]
			}
		}
	}
	if a == nil {
		if raw, _ := getAttempt(tx, k); raw != nil {
			var st Attempt
			if err := json.Unmarshal(raw, &st); err != nil {
				return 0, 0, false, fmt.Errorf("%w: attempt %s: %v", ErrCorrupt, k, err)
			}
			a = &st
		}
	}
	switch {
	case a != nil && a.State == AttemptPlanned:
		return DueRetry, a.Amount, true, nil
	case a != nil && a.State == AttemptSubmitting && a.Confirm == "":
		return DueResend, a.Amount, true, nil
	case a != nil:
		return DueLookup, 0, false, nil
	}
	// The original of a cycle not yet decided: the consent's fixed amount, or the
	// amount set for the cycle.
	var c *consent.Consent
	if ch != nil {
		for _, r := range []*ConsentRecord{ch.Consent, ch.Cursor} {
			if r != nil && r.Consent != nil && r.Consent.ID == k.ConsentID {
				c = r.Consent
				break
			}
		}
	}
	if c == nil {
		body := tx.Bucket(bucketConsents).Get([]byte(k.ConsentID))
		if body == nil {
			return DueOriginal, 0, false, nil
		}
		b, err := decodeBody([]byte(k.ConsentID), body)
		if err != nil {
			return 0, 0, false, err
		}
		c = b.Consent
	}
	if fixed, ok := c.FixedAmount(); ok {
		return DueOriginal, fixed, true, nil
	}
	if v := tx.Bucket(bucketAmounts).Get(amountKey(k.ConsentID, k.Cycle)); len(v) == 8 {
		return DueOriginal, klavi.Cents(binary.BigEndian.Uint64(v)), true, nil
	}
	return DueOriginal, 0, false, nil
}

// putEvents appends events to their consents' timelines.
func putEvents(tx kv.Tx, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	b := tx.Bucket(bucketEvents)
	for _, e := range events {
		if e.ConsentID == "" {
			return fmt.Errorf("event %s: no consent id", e.Kind)
		}
		// A timeline's sequence is its own: the next number after the consent's last
		// event. (Schema 2 files written before numbered events from one counter for
		// all consents; their numbers still increase within each timeline.) A counter
		// shared by every consent would make every write of a distributed engine
		// conflict with every other.
		prefix := consentPrefix(e.ConsentID)
		seq := uint64(1)
		k, _ := b.Last(prefix)
		if k == nil {
			// The newest event stays live (archive.go); only a timeline with none
			// yet, or one moved by hand, looks in the archive.
			k, _ = tx.Bucket(bucketEventArchive).Last(prefix)
		}
		if len(k) == len(prefix)+8 {
			seq = binary.BigEndian.Uint64(k[len(prefix):]) + 1
		}
		e.Seq = seq
		key := binary.BigEndian.AppendUint64(prefix, seq) // eventKey; Put keeps no key
		raw, err := marshalEvent(&e)
		if err != nil {
			return err
		}
		if err := b.Put(key, raw); err != nil {
			return err
		}
		// The outbox entry, in the same transaction: Publish moves it to the feed.
		if err := tx.Bucket(bucketOutbox).Put(key, unixNano(e.At)); err != nil {
			return err
		}
	}
	return nil
}

// migrate brings a file of schema from up to SchemaVersion, in the transaction that
// opens it for writing.
//   - 1 to 2: migrate2.
//   - 2 to 3: nothing is rewritten. The archive buckets start empty (bolt lays them
//     out when a writer opens the file; on etcd a bucket is a key prefix) and every
//     read looks in both; settled attempts and older events move there as their
//     consents settle their next attempt, or at once with Compact. The version
//     changes so that a billingd that knows no archive refuses the file.
func migrate(tx kv.Tx, from uint32, log *slog.Logger) error {
	if from < 2 {
		if err := migrate2(tx, log); err != nil {
			return err
		}
	}
	log.Info("database migrated", "schema_from", from, "schema_to", SchemaVersion)
	return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
}

// migrate2 lays schema 2 over a schema 1 file: the new buckets, the dates index of
// every attempt, the opening instant of every open attention item (its attempt's
// UpdatedAt, the best the file knows), and the kind and amount of every due entry.
// A schema 1 file has no archive: every attempt is in the live bucket.
func migrate2(tx kv.Tx, log *slog.Logger) error {
	folds := tx.Bucket(bucketFolds)
	if err := tx.Bucket(bucketConsents).ForEach(func(k, _ []byte) error {
		return folds.Put([]byte(strings.ToLower(string(k))), bytes.Clone(k))
	}); err != nil {
		return err
	}
	attention, dates := tx.Bucket(bucketAttention), tx.Bucket(bucketDates)
	var n int
	if err := tx.Bucket(bucketAttempts).ForEach(func(k, v []byte) error {
		var a Attempt
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("%w: attempt %x: %v", ErrCorrupt, k, err)
		}
		n++
		if !a.Date.IsZero() {
			if err := dates.Put(dateKey(a.Date, a.AttemptKey), nil); err != nil {
				return err
			}
		}
		if a.Open() {
			return attention.Put(attentionKey(a.State, a.AttemptKey), unixNano(a.UpdatedAt))
		}
		return nil
	}); err != nil {
		return err
	}
	due := tx.Bucket(bucketDue)
	var keys [][]byte
	if err := due.ForEach(func(k, _ []byte) error {
		keys = append(keys, bytes.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		_, key, err := parseTimeKey(k)
		if err != nil {
			return fmt.Errorf("%w: due index key %x", ErrCorrupt, k)
		}
		v, err := dueValue(tx, nil, key)
		if err != nil {
			return err
		}
		if err := due.Put(k, v); err != nil {
			return err
		}
	}
	log.Info("database migrated", "schema_from", 1, "schema_to", 2, "attempts", n, "due_entries", len(keys))
	return nil
}

// Events returns up to limit events of a consent's timeline after the event whose
// Seq is after (0: from the first), oldest first, and whether more follow. A consent
// with no events (or an unknown one) has an empty timeline.
func (db *DB) Events(ctx context.Context, consentID string, after uint64, limit int) ([]Event, bool, error) {
	var (
		out  []Event
		more bool
	)
	err := db.view(ctx, func(tx kv.Tx) error {
		prefix := consentPrefix(consentID)
		return merged(tx.Bucket(bucketEvents), tx.Bucket(bucketEventArchive), prefix, eventKey(consentID, after+1), func(k, v []byte) (bool, error) {
			if len(k) != len(prefix)+8 {
				return false, nil
			}
			if len(out) == limit {
				more = true
				return false, nil
			}
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return false, fmt.Errorf("%w: event %x: %v", ErrCorrupt, k, err)
			}
			e.Seq = binary.BigEndian.Uint64(k[len(prefix):])
			out = append(out, e)
			return true, nil
		})
	})
	return out, more, err
}

// An AttentionItem is an open attention item: the attempt, and since when it has
// been open (the instant it entered its state).
type AttentionItem struct {
	Attempt *Attempt
	Since   time.Time
}

// AttentionItems returns up to limit open attention items in state s ("" for every
// attention state, in state then attempt order) after the item named by the cursor
// after ("" from the first), and the cursor of the next page ("" when none). It
// reads the attention index and the listed attempts only.
func (db *DB) AttentionItems(ctx context.Context, s AttemptState, after string, limit int) ([]AttentionItem, string, error) {
	from, err := decodeCursor(after)
	if err != nil {
		return nil, "", err
	}
	var (
		out  []AttentionItem
		next string
	)
	err = db.view(ctx, func(tx kv.Tx) error {
		c := tx.Bucket(bucketAttention).Cursor()
		var prefix []byte
		if s != "" {
			prefix = append([]byte(s), 0)
		}
		var k, v []byte
		switch {
		case from != nil:
			if k, v = c.Seek(from); k != nil && bytes.Equal(k, from) {
				k, v = c.Next()
			}
		case prefix != nil:
			k, v = c.Seek(prefix)
		default:
			k, v = c.First()
		}
		var last []byte
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(out) == limit {
				next = encodeCursor(last)
				break
			}
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				return fmt.Errorf("%w: attention key %x", ErrCorrupt, k)
			}
			var a Attempt
			if err := readAttempt(tx, k[i+1:], &a); err != nil {
				return err
			}
			since := a.UpdatedAt
			if len(v) == 8 {
				since = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			}
			out = append(out, AttentionItem{Attempt: &a, Since: since})
			last = k
		}
		return nil
	})
	return out, next, err
}

// AttentionSince returns the instant attempt k's open attention item in state st
// opened, and false when there is no such open item.
func (db *DB) AttentionSince(ctx context.Context, k AttemptKey, st AttemptState) (time.Time, bool, error) {
	var (
		since time.Time
		ok    bool
	)
	err := db.view(ctx, func(tx kv.Tx) error {
		v := tx.Bucket(bucketAttention).Get(attentionKey(st, k))
		if v == nil {
			return nil
		}
		ok = true
		if len(v) == 8 {
			since = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			return nil
		}
		var a Attempt
		if err := readAttempt(tx, attemptKeyBytes(k), &a); err != nil {
			return err
		}
		since = a.UpdatedAt
		return nil
	})
	return since, ok, err
}

// AttentionOldest returns, for each attention state, the instant its oldest open item
// opened; a state with none is absent. It reads index keys and values only (no
// record is decoded, except for items written before schema 2 in a file opened
// read-only).
func (db *DB) AttentionOldest(ctx context.Context) (map[AttemptState]time.Time, error) {
	out := map[AttemptState]time.Time{}
	err := db.view(ctx, func(tx kv.Tx) error {
		c := tx.Bucket(bucketAttention).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			i := bytes.IndexByte(k, 0)
			if i <= 0 {
				continue
			}
			var since time.Time
			if len(v) == 8 {
				since = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			} else {
				var a Attempt
				if err := readAttempt(tx, k[i+1:], &a); err != nil {
					continue
				}
				since = a.UpdatedAt
			}
			st := AttemptState(k[:i])
			if old, ok := out[st]; !ok || since.Before(old) {
				out[st] = since
			}
		}
		return nil
	})
	return out, err
}

// DueUntil returns every entry of the due index at or before until, oldest first,
// with what each will do. It reads the index only (entries written before schema 2
// are worked out from their records).
func (db *DB) DueUntil(ctx context.Context, until time.Time) ([]DueEntry, error) {
	var out []DueEntry
	err := db.view(ctx, func(tx kv.Tx) error {
		return walkDue(tx, until, func(e DueEntry) { out = append(out, e) })
	})
	return out, err
}

func walkDue(tx kv.Tx, until time.Time, fn func(DueEntry)) error {
	end := uint64(until.UnixNano())
	c := tx.Bucket(bucketDue).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) > end {
			break
		}
		at, key, err := parseTimeKey(k)
		if err != nil {
			return fmt.Errorf("%w: due index key %x", ErrCorrupt, k)
		}
		kind, amount, ok := decodeDue(v)
		if kind == DueUnknown {
			if kind, amount, ok, err = dueOf(tx, nil, key); err != nil {
				return err
			}
		}
		fn(DueEntry{Entry: Entry{At: at, Key: key}, Kind: kind, Amount: amount, HasAmount: ok})
	}
	return nil
}

// A DueTotal sums the due index up to an instant.
type DueTotal struct {
	Until time.Time
	// Charges counts entries that may send a payment request (originals, planned
	// local retries, re-sends); Amount sums their known amounts in centavos.
	Charges int
	Amount  klavi.Cents
	// NoAmount counts originals of variable consents with no amount set.
	NoAmount int
}

// DueTotals sums the due index up to each instant of untils (overdue entries
// included) in one walk of the index keys and values: no record is decoded.
func (db *DB) DueTotals(ctx context.Context, untils ...time.Time) ([]DueTotal, error) {
	out := make([]DueTotal, len(untils))
	var last time.Time
	for i, u := range untils {
		out[i].Until = u
		if u.After(last) {
			last = u
		}
	}
	err := db.view(ctx, func(tx kv.Tx) error {
		return walkDue(tx, last, func(e DueEntry) {
			if !e.Kind.Charges() {
				return
			}
			for i := range out {
				if e.At.After(out[i].Until) {
					continue
				}
				out[i].Charges++
				if e.HasAmount {
					out[i].Amount += e.Amount
				} else if e.Kind == DueOriginal {
					out[i].NoAmount++
				}
			}
		})
	})
	return out, err
}

// EachAttemptBetween calls fn for every attempt whose Date is in [from, to]
// (Brasília dates), in date then attempt-key order, reading the dates index. fn's
// error stops the walk and is returned.
func (db *DB) EachAttemptBetween(ctx context.Context, from, to cycle.Date, fn func(*Attempt) error) error {
	return db.view(ctx, func(tx kv.Tx) error {
		_, err := walkDates(tx, from, to, nil, "", func(_ []byte, a *Attempt) (bool, error) { return true, fn(a) })
		return err
	})
}

// AttemptsBetween returns up to limit attempts whose Date is in [from, to], of
// consent consentID ("" for every consent) and that keep accepts (nil: all), after
// the cursor after ("" from the first), in date then attempt-key order, and the
// cursor of the next page ("" when none). ErrBadCursor for a cursor it did not give.
func (db *DB) AttemptsBetween(ctx context.Context, from, to cycle.Date, consentID, after string, limit int, keep func(*Attempt) bool) ([]*Attempt, string, error) {
	start, err := decodeCursor(after)
	if err != nil {
		return nil, "", err
	}
	var (
		out  []*Attempt
		next string
		last []byte
	)
	err = db.view(ctx, func(tx kv.Tx) error {
		_, err := walkDates(tx, from, to, start, consentID, func(k []byte, a *Attempt) (bool, error) {
			if keep != nil && !keep(a) {
				return true, nil
			}
			if len(out) == limit {
				next = encodeCursor(last)
				return false, nil
			}
			out = append(out, a)
			last = bytes.Clone(k)
			return true, nil
		})
		return err
	})
	return out, next, err
}

// walkDates walks the dates index over [from, to], after the key start when set,
// skipping (before decoding) attempts of other consents than consentID when set.
func walkDates(tx kv.Tx, from, to cycle.Date, start []byte, consentID string, fn func(k []byte, a *Attempt) (bool, error)) (bool, error) {
	prefix := consentPrefix(consentID)
	b := tx.Bucket(bucketDates)
	end := uint32(to.Rata())
	c := b.Cursor()
	var k []byte
	if start != nil {
		if k, _ = c.Seek(start); k != nil && bytes.Equal(k, start) {
			k, _ = c.Next()
		}
	} else {
		k, _ = c.Seek(binary.BigEndian.AppendUint32(nil, uint32(from.Rata())))
	}
	for ; k != nil; k, _ = c.Next() {
		if len(k) < 4 || binary.BigEndian.Uint32(k[:4]) > end {
			break
		}
		if binary.BigEndian.Uint32(k[:4]) < uint32(from.Rata()) || consentID != "" && !(bytes.HasPrefix(k[4:], prefix) && len(k) == 4+len(prefix)+6) {
			continue
		}
		var a Attempt
		if err := readAttempt(tx, k[4:], &a); err != nil {
			return false, err
		}
		goOn, err := fn(k, &a)
		if err != nil || !goOn {
			return goOn, err
		}
	}
	return true, nil
}
