package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/test/proc"
)

// VirtualStart is the instant the fast clock of a run starts at: Wednesday 20 Jan
// 2027, 00:00 in Brasília, so that 31 Jan and the clamped 28 Feb fall inside it.
var VirtualStart = time.Date(2027, 1, 20, 3, 0, 0, 0, time.UTC)

// Sandbox is the sandbox process of a run ("billingd sandbox"), logging to
// sandbox.log in its directory.
type Sandbox struct {
	Addr string
	cmd  *exec.Cmd
	bin  string
	args []string
	env  []string
	log  *os.File
}

// StartSandbox starts bin's sandbox on a free port with env and the extra args
// (keys "ak"/"sk", a day-long token TTL), waits until it answers, and kills it
// when the test ends.
func StartSandbox(t *testing.T, bin, dir string, env []string, args ...string) *Sandbox {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "sandbox.log"))
	require.NoError(t, err)
	s := &Sandbox{Addr: proc.FreePort(t), bin: bin, env: env, log: f}
	s.args = append([]string{"sandbox", "--addr", s.Addr, "--access-key", "ak", "--secret-key", "sk", "--token-ttl", "24h"}, args...)
	s.start(t)
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		_ = f.Close()
	})
	return s
}

func (s *Sandbox) start(t *testing.T) {
	t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Env, s.cmd.Stdout, s.cmd.Stderr = s.env, s.log, s.log
	require.NoError(t, s.cmd.Start())
	proc.WaitHTTP(t, "http://"+s.Addr+"/_sandbox/stats", 60*time.Second)
}

// Restart SIGKILLs the sandbox and starts it again (with --journal it keeps its
// ledger).
func (s *Sandbox) Restart(t *testing.T) {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
	_ = s.cmd.Wait()
	s.start(t)
}

// Ledger and Stats read the sandbox's ledger and counters.
func (s *Sandbox) Ledger(t *testing.T) []sandbox.LedgerEntry {
	var l []sandbox.LedgerEntry
	proc.Do(t, "GET", "http://"+s.Addr+"/_sandbox/ledger", "", &l)
	return l
}

func (s *Sandbox) Stats(t *testing.T) sandbox.Stats {
	var st sandbox.Stats
	proc.Do(t, "GET", "http://"+s.Addr+"/_sandbox/stats", "", &st)
	return st
}

// LogFile is the path of the sandbox's log.
func (s *Sandbox) LogFile() string { return s.log.Name() }

// Nudge asks every billingd at addrs (host:port of the admin API), besides its own
// once-a-second cron, to scan and poll several times a second, so that its cadence
// on the fast clock stays finer than a virtual hour. Answers are ignored: a
// process may be down, stopped or a follower. stop ends the nudges and waits.
func Nudge(addrs []string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, addr := range addrs {
		for _, what := range []string{"scan", "poll"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if proc.Try("POST", "http://"+addr+"/v1/scheduler/"+what, Token, 30*time.Second) != nil {
						time.Sleep(50 * time.Millisecond) // down, stopped or not leading: do not spin
					}
					time.Sleep(150 * time.Millisecond)
				}
			}()
		}
	}
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// Settle waits, until deadline, for the run to be over: every consent's last
// payment is dated by its expiry, so once clk is a day past w's last expiry nothing
// new can happen at Klavi, and billingd must bring every attempt to a final state.
// pending says what is left ("" nothing). It returns "" when settled, else what
// was left at the deadline.
func Settle(w *World, clk *clock.Scaled, deadline time.Time, pending func() string) string {
	left := "the clock did not reach the end of the run"
	for time.Now().Before(deadline) {
		if !clk.Now().Before(w.End.AddDays(1).At(12, 0)) {
			if left = pending(); left == "" {
				return ""
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return left
}

// Pending returns what billingd still has to do, read from its records: attempts
// that are not final, and consents still billed. "" when nothing is left.
func Pending(ctx context.Context, db Records) (string, error) {
	states := map[storage.AttemptState]int{}
	active, after := 0, ""
	for {
		recs, err := db.ListConsents(ctx, after, 1000, "")
		if err != nil {
			return "", err
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			after = r.ID()
			if r.State == storage.ConsentActive {
				active++
			}
			as, err := db.Attempts(ctx, r.ID())
			if err != nil {
				return "", err
			}
			for _, a := range as {
				if !a.State.Final() {
					states[a.State]++
				}
			}
		}
	}
	if active == 0 && len(states) == 0 {
		return "", nil
	}
	var parts []string
	for s, n := range states {
		parts = append(parts, fmt.Sprintf("%d %s", n, s))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d consents still active, attempts not final: %s", active, strings.Join(parts, ", ")), nil
}
