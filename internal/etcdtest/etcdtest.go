package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// readyWithin bounds how long a member may take to join its cluster.
const readyWithin = 30 * time.Second

// Server is one running embedded etcd member.
type Server struct {
	// Endpoints is the member's client URL (one).
	Endpoints []string
	// Name is the member's name in its cluster.
	Name string
	etcd *embed.Etcd
	once sync.Once
}

// Stop stops the member and waits until it has stopped; later calls do nothing.
// The test's cleanup stops every member that is still running.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.etcd.Close()
		<-s.etcd.Server.StopNotify()
	})
}

// Start runs a one-member etcd cluster for t and returns its client endpoints. It
// fails t when the server does not become ready within 30 seconds.
func Start(t testing.TB) *Server {
	t.Helper()
	client, peer := freeURL(t), freeURL(t)
	s := start(t, single(config(t.TempDir(), "test", client, peer)))
	wait(t, s)
	return s
}

// Launch runs a one-member etcd cluster as Start does, keeping its data in dir, for
// a whole test binary (TestMain), where no testing.TB cleans up: the caller calls
// Stop, then removes dir. It fails when the server is not ready within 30 seconds.
func Launch(dir string) (*Server, error) {
	client, err := freeAddr()
	if err != nil {
		return nil, err
	}
	peer, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg := single(config(dir, "test", client, peer))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: start: %w", err)
	}
	s := &Server{Endpoints: []string{client.String()}, Name: cfg.Name, etcd: e}
	select {
	case <-e.Server.ReadyNotify():
		return s, nil
	case <-time.After(readyWithin):
		s.Stop()
		return nil, fmt.Errorf("etcdtest: the server was not ready within %s", readyWithin)
	}
}

// single makes cfg the one member of its cluster. Tests write fast and keep
// little: no snapshot pressure, short elections, and no fsync (nothing outlives
// the process, so a commit need not wait for the disk).
func single(cfg *embed.Config) *embed.Config {
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, cfg.AdvertisePeerUrls[0].String())
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.UnsafeNoFsync = true
	return cfg
}

// Cluster is n embedded etcd members of one cluster, each with its own data
// directory and loopback ports, all in the test process.
type Cluster struct {
	// Endpoints are the client URLs of every member, in member order.
	Endpoints []string
	// Members are the running members; Members[i].Endpoints[0] == Endpoints[i].
	Members []*Server
}

// StartCluster runs an n-member etcd cluster for t (n ≥ 1) and returns once every
// member has joined it and a leader is elected. Writes are durable (each member
// fsyncs its write-ahead log) as in production; heartbeats (25 ms) and the
// election timeout (500 ms) are shorter than etcd's defaults, so a test that stops
// the leader sees a new one soon, yet long enough that a loaded test machine does
// not start elections by itself. It fails t when a member is not ready within 30
// seconds; the test's cleanup stops every member.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("etcdtest: a cluster of %d members", n)
	}
	names := make([]string, n)
	clients, peers := make([]url.URL, n), make([]url.URL, n)
	initial := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("m%d", i)
		clients[i], peers[i] = freeURL(t), freeURL(t)
		initial[i] = fmt.Sprintf("%s=%s", names[i], peers[i].String())
	}
	c := &Cluster{}
	// Every member is started before any is waited for: a member is ready only
	// once a quorum of its peers answers.
	for i := range n {
		cfg := config(t.TempDir(), names[i], clients[i], peers[i])
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.TickMs = 25
		cfg.ElectionMs = 500
		s := start(t, cfg)
		c.Members = append(c.Members, s)
		c.Endpoints = append(c.Endpoints, s.Endpoints...)
	}
	for _, s := range c.Members {
		wait(t, s)
	}
	return c
}

// config is a member's configuration: its own directory, loopback URLs and a
// silent logger.
func config(dir, name string, client, peer url.URL) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.Name = name
	cfg.InitialClusterToken = "billingd-test"
	return cfg
}

// start starts one member and registers its stop with t's cleanup.
func start(t testing.TB, cfg *embed.Config) *Server {
	t.Helper()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("etcdtest: start %s: %v", cfg.Name, err)
	}
	s := &Server{Endpoints: []string{cfg.ListenClientUrls[0].String()}, Name: cfg.Name, etcd: e}
	t.Cleanup(s.Stop)
	return s
}

// wait fails t unless s is ready within readyWithin.
func wait(t testing.TB, s *Server) {
	t.Helper()
	select {
	case <-s.etcd.Server.ReadyNotify():
	case <-time.After(readyWithin):
		s.Stop()
		t.Fatalf("etcdtest: member %s was not ready within %s", s.Name, readyWithin)
	}
}

// freeURL returns an http://127.0.0.1:PORT address whose port was free a moment ago.
func freeURL(t testing.TB) url.URL {
	t.Helper()
	u, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func freeAddr() (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, fmt.Errorf("etcdtest: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return url.URL{Scheme: "http", Host: addr}, nil
}
