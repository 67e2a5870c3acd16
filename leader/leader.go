package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/storage/kv"
)

var (
	// ErrUnreachable: Run could not obtain its first lease from etcd within
	// Options.StartTimeout. Once a first lease was granted, Run never returns it: it
	// retries with backoff while its ctx lives.
	ErrUnreachable = errors.New("etcd unreachable")

	// ErrRunning: Run was called on an Elector that is already running.
	ErrRunning = errors.New("elector is already running")
)

const (
	// DefaultTTL is the lease TTL when Options.TTL is zero.
	DefaultTTL = 10 * time.Second
	// MinTTL is the shortest Options.TTL accepted.
	MinTTL = 2 * time.Second
	// DefaultStartTimeout is Options.StartTimeout when zero.
	DefaultStartTimeout = 5 * time.Second

	backoffBase = 100 * time.Millisecond
	backoffMax  = 5 * time.Second
	// closeMax bounds a resign or revoke: past the TTL the lease is gone anyway.
	closeMax = 5 * time.Second
)

// Options configures an Elector.
type Options struct {
	// Client is the etcd client (required). The Elector never closes it.
	Client *clientv3.Client
	// Prefix is the election prefix, e.g. "/billingd/leader" (required). Candidates'
	// keys are Prefix + "/" + their lease ID in hex; a trailing "/" is ignored.
	Prefix string
	// TTL is the session lease's time to live (zero: DefaultTTL; below MinTTL is an
	// error). etcd counts whole seconds, so it is rounded up to one. A leader that
	// saw no keepalive response for a TTL stops leading.
	TTL time.Duration
	// Identity names this replica; it is the value of its election key, and what
	// other replicas' Status.Leader reports (empty: "hostname:pid").
	Identity string
	// StartTimeout bounds Run's first attempt to obtain a lease (zero:
	// DefaultStartTimeout); Run fails with ErrUnreachable past it. Each later attempt
	// is bounded by it too, but failures then are retried.
	StartTimeout time.Duration
	// Logger receives warnings about etcd trouble and role changes (nil:
	// slog.Default()). Nothing logged carries credentials.
	Logger *slog.Logger
	// Clock reads "now" for Status.Since and for the keepalive watchdog (nil: real
	// time).
	Clock clock.Clock
	// OnChange, when not nil, is called with the new Status on every role change
	// (metrics). It is called synchronously from Run's goroutines, one call at a
	// time, and must return quickly.
	OnChange func(Status)
}

// Role is a replica's part in the election.
type Role int

const (
	// Follower does not lead (campaigning or not yet started).
	Follower Role = iota
	// Leader holds the election and runs lead.
	Leader
)

// String returns "follower" or "leader".
func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case Leader:
		return "leader"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// Status is a snapshot of this replica's view of the election.
type Status struct {
	// Role is this replica's role.
	Role Role
	// Leader is the identity of the current leader as last observed ("": unknown or
	// none). On the leader it is its own Identity.
	Leader string
	// Fence is the fencing token of the current term; zero on a follower.
	Fence kv.Fence
	// Lease is the etcd lease ID of this replica's current session (0: none).
	Lease clientv3.LeaseID
	// Elections counts the times this replica became leader.
	Elections int
	// Changes counts role changes (to leader and back).
	Changes int
	// Since is the instant of the last role change, or when Run started.
	Since time.Time
}

// Elector campaigns for leadership on behalf of one replica. Make it with New.
type Elector struct {
	c        *clientv3.Client
	prefix   string
	ttl      time.Duration
	id       string
	start    time.Duration
	log      *slog.Logger
	clock    clock.Clock
	onChange func(Status)
	rand     func() float64 // backoff jitter in [0, 1)

	running atomic.Bool

	mu      sync.Mutex
	st      Status
	obsKey  string // first-created key under the prefix, as last observed
	obsVal  string
	lostKey string // the key of the last term this replica lost
	cur     *lease // the current session's lease

	granted     chan struct{} // closed once the first lease is granted
	grantedOnce sync.Once
}

// Granted is closed once etcd has granted this replica its first lease: the
// election runs, whether this replica leads or follows. Run returns ErrUnreachable
// instead when no lease comes within Options.StartTimeout.
func (e *Elector) Granted() <-chan struct{} { return e.granted }

// Holds reports, synchronously, whether this replica still holds the leadership
// fence names: it is the current term's fence, the lease is not known lost, and a
// keepalive response arrived less than a TTL ago by the Elector's clock. A leader
// checks it just before an irreversible act (a payment request), so that a process
// that was paused past its lease (SIGSTOP, a long GC, a frozen VM) does not act on
// the leadership it had before the pause, even before the watchdog has run.
func (e *Elector) Holds(fence kv.Fence) bool {
	e.mu.Lock()
	st, l := e.st, e.cur
	e.mu.Unlock()
	if fence.IsZero() || st.Role != Leader || st.Fence != fence || l == nil || l.isLost() {
		return false
	}
	return e.clock.Now().Sub(*l.last.Load()) < e.ttl
}

// New checks o and returns an Elector. It contacts nobody.
func New(o Options) (*Elector, error) {
	if o.Client == nil {
		return nil, errors.New("leader: client is required")
	}
	prefix := strings.TrimRight(o.Prefix, "/")
	if prefix == "" {
		return nil, errors.New("leader: prefix is required")
	}
	ttl := o.TTL
	switch {
	case ttl == 0:
		ttl = DefaultTTL
	case ttl < MinTTL:
		return nil, fmt.Errorf("leader: ttl %s is below the minimum %s", o.TTL, MinTTL)
	}
	ttl = (ttl + time.Second - 1).Truncate(time.Second)
	start := o.StartTimeout
	switch {
	case start == 0:
		start = DefaultStartTimeout
	case start < 0:
		return nil, fmt.Errorf("leader: start timeout %s is negative", start)
	}
	id := o.Identity
	if id == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "unknown"
		}
		id = host + ":" + strconv.Itoa(os.Getpid())
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Elector{
		c: o.Client, prefix: prefix, ttl: ttl, id: id, start: start,
		log:   log.With("election", prefix, "identity", id),
		clock: clock.Or(o.Clock), onChange: o.OnChange, rand: rand.Float64,
		granted: make(chan struct{}),
	}, nil
}

// Run is New(o) followed by Run(ctx, lead).
func Run(ctx context.Context, o Options, lead func(ctx context.Context, fence kv.Fence)) error {
	e, err := New(o)
	if err != nil {
		return err
	}
	return e.Run(ctx, lead)
}

// Identity returns the identity this Elector campaigns with.
func (e *Elector) Identity() string { return e.id }

// TTL returns the lease TTL in use (whole seconds).
func (e *Elector) TTL() time.Duration { return e.ttl }

// Status returns this replica's current view of the election. It is safe to call
// from any goroutine, before, during and after Run.
func (e *Elector) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.statusLocked()
}

func (e *Elector) statusLocked() Status {
	s := e.st
	switch {
	case s.Role == Leader:
		s.Leader = e.id
	case e.obsKey != "" && e.obsKey != e.lostKey:
		s.Leader = e.obsVal
	default:
		// No leader, or still our lost key: whoever leads now is unknown.
		s.Leader = ""
	}
	return s
}

// Run campaigns until ctx ends, calling lead each time this replica is elected (see
// the package contract). It returns nil when ctx ends, ErrUnreachable (wrapped)
// when no first lease was granted within Options.StartTimeout, or ErrRunning.
// Errors after the first lease are logged at warn and retried with capped, jittered
// backoff.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, fence kv.Fence)) error {
	if lead == nil {
		return errors.New("leader: lead is nil")
	}
	if !e.running.CompareAndSwap(false, true) {
		return fmt.Errorf("leader: %w", ErrRunning)
	}
	defer e.running.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	e.mu.Lock()
	e.st.Since = e.clock.Now()
	e.mu.Unlock()

	started := false
	var bo backoff
	for ctx.Err() == nil {
		ls, err := e.openLease(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if !started {
				return fmt.Errorf("leader: %w: no lease within %s: %w", ErrUnreachable, e.start, err)
			}
			d := bo.next(e.rand)
			e.log.Warn("leader: cannot open a session; retrying", "err", err, "retry_in", d)
			if !sleep(ctx, d) {
				break
			}
			continue
		}
		if !started {
			started = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.observe(ctx)
			}()
		}
		if e.term(ctx, ls, lead) {
			bo.reset()
			continue
		}
		if !sleep(ctx, bo.next(e.rand)) {
			break
		}
	}
	return nil
}

// term runs one session: campaign, lead, resign, revoke. It reports whether the
// session was healthy (this replica led for at least a TTL, or ctx ended), in which
// case the next session starts without backoff.
func (e *Elector) term(ctx context.Context, ls *lease, lead func(context.Context, kv.Fence)) (healthy bool) {
	el := concurrency.NewElection(ls.s, e.prefix)
	closing := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), min(e.ttl, closeMax))
	}
	if err := e.campaign(ctx, el, ls); err != nil {
		cctx, cancel := closing()
		defer cancel()
		e.closeLease(cctx, ls)
		switch {
		case ctx.Err() != nil:
			return true
		case ls.isLost():
			e.log.Warn("leader: session lost while campaigning", "lease", leaseHex(ls.id), "reason", ls.reason)
		default:
			e.log.Warn("leader: campaign", "lease", leaseHex(ls.id), "err", err)
		}
		return false
	}

	fence := kv.Fence{Key: el.Key(), Rev: el.Rev()}
	lctx, lcancel := context.WithCancel(ctx)
	defer lcancel()
	var once sync.Once
	lose := func(reason string, involuntary bool) {
		once.Do(func() {
			lcancel() // first: stop the leader's work at once
			if involuntary {
				e.log.Warn("leader: leadership lost", "fence_rev", fence.Rev, "lease", leaseHex(ls.id), "reason", reason)
			} else {
				e.log.Info("leader: stepping down", "fence_rev", fence.Rev, "reason", reason)
			}
			e.change(Follower, fence)
		})
	}
	e.log.Info("leader: elected", "fence_key", fence.Key, "fence_rev", fence.Rev, "lease", leaseHex(ls.id))
	e.change(Leader, fence)
	guarded := make(chan struct{})
	go func() {
		defer close(guarded)
		e.guard(ctx, lctx, ls, fence, lose)
	}()

	began := time.Now()
	lead(lctx, fence)
	if ctx.Err() != nil {
		lose("shutdown", false)
	} else {
		lose("lead returned", false)
	}
	<-guarded

	cctx, cancel := closing()
	defer cancel()
	if !ls.isLost() {
		if err := el.Resign(cctx); err != nil {
			e.log.Warn("leader: resign", "fence_rev", fence.Rev, "err", err)
		}
	}
	e.closeLease(cctx, ls)
	return ctx.Err() != nil || time.Since(began) >= e.ttl
}

// campaign runs el.Campaign until it wins, fails, ctx ends or the session is lost.
// Campaign cleans up after a cancel with the client's own context, which can block
// while etcd is unreachable, so it is left to finish on its own (the lease is
// revoked anyway) once it overstays a bounded wait.
func (e *Elector) campaign(ctx context.Context, el *concurrency.Election, ls *lease) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- el.Campaign(cctx, e.id) }()
	select {
	case err := <-errc:
		if err == nil && ls.isLost() {
			return errors.New("session lost")
		}
		return err
	case <-ls.lost:
	case <-ctx.Done():
	}
	cancel()
	t := time.NewTimer(min(e.ttl, closeMax))
	defer t.Stop()
	select {
	case err := <-errc:
		if err == nil {
			err = errors.New("campaign aborted")
		}
		return err
	case <-t.C:
		return errors.New("campaign did not stop in time")
	}
}

// guard watches one term and calls lose when leadership can no longer be proven:
// the lease is lost (see lease) or the election key is deleted or unwatchable. It
// returns when it called lose or when lctx ends.
func (e *Elector) guard(ctx, lctx context.Context, ls *lease, fence kv.Fence, lose func(string, bool)) {
	wctx, cancel := context.WithCancel(lctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		e.watchKey(wctx, fence, lose)
	}()
	defer func() {
		cancel()
		<-watched
	}()
	select {
	case <-lctx.Done():
		if ctx.Err() != nil {
			lose("shutdown", false)
		}
	case <-ls.lost:
		lose("lease lost: "+ls.reason, true)
	}
}

// watchKey calls lose when the election key is deleted or the watch on it fails,
// and returns then or when ctx ends. Setting up a watch blocks until etcd answers,
// so it runs beside guard's other checks, never before them.
func (e *Elector) watchKey(ctx context.Context, fence kv.Fence, lose func(string, bool)) {
	// WithRequireLeader: an etcd member cut off from its cluster's quorum cancels the
	// watch instead of serving a stale view. The watch starts just after the key's
	// creation, so a deletion before it was set up is still seen.
	wch := e.c.Watch(clientv3.WithRequireLeader(ctx), fence.Key, clientv3.WithRev(fence.Rev+1))
	for {
		wr, ok := <-wch
		switch {
		case ctx.Err() != nil:
			return // the term is over; the watch ends with it
		case !ok:
			lose("watch on the election key closed", true)
			return
		case wr.Err() != nil || wr.Canceled:
			lose(fmt.Sprintf("watch on the election key failed: %v", wr.Err()), true)
			return
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				lose("election key deleted", true)
				return
			}
		}
	}
}

// change records a role change and calls OnChange.
func (e *Elector) change(role Role, fence kv.Fence) {
	e.mu.Lock()
	e.st.Role = role
	e.st.Changes++
	e.st.Since = e.clock.Now()
	if role == Leader {
		e.st.Elections++
		e.st.Fence = fence
	} else {
		e.st.Fence = kv.Fence{}
		e.lostKey = fence.Key
	}
	st := e.statusLocked()
	e.mu.Unlock()
	if e.onChange != nil {
		e.onChange(st)
	}
}

// observe keeps Status.Leader current: the value of the first-created key under the
// prefix, re-read whenever a key under the prefix changes. (concurrency.Election's
// Observe reports new leaders only, never "no leader", so it is not used here.)
func (e *Elector) observe(ctx context.Context) {
	var bo backoff
	for ctx.Err() == nil {
		err := e.observeOnce(ctx, &bo)
		if ctx.Err() != nil {
			return
		}
		d := bo.next(e.rand)
		e.log.Warn("leader: observe the election; retrying", "err", err, "retry_in", d)
		if !sleep(ctx, d) {
			return
		}
	}
}

func (e *Elector) observeOnce(ctx context.Context, bo *backoff) error {
	rev, err := e.readLeader(ctx)
	if err != nil {
		return err
	}
	bo.reset()
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := e.c.Watch(wctx, e.prefix+"/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		if len(wr.Events) == 0 {
			continue
		}
		if _, err := e.readLeader(ctx); err != nil {
			return err
		}
	}
	return errors.New("watch closed")
}

// readLeader reads the first-created key under the prefix into the Status and
// returns the revision read.
func (e *Elector) readLeader(ctx context.Context) (int64, error) {
	resp, err := e.c.Get(ctx, e.prefix+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return 0, fmt.Errorf("read leader: %w", err)
	}
	key, val := "", ""
	if len(resp.Kvs) > 0 {
		key, val = string(resp.Kvs[0].Key), string(resp.Kvs[0].Value)
	}
	e.mu.Lock()
	e.obsKey, e.obsVal = key, val
	e.mu.Unlock()
	return resp.Header.Revision, nil
}

// backoff is capped exponential backoff with jitter: the n-th wait is drawn from
// [d/2, d) where d = min(backoffBase·2ⁿ, backoffMax).
type backoff struct{ n int }

func (b *backoff) next(rnd func() float64) time.Duration {
	d := backoffMax
	if b.n < 16 {
		d = min(backoffBase<<b.n, backoffMax)
	}
	b.n++
	return d/2 + time.Duration(rnd()*float64(d/2))
}

func (b *backoff) reset() { b.n = 0 }

// sleep waits d or until ctx ends; it reports whether ctx still lives.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func leaseHex(id clientv3.LeaseID) string { return strconv.FormatInt(int64(id), 16) }
