package leader

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// lease is one session: an etcd lease kept alive, the concurrency.Session built on
// it, and a watchdog that closes lost when the lease can no longer be trusted.
type lease struct {
	id     clientv3.LeaseID
	s      *concurrency.Session
	stop   context.CancelFunc // ends the keepalives
	done   chan struct{}      // closed when the watchdog has returned
	lost   chan struct{}      // closed when the lease is lost
	once   sync.Once
	reason string // why lost closed; written before the close
	// last is when the last keepalive response arrived, by the Elector's clock and
	// with its monotonic reading (a wall clock stepped back during a pause must not
	// make an old keepalive look recent), for Holds.
	last atomic.Pointer[time.Time]
}

func (l *lease) fail(reason string) {
	l.once.Do(func() {
		l.reason = reason
		close(l.lost)
	})
}

func (l *lease) isLost() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

// openLease grants a lease of the Elector's TTL (bounded by StartTimeout), keeps it
// alive and wraps it in a Session. The lease is granted here rather than by
// concurrency.NewSession so that the keepalive responses can be watched: the
// Session swallows them.
func (e *Elector) openLease(ctx context.Context) (*lease, error) {
	// The watchdog counts from before the grant was sent: the server's TTL starts
	// no earlier than that.
	last := e.clock.Now()
	gctx, cancel := context.WithTimeout(ctx, e.start)
	resp, err := e.c.Grant(gctx, int64(e.ttl/time.Second))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	// Keepalives outlive ctx: a stopping leader still holds its lease while lead
	// winds down and it resigns; closeLease ends them.
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	revoke := func() {
		stop()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(e.ttl, closeMax))
		defer cancel()
		_, _ = e.c.Revoke(rctx, resp.ID)
	}
	ka, err := e.c.KeepAlive(kctx, resp.ID)
	if err != nil {
		revoke()
		return nil, fmt.Errorf("keep lease alive: %w", err)
	}
	s, err := concurrency.NewSession(e.c, concurrency.WithLease(resp.ID),
		concurrency.WithTTL(int(e.ttl/time.Second)), concurrency.WithContext(kctx))
	if err != nil {
		revoke()
		return nil, fmt.Errorf("session: %w", err)
	}
	l := &lease{id: resp.ID, s: s, stop: stop, done: make(chan struct{}), lost: make(chan struct{})}
	granted := last
	l.last.Store(&granted)
	go e.watchdog(kctx, l, ka, last)
	e.mu.Lock()
	e.st.Lease = resp.ID
	e.cur = l
	e.mu.Unlock()
	e.grantedOnce.Do(func() { close(e.granted) })
	return l, nil
}

// watchdog fails the lease when its keepalive channel closes (the lease expired or
// was revoked, or the client gave up), when the Session ends, or when no keepalive
// response arrived for a whole TTL by the Elector's clock. The last case catches an
// unreachable etcd before the client library does; the lease may still be alive on
// the server, but a leader that cannot prove it must stop.
func (e *Elector) watchdog(kctx context.Context, l *lease, ka <-chan *clientv3.LeaseKeepAliveResponse, last time.Time) {
	defer close(l.done)
	tick := time.NewTicker(min(max(e.ttl/20, 10*time.Millisecond), 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-kctx.Done():
			return // closeLease
		case _, ok := <-ka:
			if !ok {
				if kctx.Err() == nil {
					l.fail("keepalive ended (lease expired or revoked, or etcd unreachable)")
				}
				return
			}
			last = e.clock.Now()
			seen := last // a copy: last changes under Holds' feet otherwise
			l.last.Store(&seen)
		case <-l.s.Done():
			if kctx.Err() == nil {
				l.fail("session ended")
			}
			return
		case <-tick.C:
			if since := e.clock.Now().Sub(last); since >= e.ttl {
				l.fail(fmt.Sprintf("no keepalive response for %s (ttl %s)", since.Round(time.Millisecond), e.ttl))
				return
			}
		}
	}
}

// closeLease ends the session and revokes its lease (which deletes any key still
// bound to it), within ctx.
func (e *Elector) closeLease(ctx context.Context, l *lease) {
	l.stop() // before Orphan, so the watchdog does not take the Session's end for a loss
	l.s.Orphan()
	<-l.done
	if _, err := e.c.Revoke(ctx, l.id); err != nil && !l.isLost() {
		e.log.Warn("leader: revoke lease", "lease", leaseHex(l.id), "err", err)
	}
	e.mu.Lock()
	e.st.Lease = 0
	e.mu.Unlock()
}
