package bolt

import (
	"bytes"
	"context"
	"runtime/debug"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/klavi-billing/billingd/storage/kv"
)

var _ kv.Engine = (*engine)(nil)

// View runs fn in a bbolt read transaction, under guard (a damaged page becomes
// ErrCorrupt). ctx is not consulted: a local read does not wait. With an archive
// file, the View is registered while it is open: a drain does not commit to the
// archive file while a View begun before it read the stages is open (waitViews), so
// the archive file's transaction, begun at the View's first read there, agrees with
// its database file's.
func (db *engine) View(_ context.Context, fn func(kv.Tx) error) error {
	if a := db.arch; a != nil && !a.readOnly {
		defer a.exitView(a.enterView())
	}
	return guard(func() error {
		return db.bolt.View(func(t *bbolt.Tx) error {
			x := &tx{t: t, known: db.known, e: db}
			defer x.end()
			return fn(x)
		})
	})
}

// Update runs fn in a write transaction, after the identity check; with w.Batch it
// shares a transaction and an fsync with concurrent Updates (bbolt's DB.Batch, which
// may run fn twice). The fence is not checked: the flock on the path makes this
// process the only writer, so there is no other leader to fence out.
func (db *engine) Update(_ context.Context, w kv.Write, fn func(kv.Tx) error) error {
	run := func(t *bbolt.Tx) error {
		if err := db.checkWrite(t); err != nil {
			return err
		}
		x := &tx{t: t, known: db.known, e: db}
		defer x.end()
		return fn(x)
	}
	defer db.boundMapped()
	defer db.drainBacklog()
	if !w.Batch {
		return guard(func() error { return db.bolt.Update(run) })
	}
	return guard(func() error {
		return db.bolt.Batch(func(t *bbolt.Tx) error {
			// Batches run on a goroutine of bbolt's: faults there must panic too.
			debug.SetPanicOnFault(true)
			return run(t)
		})
	})
}

// MaxOps is 0: one bbolt transaction holds any number of writes.
func (db *engine) MaxOps() int { return 0 }

// Name is "bolt".
func (db *engine) Name() string { return "bolt" }

// Close closes the database, waiting for open transactions to end, then releases
// the lock file.
func (db *engine) Close() error {
	// The drain first, then the database file (bbolt's Close waits for open
	// transactions, which may be reading the archive file), then the archive file.
	if db.arch != nil {
		db.arch.stopDrain()
	}
	err := db.bolt.Close()
	if db.arch != nil {
		if aerr := db.arch.close(); err == nil {
			err = aerr
		}
	}
	if db.lock != nil {
		_ = db.lock.Close()
		db.lock = nil
	}
	return err
}

// tx is one bbolt transaction. It keeps the buckets it opened, in itself (no
// allocation for the first few): bbolt opens a bucket anew at every Tx.Bucket of a
// read transaction, and a record write touches the same few buckets many times.
type tx struct {
	t     *bbolt.Tx
	known map[string]bool
	open  [8]bucket
	n     int
	more  []*bucket
	e     *engine
	// atx is the archive file's read transaction, begun at the first read there.
	atx *bbolt.Tx
	// lay are the layers' buckets opened, through both files (archivefile.go).
	lay [len(layers)]*layered
}

// Bucket returns the named bucket; in a read transaction of a file that predates
// the bucket (a schema 1 file opened read-only), an empty one. A name outside the
// layout panics. With an archive file, the layers' buckets are read through both
// files (layered).
func (t *tx) Bucket(name []byte) kv.Bucket {
	if t.e.arch != nil {
		if i := layerOf(name); i >= 0 {
			if t.lay[i] == nil {
				// A read-only file that predates the bucket has no stage: nil.
				stage, _ := t.bucket(name).(*bucket)
				t.lay[i] = t.layered(i, stage)
			}
			return t.lay[i]
		}
	}
	return t.bucket(name)
}

// bucket returns the named bucket of the database file.
func (t *tx) bucket(name []byte) kv.Bucket {
	for i := range t.n {
		if string(t.open[i].name) == string(name) {
			return &t.open[i]
		}
	}
	for _, b := range t.more {
		if string(b.name) == string(name) {
			return b
		}
	}
	b := t.t.Bucket(name)
	if b == nil {
		if t.t.Writable() || !t.known[string(name)] {
			panic("bolt: no bucket " + string(name))
		}
		return empty{}
	}
	if t.e.fill > 0 {
		b.FillPercent = t.e.fill
	}
	if t.n < len(t.open) {
		t.open[t.n] = bucket{b: b, name: name}
		t.n++
		return &t.open[t.n-1]
	}
	nb := &bucket{b: b, name: name}
	t.more = append(t.more, nb)
	return nb
}

func (t *tx) Writable() bool { return t.t.Writable() }

// bucket is one bucket of one transaction. Get seeks with one cursor kept for the
// transaction: bbolt's Bucket.Get makes a new cursor, and its search stack, at every
// call. Seek repositions the cursor from the root, so puts and deletes between two
// Gets do not disturb it; cursors given out by Cursor are separate.
type bucket struct {
	b    *bbolt.Bucket
	name []byte
	get  *bbolt.Cursor
}

// Get returns the key's value, or nil: bbolt's Bucket.Get, through the kept cursor.
// A nested bucket's key reads as absent, as in bbolt (Seek returns its value nil).
func (b *bucket) Get(key []byte) []byte {
	if b.get == nil {
		b.get = b.b.Cursor()
	}
	k, v := b.get.Seek(key)
	if v == nil || !bytes.Equal(k, key) {
		return nil
	}
	return v
}

// Put stores value; a nil value is stored as an empty one, which Get returns as a
// non-nil empty slice.
func (b *bucket) Put(key, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return b.b.Put(key, value)
}

func (b *bucket) Delete(key []byte) error                  { return b.b.Delete(key) }
func (b *bucket) Cursor() kv.Cursor                        { return b.b.Cursor() }
func (b *bucket) ForEach(fn func(k, v []byte) error) error { return b.b.ForEach(fn) }

// Last seeks with the kept cursor too (Get's note).
func (b *bucket) Last(prefix []byte) (k, v []byte) {
	if b.get == nil {
		b.get = b.b.Cursor()
	}
	k, v = seekLast(b.get, prefix)
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil, nil
	}
	return k, v
}

// seekLast moves c to the greatest key that begins with prefix, or to the last key
// before them (nil: none), and returns it.
func seekLast(c *bbolt.Cursor, prefix []byte) (k, v []byte) {
	var buf [64]byte
	if end := prefixEnd(append(buf[:0], prefix...)); end == nil {
		return c.Last()
	} else if k, _ = c.Seek(end); k == nil {
		return c.Last()
	}
	return c.Prev()
}

// prefixEnd is the first key after every key that begins with prefix; nil when
// there is none (a prefix of 0xff bytes only, or none). It reuses prefix's array.
func prefixEnd(prefix []byte) []byte {
	end := prefix
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// empty is a bucket that does not exist in a read-only file.
type empty struct{}

func (empty) Get([]byte) []byte                     { return nil }
func (empty) Put([]byte, []byte) error              { return berrors.ErrTxNotWritable }
func (empty) Delete([]byte) error                   { return berrors.ErrTxNotWritable }
func (empty) Cursor() kv.Cursor                     { return emptyCursor{} }
func (empty) ForEach(func(k, v []byte) error) error { return nil }
func (empty) Last([]byte) (k, v []byte)             { return nil, nil }

type emptyCursor struct{}

func (emptyCursor) First() (k, v []byte)      { return nil, nil }
func (emptyCursor) Seek([]byte) (k, v []byte) { return nil, nil }
func (emptyCursor) Next() (k, v []byte)       { return nil, nil }

// view is a read transaction of bbolt's own, under guard.
func (db *engine) view(fn func(tx *bbolt.Tx) error) error {
	return guard(func() error { return db.bolt.View(fn) })
}
