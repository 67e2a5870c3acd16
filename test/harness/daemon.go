package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Dir makes a fresh directory for a run's files (logs, databases, journals) under
// the system's temporary directory, named prefix and a random suffix. It is removed
// when the test passes and kept, its path logged with what to look at (kept, e.g.
// "billingd.log, sandbox.log"), when it fails.
func Dir(t *testing.T, prefix, kept string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept %s (%s)", dir, kept)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

// Import runs `billingd consent import --bill-from billFrom` of bin on the
// consents file with the config at cfg and env, failing t if it fails, and
// returns its output.
func Import(t *testing.T, bin, cfg string, env []string, billFrom, consentsFile string) []byte {
	t.Helper()
	imp := exec.Command(bin, "consent", "import", "--config", cfg, "--bill-from", billFrom, consentsFile)
	imp.Env = env
	out, err := imp.CombinedOutput()
	require.NoError(t, err, string(out))
	return out
}

// Daemon is one billingd ("billingd run") of a run, restarted as the test says,
// logging every life to billingd.log in its directory.
type Daemon struct {
	// Cmd is the current process (nil before Start).
	Cmd *exec.Cmd
	bin string
	cfg string
	env []string
	log *os.File
}

// NewDaemon prepares bin's billingd with the config at cfg and env, logging to
// billingd.log in dir (closed when the test ends). Start starts it.
func NewDaemon(t *testing.T, bin, dir, cfg string, env []string) *Daemon {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "billingd.log"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return &Daemon{bin: bin, cfg: cfg, env: env, log: f}
}

// Start starts a new process of the daemon.
func (d *Daemon) Start(t *testing.T) {
	t.Helper()
	d.Cmd = exec.Command(d.bin, "run", "--config", d.cfg)
	d.Cmd.Env, d.Cmd.Stdout, d.Cmd.Stderr = d.env, d.log, d.log
	require.NoError(t, d.Cmd.Start())
}

// Kill SIGKILLs the current process and waits for it to exit.
func (d *Daemon) Kill(t *testing.T) {
	t.Helper()
	require.NoError(t, d.Cmd.Process.Signal(syscall.SIGKILL))
	_ = d.Cmd.Wait()
}

// LogFile is the path of the daemon's log.
func (d *Daemon) LogFile() string { return d.log.Name() }

// Stop stops the current process gracefully: SIGTERM, then up to limit for it to
// exit. It returns whether it exited in time and its exit's error (nil: a clean
// exit); one that did not is sent last (SIGQUIT dumps its goroutines in the log,
// SIGKILL ends it) and waited for.
func (d *Daemon) Stop(t *testing.T, limit time.Duration, last syscall.Signal) (inTime bool, err error) {
	t.Helper()
	require.NoError(t, d.Cmd.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- d.Cmd.Wait() }()
	select {
	case err := <-exited:
		return true, err
	case <-time.After(limit):
		_ = d.Cmd.Process.Signal(last)
		return false, <-exited
	}
}
