package storage

import (
	"context"
	"fmt"
	"strings"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/storage/kv"
)

// Check verifies billingd's own invariants over the whole store and returns
// ErrCorrupt naming up to 20 problems (nil when sound): records decode, every index
// entry points at a stored record, the consent counts match. It reads everything.
func (db *DB) Check(ctx context.Context) error {
	if p := db.Invariants(ctx); len(p) > 0 {
		return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(p, "; "))
	}
	return nil
}

// Invariants lists what breaks billingd's own rules in a readable store (at most 20).
func (db *DB) Invariants(ctx context.Context) []string {
	var problems []string
	add := func(format string, args ...any) {
		if len(problems) < maxProblems {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	err := db.view(ctx, func(tx kv.Tx) error {
		counts := map[ConsentState]int{}
		if err := tx.Bucket(bucketConsents).ForEach(func(k, v []byte) error {
			r, err := readConsent(tx, k, v)
			if err != nil || r.Consent.ID != string(k) {
				add("consent %q: record does not decode", k)
				return nil
			}
			counts[r.State]++
			return nil
		}); err != nil {
			return err
		}
		if n, m := countKeys(tx.Bucket(bucketCursors)), countKeys(tx.Bucket(bucketConsents)); n != m {
			add("%d billing cursors for %d consents", n, m)
		}
		stored, err := storedCounts(tx)
		if err != nil {
			add("consent counts: %v", err)
		}
		for _, s := range ConsentStates {
			if stored[s] != counts[s] {
				add("consent count of %s: %d stored, %d counted", s, stored[s], counts[s])
			}
		}
		attempts, archive := tx.Bucket(bucketAttempts), tx.Bucket(bucketArchive)
		if err := attempts.ForEach(func(k, v []byte) error {
			var a Attempt
			if _, err := parseAttemptKey(k); err != nil || json.Unmarshal(v, &a) != nil {
				add("attempt %x: record does not decode", k)
			}
			return nil
		}); err != nil {
			return err
		}
		// The archive holds settled attempts only, never one that is also live, and
		// never an original its consent's cursor pins (archive.go: the scan trusts a
		// live miss for those).
		if err := archive.ForEach(func(k, v []byte) error {
			var a Attempt
			key, err := parseAttemptKey(k)
			switch {
			case err != nil || json.Unmarshal(v, &a) != nil:
				add("archived attempt %x: record does not decode", k)
			case attempts.Get(k) != nil:
				add("attempt %s is both live and archived", key)
			case !headOf(&a).settled():
				add("archived attempt %s is %s, not settled", key, a.State)
			case pinned(tx, key):
				add("archived attempt %s is the next cycle of its active consent", key)
			}
			return nil
		}); err != nil {
			return err
		}
		events := tx.Bucket(bucketEvents)
		if err := tx.Bucket(bucketEventArchive).ForEach(func(k, _ []byte) error {
			if events.Get(k) != nil {
				add("event %x is both live and archived", k)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, idx := range [][]byte{bucketDue, bucketPoll} {
			if err := tx.Bucket(idx).ForEach(func(k, _ []byte) error {
				_, key, err := parseTimeKey(k)
				if err != nil {
					add("%s index key %x is malformed", idx, k)
					return nil
				}
				if idx[0] == 'p' && attempts.Get(attemptKeyBytes(key)) == nil && archive.Get(attemptKeyBytes(key)) == nil {
					add("poll index entry for %s has no attempt", key)
				}
				if idx[0] == 'd' && tx.Bucket(bucketConsents).Get([]byte(key.ConsentID)) == nil {
					add("due index entry for %s has no consent", key)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		problems = append(problems, strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": "))
	}
	return problems
}

// countKeys counts a bucket's keys.
func countKeys(b kv.Bucket) int {
	n := 0
	_ = b.ForEach(func(_, _ []byte) error { n++; return nil })
	return n
}

// maxProblems bounds the problems a check lists: a badly damaged store has thousands.
const maxProblems = 20
