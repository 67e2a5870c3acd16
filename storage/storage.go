package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage/kv"
)

// SchemaVersion is the layout this code reads and writes. A database with a higher
// version was written by a newer billingd and is refused, never rewritten. An older
// file is migrated in place when a writer opens it (migrate); a reader reads it as
// it is. Version 1 had no events or dates bucket and empty index values; version 2
// kept every attempt and event in the live buckets. Version 3 keeps settled ones
// in the archive buckets (archive.go), which a billingd that reads version 2 would
// not see: it refuses the file instead of billing from half of it.
const SchemaVersion = 3

// Sentinel errors. Callers branch with errors.Is.
var (
	// ErrNotFound: no such consent, attempt or amount.
	ErrNotFound = errors.New("not found")
	// ErrExists: a consent with that id is already stored.
	ErrExists = errors.New("already exists")
	// ErrLocked: another process (usually a running billingd) holds the file.
	ErrLocked = errors.New("database is locked by another process")
	// ErrNotBillingd: a valid store (a bbolt file, an etcd prefix) that billingd did not write.
	ErrNotBillingd = errors.New("not a billingd database")
	// ErrCorrupt: the file is not a bbolt database, or a store is damaged.
	ErrCorrupt = errors.New("database file is corrupt")
	// ErrSchema: written by a newer billingd.
	ErrSchema = errors.New("unsupported schema version")
	// ErrReplaced: the path no longer names the file this DB has open (it was moved
	// away, replaced or removed). Every later write fails with it and writes nothing:
	// a write to the open file would be lost to whoever opens the path next.
	ErrReplaced = errors.New("database file was replaced or removed while open")
	// ErrSimulated: the store was made by billingd simulate (NotSimulated): its
	// consents and payments are a simulation's, and a daemon billing on it would
	// charge them for real, or record every cycle it finds overdue MISSED. Refused
	// before anything is written (Options.RefuseSimulated); reading it is fine.
	ErrSimulated = errors.New("the store was made by billingd simulate")
	// ErrConflict: a record changed since the writer read it (its Version moved on),
	// or an optimistic engine kept meeting concurrent writers; nothing was written.
	// Read again and decide again.
	ErrConflict = kv.ErrConflict
	// ErrFenced: the write carried a fencing token that no longer holds (this replica
	// lost its leadership); nothing was written.
	ErrFenced = kv.ErrFenced
	// ErrTooLarge: one change is more than the engine commits at once.
	ErrTooLarge = kv.ErrTooLarge
	// ErrUnavailable: the store cannot be reached (etcd: no quorum or no answer in
	// time). A write's outcome is then unknown: it may have been committed, and the
	// record versions it carried are stale either way.
	ErrUnavailable = kv.ErrUnavailable
)

var (
	bucketMeta      = []byte("meta")
	bucketConsents  = []byte("consents")
	bucketCursors   = []byte("cursors")
	bucketDue       = []byte("due")
	bucketAttempts  = []byte("attempts")
	bucketPoll      = []byte("poll")
	bucketAmounts   = []byte("amounts")
	bucketAttention = []byte("attention")
	bucketEvents    = []byte("events")
	bucketDates     = []byte("dates")
	// bucketFolds maps each consent id in lower case to the id as stored, so that a
	// consent whose id differs from a stored one only in letter case is refused.
	bucketFolds = []byte("consent_folds")

	// Buckets names every bucket of the layout, for the engines to lay out. The
	// feed's buckets (feed.go) came after schema 2 without changing it: bolt lays
	// them out when a writer opens the file.
	Buckets = [][]byte{bucketMeta, bucketConsents, bucketCursors, bucketDue, bucketAttempts, bucketPoll, bucketAmounts, bucketAttention, bucketEvents, bucketDates, bucketFolds,
		bucketOutbox, bucketFeed, bucketFeedIDs, bucketWebhooks, bucketArchive, bucketEventArchive, bucketTerms}

	keySchema = []byte("schema")
	keyCounts = []byte("consent_counts")
	// keyHighWater holds the latest instant the scheduler acted on (Unix ns, big-endian).
	keyHighWater = []byte("high_water")
	keyMagic     = []byte("application")
	magic        = []byte("billingd")
	// keySimulated marks a store billingd simulate made (Options.Simulated), with
	// simulatedMark as its value; no other store has the key. Copies keep it: it is a
	// meta record like the others (backup, compaction, migration copy every one).
	keySimulated  = []byte("simulated")
	simulatedMark = []byte("billingd simulate")
)

// Store is billingd's store as every engine provides it (*DB over a kv.Engine);
// the scheduler, the admin API and the metrics read and write through it.
type Store interface {
	GetConsent(ctx context.Context, id string) (*ConsentRecord, error)
	GetConsentAttempt(ctx context.Context, k AttemptKey) (*ConsentRecord, *Attempt, error)
	GetConsentAttempts(ctx context.Context, keys []AttemptKey, out []ConsentAttempt) ([]ConsentAttempt, error)
	ReleaseMapped()
	ListConsents(ctx context.Context, after string, limit int, state ConsentState) ([]*ConsentRecord, error)
	ListConsentTerms(ctx context.Context, after string, limit int, state ConsentState) ([]*ConsentRecord, error)
	GetAttempt(ctx context.Context, k AttemptKey) (*Attempt, error)
	Attempts(ctx context.Context, consentID string) ([]*Attempt, error)
	Attention(ctx context.Context, s AttemptState, limit int) ([]*Attempt, error)
	DueBefore(ctx context.Context, t time.Time, limit int) ([]DueItem, error)
	PollBefore(ctx context.Context, t time.Time, limit int) ([]PollItem, error)
	DueBounds(ctx context.Context, now time.Time) (oldest, next time.Time, err error)
	NextWork(ctx context.Context, t time.Time) (time.Time, error)
	Amount(ctx context.Context, id string, k int) (klavi.Cents, bool, error)
	Amounts(ctx context.Context, id string) (map[int]klavi.Cents, error)
	SetAmount(ctx context.Context, id string, k int, c klavi.Cents) error
	Counts(ctx context.Context) (map[ConsentState]int, error)
	HighWater(ctx context.Context) (time.Time, error)
	AttentionCounts(ctx context.Context) (map[AttemptState]int, error)
	Apply(ctx context.Context, ch *Change) error
	ApplyAll(ctx context.Context, chs []*Change) (applied int, err error)
	Events(ctx context.Context, consentID string, after uint64, limit int) ([]Event, bool, error)
	AttentionItems(ctx context.Context, s AttemptState, after string, limit int) ([]AttentionItem, string, error)
	AttentionSince(ctx context.Context, k AttemptKey, st AttemptState) (time.Time, bool, error)
	AttentionOldest(ctx context.Context) (map[AttemptState]time.Time, error)
	DueUntil(ctx context.Context, until time.Time) ([]DueEntry, error)
	DueTotals(ctx context.Context, untils ...time.Time) ([]DueTotal, error)
	EachAttemptBetween(ctx context.Context, from, to cycle.Date, fn func(*Attempt) error) error
	AttemptsBetween(ctx context.Context, from, to cycle.Date, consentID, after string, limit int, keep func(*Attempt) bool) ([]*Attempt, string, error)
	Publish(ctx context.Context, fence kv.Fence, limit int) (int, error)
	Feed(ctx context.Context, after uint64, limit int) ([]FeedEvent, error)
	FeedAt(ctx context.Context, positions []uint64) ([]FeedEvent, error)
	FeedPosition(ctx context.Context, id string) (uint64, error)
	FeedStatus(ctx context.Context) (FeedStatus, error)
	ApplyWebhook(ctx context.Context, ch *WebhookChange) error
	WebhookCursor(ctx context.Context, ep string) (uint64, bool, error)
	StartWebhook(ctx context.Context, fence kv.Fence, ep string) (uint64, error)
	WebhookBacklog(ctx context.Context, ep, consentID string) (*WebhookBacklog, error)
	WebhookBacklogs(ctx context.Context, ep string) ([]*WebhookBacklog, error)
	WebhookDue(ctx context.Context, ep string, now time.Time, limit int) ([]*WebhookBacklog, error)
	WebhookDeadLetters(ctx context.Context, after string, limit int) ([]*WebhookBacklog, string, error)
	Probe(ctx context.Context) error
	Check(ctx context.Context) error
	Compact(ctx context.Context, chunk int, progress func(attempts, events int)) (attempts, events int, err error)
	Schema(ctx context.Context) (int, error)
	Engine() kv.Engine
	Close() error
}

var _ Store = (*DB)(nil)

// Optional capabilities: what some engines have and others do not. Callers check
// with a type assertion and say plainly when the running engine lacks one.
type (
	// Snapshotter hands over a consistent copy of the store's file, open and
	// rewound, with its size (storage/bolt; etcd has etcdctl snapshot save).
	Snapshotter interface {
		Snapshot(ctx context.Context) (*os.File, int64, error)
	}
	// Sizer reports the store's size figures.
	Sizer interface {
		Stats(ctx context.Context) (Stats, error)
	}
	// Verifier walks the store's own structure (bbolt's pages) before a daemon
	// relies on it.
	Verifier interface {
		Verify(ctx context.Context) error
	}
)

// Stats are the store's size and how much of it holds data, in bytes.
type Stats struct {
	SizeBytes  int64 // size of the files (bolt: the database file and its archive file) or of the member's database (etcd)
	InUseBytes int64 // bytes holding data (bolt: pages below the high-water mark, minus free pages)
	FreePages  int   // bolt only
}

// Options tune New. The zero value is the production setting.
type Options struct {
	// ReadOnly never writes: an empty store is refused (ErrNotBillingd) instead of
	// laid out, and an older schema is read as it is.
	ReadOnly bool
	// Logger receives open/close notes; nil is slog.Default().
	Logger *slog.Logger
	// OnWrite, when not nil, is told the outcome of every write: nil once it is
	// committed, the error when the store could not write (a full disk, a read-only
	// file system, a replaced file, a damaged page, an unreachable cluster). A write
	// refused for what it contains (ErrExists, ErrNotFound, ErrConflict) or for a
	// lost leadership (ErrFenced) is not reported: the store itself is fine.
	// It is called on the writer's goroutine and must not block.
	OnWrite func(err error)
	// Simulated marks a new store as billingd simulate's (meta key "simulated",
	// written with the layout, in the same transaction as the application marker).
	// An existing store is neither marked nor unmarked.
	Simulated bool
	// RefuseSimulated fails New with ErrSimulated for a store billingd simulate made,
	// before anything is written (the check is the first read): billingd run's
	// setting, which bills on the store.
	RefuseSimulated bool
}

// DB is billingd's store: the records and indexes of DESIGN.md, kept in any
// kv.Engine (storage/bolt, storage/etcd).
type DB struct {
	kv       kv.Engine
	log      *slog.Logger
	onWrite  func(error)
	readOnly bool
	// refused is the fewest changes ApplyAll found too large for one transaction
	// (ErrTooLarge; 0: none) in its last refusedFor calls: later transactions hold
	// fewer, instead of halving down from all their changes again, each halving a
	// transaction built and refused (with its reads, on etcd). It is forgotten after
	// refusedFor calls without a refusal, as changes differ in size (a bulk load's
	// against a scan's SUBMITTING attempts). calls counts ApplyAll calls;
	// refusedCall is the call that last set refused.
	refused, calls, refusedCall atomic.Int64
}

// New lays billingd's records over an engine: it checks the store's marker and
// schema, lays out an empty store (unless ReadOnly), and migrates an older schema.
// It fails with ErrNotBillingd for a store another program wrote, ErrSchema for a
// newer layout, ErrCorrupt for an unreadable marker; the store is then untouched.
// The DB owns the engine: Close closes it.
func New(ctx context.Context, e kv.Engine, opts Options) (*DB, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	db := &DB{kv: e, log: log, onWrite: opts.OnWrite, readOnly: opts.ReadOnly}
	if opts.RefuseSimulated {
		if err := e.View(ctx, NotSimulated); err != nil {
			return nil, err
		}
	}
	if err := db.init(ctx, opts.Simulated); err != nil {
		return nil, err
	}
	return db, nil
}

// Engine returns the engine the DB is kept in.
func (db *DB) Engine() kv.Engine { return db.kv }

// NotSimulated returns an ErrSimulated when the store tx reads was made by billingd
// simulate (its meta bucket holds the mark of Options.Simulated), nil otherwise. An
// engine calls it to refuse such a store before it writes anything of its own.
func NotSimulated(tx kv.Tx) error {
	if bytes.Equal(tx.Bucket(bucketMeta).Get(keySimulated), simulatedMark) {
		return fmt.Errorf("%w: its consents and payments are a simulation's; a daemon billing on it would charge them for real", ErrSimulated)
	}
	return nil
}

// Simulated reports whether billingd simulate made the store (Options.Simulated).
func (db *DB) Simulated(ctx context.Context) (bool, error) {
	err := db.view(ctx, NotSimulated)
	if errors.Is(err, ErrSimulated) {
		return true, nil
	}
	return false, err
}

// init checks the marker and schema version, and lays out or migrates the store;
// a new store is marked as a simulation's when simulated.
func (db *DB) init(ctx context.Context, simulated bool) error {
	check := func(tx kv.Tx) (fresh bool, schema uint32, err error) {
		meta := tx.Bucket(bucketMeta)
		mark := meta.Get(keyMagic)
		if mark == nil {
			if k, _ := meta.Cursor().First(); k != nil {
				return false, 0, fmt.Errorf("%w: its meta records were not written by billingd", ErrNotBillingd)
			}
			return true, 0, nil
		}
		if !bytes.Equal(mark, magic) {
			return false, 0, fmt.Errorf("%w: its meta records were not written by billingd", ErrNotBillingd)
		}
		v := meta.Get(keySchema)
		if len(v) != 4 {
			return false, 0, fmt.Errorf("%w: no schema version", ErrCorrupt)
		}
		n := binary.BigEndian.Uint32(v)
		if n > SchemaVersion {
			return false, n, fmt.Errorf("%w %d: this billingd reads version %d; use a newer billingd", ErrSchema, n, SchemaVersion)
		}
		return false, n, nil
	}
	var (
		fresh  bool
		schema uint32
	)
	// Check with a read transaction: opening a current store writes nothing.
	if err := db.kv.View(ctx, func(tx kv.Tx) error {
		var err error
		fresh, schema, err = check(tx)
		return err
	}); err != nil {
		return err
	}
	switch {
	case fresh && db.readOnly:
		return fmt.Errorf("%w: the store is empty", ErrNotBillingd)
	case db.readOnly, !fresh && schema == SchemaVersion:
		return nil
	case !fresh:
		return db.kv.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			_, n, err := check(tx)
			if err != nil || n >= SchemaVersion {
				return err
			}
			return migrate(tx, n, db.log)
		})
	}
	return db.kv.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
		fresh, _, err := check(tx)
		if err != nil || !fresh {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyMagic, magic); err != nil {
			return err
		}
		if simulated {
			if err := meta.Put(keySimulated, simulatedMark); err != nil {
				return err
			}
		}
		return meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
	})
}

func (db *DB) view(ctx context.Context, fn func(tx kv.Tx) error) error {
	return db.kv.View(ctx, fn)
}

// update runs fn in a write transaction of its own.
func (db *DB) update(ctx context.Context, fn func(tx kv.Tx) error) error {
	err := db.kv.Update(ctx, kv.Write{}, fn)
	db.wrote(err)
	return err
}

// wrote reports a write's outcome to Options.OnWrite.
func (db *DB) wrote(err error) {
	if db.onWrite == nil || errors.Is(err, ErrExists) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrFenced) {
		return
	}
	db.onWrite(err)
}

// FailureReason sorts a write error into a few kinds, for a metric label and an
// operator's first look: "enospc" (no space left), "replaced" (ErrReplaced),
// "readonly" (a read-only file system or no write permission), "unavailable"
// (ErrUnavailable: no quorum, no answer in time), "other".
func FailureReason(err error) string {
	switch {
	case errors.Is(err, ErrReplaced):
		return "replaced"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case isNoSpace(err):
		return "enospc"
	case isReadOnly(err):
		return "readonly"
	}
	return "other"
}

// Schema returns the schema version the store holds.
func (db *DB) Schema(ctx context.Context) (int, error) {
	n := 0
	err := db.view(ctx, func(tx kv.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySchema); len(v) == 4 {
			n = int(binary.BigEndian.Uint32(v))
		}
		return nil
	})
	return n, err
}

// Close closes the engine.
func (db *DB) Close() error { return db.kv.Close() }

// Probe commits a write that changes nothing (the schema version, rewritten) and
// reports it to Options.OnWrite like any write: a daemon whose writes failed learns
// from it that the store writes again, without waiting for real work.
func (db *DB) Probe(ctx context.Context) error {
	return db.update(ctx, func(tx kv.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
	})
}

func getJSON(b kv.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: record %q: %v", ErrCorrupt, key, err)
	}
	return nil
}

func putJSON(b kv.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// A consent record is stored in two parts: the consent itself, written when it is
// added or its status changes, and its billing cursor, rewritten at every cycle. The
// hot path never re-encodes the (larger) consent.
type consentBody struct {
	Consent     json.RawMessage `json:"consent"`
	AddedAt     time.Time       `json:"addedAt"`
	RedirectURL string          `json:"redirectUrl,omitempty"`
}

// decodedBody is consentBody as it is read: the consent decoded in the same pass
// (a RawMessage would be scanned, copied, then scanned again).
type decodedBody struct {
	Consent     *consent.Consent `json:"consent"`
	AddedAt     time.Time        `json:"addedAt"`
	RedirectURL string           `json:"redirectUrl,omitempty"`
}

// decodeBody reads a stored consent body; a body that does not decode, or holds no
// consent, is ErrCorrupt.
func decodeBody(id, body []byte) (decodedBody, error) {
	var b decodedBody
	if err := json.Unmarshal(body, &b); err != nil {
		return b, fmt.Errorf("%w: consent %q: %v", ErrCorrupt, id, err)
	}
	if b.Consent == nil {
		return b, fmt.Errorf("%w: consent %q does not decode", ErrCorrupt, id)
	}
	return b, nil
}

type consentCursor struct {
	State       ConsentState `json:"state"`
	StateReason string       `json:"stateReason,omitempty"`
	UpdatedAt   time.Time    `json:"updatedAt"`
	BillFrom    cycle.Date   `json:"billFrom"`
	NextCycle   int          `json:"nextCycle"`
	NextDue     time.Time    `json:"nextDue,omitzero"`
	RefreshedAt time.Time    `json:"refreshedAt,omitzero"`
	Version     uint64       `json:"version,omitempty"`
}

func cursorOf(r *ConsentRecord) consentCursor {
	return consentCursor{State: r.State, StateReason: r.StateReason, UpdatedAt: r.UpdatedAt, BillFrom: r.BillFrom, NextCycle: r.NextCycle, NextDue: r.NextDue, RefreshedAt: r.RefreshedAt, Version: r.Version + 1}
}

// readConsent assembles a record from its two parts.
func readConsent(tx kv.Tx, id []byte, body []byte) (*ConsentRecord, error) {
	return readRecord(tx, id, body, decodeBody)
}

// readRecord assembles a record from a body (the consent's, or its terms'), read by
// decode, and the consent's cursor.
func readRecord(tx kv.Tx, id []byte, body []byte, decode func(id, body []byte) (decodedBody, error)) (*ConsentRecord, error) {
	var (
		cur consentCursor
		r   ConsentRecord
	)
	b, err := decode(id, body)
	if err != nil {
		return nil, err
	}
	r.Consent = b.Consent
	if raw := tx.Bucket(bucketCursors).Get(id); raw == nil || readCursor(raw, &cur) != nil {
		return nil, fmt.Errorf("%w: consent %q has no billing cursor", ErrCorrupt, id)
	}
	r.AddedAt, r.RedirectURL = b.AddedAt, b.RedirectURL
	r.State, r.StateReason, r.UpdatedAt, r.BillFrom, r.NextCycle, r.NextDue, r.RefreshedAt, r.Version = cur.State, cur.StateReason, cur.UpdatedAt, cur.BillFrom, cur.NextCycle, cur.NextDue, cur.RefreshedAt, cur.Version
	return &r, nil
}

// ReleaseMapped gives back the resident memory that reading many records took: on
// bolt, the file's pages leave this process's page tables (they stay in the page
// cache, and a later read maps them again from there); on etcd, nothing. A walk of
// every consent (the scheduler's start-up re-plan) calls it page by page, so that
// a store of a year's history, whose records bbolt spread over the whole file, does
// not map the file into the daemon's resident memory.
func (db *DB) ReleaseMapped() {
	if r, ok := db.kv.(interface{ ReleaseMapped() }); ok {
		r.ReleaseMapped()
	}
}

// GetConsent returns the stored consent id, or ErrNotFound.
func (db *DB) GetConsent(ctx context.Context, id string) (*ConsentRecord, error) {
	var r *ConsentRecord
	err := db.view(ctx, func(tx kv.Tx) error {
		body := tx.Bucket(bucketConsents).Get([]byte(id))
		if body == nil {
			return ErrNotFound
		}
		var err error
		r, err = readConsent(tx, []byte(id), body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consent %s: %w", id, err)
	}
	return r, nil
}

// ListConsents returns up to limit consents with ids after the id after (""
// starts at the beginning), in id order; state "" matches every state.
func (db *DB) ListConsents(ctx context.Context, after string, limit int, state ConsentState) ([]*ConsentRecord, error) {
	return db.listConsents(ctx, after, limit, state, readConsent)
}

// ListConsentTerms is ListConsents through the consents' terms (terms.go): each
// record is partial where its terms are current, as GetConsentAttempt's. For a
// walk that plans (the scheduler's re-plan), not one that shows or changes a
// consent.
func (db *DB) ListConsentTerms(ctx context.Context, after string, limit int, state ConsentState) ([]*ConsentRecord, error) {
	return db.listConsents(ctx, after, limit, state, readTerms)
}

func (db *DB) listConsents(ctx context.Context, after string, limit int, state ConsentState, read func(kv.Tx, []byte, []byte) (*ConsentRecord, error)) ([]*ConsentRecord, error) {
	var out []*ConsentRecord
	err := db.view(ctx, func(tx kv.Tx) error {
		c := tx.Bucket(bucketConsents).Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && string(k) == after {
				k, v = c.Next()
			}
		}
		cursors := tx.Bucket(bucketCursors)
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			if state != "" {
				var cur consentCursor
				if err := getJSON(cursors, k, &cur); err != nil || cur.State != state {
					continue
				}
			}
			r, err := read(tx, k, v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// GetAttempt returns one attempt, or ErrNotFound.
func (db *DB) GetAttempt(ctx context.Context, k AttemptKey) (*Attempt, error) {
	var a Attempt
	err := db.view(ctx, func(tx kv.Tx) error {
		raw, _ := getAttempt(tx, k)
		if raw == nil {
			return ErrNotFound
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("%w: record %q: %v", ErrCorrupt, attemptKeyBytes(k), err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("attempt %s: %w", k, err)
	}
	return &a, nil
}

// GetConsentAttempt reads consent k.ConsentID and its attempt k in one read
// transaction (on etcd, one linearizable read where GetConsent then GetAttempt are
// two): the record, and the attempt or nil when it has none. ErrNotFound when the
// consent is not stored; ErrCorrupt when either record does not decode.
//
// The record is read through the consent's terms (terms.go) when they are current:
// its Consent then holds only consent.Consent.Terms, and the record can be written
// with its cursor or its consent's status changed, nothing else.
func (db *DB) GetConsentAttempt(ctx context.Context, k AttemptKey) (*ConsentRecord, *Attempt, error) {
	var (
		r   *ConsentRecord
		a   *Attempt
		err error
	)
	if verr := db.view(ctx, func(tx kv.Tx) error {
		r, a, err = readConsentAttempt(tx, k)
		return err
	}); verr != nil {
		return nil, nil, fmt.Errorf("attempt %s: %w", k, verr)
	}
	return r, a, nil
}

// ConsentAttempt is GetConsentAttempt's answer for Key, as GetConsentAttempts gives
// it: Record and Attempt, or Err (ErrNotFound, ErrCorrupt, wrapped with the key).
type ConsentAttempt struct {
	Key     AttemptKey
	Record  *ConsentRecord
	Attempt *Attempt
	Err     error
}

// GetConsentAttempts reads GetConsentAttempt's answer for each of keys, in one read
// transaction (bbolt: one transaction, its buckets and cursors, for them all; etcd:
// their keys read in one round trip), into out (cleared; returned, in the order of
// keys). A key's own failure is in its Err; the returned error is the
// transaction's (the engine failed, or a damaged page was met), and then out holds
// nothing.
func (db *DB) GetConsentAttempts(ctx context.Context, keys []AttemptKey, out []ConsentAttempt) ([]ConsentAttempt, error) {
	out = out[:0]
	err := db.view(ctx, func(tx kv.Tx) error {
		out = out[:0] // an engine may run fn again
		if p, ok := tx.(kv.Prefetcher); ok && len(keys) > 1 {
			p.Prefetch(consentAttemptReads(keys))
		}
		for _, k := range keys {
			r, a, err := readConsentAttempt(tx, k)
			if err != nil {
				err = fmt.Errorf("attempt %s: %w", k, err)
			}
			out = append(out, ConsentAttempt{Key: k, Record: r, Attempt: a, Err: err})
		}
		return nil
	})
	if err != nil {
		return out[:0], err
	}
	return out, nil
}

// consentAttemptReads lists the keys readConsentAttempt reads for keys, for
// kv.Prefetcher: each consent's body, terms and cursor, each attempt's live and
// archived record.
func consentAttemptReads(keys []AttemptKey) []kv.BucketKey {
	out := make([]kv.BucketKey, 0, 5*len(keys))
	for _, k := range keys {
		id, key := []byte(k.ConsentID), attemptKeyBytes(k)
		out = append(out, kv.BucketKey{Bucket: bucketConsents, Key: id}, kv.BucketKey{Bucket: bucketTerms, Key: id},
			kv.BucketKey{Bucket: bucketCursors, Key: id}, kv.BucketKey{Bucket: bucketAttempts, Key: key},
			kv.BucketKey{Bucket: bucketArchive, Key: key})
	}
	return out
}

// readConsentAttempt is GetConsentAttempt in tx.
func readConsentAttempt(tx kv.Tx, k AttemptKey) (*ConsentRecord, *Attempt, error) {
	id := []byte(k.ConsentID)
	body := tx.Bucket(bucketConsents).Get(id)
	if body == nil {
		return nil, nil, ErrNotFound
	}
	r, err := readTerms(tx, id, body)
	if err != nil {
		return nil, nil, err
	}
	raw, _ := getAttempt(tx, k)
	if raw == nil {
		return r, nil, nil
	}
	a := new(Attempt)
	if err := json.Unmarshal(raw, a); err != nil {
		return nil, nil, fmt.Errorf("%w: record %q: %v", ErrCorrupt, attemptKeyBytes(k), err)
	}
	return r, a, nil
}

// Attempts returns every attempt of a consent, in cycle and attempt order.
func (db *DB) Attempts(ctx context.Context, consentID string) ([]*Attempt, error) {
	var out []*Attempt
	err := db.view(ctx, func(tx kv.Tx) error {
		prefix := consentPrefix(consentID)
		return merged(tx.Bucket(bucketAttempts), tx.Bucket(bucketArchive), prefix, prefix, func(k, v []byte) (bool, error) {
			if len(k) != len(prefix)+6 {
				return false, nil
			}
			var a Attempt
			if err := json.Unmarshal(v, &a); err != nil {
				return false, fmt.Errorf("%w: attempt %q: %v", ErrCorrupt, k, err)
			}
			out = append(out, &a)
			return true, nil
		})
	})
	return out, err
}

// Attention returns up to limit attempts in state s (UNCONFIRMED, MISSED, FAILED or
// SKIPPED), the items an operator must look at, from an index (no full scan).
func (db *DB) Attention(ctx context.Context, s AttemptState, limit int) ([]*Attempt, error) {
	var out []*Attempt
	err := db.view(ctx, func(tx kv.Tx) error {
		c := tx.Bucket(bucketAttention).Cursor()
		prefix := append([]byte(s), 0)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
			var a Attempt
			if err := readAttempt(tx, k[len(prefix):], &a); err != nil {
				return err
			}
			out = append(out, &a)
		}
		return nil
	})
	return out, err
}

// DueBefore returns up to limit entries of the due index at or before t, oldest
// first. It reads only those entries.
func (db *DB) DueBefore(ctx context.Context, t time.Time, limit int) ([]DueItem, error) {
	var out []DueItem
	err := db.view(ctx, func(tx kv.Tx) error {
		return scanTimeIndex(tx.Bucket(bucketDue), t, limit, func(at time.Time, k AttemptKey) {
			out = append(out, DueItem{At: at, Key: k})
		})
	})
	return out, err
}

// PollBefore returns up to limit entries of the poll index at or before t.
func (db *DB) PollBefore(ctx context.Context, t time.Time, limit int) ([]PollItem, error) {
	var out []PollItem
	err := db.view(ctx, func(tx kv.Tx) error {
		return scanTimeIndex(tx.Bucket(bucketPoll), t, limit, func(at time.Time, k AttemptKey) {
			out = append(out, PollItem{At: at, Key: k})
		})
	})
	return out, err
}

func scanTimeIndex(b kv.Bucket, t time.Time, limit int, fn func(time.Time, AttemptKey)) error {
	end := uint64(t.UnixNano())
	c := b.Cursor()
	for k, _ := c.First(); k != nil && limit > 0; k, _ = c.Next() {
		if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) > end {
			break
		}
		at, key, err := parseTimeKey(k)
		if err != nil {
			return fmt.Errorf("%w: index key %x", ErrCorrupt, k)
		}
		fn(at, key)
		limit--
	}
	return nil
}

// DueBounds returns the oldest entry of the due index at or before now (the oldest
// work not yet done) and the first entry after now (the next scheduled work). Either
// is zero when there is none.
func (db *DB) DueBounds(ctx context.Context, now time.Time) (oldest, next time.Time, err error) {
	err = db.view(ctx, func(tx kv.Tx) error {
		c := tx.Bucket(bucketDue).Cursor()
		k, _ := c.First()
		if k == nil {
			return nil
		}
		first := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
		if !first.After(now) {
			oldest = first
			k, _ = c.Seek(binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano())+1))
			if k == nil {
				return nil
			}
			first = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
		}
		next = first
		return nil
	})
	return oldest, next, err
}

// NextWork returns the earliest entry of the due or poll index after t, or the zero
// time when there is none. A virtual clock jumps there (billingd simulate).
func (db *DB) NextWork(ctx context.Context, t time.Time) (time.Time, error) {
	var next time.Time
	err := db.view(ctx, func(tx kv.Tx) error {
		from := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())+1)
		for _, b := range [][]byte{bucketDue, bucketPoll} {
			if k, _ := tx.Bucket(b).Cursor().Seek(from); k != nil {
				at := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
				if next.IsZero() || at.Before(next) {
					next = at
				}
			}
		}
		return nil
	})
	return next, err
}

// Amount returns the amount set for cycle k of a variable consent.
func (db *DB) Amount(ctx context.Context, id string, k int) (klavi.Cents, bool, error) {
	var (
		c  klavi.Cents
		ok bool
	)
	err := db.view(ctx, func(tx kv.Tx) error {
		if v := tx.Bucket(bucketAmounts).Get(amountKey(id, k)); len(v) == 8 {
			c, ok = klavi.Cents(binary.BigEndian.Uint64(v)), true
		}
		return nil
	})
	return c, ok, err
}

// Amounts returns every amount set for a consent's cycles.
func (db *DB) Amounts(ctx context.Context, id string) (map[int]klavi.Cents, error) {
	out := map[int]klavi.Cents{}
	err := db.view(ctx, func(tx kv.Tx) error {
		c := tx.Bucket(bucketAmounts).Cursor()
		prefix := consentPrefix(id)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) == len(prefix)+4 && len(v) == 8 {
				out[int(binary.BigEndian.Uint32(k[len(prefix):]))] = klavi.Cents(binary.BigEndian.Uint64(v))
			}
		}
		return nil
	})
	return out, err
}

// SetAmount stores the amount of cycle k of a variable consent. The caller checks the
// consent's limits.
func (db *DB) SetAmount(ctx context.Context, id string, k int, c klavi.Cents) error {
	return db.update(ctx, func(tx kv.Tx) error {
		return putAmount(tx, CycleAmount{ConsentID: id, Cycle: k, Amount: c})
	})
}

// Counts returns the number of consents in each state, kept up to date by every
// write (no scan).
func (db *DB) Counts(ctx context.Context) (map[ConsentState]int, error) {
	out := map[ConsentState]int{}
	err := db.view(ctx, func(tx kv.Tx) error {
		var err error
		out, err = storedCounts(tx)
		return err
	})
	return out, err
}

// countShards spreads the consent counts over this many keys, chosen by a hash of
// the consent id: on etcd, whose transactions are optimistic, one key rewritten by
// every consent's state change would make concurrent writers of different consents
// conflict; with shards they rarely meet. (Files written before the shards keep
// their totals in keyCounts, which the shards add to.)
const countShards = 64

func countsKey(id string) []byte {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return fmt.Appendf(append([]byte(nil), keyCounts...), "/%02x", h.Sum32()%countShards)
}

// storedCounts sums the consent counts: keyCounts and its shards.
func storedCounts(tx kv.Tx) (map[ConsentState]int, error) {
	out := map[ConsentState]int{}
	add := func(k, v []byte) error {
		var m map[ConsentState]int
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("%w: consent counts %s: %v", ErrCorrupt, k, err)
		}
		for st, n := range m {
			out[st] += n
		}
		return nil
	}
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyCounts); v != nil {
		if err := add(keyCounts, v); err != nil {
			return nil, err
		}
	}
	prefix := append(append([]byte(nil), keyCounts...), '/')
	c := meta.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := add(k, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// HighWater returns the latest instant the scheduler acted on (zero: never). A clock
// that reads earlier than it has stepped back.
func (db *DB) HighWater(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := db.view(ctx, func(tx kv.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyHighWater); len(v) == 8 {
			t = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		}
		return nil
	})
	return t, err
}

// AttentionStates lists the attempt states kept in the attention index.
var AttentionStates = []AttemptState{AttemptUnconfirmed, AttemptStuck, AttemptMissed, AttemptFailed, AttemptSkipped}

// AttentionCounts returns how many attempts are in each attention state (the open
// items an operator must look at), counting index keys only. Every state of
// AttentionStates is present, at zero when none.
func (db *DB) AttentionCounts(ctx context.Context) (map[AttemptState]int, error) {
	out := map[AttemptState]int{}
	for _, s := range AttentionStates {
		out[s] = 0
	}
	err := db.view(ctx, func(tx kv.Tx) error {
		c := tx.Bucket(bucketAttention).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if i := bytes.IndexByte(k, 0); i > 0 {
				out[AttemptState(k[:i])]++
			}
		}
		return nil
	})
	return out, err
}

// A Change is one atomic write: a consent, attempts, and index entries. Apply commits
// it durably (fsync) in a group commit with concurrent changes.
type Change struct {
	// Consent writes the whole record; Cursor only its billing state (State,
	// StateReason, UpdatedAt, BillFrom, NextCycle, NextDue, RefreshedAt). Consent wins if both are set.
	Consent *ConsentRecord
	Cursor  *ConsentRecord
	// Guard, when set, writes nothing of its own: the change is applied only while
	// the consent's stored record is still at Guard.Version (ErrConflict otherwise),
	// so that a decision taken on a record read earlier is not written once another
	// writer (an operator's revoke through another replica) has changed it.
	Guard    *ConsentRecord
	Attempts []*Attempt
	DelDue   []DueItem
	PutDue   []DueItem
	DelPoll  []PollItem
	PutPoll  []PollItem
	// NewConsent makes the change fail with ErrExists when the consent is already stored.
	NewConsent bool
	// HighWater, when later than the stored one, becomes the latest instant the
	// scheduler acted on (see HighWater).
	HighWater time.Time
	// Amounts sets amounts of variable cycles (the consent must be stored).
	Amounts []CycleAmount
	// Fence, when not zero, must still hold when the change commits (ErrFenced
	// otherwise): every write of the scheduler carries its leadership's fence.
	Fence kv.Fence
	// Events are appended to their consents' timelines, in order, in the same
	// transaction as the state change they describe: a committed change always has
	// its events, and a failed one has none.
	Events []Event
}

// Apply commits ch atomically and durably, fenced by ch.Fence. Concurrent calls may
// share one commit (a group commit, where the engine has one); the write is
// idempotent, as the engine may run it more than once. It fails with ErrConflict
// when a record's Version moved on since it was read, ErrFenced when the fence no
// longer holds, ErrExists or ErrNotFound for what the change assumes.
func (db *DB) Apply(ctx context.Context, ch *Change) error {
	sweepOn := true
	run := func(tx kv.Tx) error {
		if p, ok := tx.(kv.Prefetcher); ok {
			p.Prefetch(readsOf([]*Change{ch}))
		}
		return applyTx(tx, ch, sweepOn)
	}
	err := db.kv.Update(ctx, kv.Write{Fence: ch.Fence, Batch: true}, run)
	if errors.Is(err, kv.ErrTooLarge) {
		sweepOn = false // the archive's sweep made it too large: the change alone
		err = db.kv.Update(ctx, kv.Write{Fence: ch.Fence, Batch: true}, run)
	}
	db.wrote(err)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	ch.committed()
	return nil
}

// refusedFor is how many ApplyAll calls remember a refused size (DB.refused).
const refusedFor = 64

// ApplyAll commits many changes (bulk loads) in order, as few transactions as the
// engine allows: all in one on bolt, chunks within etcd's operation limit. Each
// transaction is atomic and fenced like Apply (changes with different fences are
// never in one); when one fails, the changes before it stay committed and applied
// says how many they are.
func (db *DB) ApplyAll(ctx context.Context, chs []*Change) (applied int, err error) {
	try := len(chs) // changes to try in the next transaction: twice the last that fit
	if call := db.calls.Add(1); call-db.refusedCall.Load() > refusedFor {
		db.refused.Store(0)
	}
	if r := int(db.refused.Load()); r > 1 {
		try = min(try, r-1)
	}
	for len(chs) > 0 {
		fence := chs[0].Fence
		n := 1
		for n < min(try, len(chs)) && chs[n].Fence == fence {
			n++
		}
		sweepOn := true
		for {
			part := chs[:n]
			err = db.kv.Update(ctx, kv.Write{Fence: fence}, func(tx kv.Tx) error {
				if p, ok := tx.(kv.Prefetcher); ok {
					p.Prefetch(readsOf(part))
				}
				for _, ch := range part {
					if err := applyTx(tx, ch, sweepOn); err != nil {
						return err
					}
				}
				return nil
			})
			if errors.Is(err, kv.ErrTooLarge) && n > 1 {
				if r := db.refused.Load(); r == 0 || int64(n) < r {
					db.refused.Store(int64(n))
				}
				db.refusedCall.Store(db.calls.Load())
				n /= 2
				continue
			}
			if errors.Is(err, kv.ErrTooLarge) && sweepOn {
				sweepOn = false // the archive's sweep made it too large: the change alone
				continue
			}
			break
		}
		db.wrote(err)
		if err != nil {
			return applied, err
		}
		for _, ch := range chs[:n] {
			ch.committed()
		}
		applied += n
		chs = chs[n:]
		try = 2 * n
		if r := int(db.refused.Load()); r > 1 {
			try = min(try, r-1)
		}
	}
	return applied, nil
}

// readsOf lists the keys applyTx reads to write chs, for an engine that reads
// many keys at once (kv.Prefetcher): each record's cursor, body and count shard,
// the high-water mark, and each attempt's live and archived record (with its
// consent's cursor, which says whether the archive may hold it). The timelines'
// last events (a range) are read as applyTx goes.
func readsOf(chs []*Change) []kv.BucketKey {
	var keys []kv.BucketKey
	consent := func(id string) {
		keys = append(keys, kv.BucketKey{Bucket: bucketConsents, Key: []byte(id)}, kv.BucketKey{Bucket: bucketCursors, Key: []byte(id)},
			kv.BucketKey{Bucket: bucketMeta, Key: countsKey(id)})
	}
	attempt := func(k AttemptKey) {
		key := attemptKeyBytes(k)
		keys = append(keys, kv.BucketKey{Bucket: bucketAttempts, Key: key}, kv.BucketKey{Bucket: bucketArchive, Key: key},
			kv.BucketKey{Bucket: bucketCursors, Key: []byte(k.ConsentID)})
	}
	for _, ch := range chs {
		for _, r := range []*ConsentRecord{ch.Consent, ch.Cursor} {
			if r != nil {
				consent(r.Consent.ID)
			}
		}
		if g := ch.Guard; g != nil {
			keys = append(keys, kv.BucketKey{Bucket: bucketCursors, Key: []byte(g.Consent.ID)})
		}
		if !ch.HighWater.IsZero() {
			keys = append(keys, kv.BucketKey{Bucket: bucketMeta, Key: keyHighWater})
		}
		for _, a := range ch.Attempts {
			attempt(a.AttemptKey)
		}
		for _, d := range ch.PutDue {
			attempt(d.Key)
		}
	}
	return keys
}

// versionOf is a stored attempt's version; 0 for none.
func versionOf(a *attemptHead) uint64 {
	if a == nil {
		return 0
	}
	return a.Version
}

// committed advances the versions of ch's records to what the store now holds.
func (ch *Change) committed() {
	if ch.Consent != nil {
		ch.Consent.Version++
	} else if ch.Cursor != nil {
		ch.Cursor.Version++
	}
	for _, a := range ch.Attempts {
		a.Version++
	}
}

// applyTx writes ch in tx. sweepOn lets a change that archives an attempt move its
// consent's older live records too (sweep); off, the change writes only itself (it
// did not fit in the engine's transaction with them).
func applyTx(tx kv.Tx, ch *Change, sweepOn bool) error {
	if g := ch.Guard; g != nil {
		if err := checkGuard(tx, g); err != nil {
			return err
		}
	}
	if r := ch.Consent; r != nil {
		if err := putConsent(tx, r, ch.NewConsent); err != nil {
			return err
		}
	} else if r := ch.Cursor; r != nil {
		if err := putCursor(tx, r); err != nil {
			return err
		}
		if r.staleTerms && !r.partial {
			if err := refreshTerms(tx, r); err != nil {
				return err
			}
		}
	}
	if !ch.HighWater.IsZero() {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyHighWater); len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < ch.HighWater.UnixNano() {
			if err := meta.Put(keyHighWater, unixNano(ch.HighWater)); err != nil {
				return err
			}
		}
	}
	for _, ca := range ch.Amounts {
		if err := putAmount(tx, ca); err != nil {
			return err
		}
	}
	var swept []string // consents whose change archived an attempt: their older records follow
	for _, a := range ch.Attempts {
		key := attemptKeyBytes(a.AttemptKey) // its reads and writes keep no key
		old, archived := getAttemptAt(tx, a.AttemptKey, key)
		var prev *attemptHead
		if old != nil {
			// A stored record that does not decode is not an absent one: overwriting it
			// would leave its attention and dates entries behind.
			prev = &attemptHead{}
			if err := readHead(old, prev); err != nil {
				return fmt.Errorf("%w: attempt %s: %v", ErrCorrupt, a.AttemptKey, err)
			}
		}
		if stored := versionOf(prev); stored != a.Version {
			return fmt.Errorf("attempt %s: %w (read at version %d, stored %d)", a.AttemptKey, ErrConflict, a.Version, stored)
		}
		next := *a
		next.Version++
		raw, err := marshalAttempt(&next)
		if err != nil {
			return err
		}
		toArchive, err := putAttempt(tx, a, key, raw, old != nil, archived)
		if err != nil {
			return err
		}
		if err := indexAttempt(tx, prev, a); err != nil {
			return err
		}
		if toArchive && !archived && sweepOn && !slices.Contains(swept, a.ConsentID) {
			swept = append(swept, a.ConsentID)
		}
	}
	due, poll := tx.Bucket(bucketDue), tx.Bucket(bucketPoll)
	for _, d := range ch.DelDue {
		if err := due.Delete(timeKey(d.At, d.Key)); err != nil {
			return err
		}
	}
	for _, d := range ch.PutDue {
		v, err := dueValue(tx, ch, d.Key)
		if err != nil {
			return err
		}
		if err := due.Put(timeKey(d.At, d.Key), v); err != nil {
			return err
		}
	}
	for _, p := range ch.DelPoll {
		if err := poll.Delete(timeKey(p.At, p.Key)); err != nil {
			return err
		}
	}
	for _, p := range ch.PutPoll {
		if err := poll.Put(timeKey(p.At, p.Key), nil); err != nil {
			return err
		}
	}
	if err := putEvents(tx, ch.Events); err != nil {
		return err
	}
	for _, id := range swept {
		if err := sweep(tx, id); err != nil {
			return err
		}
	}
	return nil
}

// putConsent writes a whole consent record.
func putConsent(tx kv.Tx, r *ConsentRecord, mustBeNew bool) error {
	key := []byte(r.Consent.ID)
	b := tx.Bucket(bucketConsents)
	if mustBeNew && b.Get(key) != nil {
		return fmt.Errorf("consent %s: %w", r.Consent.ID, ErrExists)
	}
	// Klavi's ids are opaque, but one that differs from a stored id only in letter
	// case (a UUID written in capitals) is far more likely the same consent than
	// another one: billing both would charge the payer twice.
	folds := tx.Bucket(bucketFolds)
	fold := []byte(strings.ToLower(r.Consent.ID))
	other := folds.Get(fold)
	if other != nil && !bytes.Equal(other, key) {
		return fmt.Errorf("consent %s: %w: consent %s is stored, and their ids differ only in letter case", r.Consent.ID, ErrExists, other)
	}
	if other == nil {
		if err := folds.Put(fold, key); err != nil {
			return err
		}
	}
	c := r.Consent
	if r.partial {
		if mustBeNew {
			return fmt.Errorf("consent %s: a record read for its terms only cannot be added", r.Consent.ID)
		}
		var err error
		if c, err = mergeTerms(tx, key, r); err != nil {
			return err
		}
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return err
	}
	body, err := json.Marshal(consentBody{Consent: raw, AddedAt: r.AddedAt, RedirectURL: r.RedirectURL})
	if err != nil {
		return err
	}
	if err := b.Put(key, body); err != nil {
		return err
	}
	if err := putTerms(tx, key, body, c, r.AddedAt, r.RedirectURL); err != nil {
		return err
	}
	return putCursor(tx, r)
}

// refreshTerms writes the terms of a record that was read whole because its terms
// were missing or stale (readTerms), from its stored body.
func refreshTerms(tx kv.Tx, r *ConsentRecord) error {
	key := []byte(r.Consent.ID)
	body := tx.Bucket(bucketConsents).Get(key)
	if body == nil {
		return nil // putCursor reports it
	}
	b, err := decodeBody(key, body)
	if err != nil {
		return err
	}
	return putTerms(tx, key, body, b.Consent, b.AddedAt, b.RedirectURL)
}

// checkGuard fails with ErrConflict unless consent g's stored record is at
// g.Version (ErrNotFound when it is not stored).
func checkGuard(tx kv.Tx, g *ConsentRecord) error {
	old := tx.Bucket(bucketCursors).Get([]byte(g.Consent.ID))
	if old == nil {
		return fmt.Errorf("consent %s: %w", g.Consent.ID, ErrNotFound)
	}
	_, _, version, err := cursorFields(old)
	if err != nil {
		return fmt.Errorf("%w: cursor of consent %q: %v", ErrCorrupt, g.Consent.ID, err)
	}
	if version != g.Version {
		return fmt.Errorf("consent %s: %w (decided at version %d, stored %d)", g.Consent.ID, ErrConflict, g.Version, version)
	}
	return nil
}

// putCursor writes a consent's billing state and keeps the per-state counts in step.
func putCursor(tx kv.Tx, r *ConsentRecord) error {
	key := []byte(r.Consent.ID)
	cursors, meta := tx.Bucket(bucketCursors), tx.Bucket(bucketMeta)
	if tx.Bucket(bucketConsents).Get(key) == nil {
		return fmt.Errorf("consent %s: %w", r.Consent.ID, ErrNotFound)
	}
	var prev consentCursor
	old := cursors.Get(key)
	if old != nil {
		var err error
		if prev.State, prev.NextCycle, prev.Version, err = cursorFields(old); err != nil {
			return fmt.Errorf("%w: cursor of consent %q: %v", ErrCorrupt, key, err)
		}
		if prev.Version != r.Version {
			return fmt.Errorf("consent %s: %w (read at version %d, stored %d)", r.Consent.ID, ErrConflict, r.Version, prev.Version)
		}
	}
	if old == nil || prev.State != r.State {
		// The shard of this consent only (countShards): a shard may hold a negative
		// count of a state whose consents were counted in another key first.
		shard := countsKey(r.Consent.ID)
		counts := map[ConsentState]int{}
		if v := meta.Get(shard); v != nil {
			if err := json.Unmarshal(v, &counts); err != nil {
				return fmt.Errorf("%w: consent counts: %v", ErrCorrupt, err)
			}
		}
		if old != nil {
			counts[prev.State]--
		}
		counts[r.State]++
		if err := putJSON(meta, shard, counts); err != nil {
			return err
		}
	}
	if old != nil {
		// A cursor that moves back, or bills a stopped consent again, brings the
		// originals it now pins back from the archive (archive.go).
		if err := unpin(tx, r.Consent.ID, &prev, cursorHead{State: r.State, NextCycle: r.NextCycle}); err != nil {
			return err
		}
	}
	cur := cursorOf(r)
	raw, err := marshalCursor(&cur)
	if err != nil {
		return err
	}
	return cursors.Put(key, raw)
}
