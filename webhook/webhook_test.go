package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/webhook"
)

const secret = "whsec_test_0123456789abcdef"

var t0 = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)

// receiver is an endpoint that records what it is sent and fails on demand.
type receiver struct {
	t   *testing.T
	clk clock.Clock
	mu  sync.Mutex
	got []webhook.Payload
	// fail answers 503 for the consents it names (all: "*").
	fail map[string]bool
	srv  *httptest.Server
}

func newReceiver(t *testing.T, clk clock.Clock) *receiver {
	r := &receiver{t: t, clk: clk, fail: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		assert.NoError(t, webhook.Verify(secret, req.Header.Get(webhook.SignatureHeader), body, 0, clk.Now()))
		var p webhook.Payload
		assert.NoError(t, json.Unmarshal(body, &p))
		assert.Equal(t, p.ID, req.Header.Get(webhook.EventIDHeader))
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fail["*"] || r.fail[p.ConsentID] {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		r.got = append(r.got, p)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setFail(id string, on bool) {
	r.mu.Lock()
	r.fail[id] = on
	r.mu.Unlock()
}

// seqs returns the sequence numbers received per consent.
func (r *receiver) seqs() map[string][]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]uint64{}
	for _, p := range r.got {
		out[p.ConsentID] = append(out[p.ConsentID], p.Seq)
	}
	return out
}

type fixture struct {
	db  *bolt.Store
	clk *clock.Fake
	rcv *receiver
	d   *webhook.Dispatcher
}

func setup(t *testing.T, mod func(*webhook.Config)) *fixture {
	return setupLogged(t, mod, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// setupLogged is setup with the dispatcher logging to log.
func setupLogged(t *testing.T, mod func(*webhook.Config), log *slog.Logger) *fixture {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "b.db"), bolt.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	clk := clock.NewFake(t0)
	rcv := newReceiver(t, clk)
	cfg := webhook.Config{
		Endpoints:  []webhook.Endpoint{{Name: "shop", URL: rcv.srv.URL + "/hook?token=x", Secret: secret}},
		BackoffMin: 10 * time.Second, BackoffMax: time.Hour, MaxAge: 72 * time.Hour, Timeout: 5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := webhook.New(cfg, db, webhook.WithClock(clk), webhook.WithRand(func(n int64) int64 { return n - 1 }),
		webhook.WithLogger(log))
	require.NoError(t, err)
	return &fixture{db: db, clk: clk, rcv: rcv, d: d}
}

// write stores n events for each consent, as the scheduler's changes do.
func (f *fixture) write(t *testing.T, n int, ids ...string) {
	for i := range n {
		for _, id := range ids {
			c, a := i, 0
			amt := klavi.Cents(1234)
			e := storage.Event{At: f.clk.Now(), Kind: "submitted", ConsentID: id, Cycle: &c, Attempt: &a, Amount: &amt,
				ClientRequestID: fmt.Sprintf("billingd-x-%d-0", i), Actor: storage.ActorBillingd}
			require.NoError(t, f.db.Apply(context.Background(), &storage.Change{Events: []storage.Event{e}}))
		}
	}
}

func seq(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

func TestDispatcher_Tick(t *testing.T) {
	ctx := context.Background()
	t.Run("delivers every event once, in order per consent", func(t *testing.T) {
		f := setup(t, nil)
		require.NoError(t, f.d.Tick(ctx)) // the endpoint starts at the (empty) head
		f.write(t, 3, "urn:a", "urn:b", "urn:c")
		require.NoError(t, f.d.Tick(ctx))
		assert.Equal(t, map[string][]uint64{"urn:a": seq(3), "urn:b": seq(3), "urn:c": seq(3)}, f.rcv.seqs())
		require.NoError(t, f.d.Tick(ctx))
		assert.Len(t, f.rcv.got, 9, "nothing is sent twice")
		st, err := f.d.Status(ctx)
		require.NoError(t, err)
		require.Len(t, st, 1)
		assert.Equal(t, uint64(9), st[0].Cursor)
		assert.Equal(t, 0, st[0].Backlog)
		assert.Nil(t, st[0].Oldest)
		assert.NotContains(t, st[0].URL, "token", "the URL's query is not shown")
		p := f.rcv.got[0]
		assert.Equal(t, "submitted", p.Type)
		assert.Equal(t, "billingd", p.Actor)
		require.NotNil(t, p.Amount)
		assert.Equal(t, klavi.Cents(1234), *p.Amount)
		assert.Regexp(t, `^evt_[a-z2-7]{26}$`, p.ID)
	})
	t.Run("a failing consent waits, the others go on, and it catches up in order", func(t *testing.T) {
		f := setup(t, nil)
		require.NoError(t, f.d.Tick(ctx))
		f.rcv.setFail("urn:a", true)
		f.write(t, 2, "urn:a", "urn:b")
		require.NoError(t, f.d.Tick(ctx))
		assert.Equal(t, map[string][]uint64{"urn:b": seq(2)}, f.rcv.seqs())
		f.write(t, 1, "urn:a", "urn:b") // a's third waits behind its first
		require.NoError(t, f.d.Tick(ctx))
		assert.Equal(t, map[string][]uint64{"urn:b": seq(3)}, f.rcv.seqs())
		st, err := f.d.Status(ctx)
		require.NoError(t, err)
		assert.Equal(t, 3, st[0].Backlog)
		assert.Equal(t, 1, st[0].Waiting)
		require.NotNil(t, st[0].Oldest)
		assert.Equal(t, t0, st[0].Oldest.UTC())

		f.rcv.setFail("urn:a", false)
		require.NoError(t, f.d.Tick(ctx)) // not yet due
		assert.NotContains(t, f.rcv.seqs(), "urn:a")
		f.clk.Advance(10 * time.Second) // the first retry comes after backoff_min
		require.NoError(t, f.d.Tick(ctx))
		assert.Equal(t, seq(3), f.rcv.seqs()["urn:a"])
		st, err = f.d.Status(ctx)
		require.NoError(t, err)
		assert.Equal(t, 0, st[0].Backlog)
		assert.Equal(t, 0, st[0].Waiting)
	})
	t.Run("dead-lettered after max_age, revived by a replay", func(t *testing.T) {
		f := setup(t, func(c *webhook.Config) { c.MaxAge = 2 * time.Hour })
		require.NoError(t, f.d.Tick(ctx))
		f.rcv.setFail("*", true)
		f.write(t, 2, "urn:a")
		require.NoError(t, f.d.Tick(ctx))
		for range 20 {
			f.clk.Advance(time.Hour)
			require.NoError(t, f.d.Tick(ctx))
		}
		dead, _, err := f.d.DeadLetters(ctx, "", 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, "urn:a", dead[0].ConsentID)
		assert.Equal(t, 2, dead[0].Waiting)
		assert.Equal(t, "submitted", dead[0].Type)
		st, err := f.d.Status(ctx)
		require.NoError(t, err)
		assert.Equal(t, 1, st[0].Dead)
		assert.Equal(t, 2, st[0].Backlog)

		f.rcv.setFail("*", false)
		f.clk.Advance(24 * time.Hour)
		require.NoError(t, f.d.Tick(ctx))
		assert.Empty(t, f.rcv.seqs(), "a dead letter waits for an operator")
		res, err := f.d.Replay(ctx, "shop", webhook.Replay{ConsentID: "urn:a"})
		require.NoError(t, err)
		assert.Equal(t, 1, res.Revived)
		require.NoError(t, f.d.Tick(ctx))
		assert.Equal(t, seq(2), f.rcv.seqs()["urn:a"])
	})
	t.Run("resolving a dead letter gives its first event up", func(t *testing.T) {
		f := setup(t, func(c *webhook.Config) { c.MaxAge = time.Minute })
		require.NoError(t, f.d.Tick(ctx))
		f.rcv.setFail("*", true)
		f.write(t, 3, "urn:a")
		require.NoError(t, f.d.Tick(ctx))
		f.clk.Advance(2 * time.Minute)
		require.NoError(t, f.d.Tick(ctx))
		_, err := f.d.Resolve(ctx, "shop", "urn:b", "n", "alice")
		require.ErrorIs(t, err, storage.ErrNotFound)
		_, err = f.d.Resolve(ctx, "nope", "urn:a", "n", "alice")
		require.ErrorIs(t, err, webhook.ErrUnknownEndpoint)
		was, err := f.d.Resolve(ctx, "shop", "urn:a", "receiver lost it; sent by hand", "alice")
		require.NoError(t, err)
		assert.Equal(t, []uint64{1, 2, 3}, was.Parked)
		_, err = f.d.Resolve(ctx, "shop", "urn:a", "again", "alice")
		require.ErrorIs(t, err, webhook.ErrInvalid, "no longer dead")
		f.rcv.setFail("*", false)
		require.NoError(t, f.d.Tick(ctx))
		assert.Equal(t, []uint64{2, 3}, f.rcv.seqs()["urn:a"])
	})
	t.Run("replay from a cursor and of one event", func(t *testing.T) {
		f := setup(t, nil)
		require.NoError(t, f.d.Tick(ctx))
		f.write(t, 2, "urn:a", "urn:b")
		require.NoError(t, f.d.Tick(ctx))
		require.Len(t, f.rcv.got, 4)
		from := uint64(2)
		res, err := f.d.Replay(ctx, "shop", webhook.Replay{From: &from})
		require.NoError(t, err)
		assert.Equal(t, 2, res.Requeued)
		require.NoError(t, f.d.Tick(ctx))
		require.Len(t, f.rcv.got, 6)
		byPos := map[uint64]webhook.Payload{}
		for _, p := range f.rcv.got[:4] {
			byPos[p.Position] = p
		}
		assert.ElementsMatch(t, []webhook.Payload{byPos[3], byPos[4]}, f.rcv.got[4:6], "the same events, the same ids")

		id := f.rcv.got[0].ID
		res, err = f.d.Replay(ctx, "shop", webhook.Replay{EventID: id})
		require.NoError(t, err)
		assert.Equal(t, 1, res.Requeued)
		require.NoError(t, f.d.Tick(ctx))
		require.Len(t, f.rcv.got, 7)
		assert.Equal(t, id, f.rcv.got[6].ID)

		ahead := uint64(99)
		_, err = f.d.Replay(ctx, "shop", webhook.Replay{From: &ahead})
		require.ErrorIs(t, err, webhook.ErrInvalid)
		_, err = f.d.Replay(ctx, "shop", webhook.Replay{})
		require.ErrorIs(t, err, webhook.ErrInvalid)
	})
	t.Run("an endpoint gets only its event kinds", func(t *testing.T) {
		f := setup(t, func(c *webhook.Config) { c.Endpoints[0].Events = []string{"completed"} })
		require.NoError(t, f.d.Tick(ctx))
		f.write(t, 2, "urn:a")
		c := 0
		require.NoError(t, f.db.Apply(ctx, &storage.Change{Events: []storage.Event{{At: t0, Kind: "completed", ConsentID: "urn:a", Cycle: &c, Actor: "alice", Reason: "free text"}}}))
		require.NoError(t, f.d.Tick(ctx))
		require.Len(t, f.rcv.got, 1)
		assert.Equal(t, "completed", f.rcv.got[0].Type)
		assert.Equal(t, uint64(3), f.rcv.got[0].Seq)
		assert.Equal(t, "operator", f.rcv.got[0].Actor, "an operator's name is not sent")
		assert.Empty(t, f.rcv.got[0].Reason, "nor their free text")
	})
	t.Run("the pull feed", func(t *testing.T) {
		f := setup(t, func(c *webhook.Config) { c.Endpoints = nil })
		f.write(t, 2, "urn:a", "urn:b")
		require.NoError(t, f.d.Tick(ctx))
		all, err := f.d.Events(ctx, 0, 10)
		require.NoError(t, err)
		require.Len(t, all, 4)
		for i, p := range all {
			assert.Equal(t, uint64(i+1), p.Position)
		}
		page, err := f.d.Events(ctx, 3, 10)
		require.NoError(t, err)
		assert.Equal(t, all[3:], page)
	})
}

func TestDispatcher_Backoff(t *testing.T) {
	// With the jitter at its top the waits double from backoff_min to backoff_max;
	// at its bottom they stay at backoff_min.
	for _, tc := range []struct {
		name string
		rand func(int64) int64
		want []time.Duration
	}{
		{"top", func(n int64) int64 { return n - 1 }, []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second}},
		{"bottom", func(int64) int64 { return 0 }, []time.Duration{10 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := setup(t, func(c *webhook.Config) { c.BackoffMax = 2 * time.Minute })
			d, err := webhook.New(webhook.Config{Endpoints: []webhook.Endpoint{{Name: "shop", URL: f.rcv.srv.URL, Secret: secret}},
				BackoffMin: 10 * time.Second, BackoffMax: 160 * time.Second}, f.db, webhook.WithClock(f.clk), webhook.WithRand(tc.rand),
				webhook.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			require.NoError(t, err)
			require.NoError(t, d.Tick(ctx))
			f.rcv.setFail("*", true)
			f.write(t, 1, "urn:a")
			var waits []time.Duration
			for range 5 {
				require.NoError(t, d.Tick(ctx))
				b, err := f.db.WebhookBacklog(ctx, "shop", "urn:a")
				require.NoError(t, err)
				waits = append(waits, b.NextTry.Sub(f.clk.Now()))
				f.clk.Set(b.NextTry)
			}
			assert.Equal(t, tc.want, waits)
		})
	}
}

func TestConfig_Validate(t *testing.T) {
	good := webhook.Endpoint{Name: "shop", URL: "https://example.com/hook", Secret: secret}
	for _, tc := range []struct {
		name string
		eps  []webhook.Endpoint
		want string
	}{
		{"bad name", []webhook.Endpoint{{Name: "Shop!", URL: good.URL, Secret: secret}}, "name"},
		{"twice", []webhook.Endpoint{good, good}, "used twice"},
		{"relative url", []webhook.Endpoint{{Name: "a", URL: "/hook", Secret: secret}}, "url"},
		{"short secret", []webhook.Endpoint{{Name: "a", URL: good.URL, Secret: "short"}}, "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := webhook.Config{Endpoints: tc.eps}.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	require.NoError(t, webhook.Config{Endpoints: []webhook.Endpoint{good}}.Validate())
}
