package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

// SchemaVersion is the layout this code reads and writes. A database with a higher
// version was written by a newer billingd and is refused, never rewritten. A version
// 1 file (no events or dates bucket, index values empty) is migrated in place when
// a writer opens it (migrate); a reader reads it as it is.
const SchemaVersion = 2

// Sentinel errors. Callers branch with errors.Is.
var (
	// ErrNotFound: no such consent, attempt or amount.
	ErrNotFound = errors.New("not found")
	// ErrExists: a consent with that id is already stored.
	ErrExists = errors.New("already exists")
	// ErrLocked: another process (usually a running billingd) holds the file.
	ErrLocked = errors.New("database is locked by another process")
	// ErrNotBillingd: a valid bbolt file that billingd did not create.
	ErrNotBillingd = errors.New("not a billingd database")
	// ErrCorrupt: the file is not a bbolt database or is damaged.
	ErrCorrupt = errors.New("database file is corrupt")
	// ErrSchema: written by a newer billingd.
	ErrSchema = errors.New("unsupported schema version")
	// ErrReplaced: the path no longer names the file this DB has open (it was moved
	// away, replaced or removed). Every later write fails with it and writes nothing:
	// a write to the open file would be lost to whoever opens the path next.
	ErrReplaced = errors.New("database file was replaced or removed while open")
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

	// v1Buckets exist in every billingd file; v2Buckets came with schema 2.
	v1Buckets  = [][]byte{bucketMeta, bucketConsents, bucketCursors, bucketDue, bucketAttempts, bucketPoll, bucketAmounts, bucketAttention}
	v2Buckets  = [][]byte{bucketEvents, bucketDates, bucketFolds}
	allBuckets = append(append([][]byte{}, v1Buckets...), v2Buckets...)

	keySchema = []byte("schema")
	keyCounts = []byte("consent_counts")
	// keyHighWater holds the latest instant the scheduler acted on (Unix ns, big-endian).
	keyHighWater = []byte("high_water")
	keyMagic     = []byte("application")
	magic        = []byte("billingd")
)

// Options tune Open. The zero value is the production setting.
type Options struct {
	// Timeout bounds the wait for the file lock (default 5s); then Open fails with ErrLocked.
	Timeout time.Duration
	// ReadOnly opens with a shared lock and never writes (db check, offline reads).
	ReadOnly bool
	// NoSync skips fsync on commit. Only for throwaway databases (simulations).
	NoSync bool
	// MaxBatchDelay and MaxBatchSize tune the group commit of Apply (defaults 2ms, 1000).
	MaxBatchDelay time.Duration
	MaxBatchSize  int
	// Logger receives open/close notes; nil is slog.Default().
	Logger *slog.Logger
	// OnWrite, when not nil, is told the outcome of every write: nil once it is
	// committed, the error when the store could not write (a full disk, a read-only
	// file system, a replaced file, a damaged page). A write refused for what it
	// contains (ErrExists, ErrNotFound) is not reported: the store itself is fine.
	// It is called on the writer's goroutine and must not block.
	OnWrite func(err error)
}

// DB is billingd's store: one bbolt file with the buckets of DESIGN.md.
type DB struct {
	bolt    *bolt.DB
	path    string
	log     *slog.Logger
	lock    *os.File // the flock of lockPath(path), held until Close
	file    *os.File // bbolt's open file (bbolt closes it)
	id      fileID   // the open file's device and inode
	hasID   bool
	onWrite func(error)

	// replaced is set for good once the path is found not to name the open file.
	replaced atomic.Bool
	// checkedTx is the write transaction whose identity check passed. Only write
	// transactions touch it, and bbolt runs one at a time. Holding the pointer keeps
	// that Tx alive, so a later transaction can never have the same address.
	checkedTx *bolt.Tx
}

// Open opens (creating if needed) the billingd database at path. It never hangs on a
// file another process holds (ErrLocked after Options.Timeout), refuses a file that is
// not a billingd database (ErrNotBillingd, ErrCorrupt) or comes from a newer version
// (ErrSchema), and in those cases leaves the file untouched.
//
// A writer first takes an exclusive flock on <path>.lock, a file it creates beside
// the database and never removes, and holds it until Close: the lock stays with the
// path even if the database file is moved away or replaced, so a second writer on
// the same path fails with ErrLocked. Before every write the path is checked to
// still name the open file (ErrReplaced otherwise).
func Open(path string, opts Options) (_ *DB, err error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open %s: is a directory", path)
	} else if err != nil && opts.ReadOnly {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	lock, err := acquireLock(path, !opts.ReadOnly, opts.Timeout)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer func() {
		if err != nil && lock != nil {
			_ = lock.Close()
		}
	}()
	// A file shorter than its header says is refused before bbolt reads a page of it:
	// reading past the end of a mapped file faults.
	if err := precheck(path, opts.Timeout); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	bdb, file, err := openBolt(path, &bolt.Options{
		Timeout:      opts.Timeout,
		ReadOnly:     opts.ReadOnly,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
		// Read the free list now, under guard, rather than later on a goroutine of
		// bbolt's where a damaged one would kill the process.
		PreLoadFreelist: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	bdb.MaxBatchDelay = 2 * time.Millisecond
	if opts.MaxBatchDelay > 0 {
		bdb.MaxBatchDelay = opts.MaxBatchDelay
	}
	if opts.MaxBatchSize > 0 {
		bdb.MaxBatchSize = opts.MaxBatchSize
	}
	db := &DB{bolt: bdb, path: path, log: log, lock: lock, file: file, onWrite: opts.OnWrite}
	if err := db.identify(file); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.checkLength(); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.init(opts.ReadOnly); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// openBolt opens path with bbolt under guard and sorts its errors into the
// package's sentinels. It returns bbolt's open file too: bbolt opens it through a
// hook of ours, so that it can be closed (and its lock released) even when bbolt
// panics halfway through opening a damaged file.
func openBolt(path string, o *bolt.Options) (*bolt.DB, *os.File, error) {
	// bbolt calls the hook again for Tx.WriteTo (backups): only the first file is the DB's.
	var first atomic.Pointer[os.File]
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err == nil {
			first.CompareAndSwap(nil, f)
		}
		return f, err
	}
	var bdb *bolt.DB
	err := guard(func() error {
		var err error
		bdb, err = bolt.Open(path, 0o600, o)
		return err
	})
	file := first.Load()
	switch {
	case err == nil:
		return bdb, file, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, nil, fmt.Errorf("%w (waited %s; is billingd already running?)", ErrLocked, o.Timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, nil, fmt.Errorf("%w: %v (not a bbolt database, or its header is damaged)", ErrCorrupt, err)
	case errors.Is(err, ErrCorrupt):
		if bdb == nil && file != nil {
			_ = file.Close()
		}
	case strings.Contains(err.Error(), "file size too small"):
		return nil, nil, fmt.Errorf("%w: %v (shorter than a database's first pages: truncated)", ErrCorrupt, err)
	}
	return nil, nil, err
}

// precheck opens an existing, non-empty file read-only, reading only its header,
// and refuses it when it is shorter than the pages the header counts.
func precheck(path string, timeout time.Duration) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil // a new file: nothing to check; bbolt reports open errors
	case fi.Size() == 0:
		// Only a missing file is a first install. An empty one is a restore or a copy
		// that went wrong (a full disk, a cp onto a truncated target): opening it would
		// make it a new, empty database that bills nobody.
		return fmt.Errorf("%w: the file is empty (0 bytes); a billingd database never is. Restore it, or remove it to start a new one", ErrCorrupt)
	}
	bdb, _, err := openBolt(path, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return err
	}
	defer bdb.Close()
	var need int64
	if err := guard(func() error {
		return bdb.View(func(tx *bolt.Tx) error {
			need = tx.Size()
			return nil
		})
	}); err != nil {
		return err
	}
	if need > fi.Size() {
		return fmt.Errorf("%w: truncated: its header counts %d bytes of pages and the file has %d", ErrCorrupt, need, fi.Size())
	}
	return nil
}

// identify records the open file's device and inode, and makes sure the path still
// names it (it could have been replaced between bbolt's open and now).
func (db *DB) identify(f *os.File) error {
	if f == nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if db.id, db.hasID = idOf(fi); !db.hasID {
		return nil
	}
	return db.CheckIdentity()
}

// CheckIdentity returns ErrReplaced when the path no longer names the open file
// (moved away, replaced by another file, removed), and nil when it does. Once it
// has failed it keeps failing. It costs one stat(2).
func (db *DB) CheckIdentity() error {
	if db.replaced.Load() {
		return fmt.Errorf("%w: %s", ErrReplaced, db.path)
	}
	if !db.hasID {
		return nil
	}
	fi, err := os.Stat(db.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("check %s: %w", db.path, err)
	}
	if err == nil {
		if id, ok := idOf(fi); ok && id == db.id {
			return nil
		}
	}
	db.replaced.Store(true)
	return fmt.Errorf("%w: %s", ErrReplaced, db.path)
}

// checkWrite runs first in every write transaction: one identity check per
// transaction, however many batched changes share it.
func (db *DB) checkWrite(tx *bolt.Tx) error {
	if db.checkedTx == tx {
		return nil
	}
	if err := db.CheckIdentity(); err != nil {
		return err
	}
	db.checkedTx = tx
	return nil
}

// init checks the schema of an existing database, or lays out a new one.
func (db *DB) init(readOnly bool) error {
	check := func(tx *bolt.Tx) (fresh bool, err error) {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			var names []string
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				names = append(names, string(name))
				return nil
			})
			if len(names) == 0 {
				return true, nil
			}
			if len(names) > 5 {
				names = append(names[:5], "…")
			}
			return false, fmt.Errorf("%w: it has buckets %s and no billingd meta bucket", ErrNotBillingd, strings.Join(names, ", "))
		}
		if !bytes.Equal(meta.Get(keyMagic), magic) {
			return false, fmt.Errorf("%w: its meta bucket was not written by billingd", ErrNotBillingd)
		}
		v := meta.Get(keySchema)
		if len(v) != 4 {
			return false, fmt.Errorf("%w: no schema version", ErrCorrupt)
		}
		n := binary.BigEndian.Uint32(v)
		if n > SchemaVersion {
			return false, fmt.Errorf("%w %d: this billingd reads version %d; use a newer billingd", ErrSchema, n, SchemaVersion)
		}
		need := v1Buckets
		if n >= 2 {
			need = allBuckets
		}
		for _, b := range need {
			if tx.Bucket(b) == nil {
				return false, fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, b)
			}
		}
		return false, nil
	}
	schema := func(tx *bolt.Tx) uint32 { return binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keySchema)) }
	if readOnly {
		return guard(func() error {
			return db.bolt.View(func(tx *bolt.Tx) error {
				fresh, err := check(tx)
				if fresh {
					return fmt.Errorf("%w: the file is empty", ErrNotBillingd)
				}
				return err
			})
		})
	}
	// Check with a read transaction: opening a current database writes nothing.
	fresh, old := false, false
	if err := guard(func() error {
		return db.bolt.View(func(tx *bolt.Tx) error {
			var err error
			fresh, err = check(tx)
			old = err == nil && !fresh && schema(tx) < SchemaVersion
			return err
		})
	}); err != nil {
		return err
	}
	if old {
		return db.update(func(tx *bolt.Tx) error {
			if _, err := check(tx); err != nil || schema(tx) >= SchemaVersion {
				return err
			}
			return migrate(tx, db.log)
		})
	}
	if !fresh {
		return nil
	}
	return guard(func() error {
		return db.bolt.Update(func(tx *bolt.Tx) error {
			fresh, err := check(tx)
			if err != nil || !fresh {
				return err
			}
			for _, b := range allBuckets {
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			meta := tx.Bucket(bucketMeta)
			if err := meta.Put(keyMagic, magic); err != nil {
				return err
			}
			return meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
		})
	})
}

// guard turns a panic inside bbolt (which is how it meets a damaged page: a failed
// assertion, or a page pointer that leads out of the mapped file) into ErrCorrupt.
// Memory faults become panics for the duration (debug.SetPanicOnFault), so reading
// a damaged file never kills the process. bbolt rolls the transaction back before
// the panic reaches here.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s", ErrCorrupt, panicText(r))
		}
	}()
	return fn()
}

// panicText describes what bbolt panicked with. A memory fault means a page number
// led outside the mapped file.
func panicText(r any) string {
	if re, ok := r.(runtime.Error); ok {
		if _, fault := r.(interface{ Addr() uintptr }); fault || strings.Contains(re.Error(), "invalid memory address") {
			return "a damaged page points outside the file"
		}
		return "a page is damaged (" + strings.TrimPrefix(re.Error(), "runtime error: ") + ")"
	}
	msg := fmt.Sprint(r)
	// bbolt checks that a page read carries its own number; what it finds instead is
	// whatever the damage left there, not a page number worth printing.
	if m := pageSelfID.FindStringSubmatch(msg); m != nil {
		return "page " + m[1] + " is damaged: its header does not carry its own page number"
	}
	return msg
}

var pageSelfID = regexp.MustCompile(`Page expected to be: (\d+), but self identifies as \d+`)

func (db *DB) view(fn func(tx *bolt.Tx) error) error {
	return guard(func() error { return db.bolt.View(fn) })
}

// update runs fn in a write transaction of its own, after the identity check.
func (db *DB) update(fn func(tx *bolt.Tx) error) error {
	err := guard(func() error {
		return db.bolt.Update(func(tx *bolt.Tx) error {
			if err := db.checkWrite(tx); err != nil {
				return err
			}
			return fn(tx)
		})
	})
	db.wrote(err)
	return err
}

// wrote reports a write's outcome to Options.OnWrite.
func (db *DB) wrote(err error) {
	if db.onWrite == nil || errors.Is(err, ErrExists) || errors.Is(err, ErrNotFound) {
		return
	}
	db.onWrite(err)
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Close closes the database, waiting for open transactions to end, then releases
// the lock file.
func (db *DB) Close() error {
	err := db.bolt.Close()
	if db.lock != nil {
		_ = db.lock.Close()
		db.lock = nil
	}
	return err
}

// Probe commits a write that changes nothing (the schema version, rewritten) and
// reports it to Options.OnWrite like any write: a daemon whose writes failed learns
// from it that the store writes again, without waiting for real work.
func (db *DB) Probe() error {
	return db.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
	})
}

// FailureReason sorts a write error into a few kinds, for a metric label and an
// operator's first look: "enospc" (no space left), "replaced" (ErrReplaced),
// "readonly" (a read-only file system or no write permission), "other".
func FailureReason(err error) string {
	switch {
	case errors.Is(err, ErrReplaced):
		return "replaced"
	case isNoSpace(err):
		return "enospc"
	case isReadOnly(err):
		return "readonly"
	}
	return "other"
}

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%w: record %q: %v", ErrCorrupt, key, err)
	}
	return nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
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

type consentCursor struct {
	State       ConsentState `json:"state"`
	StateReason string       `json:"stateReason,omitempty"`
	UpdatedAt   time.Time    `json:"updatedAt"`
	BillFrom    cycle.Date   `json:"billFrom"`
	NextCycle   int          `json:"nextCycle"`
	NextDue     time.Time    `json:"nextDue,omitzero"`
	RefreshedAt time.Time    `json:"refreshedAt,omitzero"`
}

func cursorOf(r *ConsentRecord) consentCursor {
	return consentCursor{State: r.State, StateReason: r.StateReason, UpdatedAt: r.UpdatedAt, BillFrom: r.BillFrom, NextCycle: r.NextCycle, NextDue: r.NextDue, RefreshedAt: r.RefreshedAt}
}

// readConsent assembles a record from its two parts.
func readConsent(tx *bolt.Tx, id []byte, body []byte) (*ConsentRecord, error) {
	var (
		b   consentBody
		cur consentCursor
		r   ConsentRecord
	)
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("%w: consent %q: %v", ErrCorrupt, id, err)
	}
	if err := json.Unmarshal(b.Consent, &r.Consent); err != nil || r.Consent == nil {
		return nil, fmt.Errorf("%w: consent %q does not decode", ErrCorrupt, id)
	}
	if err := getJSON(tx.Bucket(bucketCursors), id, &cur); err != nil {
		return nil, fmt.Errorf("%w: consent %q has no billing cursor", ErrCorrupt, id)
	}
	r.AddedAt, r.RedirectURL = b.AddedAt, b.RedirectURL
	r.State, r.StateReason, r.UpdatedAt, r.BillFrom, r.NextCycle, r.NextDue, r.RefreshedAt = cur.State, cur.StateReason, cur.UpdatedAt, cur.BillFrom, cur.NextCycle, cur.NextDue, cur.RefreshedAt
	return &r, nil
}

// GetConsent returns the stored consent id, or ErrNotFound.
func (db *DB) GetConsent(id string) (*ConsentRecord, error) {
	var r *ConsentRecord
	err := db.view(func(tx *bolt.Tx) error {
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
func (db *DB) ListConsents(after string, limit int, state ConsentState) ([]*ConsentRecord, error) {
	var out []*ConsentRecord
	err := db.view(func(tx *bolt.Tx) error {
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
			r, err := readConsent(tx, k, v)
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
func (db *DB) GetAttempt(k AttemptKey) (*Attempt, error) {
	var a Attempt
	err := db.view(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketAttempts), attemptKeyBytes(k), &a)
	})
	if err != nil {
		return nil, fmt.Errorf("attempt %s: %w", k, err)
	}
	return &a, nil
}

// Attempts returns every attempt of a consent, in cycle and attempt order.
func (db *DB) Attempts(consentID string) ([]*Attempt, error) {
	var out []*Attempt
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAttempts).Cursor()
		prefix := consentPrefix(consentID)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+6; k, v = c.Next() {
			var a Attempt
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("%w: attempt %q: %v", ErrCorrupt, k, err)
			}
			out = append(out, &a)
		}
		return nil
	})
	return out, err
}

// Attention returns up to limit attempts in state s (UNCONFIRMED, MISSED, FAILED or
// SKIPPED), the items an operator must look at, from an index (no full scan).
func (db *DB) Attention(s AttemptState, limit int) ([]*Attempt, error) {
	var out []*Attempt
	err := db.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAttention).Cursor()
		attempts := tx.Bucket(bucketAttempts)
		prefix := append([]byte(s), 0)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < limit; k, _ = c.Next() {
			var a Attempt
			if err := getJSON(attempts, k[len(prefix):], &a); err != nil {
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
func (db *DB) DueBefore(t time.Time, limit int) ([]DueItem, error) {
	var out []DueItem
	err := db.view(func(tx *bolt.Tx) error {
		return scanTimeIndex(tx.Bucket(bucketDue), t, limit, func(at time.Time, k AttemptKey) {
			out = append(out, DueItem{At: at, Key: k})
		})
	})
	return out, err
}

// PollBefore returns up to limit entries of the poll index at or before t.
func (db *DB) PollBefore(t time.Time, limit int) ([]PollItem, error) {
	var out []PollItem
	err := db.view(func(tx *bolt.Tx) error {
		return scanTimeIndex(tx.Bucket(bucketPoll), t, limit, func(at time.Time, k AttemptKey) {
			out = append(out, PollItem{At: at, Key: k})
		})
	})
	return out, err
}

func scanTimeIndex(b *bolt.Bucket, t time.Time, limit int, fn func(time.Time, AttemptKey)) error {
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
func (db *DB) DueBounds(now time.Time) (oldest, next time.Time, err error) {
	err = db.view(func(tx *bolt.Tx) error {
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
func (db *DB) NextWork(t time.Time) (time.Time, error) {
	var next time.Time
	err := db.view(func(tx *bolt.Tx) error {
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
func (db *DB) Amount(id string, k int) (klavi.Cents, bool, error) {
	var (
		c  klavi.Cents
		ok bool
	)
	err := db.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketAmounts).Get(amountKey(id, k)); len(v) == 8 {
			c, ok = klavi.Cents(binary.BigEndian.Uint64(v)), true
		}
		return nil
	})
	return c, ok, err
}

// Amounts returns every amount set for a consent's cycles.
func (db *DB) Amounts(id string) (map[int]klavi.Cents, error) {
	out := map[int]klavi.Cents{}
	err := db.view(func(tx *bolt.Tx) error {
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
func (db *DB) SetAmount(id string, k int, c klavi.Cents) error {
	return db.update(func(tx *bolt.Tx) error {
		return putAmount(tx, CycleAmount{ConsentID: id, Cycle: k, Amount: c})
	})
}

// Counts returns the number of consents in each state, kept up to date by every
// write (no scan).
func (db *DB) Counts() (map[ConsentState]int, error) {
	out := map[ConsentState]int{}
	err := db.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyCounts); v != nil {
			return json.Unmarshal(v, &out)
		}
		return nil
	})
	return out, err
}

// HighWater returns the latest instant the scheduler acted on (zero: never). A clock
// that reads earlier than it has stepped back.
func (db *DB) HighWater() (time.Time, error) {
	var t time.Time
	err := db.view(func(tx *bolt.Tx) error {
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
func (db *DB) AttentionCounts() (map[AttemptState]int, error) {
	out := map[AttemptState]int{}
	for _, s := range AttentionStates {
		out[s] = 0
	}
	err := db.view(func(tx *bolt.Tx) error {
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
	Consent  *ConsentRecord
	Cursor   *ConsentRecord
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
	// Events are appended to their consents' timelines, in order, in the same
	// transaction as the state change they describe: a committed change always has
	// its events, and a failed one has none.
	Events []Event
}

// Apply commits ch atomically and durably. Concurrent calls share one transaction and
// one fsync (bbolt's DB.Batch); the write is idempotent, as Batch may run it twice.
func (db *DB) Apply(ch *Change) error {
	err := guard(func() error {
		return db.bolt.Batch(func(tx *bolt.Tx) error {
			// Batches run on a goroutine of bbolt's: faults there must panic too.
			debug.SetPanicOnFault(true)
			if err := db.checkWrite(tx); err != nil {
				return err
			}
			return applyTx(tx, ch)
		})
	})
	db.wrote(err)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// ApplyAll commits many changes in one transaction (bulk loads).
func (db *DB) ApplyAll(chs []*Change) error {
	return db.update(func(tx *bolt.Tx) error {
		for _, ch := range chs {
			if err := applyTx(tx, ch); err != nil {
				return err
			}
		}
		return nil
	})
}

func applyTx(tx *bolt.Tx, ch *Change) error {
	if r := ch.Consent; r != nil {
		if err := putConsent(tx, r, ch.NewConsent); err != nil {
			return err
		}
	} else if r := ch.Cursor; r != nil {
		if err := putCursor(tx, r); err != nil {
			return err
		}
	}
	if !ch.HighWater.IsZero() {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyHighWater); len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < ch.HighWater.UnixNano() {
			if err := meta.Put(keyHighWater, binary.BigEndian.AppendUint64(nil, uint64(ch.HighWater.UnixNano()))); err != nil {
				return err
			}
		}
	}
	for _, ca := range ch.Amounts {
		if err := putAmount(tx, ca); err != nil {
			return err
		}
	}
	attempts := tx.Bucket(bucketAttempts)
	for _, a := range ch.Attempts {
		key := attemptKeyBytes(a.AttemptKey)
		var prev *Attempt
		if old := attempts.Get(key); old != nil {
			var p Attempt
			if err := json.Unmarshal(old, &p); err == nil {
				prev = &p
			}
		}
		if err := putJSON(attempts, key, a); err != nil {
			return err
		}
		if err := indexAttempt(tx, prev, a); err != nil {
			return err
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
	return putEvents(tx, ch.Events)
}

// putConsent writes a whole consent record.
func putConsent(tx *bolt.Tx, r *ConsentRecord, mustBeNew bool) error {
	key := []byte(r.Consent.ID)
	b := tx.Bucket(bucketConsents)
	if mustBeNew && b.Get(key) != nil {
		return fmt.Errorf("consent %s: %w", r.Consent.ID, ErrExists)
	}
	if folds := tx.Bucket(bucketFolds); folds != nil {
		// Klavi's ids are opaque, but one that differs from a stored id only in letter
		// case (a UUID written in capitals) is far more likely the same consent than
		// another one: billing both would charge the payer twice.
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
	}
	raw, err := json.Marshal(r.Consent)
	if err != nil {
		return err
	}
	if err := putJSON(b, key, consentBody{Consent: raw, AddedAt: r.AddedAt, RedirectURL: r.RedirectURL}); err != nil {
		return err
	}
	return putCursor(tx, r)
}

// putCursor writes a consent's billing state and keeps the per-state counts in step.
func putCursor(tx *bolt.Tx, r *ConsentRecord) error {
	key := []byte(r.Consent.ID)
	cursors, meta := tx.Bucket(bucketCursors), tx.Bucket(bucketMeta)
	if tx.Bucket(bucketConsents).Get(key) == nil {
		return fmt.Errorf("consent %s: %w", r.Consent.ID, ErrNotFound)
	}
	var prev consentCursor
	old := cursors.Get(key)
	if old != nil {
		if err := json.Unmarshal(old, &prev); err != nil {
			return fmt.Errorf("%w: cursor of consent %q: %v", ErrCorrupt, key, err)
		}
	}
	if old == nil || prev.State != r.State {
		counts := map[ConsentState]int{}
		if v := meta.Get(keyCounts); v != nil {
			if err := json.Unmarshal(v, &counts); err != nil {
				return fmt.Errorf("%w: consent counts: %v", ErrCorrupt, err)
			}
		}
		if old != nil {
			counts[prev.State]--
		}
		counts[r.State]++
		if err := putJSON(meta, keyCounts, counts); err != nil {
			return err
		}
	}
	return putJSON(cursors, key, cursorOf(r))
}

// Backup writes a consistent copy of the database to w (bbolt's Tx.WriteTo inside a
// read transaction): safe while the daemon runs and writes.
func (db *DB) Backup(w io.Writer) (int64, error) {
	var n int64
	err := db.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Snapshot writes a consistent copy of the database to a temporary file beside it and
// returns that file, open and rewound, with its size. The file has no name any more
// (it is removed once open), so it disappears when closed. The read transaction lasts
// only as long as the local copy, not as long as whoever reads the snapshot.
func (db *DB) Snapshot() (*os.File, int64, error) {
	f, err := os.CreateTemp(filepath.Dir(db.path), ".billingd-snapshot-*")
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	_ = os.Remove(f.Name())
	n, err := db.Backup(f)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	return f, n, nil
}
