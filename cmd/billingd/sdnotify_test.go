package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/scheduler"
)

// fakeSystemd is the receiving end of $NOTIFY_SOCKET: a unixgram socket in a
// temporary directory, as systemd gives a Type=notify service.
type fakeSystemd struct {
	t    *testing.T
	conn *net.UnixConn
}

func newFakeSystemd(t *testing.T, watchdog time.Duration) *fakeSystemd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	if watchdog > 0 {
		t.Setenv("WATCHDOG_USEC", strconv.FormatInt(watchdog.Microseconds(), 10))
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	} else {
		t.Setenv("WATCHDOG_USEC", "")
		t.Setenv("WATCHDOG_PID", "")
	}
	return &fakeSystemd{t: t, conn: conn}
}

// await reads datagrams until one contains want (a line of the notify protocol),
// and returns the datagrams read before it. It fails after 10 seconds.
func (f *fakeSystemd) await(want string) []string {
	f.t.Helper()
	require.NoError(f.t, f.conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	var before []string
	buf := make([]byte, 4096)
	for {
		n, err := f.conn.Read(buf)
		require.NoError(f.t, err, "waiting for %q; got %q", want, before)
		msg := string(buf[:n])
		for _, line := range strings.Split(msg, "\n") {
			if line == want {
				return before
			}
		}
		before = append(before, msg)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSDNotifier_protocol(t *testing.T) {
	t.Run("no NOTIFY_SOCKET: nothing, hooks unchanged", func(t *testing.T) {
		t.Setenv("NOTIFY_SOCKET", "")
		n := newSDNotifier(quietLog())
		require.Nil(t, n)
		var scans, polls int
		h := n.hooks(scheduler.Hooks{
			AfterScan: func(time.Duration, scheduler.ScanResult, error) { scans++ },
			AfterPoll: func(time.Duration, scheduler.PollResult, error) { polls++ },
		})
		h.AfterScan(time.Second, scheduler.ScanResult{}, nil)
		h.AfterPoll(time.Second, scheduler.PollResult{}, nil)
		n.observe(scheduler.Event{})
		n.stopping()
		assert.Equal(t, 1, scans)
		assert.Equal(t, 1, polls)
	})

	t.Run("ready after the first scan, watchdog, stopping", func(t *testing.T) {
		sd := newFakeSystemd(t, 100*time.Millisecond)
		n := newSDNotifier(quietLog())
		require.NotNil(t, n)
		assert.Equal(t, 100*time.Millisecond, n.watchdog)
		t.Cleanup(n.stopping)

		// Before the first scan: pings with a start timeout extension, no READY.
		before := sd.await("WATCHDOG=1")
		for _, m := range before {
			assert.NotContains(t, m, "READY=1")
		}
		sd.await("EXTEND_TIMEOUT_USEC=150000") // three periods of 50ms

		var scanned, polled bool
		h := n.hooks(scheduler.Hooks{
			AfterScan: func(time.Duration, scheduler.ScanResult, error) { scanned = true },
			AfterPoll: func(time.Duration, scheduler.PollResult, error) { polled = true },
		})
		h.AfterPoll(time.Millisecond, scheduler.PollResult{}, nil)
		h.AfterScan(time.Millisecond, scheduler.ScanResult{}, errors.New("due scan: boom"))
		assert.True(t, scanned)
		assert.True(t, polled)
		sd.await("READY=1")
		h.AfterScan(time.Millisecond, scheduler.ScanResult{}, nil) // READY=1 only once
		for _, m := range sd.await("WATCHDOG=1") {
			assert.NotContains(t, m, "READY=1")
		}

		n.stopping()
		for _, m := range sd.await("STOPPING=1") {
			assert.NotContains(t, m, "READY=1")
		}
		n.stopping() // idempotent
	})

	t.Run("no watchdog: ready, and the loop ends", func(t *testing.T) {
		sd := newFakeSystemd(t, 0)
		n := newSDNotifier(quietLog())
		require.NotNil(t, n)
		assert.Zero(t, n.watchdog)
		n.hooks(scheduler.Hooks{}).AfterScan(0, scheduler.ScanResult{}, nil)
		sd.await("READY=1")
		n.stopping()
		sd.await("STOPPING=1")
	})
}

// TestSDNotifier_tick is the decision of one loop period: ping and extend only while
// the scheduler shows progress.
func TestSDNotifier_tick(t *testing.T) {
	start := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	const period = time.Minute
	for _, tc := range []struct {
		name     string
		watchdog time.Duration
		ready    bool
		silence  time.Duration // since the last heartbeat
		want     string
		done     bool
	}{
		{"starting, watchdog, alive", 2 * time.Minute, false, time.Minute, "WATCHDOG=1\nEXTEND_TIMEOUT_USEC=180000000", false},
		{"starting, no watchdog, alive", 0, false, time.Minute, "EXTEND_TIMEOUT_USEC=180000000", false},
		{"ready, watchdog, alive", 2 * time.Minute, true, 59 * time.Minute, "WATCHDOG=1", false},
		{"ready, no watchdog", 0, true, 0, "", true},
		{"ready, watchdog, stale", 2 * time.Minute, true, 61 * time.Minute, "STATUS=scheduler silent for 1h1m0s", false},
		{"starting, stale: the start times out", 2 * time.Minute, false, 2 * time.Hour, "STATUS=scheduler silent for 2h0m0s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			now := start
			n := &sdNotifier{log: slog.New(slog.NewTextHandler(&logs, nil)), now: func() time.Time { return now },
				stale: sdStale, watchdog: tc.watchdog}
			n.heartbeat()
			n.ready.Store(tc.ready)
			now = start.Add(tc.silence)
			msg, done := n.tick(period)
			assert.Equal(t, tc.want, msg)
			assert.Equal(t, tc.done, done)
			if strings.HasPrefix(tc.want, "STATUS=") {
				assert.Contains(t, logs.String(), "scheduler shows no progress")
				msg, _ = n.tick(period) // said once
				assert.Empty(t, msg)
				n.observe(scheduler.Event{}) // progress again
				msg, _ = n.tick(period)
				assert.Contains(t, msg, "WATCHDOG=1")
				assert.Contains(t, logs.String(), "scheduler progresses again")
			}
		})
	}
}

// TestDaemon_systemdNotify runs the daemon under a fake systemd: READY=1 comes from
// the start-up catch-up scan, the watchdog is fed, Close says STOPPING=1.
func TestDaemon_systemdNotify(t *testing.T) {
	sd := newFakeSystemd(t, 200*time.Millisecond)
	de := startTestDaemon(t, time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC))
	require.NotNil(t, de.d.sd)
	sd.await("READY=1")
	sd.await("WATCHDOG=1")
	require.NoError(t, de.d.Close(context.Background()))
	sd.await("STOPPING=1")
}

// TestSDNotifier_replica: a replica of several is ready as soon as it campaigns
// (a follower never scans), once only.
func TestSDNotifier_replica(t *testing.T) {
	var sent []string
	n := &sdNotifier{log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now, stale: sdStale,
		send: func(s string) error { sent = append(sent, s); return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n.replica(ctx, func() bool { return true })
	require.Len(t, sent, 1)
	assert.Contains(t, sent[0], "READY=1")
	n.replica(ctx, func() bool { return true })
	assert.Len(t, sent, 1, "READY=1 is said once")
	var none *sdNotifier
	none.replica(ctx, func() bool { return true }) // not under systemd: nothing
}
