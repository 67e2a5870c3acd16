package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/klavi-billing/billingd/scheduler"
)

// systemd integration of `billingd run` under Type=notify (deploy/systemd/billingd.service):
//
//   - READY=1 once the scheduler's first due scan has finished, that is after the
//     start-up catch-up (database verified, everything due while billingd was down
//     decided). Until then the notifier extends systemd's start timeout
//     (EXTEND_TIMEOUT_USEC) for as long as the scheduler shows progress, so a long
//     catch-up is not killed by TimeoutStartSec= while a hung one still is.
//   - WATCHDOG=1 at half of WatchdogSec=, but only while the scheduler is alive: a due
//     scan or a status poll finished, or the scheduler recorded an event, within
//     sdStale. A wedged scheduler stops the pings and systemd restarts billingd
//     (SIGABRT, whose goroutine dump lands in the journal).
//   - STOPPING=1 when the graceful shutdown begins.
//
// Without $NOTIFY_SOCKET (not under systemd, or another Type=) nothing is sent.

// sdStale is how long the scheduler may show no progress before systemd's watchdog
// is no longer fed. Scans and polls run every minute by default; a scan of a heavy
// submit day records an event per submission. An hour without either is a hang.
const sdStale = time.Hour

// sdStartTick is how often the start timeout is extended while the catch-up runs,
// when the watchdog is off.
const sdStartTick = 30 * time.Second

// sdNotifier speaks systemd's notify protocol for one daemon. A nil *sdNotifier does
// nothing: every method is safe on nil.
type sdNotifier struct {
	log   *slog.Logger
	send  func(state string) error
	now   func() time.Time // real time: systemd's timeouts are not the billing clock
	stale time.Duration
	// watchdog is WatchdogSec= ($WATCHDOG_USEC), 0 when off.
	watchdog time.Duration
	beat     atomic.Int64 // UnixNano of the last sign of scheduler progress
	ready    atomic.Bool
	silent   atomic.Bool // the last tick found the scheduler stale
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// newSDNotifier returns the notifier of a daemon started by systemd with
// Type=notify, or nil when $NOTIFY_SOCKET is unset. It starts a goroutine that
// extends the start timeout and feeds the watchdog; stopping ends it.
func newSDNotifier(log *slog.Logger) *sdNotifier {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	if log == nil {
		log = slog.Default()
	}
	wd, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog: ignoring $WATCHDOG_USEC", "err", err)
		wd = 0
	}
	n := &sdNotifier{
		log: log,
		send: func(state string) error {
			_, err := sddaemon.SdNotify(false, state)
			return err
		},
		now:      time.Now,
		stale:    sdStale,
		watchdog: wd,
		stop:     make(chan struct{}),
	}
	n.beat.Store(n.now().UnixNano())
	n.notify("STATUS=starting: verifying the database and catching up")
	n.wg.Add(1)
	go n.loop()
	return n
}

// hooks wraps the scheduler hooks h: a finished scan or poll is a heartbeat, and
// the first finished scan is the end of the start-up catch-up (READY=1). A failed
// scan counts too: the watchdog is about a live scheduler, alerts are about a
// healthy one.
func (n *sdNotifier) hooks(h scheduler.Hooks) scheduler.Hooks {
	if n == nil {
		return h
	}
	scan, poll := h.AfterScan, h.AfterPoll
	return scheduler.Hooks{
		AfterScan: func(d time.Duration, res scheduler.ScanResult, err error) {
			if scan != nil {
				scan(d, res, err)
			}
			n.heartbeat()
			if n.ready.CompareAndSwap(false, true) {
				n.notify("READY=1\nSTATUS=billing: start-up catch-up done")
			}
		},
		AfterPoll: func(d time.Duration, res scheduler.PollResult, err error) {
			if poll != nil {
				poll(d, res, err)
			}
			n.heartbeat()
		},
	}
}

// observe is a scheduler observer: every event (a submission, a completion, ...) is
// a heartbeat, so a scan that takes hours on a heavy day keeps the watchdog fed.
func (n *sdNotifier) observe(scheduler.Event) {
	if n != nil {
		n.heartbeat()
	}
}

func (n *sdNotifier) heartbeat() { n.beat.Store(n.now().UnixNano()) }

// replica tells systemd that a replica of several (etcd) has started: it is ready
// as soon as it campaigns, since a follower never scans. alive is asked every
// minute until ctx ends; while it answers true (the replica follows, and the
// election still reaches etcd) the watchdog is fed; a leader's scheduler feeds it
// through hooks and observe as a single process's does.
func (n *sdNotifier) replica(ctx context.Context, alive func() bool) {
	n.serving(ctx, "replica: campaigning for the leadership", alive)
}

// serving tells systemd that a daemon whose scheduler does not run (a replica that
// follows, billingd run --read-only) is ready, with status as its STATUS, and feeds
// the watchdog every minute while alive answers true, until ctx ends.
func (n *sdNotifier) serving(ctx context.Context, status string, alive func() bool) {
	if n == nil {
		return
	}
	n.heartbeat()
	if n.ready.CompareAndSwap(false, true) {
		n.notify("READY=1\nSTATUS=" + status)
	}
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if alive() {
					n.heartbeat()
				}
			}
		}
	}()
}

// stopping tells systemd the shutdown has begun and stops the pings (systemd stops
// the watchdog too once the unit is stopping). Later calls do nothing.
func (n *sdNotifier) stopping() {
	if n == nil {
		return
	}
	n.stopOnce.Do(func() {
		n.ready.Store(true) // a scan that ends during the shutdown sends no READY=1
		close(n.stop)
		n.wg.Wait()
		n.notify("STOPPING=1\nSTATUS=stopping")
	})
}

func (n *sdNotifier) loop() {
	defer n.wg.Done()
	tick := sdStartTick
	if n.watchdog > 0 {
		tick = n.watchdog / 2
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		msg, done := n.tick(tick)
		if msg != "" {
			n.notify(msg)
		}
		if done {
			return
		}
	}
}

// tick decides what one period of the loop sends: the watchdog ping and, before
// READY=1, a start timeout extension, both only while the scheduler is alive. done
// is true when nothing is left to send (ready, no watchdog).
func (n *sdNotifier) tick(period time.Duration) (msg string, done bool) {
	ready := n.ready.Load()
	if ready && n.watchdog <= 0 {
		return "", true
	}
	since := n.now().Sub(time.Unix(0, n.beat.Load()))
	if since > n.stale {
		if !n.silent.Swap(true) {
			n.log.Error("scheduler shows no progress: systemd's watchdog is no longer fed",
				"since", since.Round(time.Second).String(), "limit", n.stale.String())
			return fmt.Sprintf("STATUS=scheduler silent for %s", since.Round(time.Second)), false
		}
		return "", false
	}
	if n.silent.Swap(false) {
		n.log.Info("scheduler progresses again: feeding systemd's watchdog")
	}
	var parts []string
	if n.watchdog > 0 {
		parts = append(parts, sddaemon.SdNotifyWatchdog)
	}
	if !ready {
		// Three periods: one lost datagram or a late tick does not end the start.
		parts = append(parts, fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", (3*period).Microseconds()))
	}
	return strings.Join(parts, "\n"), false
}

func (n *sdNotifier) notify(state string) {
	if err := n.send(state); err != nil {
		n.log.Warn("systemd notify", "state", strings.ReplaceAll(state, "\n", " "), "err", err)
	}
}
