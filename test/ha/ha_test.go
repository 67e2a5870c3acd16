//go:build ha

// Package ha runs billingd as a replicated deployment meets production, only
// faster, and checks that leadership changes never cost or double a charge. A
// real three-member etcd cluster (test/ha/etcdmember, one process per member, on
// loopback), the sandbox process playing Klavi (with --journal and
// --request-log), and three billingd replicas on the cluster bill thousands of
// consents over weeks of a shared test clock (BILLINGD_TEST_CLOCK, as in
// test/crash: the world, config and verdict are test/harness's). Meanwhile:
//
//   - the current leader (found by /readyz) is SIGKILLed repeatedly and started
//     again at once (it comes back a follower);
//   - the leader is SIGSTOPped for longer than its lease, then resumed: it must
//     find its term over and send nothing in it;
//   - one etcd member is SIGKILLed and restarted on its data directory.
//
// Every leader fault lands at 08:40–08:58 of a virtual day, just before that day's
// originals and local retries fall due at 09:00 (submit_time), so the time from the
// fault to the next payment request the sandbox receives with a higher fence is the
// failover time (lease expiry, election, the new term's first scan reaching the
// due work), not a wait for work. A random world can leave a day with no original
// to submit: after a fault on such a day, the time is counted from 09:00 of the
// later day the request was made (a day with originals is never excused). The
// lease TTL is 3s (HA_TTL) to keep the run short; production defaults to 10s.
//
// The verdict: from the sandbox's ledger and the replicas' records in etcd (once
// settled), test/harness's: no duplicate charge, no lost cycle, no attempt left
// UNCONFIRMED or SUBMITTING, every attempt final, records agreeing with Klavi.
// Local retries that missed their request day are counted, not failed: at this
// clock an outage of a few real seconds is hours of a day.
// From the sandbox's request log: no payment request from a deposed leader (a
// fence lower than one the sandbox had already seen on any request), none without
// a fence; cross-checked with the replicas' logs ("leader: elected" lines): no
// payment request arrived with a fence after a newer term had been elected. The
// failover times (fault → next payment request with a higher fence; fault → the
// next "leader: elected") are printed, median and maximum, in one line
// "HA CRASH TEST: ...". A new leader must be elected within TTL + 2s of each
// fault, and send its first payment request within TTL + 2s + 10s.
//
//	go test -tags ha -v -count=1 -timeout 30m ./test/ha/   (make ha-crash)
//
// Knobs (environment):
//
//	HA_CONSENTS  consents (default 1500)
//	HA_KILLS     SIGKILLs of the leader (default 6)
//	HA_DAYS      virtual days the run spans (default 14)
//	HA_RATE      virtual seconds per real second (default 5760: a day in 15 s)
//	HA_TTL       leader.lease_ttl (default 3s; billingd's minimum is 2s)
//	HA_SEED      seeds consents, scenario, faults and instants (default: random, logged)
package ha

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
	etcdstore "github.com/klavi-billing/billingd/storage/etcd"
	"github.com/klavi-billing/billingd/test/harness"
	"github.com/klavi-billing/billingd/test/proc"
)

const (
	replicas = 3
	members  = 3
	prefix   = "/billingd-ha/"
	// klaviTimeout is each replica's per-request Klavi timeout (real time).
	klaviTimeout = 500 * time.Millisecond
	// postSlack bounds, beyond the election's TTL + 2s, how long a new term takes to
	// send its first payment request when originals are due (see the failover check).
	postSlack = 10 * time.Second
)

// A member is one etcd process.
type member struct {
	name, dir, client, peer string
	cmd                     *exec.Cmd
}

// A replica is one billingd process.
type replica struct {
	name, api, cfg, log string
	cmd                 *exec.Cmd
	exited              chan struct{} // closed when cmd has exited
}

// A fault is something done to the processes, at a real offset from the epoch.
type fault struct {
	at   time.Duration
	kind string // "kill", "stop", "etcd-kill"
}

// A leaderFault is a kill or stop of the leader as it happened: when, whom, and the
// fence of the term it ended.
type leaderFault struct {
	kind    string
	at      time.Time
	replica string
	fence   int64
}

func TestHACrash(t *testing.T) {
	n, kills := proc.EnvInt("HA_CONSENTS", 1500), proc.EnvInt("HA_KILLS", 6)
	days, rate := proc.EnvInt("HA_DAYS", 14), proc.EnvFloat("HA_RATE", 5760)
	ttl := 3 * time.Second
	if v, err := time.ParseDuration(os.Getenv("HA_TTL")); err == nil {
		ttl = v
	}
	seed := uint64(proc.EnvInt("HA_SEED", int(time.Now().UnixNano()%1e9)))
	rng := rand.New(rand.NewPCG(seed, 77))
	dir := harness.Dir(t, "billingd-ha-", "r*.log, etcd-*.log, sandbox.log, requests.jsonl")
	began := time.Now()
	day := time.Duration(float64(24*time.Hour) / rate) // a virtual day, in real time
	span := time.Duration(days) * day
	t.Logf("ha crash test: %d consents, %d leader kills, %d days at %g× (%s real), lease TTL %s, seed %d, dir %s",
		n, kills, days, rate, span.Round(time.Second), ttl, seed, dir)

	bin := proc.Build(t, dir)
	memberBin := filepath.Join(dir, "etcdmember")
	if out, err := exec.Command("go", "build", "-o", memberBin, "./etcdmember").CombinedOutput(); err != nil {
		t.Fatalf("go build etcdmember: %v\n%s", err, out)
	}

	// The etcd cluster.
	ms := make([]*member, members)
	var initial, endpoints []string
	for i := range ms {
		m := &member{name: fmt.Sprintf("etcd-%d", i+1), dir: filepath.Join(dir, fmt.Sprintf("etcd-%d.data", i+1)),
			client: "http://" + proc.FreePort(t), peer: "http://" + proc.FreePort(t)}
		ms[i] = m
		initial = append(initial, m.name+"="+m.peer)
		endpoints = append(endpoints, m.client)
	}
	startMember := func(m *member) {
		f, err := os.OpenFile(filepath.Join(dir, m.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		require.NoError(t, err)
		m.cmd = exec.Command(memberBin, "--name", m.name, "--data-dir", m.dir, "--client", m.client, "--peer", m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--unsafe-no-fsync")
		m.cmd.Stdout, m.cmd.Stderr = f, f
		require.NoError(t, m.cmd.Start())
		go func() { _ = m.cmd.Wait(); _ = f.Close() }()
	}
	for _, m := range ms {
		startMember(m)
	}
	t.Cleanup(func() {
		for _, m := range ms {
			_ = m.cmd.Process.Kill()
		}
	})
	for _, m := range ms {
		proc.WaitHTTP(t, m.client+"/health", 60*time.Second)
	}

	// The world, the clock, the sandbox.
	w := harness.Generate(n, harness.VirtualStart, days, rng, seed)
	w.Tick = time.Duration(2 * rate * float64(time.Second))
	consentsFile, scenarioFile := filepath.Join(dir, "consents.json"), filepath.Join(dir, "scenario.json")
	require.NoError(t, w.Write(consentsFile, scenarioFile))
	t.Logf("world: %s", w.Counts())
	// The replicas' store: the consents imported before any replica starts; the
	// test keeps it open to read the records at the end.
	ctx := context.Background()
	store, err := etcdstore.OpenStore(ctx, etcdstore.Options{Endpoints: endpoints, Prefix: prefix, RequestTimeout: 30 * time.Second},
		storage.Options{})
	require.NoError(t, err)
	defer store.Close()
	// Imported as of the run's first instant; the clock starts once they are in.
	added, err := w.Import(ctx, store, clock.NewFake(harness.VirtualStart))
	require.NoError(t, err)
	t.Logf("imported %d consents into etcd %s", added, prefix)

	epoch := time.Now().Add(5 * time.Second)
	clk := &clock.Scaled{Start: harness.VirtualStart, Epoch: time.UnixMilli(epoch.UnixMilli()), Rate: rate}
	environ := append(os.Environ(), "BILLINGD_TEST_CLOCK="+clk.String())
	t.Logf("BILLINGD_TEST_CLOCK=%s", clk)
	requestLog := filepath.Join(dir, "requests.jsonl")
	faults := fmt.Sprintf("drop=0.03,5xx=0.02,429=0.002,timeout=0.001,latency=1ms,seed=%d", seed)
	sb := harness.StartSandbox(t, bin, dir, environ, "--consents", consentsFile, "--scenario", scenarioFile,
		"--faults", faults, "--request-log", requestLog)

	rs := make([]*replica, replicas)
	var apis []string
	for i := range rs {
		r := &replica{name: fmt.Sprintf("r%d", i+1), api: proc.FreePort(t)}
		r.cfg, r.log = filepath.Join(dir, r.name+".yaml"), filepath.Join(dir, r.name+".log")
		st := fmt.Sprintf("  backend: etcd\n  etcd:\n    endpoints: [%s]\n    prefix: %s\n    dial_timeout: 5s\n    request_timeout: 2s\n",
			strings.Join(endpoints, ", "), prefix)
		leader := fmt.Sprintf("leader:\n  lease_ttl: %s\n  identity: %s\n", ttl, r.name)
		cfg := harness.Config(st, sb.Addr, r.api, klaviTimeout, time.Duration(float64(2*3*klaviTimeout)*rate).Round(time.Minute), leader)
		require.NoError(t, os.WriteFile(r.cfg, []byte(cfg), 0o600))
		rs[i], apis = r, append(apis, r.api)
	}
	start := func(r *replica) {
		f, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		require.NoError(t, err)
		r.cmd = exec.Command(bin, "run", "--config", r.cfg)
		r.cmd.Env, r.cmd.Stdout, r.cmd.Stderr = environ, f, f
		require.NoError(t, r.cmd.Start())
		cmd, exited := r.cmd, make(chan struct{})
		r.exited = exited
		go func() { _ = cmd.Wait(); _ = f.Close(); close(exited) }()
	}
	t.Cleanup(func() {
		for _, r := range rs {
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
			_ = r.cmd.Process.Kill()
		}
	})

	// The faults: leader kills and the stop at 08:50–09:10 of distinct days from the
	// first billed day on, the etcd kill at any instant of another day.
	var plan []fault
	// offset is the real offset from the epoch of day d's submit time.
	offset := func(d cycle.Date) time.Duration {
		return time.Duration(float64(d.At(harness.SubmitHour, 0).Sub(harness.VirtualStart)) / rate)
	}
	var slots []cycle.Date
	for d := w.BillFrom; offset(d) < span-day; d = d.AddDays(1) {
		slots = append(slots, d)
	}
	rng.Shuffle(len(slots), func(i, j int) { slots[i], slots[j] = slots[j], slots[i] })
	require.GreaterOrEqual(t, len(slots), kills+2, "not enough days for the faults: raise HA_DAYS")
	// 08:40–08:58: the day's originals fall due while the leader is down.
	nearSubmit := func() time.Duration { return time.Duration(-(2 + rng.Float64()*18) * 60 * float64(time.Second) / rate) }
	for i := range kills {
		plan = append(plan, fault{at: offset(slots[i]) + nearSubmit(), kind: "kill"})
	}
	plan = append(plan, fault{at: offset(slots[kills]) + nearSubmit(), kind: "stop"})
	plan = append(plan, fault{at: offset(slots[kills+1]) + time.Duration(rng.Int64N(int64(day))) - day/2, kind: "etcd-kill"})
	slices.SortFunc(plan, func(a, b fault) int { return int(a.at - b.at) })

	stopNudges := harness.Nudge(apis)
	defer stopNudges()
	time.Sleep(time.Until(epoch))
	for _, r := range rs {
		start(r)
	}
	var (
		done struct{ kills, stops, etcdKills int }
		lf   []leaderFault
	)
	stopFor := ttl + 2*time.Second
	for _, f := range plan {
		time.Sleep(time.Until(epoch.Add(f.at)))
		switch f.kind {
		case "kill", "stop":
			r, fence := leaderOf(rs)
			if r == nil {
				t.Logf("%s at %s: no leader known; skipped", f.kind, clk.Now().Format(time.RFC3339))
				continue
			}
			at := time.Now()
			if f.kind == "kill" {
				require.NoError(t, r.cmd.Process.Signal(syscall.SIGKILL))
				<-r.exited
				start(r)
				done.kills++
			} else {
				require.NoError(t, r.cmd.Process.Signal(syscall.SIGSTOP))
				time.Sleep(stopFor)
				require.NoError(t, r.cmd.Process.Signal(syscall.SIGCONT))
				done.stops++
			}
			lf = append(lf, leaderFault{kind: f.kind, at: at, replica: r.name, fence: fence})
			t.Logf("%s leader %s (fence %d) at virtual %s", f.kind, r.name, fence, clk.Now().Format(time.RFC3339))
		case "etcd-kill":
			m := ms[rng.IntN(len(ms))]
			t.Logf("SIGKILL %s at virtual %s; restarting it in %s", m.name, clk.Now().Format(time.RFC3339), ttl)
			require.NoError(t, m.cmd.Process.Signal(syscall.SIGKILL))
			time.Sleep(ttl)
			startMember(m)
			proc.WaitHTTP(t, m.client+"/health", 60*time.Second)
			done.etcdKills++
		}
	}
	time.Sleep(time.Until(epoch.Add(span)))
	t.Logf("run over at virtual %s; settling", clk.Now().Format(time.RFC3339))

	left := harness.Settle(w, clk, time.Now().Add(max(90*time.Second, 6*day)), func() string {
		left, err := harness.Pending(ctx, store)
		if err != nil {
			return err.Error()
		}
		return left
	})
	stopNudges()
	if left != "" {
		t.Errorf("the replicas did not settle within the deadline: %s", left)
	}
	for _, r := range rs {
		require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	}
	for _, r := range rs {
		select {
		case <-r.exited:
			if !r.cmd.ProcessState.Success() {
				t.Errorf("replica %s: graceful stop: %s (see %s)", r.name, r.cmd.ProcessState, r.log)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("replica %s did not stop within 15s of SIGTERM", r.name)
		}
	}

	// The verdict: money from the ledger and the records.
	ledger, stats := sb.Ledger(t), sb.Stats(t)
	v := harness.Judge(t, w, ledger, store, harness.CatRetry) // see the category check below

	// Who sent what, when: the request log and the replicas' terms.
	reqs, err := sandbox.ReadRequestLog(requestLog)
	require.NoError(t, err)
	slices.SortFunc(reqs, func(a, b sandbox.RequestRecord) int { return a.Wall.Compare(b.Wall) })
	var terms []term
	for _, r := range rs {
		terms = append(terms, readTerms(t, r)...)
	}
	slices.SortFunc(terms, func(a, b term) int { return a.at.Compare(b.at) })
	owner := map[int64]string{}
	for _, tm := range terms {
		owner[tm.fence] = tm.replica
	}
	var stale, staleByLogs, unfenced int
	byReplica := map[string]int{}
	var seen int64
	for _, q := range reqs {
		byReplica[owner[q.Fence]]++
		switch {
		case q.Fence == 0:
			unfenced++
			t.Errorf("payment request without %s: %+v", klavi.FenceHeader, q)
		case q.Fence < max(seen, q.FenceSeen):
			stale++
			t.Errorf("payment request from a deposed leader: fence %d (%s) after fence %d had been seen: %s %s %s, outcome %s",
				q.Fence, owner[q.Fence], max(seen, q.FenceSeen), q.Kind, q.ClientRequestID, q.Wall.Format(time.RFC3339Nano), q.Outcome)
		}
		seen = max(seen, q.Fence)
		for _, tm := range terms {
			if tm.fence > q.Fence && tm.at.Before(q.Wall) {
				staleByLogs++
				t.Errorf("payment request with fence %d (%s) at %s, after %s was elected with fence %d at %s (replica logs): %s, outcome %s",
					q.Fence, owner[q.Fence], q.Wall.Format(time.RFC3339Nano), tm.replica, tm.fence, tm.at.Format(time.RFC3339Nano), q.ClientRequestID, q.Outcome)
				break
			}
		}
	}

	// Failover: from each leader fault to the next payment request with a higher
	// fence, and to the next election.
	var toPost, toElect []time.Duration
	submits := w.SubmitDays()
	for _, f := range lf {
		post, elect := time.Duration(-1), time.Duration(-1)
		idle := ""
		for _, q := range reqs {
			if q.Fence > f.fence && q.Wall.After(f.at) {
				// Counted from the fault, or, after a fault on a day with no
				// original to submit (a random world can leave one; local retries
				// may have none either), from the submit time of the later day the
				// request was made: that wait for work is not failover. A new term
				// that left a day's originals to the next day is still counted from
				// the fault.
				from := f.at
				faultDay := cycle.DateOf(q.At.Add(-time.Duration(float64(q.Wall.Sub(f.at)) * rate))) // virtual
				if day := cycle.DateOf(q.At); day.After(faultDay) && submits[faultDay] == 0 {
					due := day.At(harness.SubmitHour, 0)
					from = q.Wall.Add(-time.Duration(float64(q.At.Sub(due)) / rate))
					idle = fmt.Sprintf(" from %s, the first submit time with work to do (%s after the fault)",
						due.Format("2006-01-02 15:04"), from.Sub(f.at).Round(time.Millisecond))
				}
				post = q.Wall.Sub(from)
				break
			}
		}
		for _, tm := range terms {
			if tm.fence > f.fence && tm.at.After(f.at) {
				elect = tm.at.Sub(f.at)
				break
			}
		}
		t.Logf("failover after %s of %s (fence %d): next election %s, next payment request with a higher fence %s%s",
			f.kind, f.replica, f.fence, elect.Round(time.Millisecond), post.Round(time.Millisecond), idle)
		if post < 0 || elect < 0 {
			t.Errorf("no new term or no payment request in one after the %s of %s at %s", f.kind, f.replica, f.at.Format(time.RFC3339Nano))
			continue
		}
		toPost, toElect = append(toPost, post), append(toElect, elect)
	}
	// The lease's part: a new term within TTL + 2s of the fault. The new term's first
	// payment request comes after its catch-up scan has reached the due originals
	// (polls, the clock check and a first token run beside it, under the sandbox's
	// faults): bounded more loosely, and reported.
	if limit := ttl + 2*time.Second; len(toElect) > 0 && slices.Max(toElect) > limit {
		t.Errorf("a new leader was elected up to %s after a fault, more than TTL + 2s = %s", slices.Max(toElect), limit)
	}
	if limit := ttl + 2*time.Second + postSlack; len(toPost) > 0 && slices.Max(toPost) > limit {
		t.Errorf("failover took up to %s (fault → next payment request with a higher fence), more than TTL + 2s + %s = %s",
			slices.Max(toPost), postSlack, limit)
	}

	summary := fmt.Sprintf("leader kills %d, leader stops %d, etcd member kills %d, replicas %d, etcd members %d, lease TTL %s, "+
		"consents %d, cycles expected %d, cycles billed %d, payments %d (originals %d, local retries %d, Klavi retries %d), "+
		"duplicates %d, lost %d, unconfirmed %d, submitting %d, unsettled %d, retry violations %d, retries late past midnight %d, mismatches %d, "+
		"payment requests %d by %v, stale-leader requests %d (sandbox fences) / %d (replica logs), unfenced %d, elections %d, "+
		"failover fault→next payment request median %s max %s, fault→elected median %s max %s, refusals %v, attempt states %v, "+
		"days %d at %g×, seed %d, wall time %s",
		done.kills, done.stops, done.etcdKills, replicas, members, ttl,
		n, v.Expected, v.Billed, len(ledger), stats.Accepted[sandbox.KindOriginal], stats.Accepted[sandbox.KindRetry], stats.Accepted[sandbox.KindAutoRetry],
		v.Count[harness.CatDuplicate], v.Count[harness.CatLost], v.Count[harness.CatUnconfirmed], v.Count[harness.CatSubmitting],
		v.Count[harness.CatUnsettled], v.Count[harness.CatRetry], v.Late, v.Count[harness.CatMismatch],
		len(reqs), byReplica, stale, staleByLogs, unfenced, len(terms),
		median(toPost), maxOf(toPost), median(toElect), maxOf(toElect), stats.Refusals, v.States,
		days, rate, seed, time.Since(began).Round(time.Second))
	t.Log(summary)
	fmt.Println("HA CRASH TEST:", summary)
	if stats.Refusals[sandbox.RuleOnePerCycle] > 0 {
		t.Errorf("the replicas asked %d times for a second live payment in a cycle (refused by Klavi's one-per-cycle rule)",
			stats.Refusals[sandbox.RuleOnePerCycle])
	}
	for _, c := range harness.Categories {
		switch {
		case v.Count[c] == 0:
		case c == harness.CatRetry:
			// Counted and reported, not failed: an outage of a few real seconds is
			// hours of this clock, and a local retry whose request day ends in it is
			// dropped (no money moves; the next planned date goes on). At a real
			// clock a failover is seconds of a day.
			t.Logf("%d %s (listed above): local retries whose request day passed during an outage or a backlog", v.Count[c], c)
		default:
			t.Errorf("%d %s (listed above)", v.Count[c], c)
		}
	}
	for _, r := range append([]string{sb.LogFile()}, logsOf(rs)...) {
		if logs, err := os.ReadFile(r); err == nil && bytes.Contains(logs, []byte("DATA RACE")) {
			t.Errorf("the race detector reported a data race (log: %s)", r)
		}
	}
}

// leaderOf finds the replica whose /readyz says it leads, and its fence; nil when
// none does within a few seconds (an election under way).
func leaderOf(rs []*replica) (*replica, int64) {
	re := regexp.MustCompile(`leader, fence (\d+)`)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, r := range rs {
			body, err := readyz(r.api)
			if err != nil {
				continue
			}
			if m := re.FindStringSubmatch(body); m != nil {
				fence, _ := strconv.ParseInt(m[1], 10, 64)
				return r, fence
			}
		}
	}
	return nil, 0
}

func readyz(addr string) (string, error) {
	resp, err := (&http.Client{Timeout: 500 * time.Millisecond}).Get("http://" + addr + "/readyz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// A term is one "leader: elected" line of a replica's log.
type term struct {
	replica string
	fence   int64
	at      time.Time
}

// readTerms reads the terms a replica's log records.
func readTerms(t *testing.T, r *replica) []term {
	f, err := os.Open(r.log)
	require.NoError(t, err)
	defer f.Close()
	var out []term
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), []byte(`"leader: elected"`)) {
			continue
		}
		var line struct {
			Time     time.Time `json:"time"`
			FenceRev int64     `json:"fence_rev"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			out = append(out, term{replica: r.name, fence: line.FenceRev, at: line.Time})
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func logsOf(rs []*replica) []string {
	var l []string
	for _, r := range rs {
		l = append(l, r.log)
	}
	return l
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2].Round(time.Millisecond)
	}
	return ((s[len(s)/2-1] + s[len(s)/2]) / 2).Round(time.Millisecond)
}

func maxOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds).Round(time.Millisecond)
}
