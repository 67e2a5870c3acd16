package leader_test

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/leader"
	"github.com/klavi-billing/billingd/storage/kv"
)

// prompt bounds how long a replica may take to notice a change etcd reports at once
// (a revoked lease, a deleted key, a resignation). It is well under the default
// 10 s TTL, so meeting it proves the change was not noticed by expiry.
const prompt = 3 * time.Second

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestNew(t *testing.T) {
	c := newClient(t, []string{"http://127.0.0.1:1"})
	tests := []struct {
		name    string
		o       leader.Options
		wantErr string
		wantTTL time.Duration
	}{
		{name: "no client", o: leader.Options{Prefix: "/p"}, wantErr: "client is required"},
		{name: "no prefix", o: leader.Options{Client: c}, wantErr: "prefix is required"},
		{name: "slash prefix", o: leader.Options{Client: c, Prefix: "/"}, wantErr: "prefix is required"},
		{name: "ttl too short", o: leader.Options{Client: c, Prefix: "/p", TTL: 1999 * time.Millisecond}, wantErr: "below the minimum 2s"},
		{name: "ttl negative", o: leader.Options{Client: c, Prefix: "/p", TTL: -time.Second}, wantErr: "below the minimum"},
		{name: "start timeout negative", o: leader.Options{Client: c, Prefix: "/p", StartTimeout: -1}, wantErr: "negative"},
		{name: "defaults", o: leader.Options{Client: c, Prefix: "/p"}, wantTTL: 10 * time.Second},
		{name: "ttl rounds up", o: leader.Options{Client: c, Prefix: "/p/", TTL: 2001 * time.Millisecond}, wantTTL: 3 * time.Second},
		{name: "ttl minimum", o: leader.Options{Client: c, Prefix: "/p", TTL: 2 * time.Second}, wantTTL: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := leader.New(tt.o)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantTTL, e.TTL())
			assert.NotEmpty(t, e.Identity(), "default identity is hostname:pid")
			assert.Equal(t, leader.Follower, e.Status().Role)
		})
	}
}

func TestRole_String(t *testing.T) {
	assert.Equal(t, "follower", leader.Follower.String())
	assert.Equal(t, "leader", leader.Leader.String())
	assert.Equal(t, "role(7)", leader.Role(7).String())
}

func TestElector_Run(t *testing.T) {
	srv := etcdtest.Start(t)
	c := newClient(t, srv.Endpoints)

	t.Run("one replica leads with a fence", func(t *testing.T) {
		clk := clock.NewFake(t0)
		a := start(t, srv.Endpoints, "a", leader.Options{Prefix: prefix(t), TTL: 2500 * time.Millisecond, Clock: clk}, nil)
		tm := a.nextTerm(t, prompt)
		select {
		case <-a.el.Granted():
		case <-time.After(prompt):
			t.Fatal("Granted is not closed though the replica leads")
		}
		require.False(t, tm.fence.IsZero())
		require.Positive(t, tm.fence.Rev)
		require.True(t, strings.HasPrefix(tm.fence.Key, prefix(t)+"/"), tm.fence.Key)

		resp, err := c.Get(ctx(t), tm.fence.Key)
		require.NoError(t, err)
		require.Len(t, resp.Kvs, 1)
		assert.Equal(t, tm.fence.Rev, resp.Kvs[0].CreateRevision)
		assert.Equal(t, "a", string(resp.Kvs[0].Value))

		st := a.nextChange(t)
		assert.Equal(t, leader.Leader, st.Role)
		assert.Equal(t, tm.fence, st.Fence)
		assert.Equal(t, "a", st.Leader)
		assert.Equal(t, 1, st.Elections)
		assert.Equal(t, 1, st.Changes)
		assert.Equal(t, t0, st.Since)

		st = a.el.Status()
		require.NotZero(t, st.Lease)
		ttl, err := c.TimeToLive(ctx(t), st.Lease)
		require.NoError(t, err)
		assert.EqualValues(t, 3, ttl.GrantedTTL, "2.5s rounds up to 3s")

		err = a.el.Run(ctx(t), func(context.Context, kv.Fence) {})
		require.ErrorIs(t, err, leader.ErrRunning)

		assert.True(t, a.el.Holds(tm.fence), "the leader holds its fence")
		assert.False(t, a.el.Holds(kv.Fence{Key: tm.fence.Key, Rev: tm.fence.Rev - 1}), "not another term's")
		assert.False(t, a.el.Holds(kv.Fence{}), "nor no fence")
		// A pause past the lease (the process stopped, the clock moved on): Holds
		// answers false at once, before the watchdog has had a chance to run.
		clk.Advance(3 * time.Second)
		assert.False(t, a.el.Holds(tm.fence), "a keepalive older than the TTL proves nothing")
	})

	t.Run("two replicas never lead at once", func(t *testing.T) {
		var x exclusion
		a := start(t, srv.Endpoints, "a", leader.Options{Prefix: prefix(t)}, &x)
		b := start(t, srv.Endpoints, "b", leader.Options{Prefix: prefix(t)}, &x)
		led := map[string]int{}
		var last int64
		for range 6 {
			r, tm := nextTerm(t, prompt, a, b)
			led[r.name]++
			require.Greater(t, tm.fence.Rev, last, "fences grow")
			last = tm.fence.Rev
			close(tm.stop) // lead returns: the replica resigns and the other takes over
			<-tm.ended
		}
		assert.False(t, x.overlap.Load(), "two replicas were inside lead at once")
		assert.Positive(t, led["a"])
		assert.Positive(t, led["b"])
	})

	t.Run("revoked lease deposes the leader", func(t *testing.T) {
		a := start(t, srv.Endpoints, "a", leader.Options{Prefix: prefix(t)}, nil)
		b := start(t, srv.Endpoints, "b", leader.Options{Prefix: prefix(t)}, nil)
		l, tm := nextTerm(t, prompt, a, b)
		f := other(l, a, b)
		require.Equal(t, leader.Leader, l.nextChange(t).Role)

		require.True(t, l.el.Holds(tm.fence))
		_, err := c.Revoke(ctx(t), l.el.Status().Lease)
		require.NoError(t, err)
		waitDone(t, tm.ctx, prompt, "the deposed leader's ctx")
		require.Eventually(t, func() bool { return !l.el.Holds(tm.fence) }, prompt, 10*time.Millisecond)
		st := l.nextChange(t)
		assert.Equal(t, leader.Follower, st.Role)
		assert.True(t, st.Fence.IsZero())

		tm2 := f.nextTerm(t, prompt)
		assert.Greater(t, tm2.fence.Rev, tm.fence.Rev)
		assert.Equal(t, leader.Leader, f.el.Status().Role)
	})

	t.Run("shutdown resigns and a follower names the leader", func(t *testing.T) {
		a := start(t, srv.Endpoints, "a", leader.Options{Prefix: prefix(t)}, nil)
		tm := a.nextTerm(t, prompt)
		b := start(t, srv.Endpoints, "b", leader.Options{Prefix: prefix(t)}, nil)
		require.Eventually(t, func() bool { return b.el.Status().Leader == "a" }, prompt, 10*time.Millisecond)
		assert.Equal(t, leader.Follower, b.el.Status().Role)

		a.cancel()
		waitDone(t, tm.ctx, prompt, "the leader's ctx")
		select {
		case <-a.done:
			require.NoError(t, a.err)
		case <-time.After(prompt):
			t.Fatal("Run did not return after its ctx ended")
		}
		assert.Equal(t, leader.Leader, a.nextChange(t).Role)
		assert.Equal(t, leader.Follower, a.nextChange(t).Role)

		tm2 := b.nextTerm(t, prompt) // well before the 10s TTL: a resigned
		assert.Greater(t, tm2.fence.Rev, tm.fence.Rev)
		st := b.el.Status()
		assert.Equal(t, "b", st.Leader)
		assert.Equal(t, tm2.fence, st.Fence)
		assert.Zero(t, a.el.Status().Lease, "the stopped replica dropped its session")
	})

	t.Run("deleted election key ends the term", func(t *testing.T) {
		a := start(t, srv.Endpoints, "a", leader.Options{Prefix: prefix(t)}, nil)
		tm := a.nextTerm(t, prompt)
		_, err := c.Delete(ctx(t), tm.fence.Key)
		require.NoError(t, err)
		waitDone(t, tm.ctx, prompt, "the leader's ctx")

		tm2 := a.nextTerm(t, prompt)
		assert.Greater(t, tm2.fence.Rev, tm.fence.Rev, "a new session: a new fence")
		assert.NotEqual(t, tm.fence.Key, tm2.fence.Key, "a new lease: a new key")
		var roles []leader.Role
		for range 3 {
			roles = append(roles, a.nextChange(t).Role)
		}
		assert.Equal(t, []leader.Role{leader.Leader, leader.Follower, leader.Leader}, roles)
		st := a.el.Status()
		assert.Equal(t, 2, st.Elections)
		assert.Equal(t, 3, st.Changes)
	})

	t.Run("unreachable etcd deposes the leader after a TTL", func(t *testing.T) {
		p := newProxy(t, srv.Endpoints[0])
		clk := clock.NewFake(t0)
		a := start(t, []string{p.endpoint()}, "a", leader.Options{Prefix: prefix(t), Clock: clk}, nil)
		tm := a.nextTerm(t, prompt)
		require.Equal(t, leader.Leader, a.nextChange(t).Role)

		p.blackhole()
		// No keepalive answer can arrive now; one already on its way may still
		// reset the watchdog, so the clock moves a TTL at every poll. Real time stays
		// far below the 10s TTL, so the client library's own expiry is not what
		// fires.
		require.Eventually(t, func() bool {
			clk.Advance(10 * time.Second)
			return tm.ctx.Err() != nil
		}, prompt, 20*time.Millisecond)
		st := a.nextChange(t)
		assert.Equal(t, leader.Follower, st.Role)

		p.restore()
		// The next term waits for the old key: revoked once etcd answers again, or
		// expired after its TTL at worst.
		tm2 := a.nextTerm(t, 20*time.Second)
		assert.Greater(t, tm2.fence.Rev, tm.fence.Rev)
	})
}

func TestElector_Run_unreachableAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	c := newClient(t, []string{"http://" + addr})
	e, err := leader.New(leader.Options{Client: c, Prefix: "/p", Identity: "a", StartTimeout: 200 * time.Millisecond, Logger: testLogger(t)})
	require.NoError(t, err)

	errc := make(chan error, 1)
	go func() {
		errc <- e.Run(context.Background(), func(context.Context, kv.Fence) { t.Error("lead called without etcd") })
	}()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, leader.ErrUnreachable)
		assert.Contains(t, err.Error(), "no lease within 200ms")
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not give up")
	}
	assert.Equal(t, leader.Follower, e.Status().Role)
	select {
	case <-e.Granted():
		t.Error("Granted is closed, but no lease was granted")
	default:
	}
}

// replica is one Elector running in the background, as a billingd replica would.
type replica struct {
	name    string
	el      *leader.Elector
	cancel  context.CancelFunc
	done    chan struct{}      // closed when Run returned
	err     error              // Run's result, once done
	terms   chan *term         // one per lead call
	changes chan leader.Status // OnChange
}

// term is one call of lead.
type term struct {
	fence kv.Fence
	ctx   context.Context
	stop  chan struct{} // close to make lead return
	ended chan struct{} // closed when lead returned
}

// exclusion counts replicas inside lead across replicas.
type exclusion struct {
	active  atomic.Int32
	overlap atomic.Bool
}

func start(t *testing.T, endpoints []string, name string, o leader.Options, x *exclusion) *replica {
	t.Helper()
	r := &replica{name: name, done: make(chan struct{}), terms: make(chan *term, 64), changes: make(chan leader.Status, 64)}
	o.Client = newClient(t, endpoints)
	o.Identity = name
	o.Logger = testLogger(t).With("replica", name)
	o.OnChange = func(s leader.Status) { r.changes <- s }
	el, err := leader.New(o)
	require.NoError(t, err)
	r.el = el
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	lead := func(ctx context.Context, f kv.Fence) {
		if x != nil {
			if x.active.Add(1) > 1 {
				x.overlap.Store(true)
			}
			defer x.active.Add(-1)
		}
		tm := &term{fence: f, ctx: ctx, stop: make(chan struct{}), ended: make(chan struct{})}
		defer close(tm.ended)
		r.terms <- tm
		select {
		case <-ctx.Done():
		case <-tm.stop:
		}
	}
	go func() {
		defer close(r.done)
		r.err = el.Run(ctx, lead)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
			assert.NoError(t, r.err)
		case <-time.After(15 * time.Second):
			t.Errorf("replica %s: Run did not return", name)
		}
	})
	return r
}

func (r *replica) nextTerm(t *testing.T, within time.Duration) *term {
	t.Helper()
	select {
	case tm := <-r.terms:
		return tm
	case <-time.After(within):
		t.Fatalf("replica %s was not elected within %s", r.name, within)
		return nil
	}
}

func (r *replica) nextChange(t *testing.T) leader.Status {
	t.Helper()
	select {
	case s := <-r.changes:
		return s
	case <-time.After(prompt):
		t.Fatalf("replica %s: no role change within %s", r.name, prompt)
		return leader.Status{}
	}
}

// nextTerm returns whichever of a and b is elected next.
func nextTerm(t *testing.T, within time.Duration, a, b *replica) (*replica, *term) {
	t.Helper()
	select {
	case tm := <-a.terms:
		return a, tm
	case tm := <-b.terms:
		return b, tm
	case <-time.After(within):
		t.Fatalf("nobody was elected within %s", within)
		return nil, nil
	}
}

func other(r, a, b *replica) *replica {
	if r == a {
		return b
	}
	return a
}

func waitDone(t *testing.T, ctx context.Context, within time.Duration, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(within):
		t.Fatalf("%s was not cancelled within %s", what, within)
	}
}

func newClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func prefix(t *testing.T) string { return "/test/" + t.Name() }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// proxy forwards TCP to an etcd member and can black-hole the traffic: bytes are
// read and dropped, connections stay open, as in a network partition.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	dark   bool
}

func newProxy(t *testing.T, endpoint string) *proxy {
	t.Helper()
	u, err := url.Parse(endpoint)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: u.Host}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) endpoint() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.isDark() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) isDark() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dark
}

func (p *proxy) blackhole() {
	p.mu.Lock()
	p.dark = true
	p.mu.Unlock()
}

// restore lets traffic through again and drops the connections that lost bytes,
// so the client reconnects on a clean stream.
func (p *proxy) restore() {
	p.mu.Lock()
	p.dark = false
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.restore()
}
