//go:build scale

package scale

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/etcdtest"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/storage/etcd"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/test/proc"
)

// TestEngines measures end-to-end durable submissions/s on bolt and on an etcd
// cluster in one run, on the same load against the same sandbox:
//
//	go test -tags scale -run '^TestEngines$' -v -count=1 -timeout 30m ./test/scale/
//	make bench-etcd
//
// Each run stores SCALE_ENGINE_DUE consents (default 5000) whose cycle is due now in
// a fresh store (a new bbolt file; a new key prefix on the cluster), then times one
// due scan of the scheduler submitting all of them with scheduler.workers
// SCALE_ENGINE_WORKERS (a comma-separated list, default "64"), scheduler.batch
// SCALE_ENGINE_BATCH and record_batch SCALE_ENGINE_RECORD_BATCH (the defaults): SUBMITTING committed
// durably, POST through the real klavi.Client to the sandbox on loopback (one
// httptest.Server for the whole test), the answer committed durably. On etcd every
// write carries a leadership fence, as the daemon's do. Runs alternate bolt, etcd,
// etcd, bolt, … (SCALE_ENGINE_ROUNDS pairs, default 2), so drift on a shared machine
// falls on both engines.
//
// The cluster is SCALE_ETCD_MEMBERS (default 3) embedded members in the test
// process (internal/etcdtest.StartCluster), each fsyncing its own write-ahead log
// in its own directory, on loopback; the scheduler, the sandbox and the members
// share the machine's CPUs. The etcd client counts its KV RPCs (range reads,
// linearizable or serializable, and Txn commits, succeeded or not) during the scan;
// their count per submission is reported. SCALE_ENGINES ("bolt,etcd") picks the
// engines, e.g. "etcd" alone under -cpuprofile.
func TestEngines(t *testing.T) {
	due := proc.EnvInt("SCALE_ENGINE_DUE", 5000)
	batch := proc.EnvInt("SCALE_ENGINE_BATCH", scheduler.DefaultBatch)
	recordBatch := proc.EnvInt("SCALE_ENGINE_RECORD_BATCH", scheduler.DefaultRecordBatch)
	rounds := proc.EnvInt("SCALE_ENGINE_ROUNDS", 2)
	members := proc.EnvInt("SCALE_ETCD_MEMBERS", 3)
	engines := envList("SCALE_ENGINES", "bolt,etcd")
	var workers []int
	for _, w := range envList("SCALE_ENGINE_WORKERS", "64") {
		n, err := strconv.Atoi(w)
		require.NoError(t, err, "SCALE_ENGINE_WORKERS")
		workers = append(workers, n)
	}
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := cycle.DateOf(time.Now()).At(9, 0)
	clk := clock.NewFake(now)
	sb := sandbox.New(sandbox.Options{Clock: clk, AccessKey: "ak", SecretKey: "sk", Logger: quiet})
	srv := httptest.NewServer(sb)
	defer srv.Close()
	// Klavi's Date headers reach the scheduler of the current run, as the daemon
	// wires them, so its clock check passes.
	var current atomic.Pointer[scheduler.Scheduler]
	hooks := klavi.Hooks{OnServerTime: func(server, local time.Time) {
		if s := current.Load(); s != nil {
			s.ObserveKlaviTime(server, local)
		}
	}}
	kc, err := klavi.New(klavi.Config{BaseURL: srv.URL, AccessKey: "ak", SecretKey: "sk", Timeout: 30 * time.Second,
		MaxAttempts: 3, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond, RateLimit: 1e6, RateBurst: 10000},
		klavi.WithClock(clk), klavi.WithLogger(quiet), klavi.WithHooks(hooks))
	require.NoError(t, err)

	var cluster *etcdtest.Cluster
	if slices.Contains(engines, "etcd") {
		cluster = etcdtest.StartCluster(t, members)
	}
	report(t, "engines: machine %d CPUs, %s; %d due consents a run, workers %v, batch %d, record batch %d; etcd: %d embedded members in this process, loopback, durable WAL",
		runtime.NumCPU(), runtime.Version(), due, workers, batch, recordBatch, members)

	type result struct {
		engine  string
		workers int
		rate    float64
		rpc     rpcCounts
	}
	var results []result
	run := 0
	for _, w := range workers {
		for r := 0; r < rounds; r++ {
			order := slices.Clone(engines)
			if r%2 == 1 {
				slices.Reverse(order) // bolt, etcd, etcd, bolt, …
			}
			for _, eng := range order {
				run++
				var (
					store storage.Store
					count *countingKV
					fence kv.Fence
				)
				switch eng {
				case "bolt":
					db, err := bolt.Open(filepath.Join(t.TempDir(), "billingd.db"), bolt.Options{Logger: quiet})
					require.NoError(t, err)
					store = db
				case "etcd":
					cli, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
					require.NoError(t, err)
					count = &countingKV{KV: cli.KV}
					cli.KV = count
					prefix := fmt.Sprintf("/scale/run%d/", run)
					// A fence as the daemon's leader holds: an election key and its
					// create revision, checked by every commit.
					put, err := cli.Put(ctx, prefix+"leader", "scale")
					require.NoError(t, err)
					fence = kv.Fence{Key: prefix + "leader", Rev: put.Header.Revision}
					db, err := etcd.NewStore(ctx, cli, etcd.Options{Prefix: prefix + "data/", Logger: quiet}, storage.Options{Logger: quiet})
					require.NoError(t, err)
					store = db
					defer cli.Close()
				default:
					t.Fatalf("SCALE_ENGINES: unknown engine %q", eng)
				}
				s, err := scheduler.New(scheduler.Config{Policy: scheduler.Policy{LeadDays: 3, RetryMode: consent.Off},
					SubmitHour: 0, Workers: w, Batch: batch, RecordBatch: recordBatch}, fenced{Store: store, fence: fence}, kc,
					scheduler.WithClock(clk), scheduler.WithLogger(quiet))
				require.NoError(t, err)
				current.Store(s)
				var cs []*consent.Consent
				for i := 0; i < due; i++ {
					c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(fmt.Sprintf("urn:scale:run%03d-%s-%06d", run, eng, i), cycle.Monthly, cycle.DateOf(now).AddDays(3), 99_90)}
					c.Billing.RetryMode = consent.Off
					require.NoError(t, sb.AddConsent(&c.CreatedConsent))
					cs = append(cs, c)
				}
				bstart := time.Now()
				// On etcd one commit holds at most 128 operations: chunks of 16 consents
				// fit, where bigger ones would be halved by ApplyAll until they do.
				chunk := 500
				if eng == "etcd" {
					chunk = 16
				}
				for from := 0; from < len(cs); from += chunk {
					_, _, err := s.AddConsents(ctx, cs[from:min(from+chunk, len(cs))], cycle.DateOf(now))
					require.NoError(t, err)
				}
				built := time.Since(bstart)
				before := sb.Stats().Accepted[sandbox.KindOriginal]
				if count != nil {
					count.reset()
				}
				start := time.Now()
				res, err := s.Scan(ctx)
				took := time.Since(start)
				require.NoError(t, err)
				require.Equal(t, due, res.Handled, "%+v %+v", res, s.ClockState())
				require.Zero(t, res.Errors, "%+v", res)
				require.Equal(t, due, sb.Stats().Accepted[sandbox.KindOriginal]-before)
				rs := result{engine: eng, workers: w, rate: float64(due) / took.Seconds()}
				line := fmt.Sprintf("engines: run %d %-4s workers %d: %d submissions in %s: %.0f submissions/s (store of %d consents built in %s)",
					run, eng, w, due, took.Round(time.Millisecond), rs.rate, due, built.Round(time.Millisecond))
				if count != nil {
					rs.rpc = count.snapshot()
					line += "; per submission: " + rs.rpc.per(due)
				}
				report(t, "%s; load average %s", line, proc.LoadAvg())
				results = append(results, rs)
				require.NoError(t, store.Close())
			}
		}
	}
	for _, w := range workers {
		rates := map[string][]float64{}
		for _, r := range results {
			if r.workers == w {
				rates[r.engine] = append(rates[r.engine], r.rate)
			}
		}
		var parts []string
		for _, eng := range engines {
			parts = append(parts, fmt.Sprintf("%s %.0f/s (runs %s)", eng, proc.Median(rates[eng]), proc.JoinRates(rates[eng])))
		}
		line := fmt.Sprintf("engines summary, workers %d: %s", w, strings.Join(parts, ", "))
		if b, e := proc.Median(rates["bolt"]), proc.Median(rates["etcd"]); b > 0 && e > 0 {
			line += fmt.Sprintf("; etcd/bolt %.2f", e/b)
		}
		report(t, "%s", line)
	}
}

// fenced carries a leadership fence on every change, as the scheduler's own
// fencedStore does when it runs in a term (a zero fence: none, as on bolt).
type fenced struct {
	storage.Store
	fence kv.Fence
}

func (f fenced) Apply(ctx context.Context, ch *storage.Change) error {
	if ch.Fence.IsZero() {
		ch.Fence = f.fence
	}
	return f.Store.Apply(ctx, ch)
}

func (f fenced) ApplyAll(ctx context.Context, chs []*storage.Change) (int, error) {
	for _, ch := range chs {
		if ch.Fence.IsZero() {
			ch.Fence = f.fence
		}
	}
	return f.Store.ApplyAll(ctx, chs)
}

// countingKV counts the KV RPCs the etcd engine makes.
type countingKV struct {
	clientv3.KV
	linearizable, serializable, commits, failed, other atomic.Int64
	// batches: read-only Txns (a transaction's prefetch), batchKeys the keys they read.
	batches, batchKeys atomic.Int64
	// Time spent waiting for each kind, in nanoseconds, summed over callers.
	linNs, serNs, commitNs, batchNs atomic.Int64
}

// rpcCounts are a countingKV's counts at one moment.
type rpcCounts struct {
	linearizable, serializable, commits, failed, other int64
	batches, batchKeys                                 int64
	linNs, serNs, commitNs, batchNs                    int64
}

func (c *countingKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	start := time.Now()
	resp, err := c.KV.Get(ctx, key, opts...)
	if clientv3.OpGet(key, opts...).IsSerializable() {
		c.serializable.Add(1)
		c.serNs.Add(int64(time.Since(start)))
	} else {
		c.linearizable.Add(1)
		c.linNs.Add(int64(time.Since(start)))
	}
	return resp, err
}

func (c *countingKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	c.other.Add(1)
	return c.KV.Put(ctx, key, val, opts...)
}

func (c *countingKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	c.other.Add(1)
	return c.KV.Delete(ctx, key, opts...)
}

func (c *countingKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	c.other.Add(1)
	return c.KV.Do(ctx, op)
}

func (c *countingKV) Txn(ctx context.Context) clientv3.Txn {
	return &countingTxn{Txn: c.KV.Txn(ctx), c: c}
}

func (c *countingKV) reset() {
	for _, n := range []*atomic.Int64{&c.linearizable, &c.serializable, &c.commits, &c.failed, &c.other, &c.batches, &c.batchKeys, &c.linNs, &c.serNs, &c.commitNs, &c.batchNs} {
		n.Store(0)
	}
}

func (c *countingKV) snapshot() rpcCounts {
	return rpcCounts{c.linearizable.Load(), c.serializable.Load(), c.commits.Load(), c.failed.Load(), c.other.Load(),
		c.batches.Load(), c.batchKeys.Load(), c.linNs.Load(), c.serNs.Load(), c.commitNs.Load(), c.batchNs.Load()}
}

// per formats the counts per submission.
func (r rpcCounts) per(n int) string {
	f := func(v int64) float64 { return float64(v) / float64(n) }
	ms := func(ns, n int64) float64 {
		if n == 0 {
			return 0
		}
		return float64(ns) / float64(n) / 1e6
	}
	each := 0.0
	if r.batches > 0 {
		each = float64(r.batchKeys) / float64(r.batches)
	}
	return fmt.Sprintf("%.2f reads (%.2f linearizable, %.2f serializable), %.2f batched reads (%.1f keys each), %.2f commits (%.3f failed compares), %.2f other; mean wait %.1f ms linearizable, %.1f ms serializable, %.1f ms batched, %.1f ms commit",
		f(r.linearizable+r.serializable), f(r.linearizable), f(r.serializable), f(r.batches), each, f(r.commits), f(r.failed), f(r.other),
		ms(r.linNs, r.linearizable), ms(r.serNs, r.serializable), ms(r.batchNs, r.batches), ms(r.commitNs, r.commits))
}

type countingTxn struct {
	clientv3.Txn
	c *countingKV
	// reads: a Txn of Gets only, with no compare (a prefetch), counted apart from
	// the commits; keys: its Gets.
	cmp        bool
	keys, puts int
}

func (t *countingTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.cmp = t.cmp || len(cs) > 0
	t.Txn = t.Txn.If(cs...)
	return t
}

func (t *countingTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	for _, op := range ops {
		if op.IsGet() {
			t.keys++
		} else {
			t.puts++
		}
	}
	t.Txn = t.Txn.Then(ops...)
	return t
}

func (t *countingTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}

func (t *countingTxn) Commit() (*clientv3.TxnResponse, error) {
	start := time.Now()
	resp, err := t.Txn.Commit()
	if !t.cmp && t.puts == 0 && t.keys > 0 {
		t.c.batches.Add(1)
		t.c.batchKeys.Add(int64(t.keys))
		t.c.batchNs.Add(int64(time.Since(start)))
		return resp, err
	}
	t.c.commits.Add(1)
	t.c.commitNs.Add(int64(time.Since(start)))
	if err == nil && !resp.Succeeded {
		t.c.failed.Add(1)
	}
	return resp, err
}

func envList(name, def string) []string {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
