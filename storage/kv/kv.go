package kv

import (
	"context"
	"errors"
)

// ErrFenced: the write's fencing token no longer holds (the leadership that issued
// it was lost); nothing was written.
var ErrFenced = errors.New("fenced: this replica is no longer the leader")

// ErrTooLarge: one Update carried more operations than the engine commits at once.
var ErrTooLarge = errors.New("transaction too large")

// ErrConflict: what a write read was changed by another writer, and the write was
// not made (an optimistic engine gave up after retrying; package storage: a
// record's version moved on). Read again and decide again.
var ErrConflict = errors.New("the record changed since it was read")

// ErrUnavailable: the engine could not be reached or did not answer in time. For a
// write, its outcome is unknown: it may have been committed.
var ErrUnavailable = errors.New("store unavailable")

// A Fence is the proof of leadership a write carries: the election key the leader
// holds and the revision that created it (etcd's create revision, an increasing
// number: the fencing token). The zero Fence is no fence.
type Fence struct {
	Key string
	Rev int64
}

// IsZero reports whether f is no fence.
func (f Fence) IsZero() bool { return f.Key == "" && f.Rev == 0 }

// Write tunes one Update.
type Write struct {
	// Fence, when not zero, must hold at commit (ErrFenced otherwise).
	Fence Fence
	// Batch lets the engine share the commit (and its fsync) with concurrent
	// Updates; fn may then run more than once.
	Batch bool
}

// Engine is an ordered, durable key-value store with transactions.
type Engine interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, w Write, fn func(Tx) error) error
	// MaxOps is the most puts and deletes one Update may hold; 0 is no limit.
	MaxOps() int
	// Name names the engine for messages and metrics ("bolt", "etcd").
	Name() string
	Close() error
}

// Tx is one transaction.
type Tx interface {
	// Bucket returns the named bucket. Names are a fixed set (the engine's Options);
	// an unknown name panics, as it is a programming error.
	Bucket(name []byte) Bucket
	Writable() bool
}

// Bucket is an ordered map of keys to values inside a transaction.
type Bucket interface {
	// Get returns the key's value, or nil when the key is absent. A present key with
	// an empty value returns a non-nil empty slice.
	Get(key []byte) []byte
	// Put stores value under key. It does not keep key (the caller may reuse it);
	// value must stay unchanged until the transaction ends.
	Put(key, value []byte) error
	Delete(key []byte) error
	Cursor() Cursor
	// ForEach calls fn for every key in order; an error from fn stops it.
	ForEach(fn func(k, v []byte) error) error
	// Last returns the greatest key that begins with prefix and its value, or nil.
	Last(prefix []byte) (k, v []byte)
}

// A Prefetcher is a Tx that can read many keys in one round trip (etcd: one
// read-only Txn). Prefetch reads those of keys the transaction has not read or
// written yet, at the transaction's revision; a later Get of one is answered from
// memory, and counts as read (for an Update's conflict check) only then. A prefetch
// that fails leaves its keys to Get, which reports any failure.
type Prefetcher interface {
	Prefetch(keys []BucketKey)
}

// BucketKey names one key of one bucket.
type BucketKey struct{ Bucket, Key []byte }

// Cursor walks a bucket in key order. A nil key is the end.
type Cursor interface {
	First() (k, v []byte)
	Seek(seek []byte) (k, v []byte)
	Next() (k, v []byte)
}
