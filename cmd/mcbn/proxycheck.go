package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mcbn/mcbn/shareholder"
)

// mcbn proxy check: the consent dry run. Logic lives in package shareholder.

const proxyCheckUsage = `Usage: mcbn proxy check --config FILE [--timeout 30s]

Contacts every shareholder exactly as a proxy would (TLS 1.3, attestation
token bound to the connection, release request), verifies each share against
the group's commitments, and wipes it at once: no share is kept and no key is
derived. It reports, for each shareholder, whether it would release and why
not, and exits 1 when fewer than the threshold would.

FILE is either a proxy config (every route with psk.source: shares is checked)
or a file with a top-level shares: block holding the same options.

Example:

  $ mcbn proxy check --config client.yaml
  routes[0] (web): 2/3 shares (threshold 2): alice ok, bob ok, carol refused: consent_revoked
  ok: every shares source would reach its threshold`

func init() {
	c := &command{name: "check", summary: "dry run: would the shareholders release? (keeps no share)", usage: proxyCheckUsage}
	c.run = func(args []string, stdout, stderr io.Writer) error { return runProxyCheck(c, args, stdout, stderr) }
	register("proxy", c)
}

func runProxyCheck(c *command, args []string, stdout, stderr io.Writer) error {
	fs := newFlags(c, "mcbn proxy check", stdout)
	cfgPath := fs.String("config", "", "proxy config or shares `file` (YAML)")
	timeout := fs.Duration("timeout", 30*time.Second, "overall `duration` limit")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *cfgPath == "" {
		return usagef("--config is required")
	}
	targets, err := shareholder.LoadCheckTargets(*cfgPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	short := 0
	for _, t := range targets {
		prog, err := shareholder.Check(ctx, t.Config, nil)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", *cfgPath, t.Where, err)
		}
		fmt.Fprintf(stdout, "%s: %s\n", t.Where, prog)
		if !prog.Enough() {
			short++
		}
	}
	if short > 0 {
		return fmt.Errorf("%d of %d shares source(s) below the threshold", short, len(targets))
	}
	fmt.Fprintln(stdout, "ok: every shares source would reach its threshold")
	return nil
}
