package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func init() {
	c := &command{
		name:    "version",
		summary: "print the version of mcbn and of Go",
		usage: `Usage: mcbn version

Prints the mcbn version, the VCS revision it was built from when known, and the
Go version. Example:

  $ mcbn version
  mcbn dev (go1.26.8 linux/amd64)`,
	}
	c.run = func(args []string, stdout, stderr io.Writer) error {
		fs := newFlags(c, "mcbn version", stdout)
		pos, err := parseFlags(fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("unexpected argument %q", pos[0])
		}
		rev := ""
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					rev = " " + s.Value[:12]
				}
			}
		}
		fmt.Fprintf(stdout, "mcbn %s%s (%s %s/%s)\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	}
	register("", c)
}
