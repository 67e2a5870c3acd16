//go:build webhooks

// Package webhooks runs billingd's webhooks as production meets them, only faster,
// and checks that no event is lost. A sandbox process plays Klavi; billingd (the
// real binary) bills consents over weeks of a shared fast test clock
// (BILLINGD_TEST_CLOCK), and its webhook dispatcher delivers every event of every
// consent's timeline to a receiver on loopback, in this process, that
//
//   - answers 500 to 30 % of the deliveries (seeded),
//   - is down (its listener closed: connection refused) for a stretch of the run,
//   - verifies every request's signature (webhook.Verify) and records what it took,
//     answering 2xx 30 ms after taking an event (so that a SIGKILL can fall between
//     the two and the event comes again).
//
// Meanwhile billingd is SIGKILLed WEBHOOKS_KILLS times (default 20) and restarted:
// at random instants, and every other time while a delivery is in flight (the
// receiver has taken the event and not yet answered). When the run is over the daemon is left to settle (its
// backlog empty and its feed still), stopped gracefully, and the verdict compares
// what the receiver took (2xx answers only) with billingd's store read afterwards:
//
//   - every event of every timeline was delivered at least once (none lost);
//   - every delivery of an event of a consent came after every earlier event of
//     that consent was delivered (order per consent);
//   - every request carried a valid signature;
//   - a duplicate is always the same event (same id, same body), and no id is
//     unknown to the store.
//
// One line "WEBHOOKS TEST: ..." sums the run up.
//
//	go test -tags webhooks -v -count=1 -timeout 20m ./test/webhooks/   (make webhooks-crash)
//
// Knobs (environment): WEBHOOKS_CONSENTS (150), WEBHOOKS_KILLS (20), WEBHOOKS_DAYS
// (21), WEBHOOKS_RATE (17280 virtual s per real s), WEBHOOKS_SEED (random, logged).
package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/test/harness"
	"github.com/klavi-billing/billingd/test/proc"
	"github.com/klavi-billing/billingd/webhook"
)

const secret = "whsec_webhooks_test_0123456789"

// A receipt is one request the receiver answered 2xx.
type receipt struct {
	id   string
	p    webhook.Payload
	body string
}

// receiver is the merchant's endpoint: it fails a share of deliveries, can be
// taken down, and records every request.
type receiver struct {
	addr string
	clk  clock.Clock
	mu   sync.Mutex
	rng  *rand.Rand
	// answerDelay is how long a taken event waits for its 2xx; taken hears that
	// an event was taken (and is waiting for it).
	answerDelay time.Duration
	taken       chan struct{}

	srvMu sync.Mutex
	srv   *http.Server
	// What it saw.
	requests, failed, badSig int
	took                     []receipt
	// delivered[consent] is the highest seq delivered so far, in order; outOfOrder
	// lists deliveries that came before an earlier event of their consent.
	delivered  map[string]map[uint64]bool
	outOfOrder []string
}

func (r *receiver) start(t *testing.T) {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Errorf("receiver: %v", err)
		return
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	r.srvMu.Lock()
	r.srv = srv
	r.srvMu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// stop takes the receiver down: its listener closes (connection refused).
func (r *receiver) stop() {
	r.srvMu.Lock()
	defer r.srvMu.Unlock()
	if r.srv != nil {
		_ = r.srv.Close()
		r.srv = nil
	}
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if err != nil {
		r.failed++
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	// The signature's time is the shared fast clock's: a real second is hours of
	// it, so the tolerance is wide in virtual time (a few real seconds).
	if err := webhook.Verify(secret, req.Header.Get(webhook.SignatureHeader), body, 12*time.Hour, r.clk.Now()); err != nil {
		r.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if r.rng.Float64() < 0.30 {
		r.failed++
		http.Error(w, "flaky", http.StatusInternalServerError)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil || p.ID != req.Header.Get(webhook.EventIDHeader) {
		r.failed++
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	seen := r.delivered[p.ConsentID]
	if seen == nil {
		seen = map[uint64]bool{}
		r.delivered[p.ConsentID] = seen
	}
	for s := uint64(1); s < p.Seq; s++ {
		if !seen[s] {
			r.outOfOrder = append(r.outOfOrder, fmt.Sprintf("%s seq %d delivered before seq %d", p.ConsentID, p.Seq, s))
			break
		}
	}
	seen[p.Seq] = true
	r.took = append(r.took, receipt{id: p.ID, p: p, body: string(body)})
	select {
	case r.taken <- struct{}{}:
	default:
	}
	r.mu.Unlock()
	// Taken, but answered a moment later: a SIGKILL in between makes billingd
	// deliver the event again (at least once: a duplicate, same id).
	time.Sleep(r.answerDelay)
	r.mu.Lock()
	w.WriteHeader(http.StatusNoContent)
}

func TestWebhooksCrash(t *testing.T) {
	n, kills := proc.EnvInt("WEBHOOKS_CONSENTS", 150), proc.EnvInt("WEBHOOKS_KILLS", 20)
	days, rate := proc.EnvInt("WEBHOOKS_DAYS", 21), proc.EnvFloat("WEBHOOKS_RATE", 17280)
	seed := uint64(proc.EnvInt("WEBHOOKS_SEED", int(time.Now().UnixNano()%1e9)))
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := harness.Dir(t, "billingd-webhooks-", "billingd.log, sandbox.log, billingd.db")
	began := time.Now()
	span := time.Duration(float64(days) * 24 * float64(time.Hour) / rate)
	t.Logf("webhooks crash test: %d consents, %d kills, %d days at %g× (%s real), seed %d, dir %s",
		n, kills, days, rate, span.Round(time.Second), seed, dir)
	bin := proc.Build(t, dir, proc.RaceFlags...)

	// Consents: weekly and monthly, a due date in the run, billed from three days in.
	first := cycle.DateOf(harness.VirtualStart)
	billFrom := first.AddDays(3)
	var cs []*consent.Consent
	for i := range n {
		iv := cycle.Weekly
		if i%3 == 0 {
			iv = cycle.Monthly
		}
		anchor := billFrom.AddDays(rng.IntN(max(1, days-8)))
		ref := anchor.AddDays(-7 * rng.IntN(3))
		if iv == cycle.Monthly {
			ref = anchor.AddMonthsClamped(-1)
		}
		c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(fmt.Sprintf("urn:webhooks:consent-%04d", i), iv, ref, klavi.Cents(10_00+i))}
		exp := first.AddDays(days-2).At(23, 59)
		c.ExpirationDateTime = &klavi.DateTime{Time: exp.UTC()}
		cs = append(cs, c)
	}
	consentsFile := filepath.Join(dir, "consents.json")
	raw, err := json.Marshal(cs)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(consentsFile, raw, 0o600))
	scen, err := json.Marshal(&sandbox.Scenario{RejectFraction: 0.2, RejectReason: klavi.ReasonNotInformed, Seed: seed})
	require.NoError(t, err)
	scenarioFile := filepath.Join(dir, "scenario.json")
	require.NoError(t, os.WriteFile(scenarioFile, scen, 0o600))

	epoch := time.Now().Add(2 * time.Second)
	clk := &clock.Scaled{Start: harness.VirtualStart, Epoch: time.UnixMilli(epoch.UnixMilli()), Rate: rate}
	environ := append(os.Environ(), "BILLINGD_TEST_CLOCK="+clk.String())

	sb := harness.StartSandbox(t, bin, dir, environ, "--consents", consentsFile, "--scenario", scenarioFile,
		"--faults", fmt.Sprintf("drop=0.02,5xx=0.01,latency=1ms,seed=%d", seed))

	rcv := &receiver{addr: proc.FreePort(t), clk: clk, rng: rand.New(rand.NewPCG(seed, 8)), answerDelay: 30 * time.Millisecond, taken: make(chan struct{}, 1), delivered: map[string]map[uint64]bool{}}
	rcv.start(t)
	defer func() { rcv.stop() }()
	t.Logf("receiver on %s: 30 %% of deliveries answered 500", rcv.addr)

	dbPath := filepath.Join(dir, "billingd.db")
	apiAddr := proc.FreePort(t)
	cfgPath := filepath.Join(dir, "billingd.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(config(dbPath, sb.Addr, apiAddr, rcv.addr)), 0o600))
	harness.Import(t, bin, cfgPath, environ, billFrom.String(), consentsFile)
	daemon := harness.NewDaemon(t, bin, dir, cfgPath, environ)

	// Kill instants over the run; the receiver is down from 30 % to 45 % of it.
	var killAt []time.Duration
	for range kills {
		killAt = append(killAt, time.Duration(rng.Int64N(int64(span))))
	}
	sort.Slice(killAt, func(i, j int) bool { return killAt[i] < killAt[j] })
	downAt, upAt := span*30/100, span*45/100

	stopNudges := harness.Nudge([]string{apiAddr})
	defer stopNudges()

	// The receiver's downtime runs beside the kills.
	outage := make(chan struct{})
	go func() {
		defer close(outage)
		time.Sleep(time.Until(epoch.Add(downAt)))
		rcv.stop()
		time.Sleep(time.Until(epoch.Add(upAt)))
		rcv.start(t)
	}()
	time.Sleep(time.Until(epoch))
	daemon.Start(t)
	killed, aimed := 0, 0
	for i, at := range killAt {
		time.Sleep(time.Until(epoch.Add(at)))
		if i%2 == 0 {
			// Every other kill waits (3 s at most) for an event taken and not
			// yet answered: billingd dies between the receiver's taking and its 2xx.
			select {
			case <-rcv.taken:
			default:
			}
			select {
			case <-rcv.taken:
				aimed++
			case <-time.After(3 * time.Second):
			}
		}
		daemon.Kill(t)
		killed++
		daemon.Start(t)
	}
	<-outage
	time.Sleep(time.Until(epoch.Add(span)))
	t.Logf("run over at virtual %s; settling", clk.Now().Format(time.RFC3339))

	// Settle: nothing left to deliver, and the feed's head still for two seconds.
	settled := false
	var lastHead uint64
	stillSince := time.Now()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		var st struct {
			Endpoints []webhook.EndpointStatus `json:"endpoints"`
		}
		if err := get("http://"+apiAddr+"/v1/webhooks", &st); err == nil && len(st.Endpoints) == 1 {
			e := st.Endpoints[0]
			if e.Head != lastHead {
				lastHead, stillSince = e.Head, time.Now()
			}
			if e.Backlog == 0 && e.Dead == 0 && time.Since(stillSince) > 2*time.Second {
				settled = true
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopNudges()
	if !settled {
		t.Errorf("the webhooks did not settle within the deadline (see billingd.log)")
	}
	switch inTime, err := daemon.Stop(t, 15*time.Second, syscall.SIGKILL); {
	case !inTime:
		t.Errorf("billingd did not stop within 15s of SIGTERM")
	case err != nil:
		t.Errorf("graceful stop: %v", err)
	}
	rcv.stop()
	if logs, err := os.ReadFile(daemon.LogFile()); err == nil && bytes.Contains(logs, []byte("DATA RACE")) {
		t.Errorf("the race detector reported a data race (billingd.log)")
	}

	// The verdict: the store's timelines against what the receiver took.
	db, err := bolt.Open(dbPath, bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	require.NoError(t, err)
	defer db.Close()
	want := map[string]storage.Event{}
	kinds := map[string]int{}
	for _, c := range cs {
		after := uint64(0)
		for {
			evs, more, err := db.Events(context.Background(), c.ID, after, 1000)
			require.NoError(t, err)
			for _, e := range evs {
				want[storage.EventID(e.ConsentID, e.Seq, e.At)] = e
				kinds[e.Kind]++
				after = e.Seq
			}
			if !more {
				break
			}
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	got := map[string]int{}
	bodies := map[string]string{}
	var unknown, differ []string
	for _, r := range rcv.took {
		got[r.id]++
		if b, ok := bodies[r.id]; ok && b != r.body {
			differ = append(differ, r.id)
		}
		bodies[r.id] = r.body
		if e, ok := want[r.id]; !ok {
			unknown = append(unknown, r.id)
		} else if e.ConsentID != r.p.ConsentID || e.Seq != r.p.Seq || e.Kind != r.p.Type {
			differ = append(differ, r.id)
		}
	}
	var lost []string
	for id, e := range want {
		if got[id] == 0 {
			lost = append(lost, fmt.Sprintf("%s (%s seq %d %s)", id, e.ConsentID, e.Seq, e.Kind))
		}
	}
	dups := len(rcv.took) - len(got)
	summary := fmt.Sprintf("kills %d (%d during a delivery), consents %d, events %d %v, requests %d, delivered (2xx) %d, distinct %d, duplicates %d, "+
		"failed answers %d, bad signatures %d, lost %d, out of order %d, unknown ids %d, differing duplicates %d, days %d at %g×, seed %d, wall time %s",
		killed, aimed, n, len(want), kinds, rcv.requests, len(rcv.took), len(got), dups, rcv.failed, rcv.badSig, len(lost), len(rcv.outOfOrder),
		len(unknown), len(differ), days, rate, seed, time.Since(began).Round(time.Second))
	t.Log(summary)
	fmt.Println("WEBHOOKS TEST:", summary)
	report := func(what string, list []string) {
		if len(list) == 0 {
			return
		}
		sort.Strings(list)
		t.Errorf("%d %s, e.g. %v", len(list), what, list[:min(len(list), 10)])
	}
	report("events lost (in the store, never delivered)", lost)
	report("deliveries out of order", rcv.outOfOrder)
	report("deliveries of ids the store does not have", unknown)
	report("duplicates that differ from the first delivery", differ)
	if rcv.badSig > 0 {
		t.Errorf("%d requests with a bad signature", rcv.badSig)
	}
	if len(want) < n {
		t.Errorf("only %d events for %d consents: the run billed too little to mean anything", len(want), n)
	}
	if kills > 0 && killed != kills {
		t.Errorf("killed %d times, want %d", killed, kills)
	}
}

func get(url string, out any) error {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+harness.Token)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// config is billingd's config for the run (harness.Config) with the merchant's
// endpoint: the webhooks' backoff is on the fast clock (virtual), their timeout and
// the dispatcher's interval real. max_age is far beyond the receiver's downtime
// (hours of the fast clock): the test is about nothing being lost, not about dead
// letters.
func config(dbPath, sandboxAddr, listen, receiver string) string {
	return harness.Config(fmt.Sprintf("  path: %s\n  open_timeout: 10s\n  verify_on_start: false\n", dbPath),
		sandboxAddr, listen, 500*time.Millisecond, 10*time.Hour, fmt.Sprintf(`webhooks:
  endpoints:
    - name: merchant
      url: http://%s/hooks/billingd
      secret: %s
  max_age: 100000h
  backoff_min: 10s
  backoff_max: 1h
  timeout: 2s
  workers: 8
  interval: 100ms
`, receiver, secret))
}
