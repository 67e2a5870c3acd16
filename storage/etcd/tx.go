package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/klavi-billing/billingd/storage/kv"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// tx is one run of a View's or an Update's fn. Keys inside are full etcd keys.
type tx struct {
	e        *Engine
	ctx      context.Context
	writable bool
	err      error // the first failed read (or ErrTooLarge): sticky
	rev      int64 // the revision every read asks for; 0 until the first read
	// optimistic: the first read too is serializable (an Update's first run; see
	// Engine.Update). walked: a Cursor walked a range in such a run.
	optimistic, walked bool

	// read holds the keys Get read from etcd and their values (nil: absent). The
	// transaction reads one revision, so a key read twice (a record's version
	// check, then the record; the cursor a consent's every write looks at) is read
	// from etcd once.
	read    map[string][]byte
	readRev map[string]int64 // the ModRevision of each key in read (0: absent)

	// Update only.
	writes map[string][]byte // buffered puts; a nil value is a delete
	keys   []string          // the keys of writes, sorted
	gets   map[string]int64  // key read from etcd -> its ModRevision (0: absent)
	spans  []span            // ranges walked by Cursor and Last
}

func (t *tx) Writable() bool { return t.writable }

func (t *tx) Bucket(name []byte) kv.Bucket {
	r, ok := t.e.buckets[string(name)]
	if !ok {
		panic(fmt.Sprintf("etcd: unknown bucket %q", name))
	}
	return &bucket{t: t, r: r}
}

// get reads from etcd at the transaction's revision, fixing it on the first read.
// A failure is recorded and returns nil; after one, every read returns nil.
//
// The first read is linearizable: the member confirms with a quorum that it has
// applied everything committed before the read began, so the revision it answers
// at is current. Every later read names that revision and is serializable: the
// member answers from its own store without a read-index round to the leader. That
// is the same answer, not a staler one: what a key held at a given revision never
// changes, and every member that has applied the revision holds it. A member that
// has not applied it yet (a follower a little behind the one that answered the
// first read) refuses with ErrFutureRev, and the read is asked again as a
// linearizable one, which waits until the member has caught up. A revision
// compacted meanwhile fails the read either way (ErrCompacted, as before).
func (t *tx) get(key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	if t.err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(t.ctx, t.e.o.RequestTimeout)
	defer cancel()
	var (
		resp *clientv3.GetResponse
		err  error
	)
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
		resp, err = t.e.c.Get(ctx, key, append(opts, clientv3.WithSerializable())...)
		if errors.Is(err, rpctypes.ErrFutureRev) {
			resp, err = t.e.c.Get(ctx, key, opts...)
		}
	} else if t.optimistic {
		resp, err = t.e.c.Get(ctx, key, append(opts, clientv3.WithSerializable())...)
	} else {
		resp, err = t.e.c.Get(ctx, key, opts...)
	}
	if err != nil {
		t.err = fmt.Errorf("etcd: read: %w: %w", kv.ErrUnavailable, err)
		return nil
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp
}

// write buffers a put (v not nil) or a delete (v nil) of the etcd key k.
func (t *tx) write(k string, v []byte) error {
	switch {
	case !t.writable:
		return errors.New("etcd: write in a read-only transaction")
	case t.err != nil:
		return t.err
	}
	if _, ok := t.writes[k]; !ok {
		if len(t.writes) >= t.e.o.MaxOps {
			t.err = fmt.Errorf("etcd: more than %d puts and deletes: %w", t.e.o.MaxOps, kv.ErrTooLarge)
			return t.err
		}
		i, _ := slices.BinarySearch(t.keys, k)
		t.keys = slices.Insert(t.keys, i, k)
	}
	t.writes[k] = v
	return nil
}

// value returns an etcd value as a present key's value: never nil.
func value(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

type bucket struct {
	t *tx
	r *bucketRange
}

func (b *bucket) Get(key []byte) []byte {
	t, k := b.t, b.r.start+string(key)
	if v, ok := t.writes[k]; ok {
		return v
	}
	if _, ok := t.read[k]; !ok {
		resp := t.get(k)
		if resp == nil {
			return nil
		}
		t.keep(k, resp.Kvs)
	}
	if t.writable {
		if _, ok := t.gets[k]; !ok {
			t.gets[k] = t.readRev[k]
		}
	}
	return t.read[k]
}

// keep records what a read of key k found (kvs: none, or the key).
func (t *tx) keep(k string, kvs []*mvccpb.KeyValue) {
	if t.read == nil {
		t.read, t.readRev = map[string][]byte{}, map[string]int64{}
	}
	if len(kvs) == 0 {
		t.read[k], t.readRev[k] = nil, 0
		return
	}
	t.read[k], t.readRev[k] = value(kvs[0].Value), kvs[0].ModRevision
}

// Prefetch reads the keys not read or written yet in read-only Txns of at most the
// engine's operation limit, at the transaction's revision (the first key is read
// alone when none is fixed yet, as Get reads it). A Txn that fails (a member behind
// the revision, a timeout) is dropped: Get reads its keys itself.
func (t *tx) Prefetch(keys []kv.BucketKey) {
	var want []string
	asked := make(map[string]bool, len(keys))
	for _, bk := range keys {
		r, ok := t.e.buckets[string(bk.Bucket)]
		if !ok {
			panic(fmt.Sprintf("etcd: unknown bucket %q", bk.Bucket))
		}
		k := r.start + string(bk.Key)
		if _, ok := t.writes[k]; ok {
			continue
		}
		if _, ok := t.read[k]; ok || asked[k] {
			continue
		}
		asked[k] = true
		want = append(want, k)
	}
	if len(want) == 0 || t.err != nil {
		return
	}
	if t.rev == 0 {
		resp := t.get(want[0])
		if resp == nil {
			return
		}
		t.keep(want[0], resp.Kvs)
		want = want[1:]
	}
	limit := t.e.MaxOps()
	if limit <= 0 {
		limit = 128
	}
	for len(want) > 0 {
		part := want[:min(limit, len(want))]
		want = want[len(part):]
		ops := make([]clientv3.Op, len(part))
		for i, k := range part {
			ops[i] = clientv3.OpGet(k, clientv3.WithRev(t.rev), clientv3.WithSerializable())
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.e.o.RequestTimeout)
		resp, err := t.e.c.Txn(ctx).Then(ops...).Commit()
		cancel()
		if err != nil || len(resp.Responses) != len(part) {
			return
		}
		for i, r := range resp.Responses {
			rr := r.GetResponseRange()
			if rr == nil {
				return
			}
			t.keep(part[i], rr.Kvs)
		}
	}
}

func (b *bucket) Put(key, v []byte) error {
	if len(key) == 0 {
		return errors.New("etcd: put: empty key")
	}
	return b.t.write(b.r.start+string(key), append([]byte{}, v...)) // never nil
}

func (b *bucket) Delete(key []byte) error {
	return b.t.write(b.r.start+string(key), nil)
}

func (b *bucket) Cursor() kv.Cursor { return &cursor{b: b, span: -1} }

func (b *bucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.t.err
}

func (b *bucket) Last(prefix []byte) (k, v []byte) {
	t, r := b.t, b.r
	p := r.start + string(prefix)
	end := clientv3.GetPrefixRangeEnd(p) // <= r.end: r.start ends in a zero byte
	// The greatest buffered put in [p, end) wins over every etcd key below it.
	var put string
	for i := lowerBound(t.keys, end) - 1; i >= 0 && t.keys[i] >= p; i-- {
		if t.writes[t.keys[i]] != nil {
			put = t.keys[i]
			break
		}
	}
	found := put
	lo, hi := max(p, put), end
	for lo < hi {
		resp := t.get(lo, clientv3.WithRange(hi), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
		if resp == nil {
			return nil, nil
		}
		if len(resp.Kvs) == 0 {
			break
		}
		ek := string(resp.Kvs[0].Key)
		if w, ok := t.writes[ek]; ok && w == nil {
			hi = ek // deleted by this transaction: look below it
			continue
		}
		if ek != put {
			found, v = ek, value(resp.Kvs[0].Value)
			if t.optimistic {
				// The range compare sees keys created above found, not found's own
				// deletion: compare its ModRevision too, so that a stale read of a
				// key deleted since is a conflict (see Engine.Update).
				t.gets[ek] = resp.Kvs[0].ModRevision
			}
		}
		break
	}
	if t.writable {
		t.spans = append(t.spans, span{max(p, found), end})
	}
	if found == "" {
		return nil, nil
	}
	if v == nil {
		v = t.writes[found]
	}
	return []byte(found[len(r.start):]), v
}

func lowerBound(keys []string, k string) int {
	i, _ := slices.BinarySearch(keys, k)
	return i
}

// cursor merges a bucket's etcd keys, fetched a page at a time, with the
// transaction's buffered writes. It locates the buffer by key at every step, so
// writes made while it walks are seen when they lie ahead of it.
type cursor struct {
	b       *bucket
	started bool
	lo      string             // the least key the next step may return
	page    []*mvccpb.KeyValue // fetched etcd keys not yet passed
	from    string             // where the next page starts
	done    bool               // etcd holds nothing from `from` on
	span    int                // this walk's index in t.spans; -1: none
}

func (c *cursor) First() (k, v []byte) { return c.seek(c.b.r.start) }

func (c *cursor) Seek(seek []byte) (k, v []byte) { return c.seek(c.b.r.start + string(seek)) }

func (c *cursor) Next() (k, v []byte) {
	if !c.started {
		return c.First()
	}
	return c.step()
}

func (c *cursor) seek(lo string) (k, v []byte) {
	c.started, c.lo, c.page, c.from, c.done = true, lo, nil, lo, false
	if t := c.b.t; t.writable {
		t.walked = t.walked || t.optimistic
		t.spans = append(t.spans, span{lo, lo})
		c.span = len(t.spans) - 1
	}
	return c.step()
}

func (c *cursor) step() (k, v []byte) {
	t, r := c.b.t, c.b.r
	for {
		for len(c.page) > 0 && string(c.page[0].Key) < c.lo {
			c.page = c.page[1:]
		}
		if len(c.page) == 0 && !c.done {
			resp := t.get(max(c.from, c.lo), clientv3.WithRange(r.end), clientv3.WithLimit(pageSize))
			if resp == nil {
				return nil, nil
			}
			c.page, c.done = resp.Kvs, !resp.More
			if n := len(resp.Kvs); n > 0 {
				c.from = string(resp.Kvs[n-1].Key) + "\x00"
			}
			continue
		}
		var bk string // the next buffered key, if any
		if i := lowerBound(t.keys, c.lo); i < len(t.keys) && t.keys[i] < r.end {
			bk = t.keys[i]
		}
		var full string
		switch {
		case bk == "" && len(c.page) == 0:
			c.lo = r.end
			c.extend()
			return nil, nil
		case bk != "" && (len(c.page) == 0 || bk <= string(c.page[0].Key)):
			if len(c.page) > 0 && bk == string(c.page[0].Key) {
				c.page = c.page[1:]
			}
			full, v = bk, t.writes[bk]
			if v == nil { // deleted by this transaction
				c.lo = bk + "\x00"
				continue
			}
			k = []byte(bk[len(r.start):])
		default:
			kv := c.page[0]
			c.page = c.page[1:]
			full, k, v = string(kv.Key), kv.Key[len(r.start):], value(kv.Value)
		}
		c.lo = full + "\x00"
		c.extend()
		return k, v
	}
}

// extend stretches the walk's recorded range to the cursor's position.
func (c *cursor) extend() {
	if c.span >= 0 {
		c.b.t.spans[c.span].end = c.lo
	}
}
