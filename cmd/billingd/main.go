package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/storage"
)

// env is what a command may touch of the outside world; tests give their own.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	clock          clock.Clock
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
	root := newRootCmd(e)
	root.SetArgs(normalizeArgs(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	return exitCode(e, cmd, err)
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

// An argError is a command line the command cannot take (flags, arguments): it
// exits 2, followed by a hint naming the command's help.
type argError struct{ msg string }

func (e *argError) Error() string        { return e.msg }
func (e *argError) Is(target error) bool { return target == errUsage }

// argErrorf returns an argError.
func argErrorf(format string, args ...any) error {
	return &argError{msg: fmt.Sprintf(format, args...)}
}

// exitCode reports err on stderr and maps it to the exit code; cmd is the command
// that ran (its help is the hint after a bad command line).
func exitCode(e *env, cmd *cobra.Command, err error) int {
	var ae *argError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errSilent):
		return exitUsage
	case errors.As(err, &ae):
		fmt.Fprintf(e.stderr, "billingd: %s\n", ae.msg)
		path := "billingd"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(e.stderr, "Run '%s --help' for usage.\n", path)
		return exitUsage
	case errors.Is(err, errUsage):
		msg := strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
		fmt.Fprintf(e.stderr, "billingd: %s\n", msg)
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "billingd: %s\n", onePath(err))
	if environmentProblem(err) {
		return exitEnvironment
	}
	return exitFailure
}

// onePath is err's message with a file's path said once: "check /p: stat /p: no
// such file or directory" reads "check /p: no such file or directory".
func onePath(err error) string {
	msg := err.Error()
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path == "" {
		return msg
	}
	prefix, ok := strings.CutSuffix(msg, pe.Error())
	if !ok || !strings.Contains(prefix, pe.Path) {
		return msg
	}
	return prefix + pe.Err.Error()
}

// environmentProblem reports a failure that no restart can fix, because it is in
// the machine rather than in billingd: a damaged, foreign, newer, replaced or
// simulated (billingd simulate's) database file, a read-only file system, a missing
// directory or file, a directory where a file goes (the lock or archive file), a
// missing permission. A locked database, a port in use or a full disk are not: they
// pass.
func environmentProblem(err error) bool {
	for _, target := range []error{
		storage.ErrCorrupt, storage.ErrReplaced, storage.ErrNotBillingd, storage.ErrSchema, storage.ErrSimulated,
		fs.ErrPermission, fs.ErrNotExist, syscall.EROFS, syscall.ENOTDIR, syscall.EISDIR,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// errSilent is an invalid-input error already reported in full on stderr.
var errSilent = errors.New("invalid input")
