package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

// versionLine is what 'mcbn version' and 'mcbn --version' print: the
// version stamped at build time, the VCS revision when the build recorded
// one, and the Go version and platform.
func versionLine() string {
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("mcbn %s%s (%s %s/%s)", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func newVersionCmd() *cobra.Command {
	c := leaf("version", "print the version of mcbn and of Go",
		`Prints the mcbn version, the VCS revision it was built from when known, and the
Go version. 'mcbn --version' prints the same.`,
		`  $ mcbn version
  mcbn dev (go1.26.8 linux/amd64)`, noArgs)
	c.RunE = func(c *cobra.Command, _ []string) error {
		_, err := fmt.Fprintln(c.OutOrStdout(), versionLine())
		return err
	}
	return c
}
