package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

// buildVersion returns the stamped version, or the module version and VCS revision
// recorded by the Go toolchain, or "devel".
func buildVersion() (ver, revision string) {
	ver = version
	if info, ok := debug.ReadBuildInfo(); ok {
		if ver == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			ver = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	if ver == "" {
		ver = "devel"
	}
	return ver, revision
}

// versionLine is what version and --version print.
func versionLine() string {
	ver, rev := buildVersion()
	s := "billingd " + ver
	if rev != "" {
		s += " (" + rev + ")"
	}
	return fmt.Sprintf("%s %s %s/%s", s, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version and build information",
		Long:  "Print the version and build information (the same as billingd --version).",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(a.e.stdout, versionLine())
			return nil
		},
	}
}
