package etcd

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klavi-billing/billingd/storage"
)

// Store is billingd's store on etcd: a storage.DB over this engine, and the
// cluster's size figures.
type Store struct {
	*storage.DB
	e *Engine
}

// OpenStore dials the cluster (Open) and lays billingd's records over the key
// prefix o.Prefix (storage.New): an empty prefix is laid out, an older schema
// migrated, another program's keys refused (storage.ErrNotBillingd). o.Buckets is
// set to storage's layout.
func OpenStore(ctx context.Context, o Options, so storage.Options) (*Store, error) {
	o.Buckets = storage.Buckets
	e, err := Open(ctx, o)
	if err != nil {
		return nil, err
	}
	db, err := storage.New(ctx, e, so)
	if err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("etcd %s: %w", o.Prefix, err)
	}
	return &Store{DB: db, e: e}, nil
}

// NewStore is OpenStore on a client the caller keeps (and closes).
func NewStore(ctx context.Context, c *clientv3.Client, o Options, so storage.Options) (*Store, error) {
	o.Buckets = storage.Buckets
	e := New(c, o)
	db, err := storage.New(ctx, e, so)
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", e.o.Prefix, err)
	}
	return &Store{DB: db, e: e}, nil
}

// Stats reports the backend database size of the first endpoint's member, in
// bytes (all of the cluster's keys, not only billingd's).
func (s *Store) Stats(ctx context.Context) (storage.Stats, error) {
	st, err := s.e.Status(ctx)
	if err != nil {
		return storage.Stats{}, err
	}
	return storage.Stats{SizeBytes: st.DBSizeBytes, InUseBytes: st.DBSizeBytes}, nil
}

// Client is the etcd client the store uses (leader election shares it).
func (s *Store) Client() *clientv3.Client { return s.e.Client() }

// Prefix is the key prefix the store keeps its records under.
func (s *Store) Prefix() string { return s.e.o.Prefix }
