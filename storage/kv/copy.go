package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// ErrNotEmpty: the target of a Copy already holds keys; nothing was written.
var ErrNotEmpty = errors.New("target is not empty")

// ErrDiffer: Compare found the two engines' contents different (see Mismatch).
var ErrDiffer = errors.New("stores differ")

// copyBatch is the most puts of one Update of Copy when the target has no limit
// (bolt): large enough that the fsyncs do not dominate, small enough that one
// transaction's dirty pages stay a few megabytes.
const copyBatch = 10_000

// Copy copies every key of the named buckets from src into dst, bucket by bucket
// in key order, and returns how many keys it committed. It reads src in one View
// (one consistent snapshot, however large) and writes dst in Updates of at most
// dst.MaxOps() puts (10,000 when the engine has no limit), each one atomic; a
// bucket's keys never share an Update with another bucket's.
//
// dst must be empty: when any named bucket of dst holds a key, Copy writes nothing
// and returns an error wrapping ErrNotEmpty that names the bucket. The check is
// made again inside the first Update, so a writer that fills dst meanwhile is
// caught on engines that detect conflicts (etcd) and cannot exist on bolt (one
// writer per file); on etcd that Update's reads take one compare per bucket, so
// dst.MaxOps() must be at least len(buckets).
//
// progress, when not nil, is called after every commit with the bucket and how
// many of its keys are committed so far, and once with 0 for an empty bucket: the
// last call for a bucket carries its count. On an error, the Updates already
// committed stay: dst then holds part of src, and the count says how much.
// A canceled ctx stops Copy between Updates.
func Copy(ctx context.Context, dst, src Engine, buckets [][]byte, progress func(bucket string, n int)) (int, error) {
	if err := dst.View(ctx, func(tx Tx) error { return checkEmpty(tx, buckets) }); err != nil {
		return 0, err
	}
	limit := dst.MaxOps()
	if limit <= 0 {
		limit = copyBatch
	}
	var (
		total   int
		first   = true // the next Update is the first: it checks dst again
		pending [][2][]byte
	)
	flush := func(bucket []byte, done int) error {
		if len(pending) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("copy %s to %s: %w", src.Name(), dst.Name(), err)
		}
		check := first
		err := dst.Update(ctx, Write{}, func(tx Tx) error {
			if check {
				if err := checkEmpty(tx, buckets); err != nil {
					return err
				}
			}
			b := tx.Bucket(bucket)
			for _, kv := range pending {
				if err := b.Put(kv[0], kv[1]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("copy %s to %s: bucket %s: %w", src.Name(), dst.Name(), bucket, err)
		}
		first = false
		total += len(pending)
		pending = pending[:0]
		if progress != nil {
			progress(string(bucket), done)
		}
		return nil
	}
	err := src.View(ctx, func(tx Tx) error {
		for _, name := range buckets {
			n := 0
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				// Clone: a read's bytes are valid only inside its transaction, and an
				// Update may keep what it was given until it commits.
				pending = append(pending, [2][]byte{bytes.Clone(k), append([]byte{}, v...)})
				n++
				if len(pending) < limit {
					return nil
				}
				return flush(name, n)
			})
			if err == nil {
				err = flush(name, n)
			}
			if err != nil {
				return err
			}
			if n == 0 && progress != nil {
				progress(string(name), 0)
			}
		}
		return nil
	})
	if err != nil {
		return total, err
	}
	return total, nil
}

// checkEmpty returns ErrNotEmpty naming the first of buckets that holds a key.
func checkEmpty(tx Tx, buckets [][]byte) error {
	for _, name := range buckets {
		if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
			return fmt.Errorf("%w: bucket %s holds keys (the first is %q)", ErrNotEmpty, name, k)
		}
	}
	return nil
}

// A Mismatch is what Compare found when the two engines differ: the first
// difference in bucket and key order, and how many keys differ in all.
type Mismatch struct {
	Bucket string
	Key    []byte
	// What is "missing in target" (a key of a only), "extra in target" (a key of
	// b only) or "value differs".
	What string
	// Differ is how many keys differ in all; Same how many are identical.
	Differ, Same int
}

func (m *Mismatch) Error() string {
	more := ""
	if m.Differ > 1 {
		more = fmt.Sprintf(" (and %d more differences)", m.Differ-1)
	}
	return fmt.Sprintf("%s: bucket %s, key %q: %s%s; %d keys identical", ErrDiffer, m.Bucket, m.Key, m.What, more, m.Same)
}

// Is makes errors.Is(err, ErrDiffer) true for a Mismatch.
func (m *Mismatch) Is(target error) bool { return target == ErrDiffer }

// Compare walks the named buckets of a (the source) and b (the target) side by
// side in key order, each in one View, and returns nil when they hold the same
// keys with the same values. Otherwise it returns a *Mismatch (errors.Is
// ErrDiffer) naming the first difference and counting all of them; or the error
// of a failed read.
func Compare(ctx context.Context, a, b Engine, buckets [][]byte) error {
	var m Mismatch
	differ := func(bucket string, k []byte, what string) {
		if m.Differ == 0 {
			m.Bucket, m.Key, m.What = bucket, bytes.Clone(k), what
		}
		m.Differ++
	}
	err := a.View(ctx, func(ta Tx) error {
		return b.View(ctx, func(tb Tx) error {
			for _, name := range buckets {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("compare: %w", err)
				}
				ca, cb := ta.Bucket(name).Cursor(), tb.Bucket(name).Cursor()
				ka, va := ca.First()
				kb, vb := cb.First()
				for ka != nil || kb != nil {
					switch c := compareKeys(ka, kb); {
					case c < 0:
						differ(string(name), ka, "missing in target")
						ka, va = ca.Next()
					case c > 0:
						differ(string(name), kb, "extra in target")
						kb, vb = cb.Next()
					default:
						if bytes.Equal(va, vb) {
							m.Same++
						} else {
							differ(string(name), ka, "value differs")
						}
						ka, va = ca.Next()
						kb, vb = cb.Next()
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("compare %s with %s: %w", a.Name(), b.Name(), err)
	}
	if m.Differ > 0 {
		return &m
	}
	return nil
}

// compareKeys orders keys bytewise, nil (a cursor's end) after every key.
func compareKeys(a, b []byte) int {
	switch {
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}
