package mem

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/klavi-billing/billingd/storage/kv"
)

// Sentinel errors.
var (
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("mem: engine closed")
	// ErrReadOnly: a write in a View.
	ErrReadOnly = errors.New("mem: write in a read-only transaction")
)

var _ kv.Engine = (*Engine)(nil)

// Engine is an in-memory kv.Engine. The zero value is not usable: call New.
type Engine struct {
	wmu    sync.Mutex // one writer at a time
	state  atomic.Pointer[state]
	closed atomic.Bool
}

// state is one committed version of every bucket. It is never modified once
// committed: a write transaction copies the buckets it changes.
type state struct {
	buckets map[string]*bucketData
}

// bucketData is an ordered map kept as two parallel sorted slices.
type bucketData struct {
	keys [][]byte
	vals [][]byte
}

func (b *bucketData) clone() *bucketData {
	return &bucketData{keys: slices.Clone(b.keys), vals: slices.Clone(b.vals)}
}

// find returns the index of the first key ≥ k and whether it equals k.
func (b *bucketData) find(k []byte) (int, bool) {
	return slices.BinarySearchFunc(b.keys, k, bytes.Compare)
}

// New returns an empty engine with the named buckets.
func New(buckets [][]byte) *Engine {
	st := &state{buckets: make(map[string]*bucketData, len(buckets))}
	for _, name := range buckets {
		st.buckets[string(name)] = &bucketData{}
	}
	e := &Engine{}
	e.state.Store(st)
	return e
}

// View runs fn on the state committed when it begins.
func (e *Engine) View(_ context.Context, fn func(kv.Tx) error) error {
	if e.closed.Load() {
		return ErrClosed
	}
	return fn(&tx{base: e.state.Load()})
}

// Update runs fn once in a write transaction and commits its writes if it returns
// nil. The fence is not checked: one process holds the engine, so there is no
// other leader to fence out. w.Batch changes nothing.
func (e *Engine) Update(_ context.Context, _ kv.Write, fn func(kv.Tx) error) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.closed.Load() {
		return ErrClosed
	}
	t := &tx{base: e.state.Load(), writable: true}
	if err := fn(t); err != nil {
		return err
	}
	if len(t.dirty) == 0 {
		return nil
	}
	next := &state{buckets: make(map[string]*bucketData, len(t.base.buckets))}
	for name, b := range t.base.buckets {
		if d, ok := t.dirty[name]; ok {
			b = d
		}
		next.buckets[name] = b
	}
	e.state.Store(next)
	return nil
}

// MaxOps is 0: an Update holds any number of writes.
func (e *Engine) MaxOps() int { return 0 }

// Name is "mem".
func (e *Engine) Name() string { return "mem" }

// Close makes every later View and Update fail with ErrClosed.
func (e *Engine) Close() error {
	e.closed.Store(true)
	return nil
}

type tx struct {
	base     *state
	writable bool
	dirty    map[string]*bucketData // buckets copied for writing
}

// Bucket returns the named bucket; an unknown name panics.
func (t *tx) Bucket(name []byte) kv.Bucket {
	if _, ok := t.base.buckets[string(name)]; !ok {
		panic("mem: no bucket " + string(name))
	}
	return &bucket{t: t, name: string(name)}
}

func (t *tx) Writable() bool { return t.writable }

// data is the bucket as this transaction sees it.
func (t *tx) data(name string) *bucketData {
	if d, ok := t.dirty[name]; ok {
		return d
	}
	return t.base.buckets[name]
}

// forWrite returns the bucket's private copy, made on the first write.
func (t *tx) forWrite(name string) *bucketData {
	if d, ok := t.dirty[name]; ok {
		return d
	}
	if t.dirty == nil {
		t.dirty = map[string]*bucketData{}
	}
	d := t.base.buckets[name].clone()
	t.dirty[name] = d
	return d
}

type bucket struct {
	t    *tx
	name string
}

func (b *bucket) Get(key []byte) []byte {
	d := b.t.data(b.name)
	if i, ok := d.find(key); ok {
		return d.vals[i]
	}
	return nil
}

// Put stores a copy of value; nil is stored as an empty value.
func (b *bucket) Put(key, value []byte) error {
	if !b.t.writable {
		return ErrReadOnly
	}
	if len(key) == 0 {
		return errors.New("mem: empty key")
	}
	v := append([]byte{}, value...)
	d := b.t.forWrite(b.name)
	i, ok := d.find(key)
	if ok {
		d.vals[i] = v
		return nil
	}
	d.keys = slices.Insert(d.keys, i, bytes.Clone(key))
	d.vals = slices.Insert(d.vals, i, v)
	return nil
}

func (b *bucket) Delete(key []byte) error {
	if !b.t.writable {
		return ErrReadOnly
	}
	if _, ok := b.t.data(b.name).find(key); !ok {
		return nil
	}
	d := b.t.forWrite(b.name)
	i, _ := d.find(key)
	d.keys = slices.Delete(d.keys, i, i+1)
	d.vals = slices.Delete(d.vals, i, i+1)
	return nil
}

func (b *bucket) Cursor() kv.Cursor { return &cursor{b: b} }

// ForEach calls fn for every key in order, on the bucket as it was when ForEach
// began.
func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	d := b.t.data(b.name)
	keys, vals := d.keys, d.vals
	for i := range keys {
		if err := fn(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// Last returns the greatest key that begins with prefix, and its value.
func (b *bucket) Last(prefix []byte) (k, v []byte) {
	d := b.t.data(b.name)
	var i int
	if end := prefixEnd(prefix); end == nil {
		i = len(d.keys)
	} else {
		i, _ = d.find(end)
	}
	if i == 0 || !bytes.HasPrefix(d.keys[i-1], prefix) {
		return nil, nil
	}
	return d.keys[i-1], d.vals[i-1]
}

// prefixEnd is the first key after every key that begins with prefix; nil when
// there is none.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// cursor remembers the key it is on, not a position, so writes made through the
// same transaction while it walks do not derail it.
type cursor struct {
	b   *bucket
	key []byte // nil: before the start or past the end
}

func (c *cursor) at(i int, d *bucketData) (k, v []byte) {
	if i >= len(d.keys) {
		c.key = nil
		return nil, nil
	}
	c.key = d.keys[i]
	return d.keys[i], d.vals[i]
}

func (c *cursor) First() (k, v []byte) {
	return c.at(0, c.b.t.data(c.b.name))
}

func (c *cursor) Seek(seek []byte) (k, v []byte) {
	d := c.b.t.data(c.b.name)
	i, _ := d.find(seek)
	return c.at(i, d)
}

func (c *cursor) Next() (k, v []byte) {
	if c.key == nil {
		return nil, nil
	}
	d := c.b.t.data(c.b.name)
	i, ok := d.find(c.key)
	if ok {
		i++
	}
	return c.at(i, d)
}
