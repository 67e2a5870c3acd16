package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// app holds what the root command's flags set for every command.
type app struct {
	e        *env
	config   string // --config
	logLevel string // --log-level; "" keeps what the config (or command) says
}

// Command groups of the root help.
const (
	groupDaemon  = "daemon"
	groupOperate = "operate"
	groupTools   = "tools"
)

// newRootCmd builds the whole command tree for one run of Main: nothing is shared
// between runs, so tests can run commands side by side.
func newRootCmd(e *env) *cobra.Command {
	a := &app{e: e}
	root := &cobra.Command{
		Use:   "billingd",
		Short: "Recurring billing for Klavi Automatic Pix consents",
		Long: `billingd runs recurring billing for Klavi Automatic Pix consents: a daemon that
charges every cycle of every authorized consent exactly once, and the tools
around it (preview, simulate, sandbox, operator commands).

Operator commands (consent, payments, attention, report, preview --consent, db
backup while the daemon runs) talk to the daemon's admin API: --addr or
$BILLINGD_ADDR, else http.listen of the config; --token or $BILLINGD_ADMIN_TOKEN,
else http.admin_token of the config.

Environment:
  BILLINGD_CONFIG       config file when --config is not given
  BILLINGD_ADDR         admin API URL of the operator commands
  BILLINGD_ADMIN_TOKEN  admin API bearer token of the operator commands
  BILLINGD_TEST_CLOCK   tests only, never in production: start=RFC3339,epoch=UNIX_MS,rate=N
                        runs every command on a clock rate times faster than real time

Exit status: 0 done; 1 a failure a restart may fix; 2 a usage or config error;
3 the state directory or database file is unusable as it is.`,
		Version:           versionLine(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return argErrorf("unknown command %q%s", args[0], suggest(cmd, args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			// No command: the help, as a usage error.
			cmd.SetOut(e.stderr)
			_ = cmd.Help()
			return errSilent
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch a.logLevel {
			case "", "debug", "info", "warn", "error":
				return nil
			}
			return argErrorf("--log-level %q: want debug, info, warn or error", a.logLevel)
		},
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetUsageTemplate(usageTemplate)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		name := strings.TrimPrefix(cmd.CommandPath(), "billingd ")
		var nf *pflag.NotExistError
		if errors.As(err, &nf) && negativeNumber.MatchString(nf.GetSpecifiedName()) {
			// Flags go anywhere, so an argument like -1 reads as one.
			return argErrorf("%s: -%s is not a valid argument: negative numbers are not taken", name, nf.GetSpecifiedName())
		}
		return argErrorf("%s: %v", name, err)
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.config, "config", "", "config `FILE` (default: $BILLINGD_CONFIG; else run and the operator commands read "+
		defaultConfigPath+", preview and simulate the built-in defaults)")
	pf.StringVar(&a.logLevel, "log-level", "", "log `LEVEL`: debug, info, warn or error (default: log.level of the config, info)")
	_ = root.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	root.Flags().BoolP("version", "v", false, "print the version and build information")

	root.AddGroup(
		&cobra.Group{ID: groupDaemon, Title: "The daemon:"},
		&cobra.Group{ID: groupOperate, Title: "Operator commands:"},
		&cobra.Group{ID: groupTools, Title: "Dry runs and test tools:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add(groupDaemon, newRunCmd(a), newHealthcheckCmd(a), newDBCmd(a))
	add(groupOperate, newConsentCmd(a), newPaymentsCmd(a), newAttentionCmd(a), newReportCmd(a), newWebhooksCmd(a))
	add(groupTools, newPreviewCmd(a), newSimulateCmd(a), newSandboxCmd(a), newVoprCmd(a))
	root.AddCommand(newVersionCmd(a), newManCmd(a))
	root.SetHelpCommandGroupID("")
	root.SetCompletionCommandGroupID("")
	strictHelpAndCompletion(root)
	return root
}

// strictHelpAndCompletion makes cobra's help and completion commands refuse what
// they do not know as every command does (exit 2, naming it): an unknown help topic
// (cobra prints the root help and exits 0) and a shell completion has no script for
// (cobra prints the completion help and exits 0).
func strictHelpAndCompletion(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Run = nil
			c.RunE = func(c *cobra.Command, args []string) error {
				cmd, rest, err := c.Root().Find(args)
				if err != nil || cmd == nil || len(rest) > 0 {
					parent := cmd
					if err != nil || parent == nil {
						parent = c.Root()
					}
					unknown := args[len(args)-1]
					if len(rest) > 0 {
						unknown = rest[0]
					}
					return argErrorf("help: unknown help topic %q%s", strings.Join(args, " "), suggest(parent, unknown))
				}
				cmd.InitDefaultHelpFlag()
				cmd.InitDefaultVersionFlag()
				return cmd.Help()
			}
		case "completion":
			c.Args = cobra.ArbitraryArgs
			c.RunE = func(c *cobra.Command, args []string) error {
				var shells []string
				for _, s := range c.Commands() {
					if s.IsAvailableCommand() {
						shells = append(shells, s.Name())
					}
				}
				if len(args) == 0 {
					return argErrorf("completion: want a shell: %s", strings.Join(shells, ", "))
				}
				return argErrorf("completion: unsupported shell %q: want one of %s", args[0], strings.Join(shells, ", "))
			}
		}
	}
}

// usageTemplate is cobra's, with "<command>" for commands that only group others.
const usageTemplate = `Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}
  {{.UseLine}}{{end}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} <command> [flags]{{end}}{{if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if not .AllChildCommandsHaveGroup}}

Other commands:{{range $cmds}}{{if (and (eq .GroupID "") (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableInheritedFlags}}

Global flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasHelpSubCommands}}

Additional help topics:{{range .Commands}}{{if .IsAdditionalHelpTopicCommand}}
  {{rpad .CommandPath .CommandPathPadding}} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableSubCommands}}

Run '{{.CommandPath}} <command> --help' for the flags of a command.{{end}}
`

// group returns a command that only holds subcommands: without one, or with an
// unknown one, it is a usage error (exit 2); -h shows its help (exit 0).
func group(use, short, long string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.ArbitraryArgs,
		RunE:  wantSubcommand,
	}
	c.AddCommand(subs...)
	return c
}

// wantSubcommand is the RunE of a command that only holds subcommands: a usage
// error naming them, and the unknown one if args has one.
func wantSubcommand(cmd *cobra.Command, args []string) error {
	var names []string
	for _, s := range cmd.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	if len(args) == 0 {
		return argErrorf("%s: want a subcommand: %s", cmd.Name(), strings.Join(names, ", "))
	}
	return argErrorf("%s: unknown subcommand %q: want one of %s%s", cmd.Name(), args[0], strings.Join(names, ", "), suggest(cmd, args[0]))
}

// suggest is cobra's "did you mean" for a mistyped command name, or "".
func suggest(cmd *cobra.Command, arg string) string {
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	s := cmd.SuggestionsFor(arg)
	if len(s) == 0 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", s[0])
}

var negativeNumber = regexp.MustCompile(`^[0-9]`)

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return argErrorf("%s: unexpected argument %q", strings.TrimPrefix(cmd.CommandPath(), "billingd "), args[0])
	}
	return nil
}

// normalizeArgs turns a long flag written with one dash (-consent-file, as the
// command line before cobra took it) into its two-dash form. Only names some
// command defines are touched, and nothing after "--".
func normalizeArgs(root *cobra.Command, args []string) []string {
	long := map[string]bool{"help": true, "version": true}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalNonPersistentFlags(), c.PersistentFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i, arg := range args {
		if arg == "--" {
			return append(out, args[i:]...)
		}
		if len(arg) > 2 && arg[0] == '-' && arg[1] != '-' {
			name, _, _ := strings.Cut(arg[1:], "=")
			if len(name) > 1 && long[name] {
				arg = "-" + arg
			}
		}
		out = append(out, arg)
	}
	return out
}

// logLevel is --log-level when given, else def.
func (a *app) logLevelOr(def string) string {
	if a.logLevel != "" {
		return a.logLevel
	}
	return def
}

// logger is the logger of a command that has no config of its own (sandbox).
func (a *app) logger() *slog.Logger {
	return newLogger(LogConfig{Level: a.logLevelOr("info"), Format: "auto"}, a.e.stderr)
}

func newManCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "write the man pages of every command into DIR (make man)",
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return argErrorf("man: want exactly one DIR")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			// Every page is created over any file of its name: none may be the database.
			var pages []string
			var walk func(c *cobra.Command)
			walk = func(c *cobra.Command) {
				pages = append(pages, filepath.Join(args[0], strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"))
				for _, s := range c.Commands() {
					walk(s)
				}
			}
			walk(cmd.Root())
			if err := checkOutputs("man: page", []liveDB{a.configDB()}, pages...); err != nil {
				return err
			}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			ver, _ := buildVersion()
			now := a.e.clock.Now()
			if sde := a.e.getenv("SOURCE_DATE_EPOCH"); sde != "" { // reproducible builds
				if sec, err := strconv.ParseInt(sde, 10, 64); err == nil {
					now = time.Unix(sec, 0).UTC()
				}
			}
			root := cmd.Root()
			hdr := &doc.GenManHeader{Title: "BILLINGD", Section: "1", Source: "billingd " + ver, Manual: "billingd manual", Date: &now}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return fmt.Errorf("man: %w", err)
			}
			entries, _ := os.ReadDir(args[0])
			fmt.Fprintf(a.e.stdout, "wrote %s to %s\n", plural(len(entries), "man page"), args[0])
			return nil
		},
	}
}

// plural is "1 consent", "2 consents" (n and noun, +s unless n is 1).
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
