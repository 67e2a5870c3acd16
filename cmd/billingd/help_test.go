package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current help output")

// commandPaths lists every command a user can call, the root first: its path
// without "billingd" ([] for the root).
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	root := newRootCmd(&env{stdout: os.Stdout, stderr: os.Stderr, getenv: noEnv, clock: clock.NewFake(nov26)})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	var out [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		out = append(out, path)
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() || s.Name() == "help" {
				walk(s, append(append([]string(nil), path...), s.Name()))
			}
		}
	}
	walk(root, nil)
	return out
}

// TestHelp_Golden: billingd --help and every command's -h are what
// testdata/golden holds (go test ./cmd/billingd -run TestHelp_Golden -update
// rewrites them); each exits 0 and writes nothing on stderr.
func TestHelp_Golden(t *testing.T) {
	paths := commandPaths(t)
	require.Greater(t, len(paths), 25)
	for _, path := range paths {
		name := strings.Join(append([]string{"billingd"}, path...), "_")
		t.Run(name, func(t *testing.T) {
			args := append(append([]string(nil), path...), "-h")
			if len(path) == 0 {
				args = []string{"--help"}
			}
			code, stdout, stderr := runCLI(t, nil, args...)
			require.Equal(t, 0, code, stderr)
			assert.Empty(t, stderr)
			file := filepath.Join("testdata", "golden", name+".golden")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
				require.NoError(t, os.WriteFile(file, []byte(stdout), 0o644))
				return
			}
			want, err := os.ReadFile(file)
			require.NoError(t, err, "no golden file: run go test ./cmd/billingd -run TestHelp_Golden -update")
			assert.Equal(t, string(want), stdout)
		})
	}
}

// TestHelp_Forms: every way of asking for help shows the same text and exits 0.
func TestHelp_Forms(t *testing.T) {
	_, want, _ := runCLI(t, nil, "consent", "revoke", "-h")
	for _, args := range [][]string{
		{"consent", "revoke", "--help"},
		{"help", "consent", "revoke"},
		{"consent", "revoke", "urn:x", "--reason", "x", "-h"},
	} {
		code, got, _ := runCLI(t, nil, args...)
		assert.Equal(t, 0, code, args)
		assert.Equal(t, want, got, args)
	}
	for _, group := range []string{"consent", "payments", "db", "attention"} {
		code, stdout, stderr := runCLI(t, nil, group, "-h")
		assert.Equal(t, 0, code, "%s -h: %s", group, stderr)
		assert.Contains(t, stdout, "billingd "+group+" <command> [flags]")
		code, _, stderr = runCLI(t, nil, group)
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, group+": want a subcommand: ")
		assert.Contains(t, stderr, "Run 'billingd "+group+" --help' for usage.")
	}
	code, stdout, _ := runCLI(t, nil, "--version")
	assert.Equal(t, 0, code)
	_, v, _ := runCLI(t, nil, "version")
	assert.Equal(t, v, stdout)
	assert.True(t, strings.HasPrefix(stdout, "billingd "))
}

// TestHelp_UnknownTopic: help for a command that does not exist, and completion for
// a shell it has no script for, are usage errors naming what was asked (cobra's own
// print the help and exit 0).
func TestHelp_UnknownTopic(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"help", "nosuch"}, `billingd: help: unknown help topic "nosuch"`},
		{[]string{"help", "consnet"}, `unknown help topic "consnet" (did you mean "consent"?)`},
		{[]string{"help", "consent", "nosuch"}, `unknown help topic "consent nosuch"`},
		{[]string{"completion", "tcsh"}, `billingd: completion: unsupported shell "tcsh": want one of bash, fish, powershell, zsh`},
		{[]string{"completion"}, `billingd: completion: want a shell: bash, fish, powershell, zsh`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tt.args...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, stdout, "no help printed")
			assert.Contains(t, stderr, tt.want)
		})
	}
	for _, args := range [][]string{{"help"}, {"help", "db", "backup"}, {"help", "help"}, {"completion", "-h"}, {"completion", "zsh"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		assert.Equal(t, 0, code, "%v: %s", args, stderr)
		assert.NotEmpty(t, stdout, args)
	}
}

// TestCLI_FlagsAnywhere: flags go before or after the arguments, one dash or two,
// and the global flags anywhere.
func TestCLI_FlagsAnywhere(t *testing.T) {
	file := "../../examples/consents/monthly-31st.json"
	_, want, _ := runCLI(t, nil, "preview", "--consent-file", file, "--cycles", "2", "--from", "2025-10-25")
	for _, args := range [][]string{
		{"preview", "-consent-file", file, "-cycles=2", "--from", "2025-10-25"},
		{"--log-level", "warn", "preview", "--from", "2025-10-25", "--consent-file=" + file, "--cycles", "2"},
		{"preview", "--cycles", "2", "--consent-file", file, "--from", "2025-10-25", "--log-level=debug"},
	} {
		code, got, stderr := runCLI(t, nil, args...)
		require.Equal(t, 0, code, "%v: %s", args, stderr)
		assert.Equal(t, want, got, args)
	}
	code, _, stderr := runCLI(t, nil, "--log-level", "loud", "version")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `--log-level "loud": want debug, info, warn or error`)
	code, _, stderr = runCLI(t, nil, "consnet", "list")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `unknown command "consnet" (did you mean "consent"?)`)
}

// TestCompletion_Bash: the bash completion script parses and sources cleanly, and
// registers billingd.
func TestCompletion_Bash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	code, script, stderr := runCLI(t, nil, "completion", "bash")
	require.Equal(t, 0, code, stderr)
	file := filepath.Join(t.TempDir(), "billingd.bash")
	require.NoError(t, os.WriteFile(file, []byte(script), 0o644))
	out, err := exec.Command(bash, "-n", file).CombinedOutput()
	require.NoError(t, err, "bash -n: %s", out)
	out, err = exec.Command(bash, "--norc", "--noprofile", "-c", `set -e; ( source "$1" && complete -p billingd )`, "bash", file).CombinedOutput()
	require.NoError(t, err, "source: %s", out)
	assert.Contains(t, string(out), "billingd")
	assert.NotContains(t, string(out), "command not found")
}

// TestCompletion_Shells: zsh and fish scripts are produced too, and parse when the
// shell is installed.
func TestCompletion_Shells(t *testing.T) {
	for shell, check := range map[string][]string{"zsh": {"zsh", "-n"}, "fish": {"fish", "--no-execute"}} {
		code, script, stderr := runCLI(t, nil, "completion", shell)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, script, "billingd", shell)
		bin, err := exec.LookPath(check[0])
		if err != nil {
			continue
		}
		file := filepath.Join(t.TempDir(), "billingd."+shell)
		require.NoError(t, os.WriteFile(file, []byte(script), 0o644))
		out, err := exec.Command(bin, append(check[1:], file)...).CombinedOutput()
		assert.NoError(t, err, "%s: %s", shell, out)
	}
}

// TestMan: the hidden man command writes a page per command.
func TestMan(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runCLI(t, nil, "man", dir)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "man pages to "+dir)
	for _, page := range []string{"billingd.1", "billingd-run.1", "billingd-consent-show.1", "billingd-attention-resolve.1", "billingd-payments-upcoming.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		require.NoError(t, err, page)
		assert.Contains(t, string(b), ".TH \"BILLINGD\" \"1\" \"Nov 2026\"", page)
	}
	code, stdout, _ = runCLI(t, nil, "--help")
	require.Equal(t, 0, code)
	assert.NotContains(t, stdout, "\n  man ", "man is hidden")
	_ = cycle.Brasilia
}
