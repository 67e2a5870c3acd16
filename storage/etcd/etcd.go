package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/storage/kv"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrConflict: other writers kept changing what an Update read, and fn ran
// maxAttempts times without one commit succeeding; nothing was written by the
// last attempt. Callers may retry later.
var ErrConflict = kv.ErrConflict

// Defaults for the zero fields of Options.
const (
	DefaultPrefix         = "/billingd/"
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 5 * time.Second
	DefaultMaxOps         = 128 // etcd's --max-txn-ops default

	maxAttempts = 10  // runs of fn in one Update before ErrConflict
	pageSize    = 256 // keys per range request of a Cursor
)

// Options configures an Engine. The zero value of a field takes its default.
type Options struct {
	// Endpoints are the cluster's client URLs ("https://10.0.0.1:2379"). Open
	// needs at least one; New ignores them.
	Endpoints []string
	// Prefix begins every key the engine writes (default "/billingd/"); replicas of
	// one deployment share it, and deployments sharing a cluster must not.
	Prefix string
	// Username and Password authenticate to etcd when Username is not empty.
	Username, Password string
	// TLS, when not nil, secures the connection (see TLSConfig).
	TLS *tls.Config
	// DialTimeout bounds Open: connecting and the first read (default 5s).
	DialTimeout time.Duration
	// RequestTimeout bounds each RPC: a read, a page of a Cursor, a commit
	// (default 5s).
	RequestTimeout time.Duration
	// Buckets are the fixed bucket names; none may be empty or hold a zero byte.
	Buckets [][]byte
	// MaxOps is the most puts and deletes one Update carries, and the most
	// compares its commit carries (default 128). It must not exceed the cluster's
	// --max-txn-ops.
	MaxOps int
	// Logger receives conflict retries (debug) and exhausted ones (warn); no key
	// or value is logged. Nil is slog.Default().
	Logger *slog.Logger
}

// Engine is a kv.Engine over an etcd cluster. It is safe for concurrent use.
type Engine struct {
	c       *clientv3.Client
	own     bool // Close closes c
	o       Options
	log     *slog.Logger
	buckets map[string]*bucketRange
	jitter  func(n int) time.Duration // backoff before attempt n+1
}

// bucketRange is the etcd range [start, end) of one bucket.
type bucketRange struct{ start, end string }

var _ kv.Engine = (*Engine)(nil)

// TLSConfig builds a client TLS configuration from PEM files: cert and key are
// the client's certificate pair (both empty: no client certificate), ca the
// bundle that verifies the servers (empty: the system roots).
func TLSConfig(cert, key, ca string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cert != "" || key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("etcd: tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("etcd: tls ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd: tls ca %s: no PEM certificate", ca)
		}
	}
	return cfg, nil
}

// Open connects to the cluster at o.Endpoints and checks within o.DialTimeout that
// it answers a linearizable read. The Engine owns the client: Close closes it. The
// error names the endpoints when the cluster does not answer or o is invalid.
func Open(ctx context.Context, o Options) (*Engine, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd: open: no endpoints")
	}
	o = o.withDefaults()
	if err := checkBuckets(o.Buckets); err != nil {
		return nil, fmt.Errorf("etcd: open: %w", err)
	}
	eps := redact.URLs(o.Endpoints) // for errors: an endpoint may carry a user and password
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		Username:    o.Username,
		Password:    o.Password,
		TLS:         o.TLS,
		Context:     context.WithoutCancel(ctx),
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd: open %s: %w", eps, err)
	}
	pctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	if _, err := c.Get(pctx, o.Prefix, clientv3.WithLimit(1), clientv3.WithKeysOnly()); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("etcd: open %s: no answer within %s: %w", eps, o.DialTimeout, err)
	}
	e := New(c, o)
	e.own = true
	return e, nil
}

// New returns an Engine over an existing client, which the caller keeps: Close
// does not close it. o.Endpoints, Username, Password, TLS and DialTimeout are
// unused. New panics when a bucket name is empty or holds a zero byte, a
// programming error.
func New(c *clientv3.Client, o Options) *Engine {
	o = o.withDefaults()
	if err := checkBuckets(o.Buckets); err != nil {
		panic("etcd: " + err.Error())
	}
	e := &Engine{c: c, o: o, log: o.Logger, buckets: make(map[string]*bucketRange, len(o.Buckets))}
	for _, b := range o.Buckets {
		base := o.Prefix + string(b)
		e.buckets[string(b)] = &bucketRange{start: base + "\x00", end: base + "\x01"}
	}
	e.jitter = func(n int) time.Duration {
		return time.Duration(n)*time.Millisecond + rand.N(5*time.Millisecond)
	}
	return e
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxOps <= 0 {
		o.MaxOps = DefaultMaxOps
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func checkBuckets(bs [][]byte) error {
	for _, b := range bs {
		if len(b) == 0 || bytes.IndexByte(b, 0) >= 0 {
			return fmt.Errorf("bucket name %q: empty or holds a zero byte", b)
		}
	}
	return nil
}

// Client returns the etcd client the engine uses (for elections and leases).
func (e *Engine) Client() *clientv3.Client { return e.c }

// Name returns "etcd".
func (e *Engine) Name() string { return "etcd" }

// MaxOps returns the most puts and deletes one Update may carry (Options.MaxOps).
func (e *Engine) MaxOps() int { return e.o.MaxOps }

// Close closes the client when Open created it; an Engine from New leaves its
// client open.
func (e *Engine) Close() error {
	if !e.own {
		return nil
	}
	if err := e.c.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close: %w", err)
	}
	return nil
}

// Status describes the cluster as the first endpoint sees it, for metrics.
type Status struct {
	Members     int    // members in the cluster
	Leader      uint64 // the leader's member ID; 0: no leader
	DBSizeBytes int64  // the endpoint's backend database size, bytes
}

// Status asks the first endpoint of the client for the cluster's status, within
// Options.RequestTimeout in all.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	eps := e.c.Endpoints()
	if len(eps) == 0 {
		return Status{}, errors.New("etcd: status: no endpoints")
	}
	sctx, cancel := context.WithTimeout(ctx, e.o.RequestTimeout)
	defer cancel()
	st, err := e.c.Status(sctx, eps[0])
	if err != nil {
		return Status{}, fmt.Errorf("etcd: status %s: %w", redact.URL(eps[0]), err)
	}
	ml, err := e.c.MemberList(sctx)
	if err != nil {
		return Status{}, fmt.Errorf("etcd: member list: %w", err)
	}
	return Status{Members: len(ml.Members), Leader: st.Leader, DBSizeBytes: st.DbSize}, nil
}

// View runs fn on one revision of the cluster. It returns fn's error, or the
// first failed read's ("etcd: read: ...").
func (e *Engine) View(ctx context.Context, fn func(kv.Tx) error) error {
	t := &tx{e: e, ctx: ctx}
	err := fn(t)
	if t.err != nil {
		return t.err
	}
	return err
}

// Update runs fn and commits its writes in one etcd Txn that also checks w.Fence
// and that nothing fn read has changed; when something has, fn runs again on fresh
// data (at most 10 runs, then ErrConflict). It returns fn's error, the first
// failed read's, kv.ErrTooLarge, kv.ErrFenced (never retried) or the commit's
// error, all but fn's wrapped, and commits nothing in those cases.
//
// With w.Batch (the caller accepts that fn runs more than once, as storage.Apply
// does), the first run reads serializably throughout (optimistic): its first read is
// answered by whichever member the client asks, from its own store, without a
// read-index round through the leader, and that member may be a little behind.
// Such a run's result is kept only when the commit proves it current: the commit
// compares the ModRevision of every key the run read and of every range it walked
// (and, for Last, of the key it found, so a key deleted since is a conflict too), so
// a stale read fails the commit, and fn runs again, reading linearizably as every
// later run does. A first run whose outcome no commit would check — fn failed,
// nothing to write, a Cursor walked a range (whose deleted keys a compare cannot
// see), or too many compares — is dropped unseen and fn runs again linearizably at
// once; it does not count as an attempt. A failed read fails the Update as on any
// run.
func (e *Engine) Update(ctx context.Context, w kv.Write, fn func(kv.Tx) error) error {
	optimistic := w.Batch
	for attempt := 1; ; attempt++ {
		t := &tx{e: e, ctx: ctx, writable: true, writes: map[string][]byte{}, gets: map[string]int64{}, optimistic: optimistic}
		err := fn(t)
		if optimistic {
			optimistic = false
			if t.err == nil { // a failed read fails the Update below, as on any run
				if err != nil || len(t.writes) == 0 || t.walked {
					attempt-- // no commit would check this run's outcome: drop it
					continue
				}
				ok, err := t.commit(w.Fence)
				switch {
				case errors.Is(err, kv.ErrTooLarge): // refused before anything was sent
					attempt--
					continue
				case ok || err != nil:
					return err
				}
				// A stale read is the likely cause: run again reading linearizably,
				// without the backoff meant for concurrent writers.
				e.log.Debug("etcd: update conflict, retrying", "attempt", attempt)
				continue
			}
		}
		if t.err != nil {
			if errors.Is(t.err, rpctypes.ErrCompacted) && attempt < maxAttempts {
				continue // the revision fn read at is gone: run again on fresh data
			}
			return t.err
		}
		if err != nil {
			return err
		}
		ok, err := t.commit(w.Fence)
		if ok || err != nil {
			return err
		}
		if attempt == maxAttempts {
			e.log.Warn("etcd: update conflict, giving up", "attempt", attempt)
			return fmt.Errorf("etcd: update after %d attempts: %w", attempt, ErrConflict)
		}
		e.log.Debug("etcd: update conflict, retrying", "attempt", attempt)
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd: update: %w: %w", kv.ErrUnavailable, ctx.Err())
		case <-time.After(e.jitter(attempt)):
		}
	}
}

// commit sends t's writes in one Txn guarded by the fence and t's read set. It
// returns false, nil when the read set no longer holds (a conflict).
func (t *tx) commit(f kv.Fence) (bool, error) {
	e := t.e
	if len(t.writes) == 0 && f.IsZero() {
		return true, nil // read only: a snapshot read is serializable
	}
	if len(t.writes) > e.o.MaxOps {
		return false, fmt.Errorf("etcd: %d puts and deletes, at most %d: %w", len(t.writes), e.o.MaxOps, kv.ErrTooLarge)
	}
	var cmps []clientv3.Cmp
	var orElse []clientv3.Op
	if !f.IsZero() {
		if f.Key == "" || f.Rev <= 0 {
			return false, fmt.Errorf("etcd: fence %q at %d: %w", f.Key, f.Rev, kv.ErrFenced)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.Rev))
		orElse = append(orElse, clientv3.OpGet(f.Key, clientv3.WithKeysOnly()))
	}
	if len(t.writes) > 0 { // a fence check alone needs no read set
		rs, err := t.readSet(e.o.MaxOps - len(cmps))
		if err != nil {
			return false, err
		}
		cmps = append(cmps, rs...)
	}
	ops := make([]clientv3.Op, 0, len(t.writes))
	for _, k := range t.keys {
		if v := t.writes[k]; v != nil {
			ops = append(ops, clientv3.OpPut(k, string(v)))
		} else {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	ctx, cancel := context.WithTimeout(t.ctx, e.o.RequestTimeout)
	defer cancel()
	resp, err := e.c.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
	if err != nil {
		return false, fmt.Errorf("etcd: commit (its outcome is unknown): %w: %w", kv.ErrUnavailable, err)
	}
	if resp.Succeeded {
		return true, nil
	}
	if len(orElse) > 0 {
		kvs := resp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 || kvs[0].CreateRevision != f.Rev {
			return false, fmt.Errorf("etcd: fence %q at %d lost: %w", f.Key, f.Rev, kv.ErrFenced)
		}
	}
	return false, nil
}

// span is an etcd range [start, end) a read walked.
type span struct{ start, end string }

// readSet returns the compares proving that what t read is unchanged, at most limit
// of them (see the package doc for how it shrinks the set), or kv.ErrTooLarge.
func (t *tx) readSet(limit int) ([]clientv3.Cmp, error) {
	spans := mergeSpans(t.spans)
	gets := t.gets
	if len(gets)+len(spans) > limit { // one range per bucket
		byBucket := map[*bucketRange]span{}
		for _, s := range spans {
			b := t.e.bucketOf(s.start)
			if u, ok := byBucket[b]; ok {
				s = span{min(s.start, u.start), max(s.end, u.end)}
			}
			byBucket[b] = s
		}
		spans = mergeSpans(slices.Collect(maps.Values(byBucket)))
	}
	if len(gets)+len(spans) > limit { // absent keys inside a walked range
		gets = map[string]int64{}
		for k, rev := range t.gets {
			if rev != 0 || !covered(spans, k) {
				gets[k] = rev
			}
		}
	}
	if n := len(gets) + len(spans); n > limit {
		return nil, fmt.Errorf("etcd: read set needs %d compares, at most %d: %w", n, limit, kv.ErrTooLarge)
	}
	cmps := make([]clientv3.Cmp, 0, len(gets)+len(spans))
	for _, k := range slices.Sorted(maps.Keys(gets)) {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", gets[k]))
	}
	for _, s := range spans {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.start), "<", t.rev+1).WithRange(s.end))
	}
	return cmps, nil
}

// mergeSpans sorts spans and merges the ones that overlap or touch; empty spans go.
func mergeSpans(in []span) []span {
	in = slices.DeleteFunc(slices.Clone(in), func(s span) bool { return s.start >= s.end })
	slices.SortFunc(in, func(a, b span) int { return strings.Compare(a.start, b.start) })
	var out []span
	for _, s := range in {
		if n := len(out); n > 0 && s.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

func covered(spans []span, k string) bool {
	i, _ := slices.BinarySearchFunc(spans, k, func(s span, k string) int { return strings.Compare(s.start, k) })
	// spans[i-1] is the last span starting at or before k (or spans[i] starts at k).
	if i < len(spans) && spans[i].start == k {
		return true
	}
	return i > 0 && k < spans[i-1].end
}

// bucketOf returns the bucket whose range holds the etcd key k.
func (e *Engine) bucketOf(k string) *bucketRange {
	for _, b := range e.buckets {
		if k >= b.start && k < b.end {
			return b
		}
	}
	return nil
}
