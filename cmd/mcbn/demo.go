package main

import (
	"context"
	"io"
	"os/signal"
	"syscall"

	"github.com/mcbn/mcbn/demo"
)

func init() {
	c := &command{
		name:    "demo",
		summary: "run the local consent-network walkthrough",
		usage: `Usage: mcbn demo [--dir DIR]

Runs mcbn's local walkthrough on one machine with no external service: a
2-of-3 key setup, every pair of shares giving the same PSK, a single share
refused, a corrupted share named and set aside. Each step is printed as it
happens; no secret is ever shown. Generated files go to a temporary directory
that is removed at the end, unless --dir is given.

Example:

  $ mcbn demo`,
	}
	c.run = func(args []string, stdout, stderr io.Writer) error {
		fs := newFlags(c, "mcbn demo", stdout)
		dir := fs.String("dir", "", "keep the generated files in `DIR` (must exist)")
		pos, err := parseFlags(fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("unexpected argument %q", pos[0])
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return demo.Run(ctx, demo.Options{Out: stdout, Dir: *dir})
	}
	register("", c)
}
