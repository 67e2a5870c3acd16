// Command billingd runs recurring billing for Klavi Automatic Pix consents: a daemon
// that charges every cycle of every authorized consent exactly once, and the tools
// around it (preview, simulate, sandbox, operator commands).
//
// Usage: billingd <command> [flags]; billingd help lists the commands.
//
// # Environment
//
// BILLINGD_CONFIG names the config file when --config is not given.
//
// BILLINGD_TEST_CLOCK is for process-level tests only and is never needed in
// production: when set, every command (run, sandbox, consent import, preview, …)
// reads time from a clock that runs faster than real time from a fixed origin,
//
//	BILLINGD_TEST_CLOCK=start=2026-12-01T03:00:00Z,epoch=1764558000000,rate=3600
//
// reads 2026-12-01T03:00:00Z at the real instant epoch (Unix milliseconds) and moves
// rate seconds per real second (see clock.ParseScaled). Processes given the same value
// share one timeline, so a daemon restarted many times and a sandbox agree on the
// date. Cron schedules still tick in real time; every decision uses this clock. A
// malformed value exits 2. billingd says on stderr when it runs on this clock.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/storage"
)

// env is what a command may touch of the outside world; tests give their own.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	clock          clock.Clock
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

// commands lists every subcommand, in the order help shows them.
var commands = []command{
	{"run", "run the billing daemon", cmdRun},
	{"simulate", "run the real scheduler against the sandbox on a virtual clock (a year in seconds)", cmdSimulate},
	{"preview", "show the cycles, submit days and retry dates of a consent (dry run)", cmdPreview},
	{"sandbox", "run a fake Klavi (rules, payment state machine, faults) on a local port", cmdSandbox},
	{"consent", "add, list, show, revoke, authorize, create or import consents", cmdConsent},
	{"payments", "list a consent's attempts and payments, or the items needing an operator", cmdPayments},
	{"db", "check, back up or compact the database", cmdDB},
	{"healthcheck", "exit 0 when the daemon answers its health URL", cmdHealthcheck},
	{"version", "print the version and build information", cmdVersion},
}

func main() {
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: withCredentials(os.Getenv), clock: clock.Real{}}
	os.Exit(Main(context.Background(), e, os.Args[1:]))
}

// Exit codes. systemd's RestartPreventExitStatus lists exitUsage and exitEnvironment:
// restarting cannot fix either. docs/OPERATIONS.md has the table.
const (
	exitOK          = 0
	exitFailure     = 1 // anything else: a restart may help (locked, port in use, ...)
	exitUsage       = 2 // bad flags, invalid input, any config problem
	exitEnvironment = 3 // the state directory or database file is unusable as it is
)

// Main runs the command line args and returns the process exit code: 0 on success,
// 2 on a usage error, invalid input or a config problem, 3 when the environment
// needs an operator (see environmentProblem), 1 on any other failure.
func Main(ctx context.Context, e *env, args []string) int {
	if code, ok := useTestClock(e); !ok {
		return code
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return exitCode(e, c.run(ctx, e, args[1:]))
		}
	}
	fmt.Fprintf(e.stderr, "billingd: unknown command %q\n", args[0])
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: billingd <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nenvironment:")
	fmt.Fprintf(w, "  %-19s config file when --config is not given\n", "BILLINGD_CONFIG")
	fmt.Fprintf(w, "  %-19s tests only, never in production: start=RFC3339,epoch=UNIX_MS,rate=N runs\n", testClockEnv)
	fmt.Fprintf(w, "  %-19s every command on a clock rate times faster than real time\n", "")
	fmt.Fprintln(w, "\nRun 'billingd <command> -h' for the flags of a command.")
}

// testClockEnv selects a scaled clock for process-level tests (see the package doc).
const testClockEnv = "BILLINGD_TEST_CLOCK"

// useTestClock replaces e.clock with the scaled clock BILLINGD_TEST_CLOCK describes,
// and says so on stderr. A malformed value is a usage error: it returns exit code 2
// and false.
func useTestClock(e *env) (int, bool) {
	spec := e.getenv(testClockEnv)
	if spec == "" {
		return 0, true
	}
	c, err := clock.ParseScaled(spec)
	if err != nil {
		fmt.Fprintf(e.stderr, "billingd: %s: %v (a test-only setting; unset it in production)\n", testClockEnv, err)
		return 2, false
	}
	e.clock = c
	fmt.Fprintf(e.stderr, "billingd: %s is set: test clock reading %s, %g× real time\n",
		testClockEnv, c.Now().UTC().Format(time.RFC3339), c.Rate)
	return 0, true
}

// errUsage marks an error as the caller's: bad flags or invalid input (exit 2).
var errUsage = errors.New("usage")

// usageErrorf returns an error that exits 2.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

func exitCode(e *env, err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errSilent):
		return exitUsage
	case errors.Is(err, errUsage):
		msg := strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
		fmt.Fprintf(e.stderr, "billingd: %s\n", msg)
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "billingd: %v\n", err)
	if environmentProblem(err) {
		return exitEnvironment
	}
	return exitFailure
}

// environmentProblem reports a failure that no restart can fix, because it is in
// the machine rather than in billingd: a damaged, foreign, newer or replaced
// database file, a read-only file system, a missing directory or file, a missing
// permission. A locked database, a port in use or a full disk are not: they pass.
func environmentProblem(err error) bool {
	for _, target := range []error{
		storage.ErrCorrupt, storage.ErrReplaced, storage.ErrNotBillingd, storage.ErrSchema,
		fs.ErrPermission, fs.ErrNotExist, syscall.EROFS, syscall.ENOTDIR,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// errSilent is an invalid-input error already reported in full on stderr.
var errSilent = errors.New("invalid input")

// newFlagSet returns a FlagSet that reports errors instead of exiting, with a usage
// line for the subcommand.
func newFlagSet(e *env, name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: billingd %s %s\n\n%s\n\nflags:\n", name, args, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning a flag error into a usage error (exit 2) and
// refusing stray positional arguments unless allowed.
func parseFlags(fs *flag.FlagSet, args []string, positional bool) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %s %v (see 'billingd %s -h')", errSilent, fs.Name(), err, fs.Name())
	}
	if !positional && fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q (see 'billingd %s -h')", fs.Name(), fs.Arg(0), fs.Name())
	}
	return nil
}
