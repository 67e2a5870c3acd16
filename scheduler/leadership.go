package scheduler

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// ErrNotLeader: this replica does not lead (several replicas share an etcd store
// and another one schedules), so it runs no scan, poll, reconciliation, refresh or
// cancellation, and sends nothing to Klavi. The admin API answers 503 and names the
// leader.
var ErrNotLeader = errors.New("not the leader: another replica schedules")

// Leadership is what a replicated scheduler asks before it acts: whether this
// replica still holds the leadership fence names. *leader.Elector implements it.
type Leadership interface {
	Holds(fence kv.Fence) bool
}

// WithLeadership makes the scheduler one of several replicas: it acts (scans,
// polls, reconciles, sends) only while started with a fence that l says it holds,
// checks l again just before every payment request and cancellation it sends, and
// fences every write it makes. Without it (one process on a bolt file) the
// scheduler always acts, and its writes carry no fence.
func WithLeadership(l Leadership) Option { return func(s *Scheduler) { s.leadership = l } }

// fencedStore is the scheduler's view of its store: every Change it applies
// carries the fence of the term the scheduler runs in (none when it runs in none).
type fencedStore struct {
	Store
	fence *atomic.Pointer[kv.Fence]
}

func (f fencedStore) Apply(ctx context.Context, ch *storage.Change) error {
	if fe := f.fence.Load(); fe != nil && ch.Fence.IsZero() {
		ch.Fence = *fe
	}
	return f.Store.Apply(ctx, ch)
}

func (f fencedStore) ApplyAll(ctx context.Context, chs []*storage.Change) (int, error) {
	if fe := f.fence.Load(); fe != nil {
		for _, ch := range chs {
			if ch.Fence.IsZero() {
				ch.Fence = *fe
			}
		}
	}
	return f.Store.ApplyAll(ctx, chs)
}

// mayAct returns nil when this scheduler may decide and send now: it is not
// replicated, or it runs in a term whose fence it still holds.
func (s *Scheduler) mayAct() error {
	_, err := s.held()
	return err
}

// held returns the fence of the term this replica was just found to hold (nil when
// not replicated), or ErrNotLeader.
func (s *Scheduler) held() (*kv.Fence, error) {
	if s.leadership == nil {
		return nil, nil
	}
	if fe := s.fence.Load(); fe != nil && s.leadership.Holds(*fe) {
		return fe, nil
	}
	return nil, ErrNotLeader
}

// acting is mayAct for work that reaches Klavi: it returns ctx carrying the
// klavi.FenceHeader of the term just found held, so that every Klavi request of a
// replicated scheduler carries its term's fence, whether a cron run or an admin
// call (scan, poll, refresh, reconcile, cancel) started it, and a payment request
// carries the very fence its last look checked.
func (s *Scheduler) acting(ctx context.Context) (context.Context, error) {
	fe, err := s.held()
	if err != nil || fe == nil {
		return ctx, err
	}
	return klavi.WithHeader(ctx, klavi.FenceHeader, strconv.FormatInt(fe.Rev, 10)), nil
}

// Fence returns the fence of the term the scheduler runs in; zero when it runs in
// none (a follower, or not replicated).
func (s *Scheduler) Fence() kv.Fence {
	if fe := s.fence.Load(); fe != nil {
		return *fe
	}
	return kv.Fence{}
}
