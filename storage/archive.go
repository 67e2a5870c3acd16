package storage

import (
	"bytes"
	"context"
	"fmt"
	"time"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage/kv"
)

// History off the hot path (schema 3).
//
//	archive        attempt key → Attempt (JSON): settled attempts
//	event_archive  consent id ‖ 0 ‖ sequence → Event (JSON): the older events of
//	               timelines
//
// Attempts and events are keyed by consent. In a store with a year of history, a
// consent's new attempt or event would land in a page full of its old ones, so every
// submission's commits would read and rewrite pages spread over the whole history
// (on bolt, a random 4 KiB leaf each, and up to 64 KiB of the mapping that Linux
// maps in around it): throughput and resident memory would grow with the history.
// The live buckets (attempts, events) keep what can still change and what the hot
// path reads; the rest is in the archive buckets, under the same keys:
//
//   - An attempt is written to the archive when it is settled (settled: nothing but
//     an operator changes it any more) and, for a cycle's original payment (attempt
//     0), its consent's cursor has moved past that cycle or stopped (archivable);
//     otherwise to the live bucket. A write removes it from the other bucket.
//   - So an attempt 0 of a cycle its active consent has not moved past is never in
//     the archive (pinned): a live miss for it is a miss, and reads skip the
//     archive. That is what the due scan asks before a submission (GetAttempt of
//     the cursor's next cycle) and what the submission's write checks (the version
//     of the record it replaces): neither reads the archive. A cursor that moves
//     back, or starts again, brings the attempts it pins back to the live bucket
//     (putCursor), so the rule holds for every write.
//   - A change that archives an attempt of a consent also moves that consent's
//     older live records: up to sweepLimit other archivable attempts (files written
//     before the archive settle this way), and its events but the newest, up to
//     sweepLimit (the newest stays live: the next event's sequence follows it, and
//     appending reads nothing else).
//   - Every reader looks in both: GetAttempt, Attempts, the attention and dates
//     indexes (timeline, ledger, report, CSV), Events, the feed and webhooks,
//     Check. A store written before the archive is read and written as it is, and
//     settles into the archive as its attempts settle (or at once with Compact).

var (
	bucketArchive      = []byte("archive")
	bucketEventArchive = []byte("event_archive")
)

// sweepLimit bounds the attempts, and separately the events, one change moves to
// the archive besides its own attempts (four writes each at most: a bounded
// addition to a transaction within etcd's operation limit; a change that does not
// fit with them is written without them).
const sweepLimit = 16

// settled reports whether an attempt in state s with no due or poll entry can no
// longer change by itself: UNCONFIRMED (reconciled), STUCK and those not final are
// still worked on.
func (s AttemptState) settled() bool {
	switch s {
	case AttemptCompleted, AttemptRejected, AttemptFailed, AttemptMissed, AttemptSkipped, AttemptDropped:
		return true
	}
	return false
}

// attemptHead is what a write needs of a stored attempt: its version, and what its
// indexes and its bucket depend on. Decoding it skips the rest of the record.
type attemptHead struct {
	State    AttemptState `json:"state"`
	Date     cycle.Date   `json:"date"`
	DueAt    time.Time    `json:"dueAt,omitzero"`
	NextPoll time.Time    `json:"nextPoll,omitzero"`
	Resolved *struct {
		State AttemptState `json:"state"`
	} `json:"resolved,omitempty"`
	Version uint64 `json:"version,omitempty"`
}

func (h attemptHead) open() bool {
	return h.State.needsAttention() && (h.Resolved == nil || h.Resolved.State != h.State)
}

func (h attemptHead) settled() bool {
	return h.State.settled() && h.DueAt.IsZero() && h.NextPoll.IsZero()
}

func headOf(a *Attempt) attemptHead {
	h := attemptHead{State: a.State, Date: a.Date, DueAt: a.DueAt, NextPoll: a.NextPoll, Version: a.Version}
	if a.Resolved != nil {
		h.Resolved = &struct {
			State AttemptState `json:"state"`
		}{a.Resolved.State}
	}
	return h
}

// cursorHead is what the archive's rule reads of a consent's billing cursor.
type cursorHead struct {
	State     ConsentState `json:"state"`
	NextCycle int          `json:"nextCycle"`
}

// readCursorHead reads consent id's cursor; false when it has none (or it does not
// decode: the rule then pins nothing, and reads look in the archive).
func readCursorHead(tx kv.Tx, id string) (cursorHead, bool) {
	return readCursorHeadAt(tx, []byte(id))
}

// readCursorHeadAt is readCursorHead of the consent whose id is key.
func readCursorHeadAt(tx kv.Tx, key []byte) (cursorHead, bool) {
	raw := tx.Bucket(bucketCursors).Get(key)
	if raw == nil {
		return cursorHead{}, false
	}
	st, next, _, err := cursorFields(raw)
	return cursorHead{State: st, NextCycle: next}, err == nil
}

// cursorFields reads a stored cursor's state, next cycle and version (every write
// of an attempt, and of a cursor, reads them) without decoding the rest. Its JSON is
// putCursor's: one flat object whose string values cannot hold a quote unescaped,
// so `"state":"` and the others occur once each, as keys. Anything else is read in
// full (readCursor), and its error is the decoding's.
func cursorFields(raw []byte) (st ConsentState, next int, version uint64, err error) {
	s, sok := jsonString(raw, `"state":"`)
	n, nok := jsonUint(raw, `"nextCycle":`)
	v, vok := jsonUint(raw, `"version":`)
	if sok && nok && n <= 1<<31 {
		if !vok && !bytes.Contains(raw, []byte(`"version"`)) {
			v, vok = 0, true // omitted when zero
		}
		if vok {
			return ConsentState(s), int(n), v, nil
		}
	}
	var cur consentCursor
	if err := readCursor(raw, &cur); err != nil {
		return "", 0, 0, err
	}
	return cur.State, cur.NextCycle, cur.Version, nil
}

// jsonString returns the string after key (which ends with its opening quote) when
// it has no escapes.
func jsonString(raw []byte, key string) (string, bool) {
	i := bytes.Index(raw, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := raw[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", false
	}
	return string(intern(ConsentStates, rest[:j])), true
}

// intern returns the one of values spelled b without allocating, or b as a new
// string (a state billingd does not know is kept as it is).
func intern[S ~string](values []S, b []byte) S {
	for _, v := range values {
		if string(v) == string(b) {
			return v
		}
	}
	return S(b)
}

// jsonUint returns the unsigned integer after key.
func jsonUint(raw []byte, key string) (uint64, bool) {
	i := bytes.Index(raw, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := raw[i+len(key):]
	var n uint64
	d := 0
	for ; d < len(rest) && rest[d] >= '0' && rest[d] <= '9' && d < 19; d++ {
		n = n*10 + uint64(rest[d]-'0')
	}
	if d == 0 || d < len(rest) && rest[d] != ',' && rest[d] != '}' {
		return 0, false
	}
	return n, true
}

// pins reports whether the cursor keeps attempt 0 of cycle k out of the archive: an
// active consent that has not moved past k.
func (h cursorHead) pins(k int) bool { return h.State == ConsentActive && h.NextCycle <= k }

// pinned reports whether attempt k is known not to be in the archive (see the rule
// above), from its consent's stored cursor.
func pinned(tx kv.Tx, k AttemptKey) bool {
	return pinnedAt(tx, k, attemptKeyBytes(k))
}

// pinnedAt is pinned with k's key (attemptKeyBytes) already made: it begins with
// the consent's id, the cursor's key.
func pinnedAt(tx kv.Tx, k AttemptKey, key []byte) bool {
	if k.Attempt != 0 {
		return false
	}
	h, ok := readCursorHeadAt(tx, key[:len(k.ConsentID):len(k.ConsentID)])
	return ok && h.pins(k.Cycle)
}

// archivable reports whether attempt k, settled, goes to the archive: a retry
// always; an original once its consent's stored cursor (as this transaction has
// written it) does not pin it. A consent with no cursor keeps its originals live.
// key is k's (attemptKeyBytes).
func archivable(tx kv.Tx, k AttemptKey, key []byte) bool {
	if k.Attempt != 0 {
		return true
	}
	h, ok := readCursorHeadAt(tx, key[:len(k.ConsentID):len(k.ConsentID)])
	return ok && !h.pins(k.Cycle)
}

// getAttempt returns the stored record of attempt k and whether it is in the
// archive; nil when there is none. It reads the archive only when the live bucket
// does not have it and it is not pinned.
func getAttempt(tx kv.Tx, k AttemptKey) (raw []byte, archived bool) {
	return getAttemptAt(tx, k, attemptKeyBytes(k))
}

// getAttemptAt is getAttempt with k's key (attemptKeyBytes) already made.
func getAttemptAt(tx kv.Tx, k AttemptKey, key []byte) (raw []byte, archived bool) {
	if v := tx.Bucket(bucketAttempts).Get(key); v != nil {
		return v, false
	}
	if pinnedAt(tx, k, key) {
		return nil, false
	}
	if v := tx.Bucket(bucketArchive).Get(key); v != nil {
		return v, true
	}
	return nil, false
}

// readAttempt decodes the attempt stored under key (an attempt key), live or
// archived; ErrNotFound when there is none.
func readAttempt(tx kv.Tx, key []byte, a *Attempt) error {
	raw := tx.Bucket(bucketAttempts).Get(key)
	if raw == nil {
		raw = tx.Bucket(bucketArchive).Get(key)
	}
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, a); err != nil {
		return fmt.Errorf("%w: record %q: %v", ErrCorrupt, key, err)
	}
	return nil
}

// merged walks the keys of two buckets that start with prefix, from seek, in key
// order, as one (a key in both is returned once, from a: a write never leaves one
// in both, and Check reports it). fn's false stops the walk.
func merged(a, b kv.Bucket, prefix, seek []byte, fn func(k, v []byte) (bool, error)) error {
	ca, cb := a.Cursor(), b.Cursor()
	ka, va := ca.Seek(seek)
	kb, vb := cb.Seek(seek)
	for {
		if ka != nil && !bytes.HasPrefix(ka, prefix) {
			ka = nil
		}
		if kb != nil && !bytes.HasPrefix(kb, prefix) {
			kb = nil
		}
		var k, v []byte
		switch {
		case ka == nil && kb == nil:
			return nil
		case kb == nil || ka != nil && bytes.Compare(ka, kb) <= 0:
			k, v = ka, va
			if kb != nil && bytes.Equal(ka, kb) {
				kb, vb = cb.Next()
			}
			ka, va = ca.Next()
		default:
			k, v = kb, vb
			kb, vb = cb.Next()
		}
		goOn, err := fn(k, v)
		if err != nil || !goOn {
			return err
		}
	}
}

// getEvent returns the stored event under key (consent id ‖ 0 ‖ sequence), live or
// archived; nil when there is none.
func getEvent(tx kv.Tx, key []byte) []byte {
	if v := tx.Bucket(bucketEvents).Get(key); v != nil {
		return v
	}
	return tx.Bucket(bucketEventArchive).Get(key)
}

// putAttempt writes attempt a under key (attemptKeyBytes; raw is the record to
// store, with its new version) into the bucket its state belongs in, and removes it from the other one. It
// reports whether it went to the archive.
func putAttempt(tx kv.Tx, a *Attempt, key, raw []byte, stored, archived bool) (bool, error) {
	toArchive := headOf(a).settled() && archivable(tx, a.AttemptKey, key)
	dst, other := bucketAttempts, bucketArchive
	if toArchive {
		dst, other = bucketArchive, bucketAttempts
	}
	if stored && archived != toArchive {
		if err := tx.Bucket(other).Delete(key); err != nil {
			return false, err
		}
	}
	return toArchive, tx.Bucket(dst).Put(key, raw)
}

// sweep moves consent id's older live records to the archive: up to sweepLimit
// archivable attempts, and its live events but the newest, up to sweepLimit.
func sweep(tx kv.Tx, id string) error {
	if _, err := sweepAttempts(tx, id, sweepLimit); err != nil {
		return err
	}
	_, err := sweepEvents(tx, id, sweepLimit)
	return err
}

type record struct{ k, v []byte }

// sweepAttempts moves up to limit of consent id's archivable live attempts to the
// archive, and returns how many it moved.
func sweepAttempts(tx kv.Tx, id string, limit int) (int, error) {
	live, arch := tx.Bucket(bucketAttempts), tx.Bucket(bucketArchive)
	prefix := consentPrefix(id)
	var cur *cursorHead
	var move []record
	c := live.Cursor()
	// Looks at no more than 4×limit records: a consent with many attempts in flight
	// is swept a part at a time.
	seen := 0
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(move) < limit && seen < 4*limit; k, v = c.Next() {
		seen++
		key, err := parseAttemptKey(k)
		if err != nil || key.ConsentID != id {
			continue
		}
		var h attemptHead
		if readHead(v, &h) != nil || !h.settled() {
			continue // a record that does not decode is left where it is, for Check to report
		}
		if key.Attempt == 0 {
			if cur == nil {
				h, ok := readCursorHead(tx, id)
				if !ok {
					h = cursorHead{State: ConsentActive} // no cursor: every original stays live
				}
				cur = &h
			}
			if cur.pins(key.Cycle) {
				continue
			}
		}
		move = append(move, record{bytes.Clone(k), bytes.Clone(v)})
	}
	for _, r := range move {
		if err := arch.Put(r.k, r.v); err != nil {
			return 0, err
		}
		if err := live.Delete(r.k); err != nil {
			return 0, err
		}
	}
	return len(move), nil
}

// sweepEvents moves up to limit of consent id's live events, oldest first, to the
// event archive, never the newest; it returns how many it moved.
func sweepEvents(tx kv.Tx, id string, limit int) (int, error) {
	live, arch := tx.Bucket(bucketEvents), tx.Bucket(bucketEventArchive)
	prefix := consentPrefix(id)
	newest, _ := live.Last(prefix)
	if newest == nil {
		return 0, nil
	}
	newest = bytes.Clone(newest)
	var move []record
	c := live.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.Compare(k, newest) < 0 && len(move) < limit; k, v = c.Next() {
		if len(k) != len(prefix)+8 {
			continue
		}
		move = append(move, record{bytes.Clone(k), bytes.Clone(v)})
	}
	for _, r := range move {
		if err := arch.Put(r.k, r.v); err != nil {
			return 0, err
		}
		if err := live.Delete(r.k); err != nil {
			return 0, err
		}
	}
	return len(move), nil
}

// unpin brings back to the live bucket the archived originals of consent id that
// the cursor next pins and prev did not (prev nil: the consent had no cursor, so
// none of its originals is archived): a cursor moved back, or a stopped consent
// billed again.
func unpin(tx kv.Tx, id string, prev *consentCursor, next cursorHead) error {
	if prev == nil || !next.pins(next.NextCycle) {
		return nil
	}
	if prev.State == ConsentActive && prev.NextCycle <= next.NextCycle {
		return nil // pinned nothing more than before: the common case
	}
	live, arch := tx.Bucket(bucketAttempts), tx.Bucket(bucketArchive)
	prefix := consentPrefix(id)
	var move []record
	c := arch.Cursor()
	for k, v := c.Seek(attemptKeyBytes(AttemptKey{ConsentID: id, Cycle: next.NextCycle})); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if key, err := parseAttemptKey(k); err == nil && key.ConsentID == id && key.Attempt == 0 && next.pins(key.Cycle) {
			move = append(move, record{bytes.Clone(k), bytes.Clone(v)})
		}
	}
	for _, r := range move {
		if err := live.Put(r.k, r.v); err != nil {
			return err
		}
		if err := arch.Delete(r.k); err != nil {
			return err
		}
	}
	return nil
}

// Compact moves what the archive rule allows out of the live buckets, for a store
// written before the archive (whose settled attempts and events are all live) or
// one whose consents have not settled an attempt since: every archivable live
// attempt, and every consent's live events but its newest. It works in
// transactions of at most chunk moves (0: 1,000, or within the engine's operation
// limit), each atomic and checked again against what the store holds when it
// commits, so it may run while the daemon writes; progress, when not nil, hears the
// running totals after each. It returns how many attempts and events it moved.
func (db *DB) Compact(ctx context.Context, chunk int, progress func(attempts, events int)) (attempts, events int, err error) {
	if chunk <= 0 {
		chunk = 1000
	}
	if m := db.kv.MaxOps(); m > 0 {
		chunk = min(chunk, max(m/2, 1))
	}
	for _, b := range []struct {
		bucket []byte
		moved  *int
		move   func(tx kv.Tx, id string, limit int) (int, error)
	}{{bucketAttempts, &attempts, sweepAttempts}, {bucketEvents, &events, sweepEvents}} {
		var after []byte // the last consent id done
		for {
			if err := ctx.Err(); err != nil {
				return attempts, events, err
			}
			// The consents whose live records come next, read apart from the writes.
			var ids []string
			err := db.view(ctx, func(tx kv.Tx) error {
				ids = nextConsents(tx.Bucket(b.bucket), after, chunk)
				return nil
			})
			if err != nil {
				return attempts, events, err
			}
			if len(ids) == 0 {
				break
			}
			n := 0
			err = db.update(ctx, func(tx kv.Tx) error {
				n = 0
				for _, id := range ids {
					if n >= chunk {
						break
					}
					m, err := b.move(tx, id, chunk-n)
					if err != nil {
						return err
					}
					n += m
				}
				return nil
			})
			if err != nil {
				return attempts, events, fmt.Errorf("compact: %w", err)
			}
			*b.moved += n
			if progress != nil {
				progress(attempts, events)
			}
			if n < chunk {
				after = []byte(ids[len(ids)-1])
			} // else: a consent may have more to move; start again from the same place
		}
	}
	return attempts, events, nil
}

// nextConsents returns up to limit consent ids with keys in b (consent id ‖ 0 ‖ …)
// after the id after (nil: from the first).
func nextConsents(b kv.Bucket, after []byte, limit int) []string {
	var ids []string
	c := b.Cursor()
	var k []byte
	if after == nil {
		k, _ = c.First()
	} else {
		// The first key past every key of after: its id, then 1 (ids hold no NUL).
		k, _ = c.Seek(append(bytes.Clone(after), 1))
	}
	for k != nil && len(ids) < limit {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			k, _ = c.Next()
			continue
		}
		id := k[:i]
		ids = append(ids, string(id))
		k, _ = c.Seek(append(bytes.Clone(id), 1))
	}
	return ids
}
