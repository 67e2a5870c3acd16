package scheduler

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/storage/etcd"
	"github.com/klavi-billing/billingd/storage/kv"
)

// The scheduler's tests run on one storage engine per test binary, chosen by
// BILLINGD_TEST_STORE: "bolt" (the default, fast) or "etcd", one embedded etcd
// server for the whole binary and a key prefix of its own for every store.
//
//	go test ./scheduler                          # bolt
//	BILLINGD_TEST_STORE=etcd go test ./scheduler # etcd (make test runs both)
const storeEnv = "BILLINGD_TEST_STORE"

var (
	testEngine = "bolt"
	etcdClient *clientv3.Client // with testEngine "etcd"
	etcdStores atomic.Int64     // numbers each store's prefix
)

func TestMain(m *testing.M) {
	switch e := os.Getenv(storeEnv); e {
	case "", "bolt":
	case "etcd":
		testEngine = e
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: want bolt or etcd\n", storeEnv, e)
		os.Exit(2)
	}
	if testEngine != "etcd" {
		os.Exit(m.Run())
	}
	os.Exit(withEtcd(m))
}

// withEtcd runs the tests with an embedded etcd server and a client on it.
func withEtcd(m *testing.M) int {
	dir, err := os.MkdirTemp("", "billingd-scheduler-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := etcdtest.Launch(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Stop()
	etcdClient, err = clientv3.New(clientv3.Config{Endpoints: srv.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer etcdClient.Close()
	return m.Run()
}

// openStore returns a new, empty store on the engine of this test binary, closed
// when the test ends.
func openStore(t testing.TB) storage.Store {
	t.Helper()
	var (
		db  storage.Store
		err error
	)
	switch testEngine {
	case "etcd":
		prefix := fmt.Sprintf("/scheduler-test/%d/%s/", etcdStores.Add(1), t.Name())
		db, err = etcd.NewStore(t.Context(), etcdClient, etcd.Options{Prefix: prefix}, storage.Options{})
	default:
		db, err = bolt.Open(filepath.Join(t.TempDir(), "billingd.db"), bolt.Options{NoSync: true, MaxBatchDelay: 20 * time.Microsecond})
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// heldFence returns a fence that holds for the rest of the test: on etcd a key of
// the test's own, as an election's key, at its create revision; on bolt, which has
// one writer and takes any fence, a made-up one.
func heldFence(t testing.TB) kv.Fence {
	t.Helper()
	if testEngine != "etcd" {
		return kv.Fence{Key: "/billingd/leader/1", Rev: 42}
	}
	key := fmt.Sprintf("/scheduler-test/fence/%d", etcdStores.Add(1))
	resp, err := etcdClient.Put(t.Context(), key, "leader")
	require.NoError(t, err)
	return kv.Fence{Key: key, Rev: resp.Header.Revision}
}
