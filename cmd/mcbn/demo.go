package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcbn/mcbn/demo"
)

func init() {
	c := &command{
		name:    "demo",
		summary: "run the whole consent network on this machine and watch consent open and close it",
		usage: `Usage: mcbn demo [--keep] [--dkg] [--dir DIR] [--verbose]

Starts, in this process and on loopback ports, the dev attester, three
shareholders (alice, bob, carol; 2-of-3), a server proxy in front of a
built-in HTTP and UDP echo app, and a client proxy. Then it sends an HTTP
request and UDP datagrams through the tunnel, revokes one consent (traffic
still flows), revokes a second (new tunnels are refused), and grants again
(the network comes back by itself). Each step is printed as it happens and
checked; the command fails if a step's outcome is wrong. No share or key is
ever printed. It takes a few seconds.

--dkg makes the group with the dealer-free ceremony of 'mcbn psk dkg' instead
of a dealer's split: nobody ever holds the group secret.

The demo plays every participant, so its key directory holds every share;
that is the only reason it can show an openssl line that works against its
server proxy. With --keep the network stays up until Ctrl-C so you can try it.
Ctrl-C stops everything; a temporary directory is removed (not --dir).

Example:

  $ mcbn demo
  $ mcbn demo --dkg --keep`,
	}
	c.run = func(args []string, stdout, stderr io.Writer) error {
		fs := newFlags(c, "mcbn demo", stdout)
		dir := fs.String("dir", "", "keep the key material and configs in `DIR` (must exist) instead of a temporary directory")
		keep := fs.Bool("keep", false, "keep the network running after the steps, until Ctrl-C")
		verbose := fs.Bool("verbose", false, "also print the daemons' logs on stderr")
		useDKG := fs.Bool("dkg", false, "make the group with the dealer-free ceremony (mcbn psk dkg) instead of a dealer's split")
		pos, err := parseFlags(fs, args)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("unexpected argument %q", pos[0])
		}
		var log *slog.Logger
		if *verbose {
			log = slog.New(slog.NewTextHandler(stderr, nil))
		}
		if *dir != "" {
			if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
				return usagef("--dir %s: not an existing directory", *dir)
			}
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		return demo.Run(ctx, demo.Options{Out: stdout, Log: log, Dir: *dir, Keep: *keep, DKG: *useDKG})
	}
	register("", c)
}
