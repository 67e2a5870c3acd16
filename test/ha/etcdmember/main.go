// Command etcdmember runs one member of an etcd cluster in its own process, for
// test/ha: embedded etcd (go.etcd.io/etcd/server/v3/embed, the version billingd's
// client is built against) behind a few flags. It can be SIGKILLed and started
// again on the same --data-dir: it then rejoins the cluster from its write-ahead
// log (the --initial-cluster flags only matter the first time). SIGINT or SIGTERM
// stops it gracefully. It prints "etcdmember: ready" once it serves clients.
//
//	etcdmember --name m1 --data-dir DIR --client http://127.0.0.1:2379 \
//	  --peer http://127.0.0.1:2380 --initial-cluster m1=http://127.0.0.1:2380,...
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	fs := flag.NewFlagSet("etcdmember", flag.ExitOnError)
	name := fs.String("name", "", "the member's `NAME` in --initial-cluster (required)")
	dir := fs.String("data-dir", "", "the member's data `DIR` (required); kept across restarts")
	client := fs.String("client", "", "client `URL` to listen on and advertise (required)")
	peer := fs.String("peer", "", "peer `URL` to listen on and advertise (required)")
	cluster := fs.String("initial-cluster", "", "`NAME=PEERURL,...` of every member (required)")
	token := fs.String("token", "billingd-ha", "initial cluster `TOKEN`")
	noFsync := fs.Bool("unsafe-no-fsync", false, "do not fsync the WAL and backend: survives SIGKILL of the process, not a crash of the machine")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: etcdmember --name NAME --data-dir DIR --client URL --peer URL --initial-cluster LIST")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if *name == "" || *dir == "" || *client == "" || *peer == "" || *cluster == "" || fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	cu, err := url.Parse(*client)
	if err != nil {
		fail("--client: %v", err)
	}
	pu, err := url.Parse(*peer)
	if err != nil {
		fail("--peer: %v", err)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = *name, *dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster, cfg.InitialClusterToken = *cluster, *token
	cfg.ClusterState = embed.ClusterStateFlagNew // ignored when --data-dir holds a WAL
	cfg.UnsafeNoFsync = *noFsync
	cfg.Logger, cfg.LogLevel = "zap", "warn"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fail("start: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println("etcdmember: ready", *name, *client)
	case err := <-e.Err():
		fail("%v", err)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		fail("not ready within 60s")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-sig:
		e.Close()
	case err := <-e.Err():
		e.Close()
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "etcdmember: "+format+"\n", args...)
	os.Exit(1)
}
