package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
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

func cmdVersion(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "", "Print the version and build information.")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	ver, rev := buildVersion()
	fmt.Fprintf(e.stdout, "billingd %s", ver)
	if rev != "" {
		fmt.Fprintf(e.stdout, " (%s)", rev)
	}
	fmt.Fprintf(e.stdout, " %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
