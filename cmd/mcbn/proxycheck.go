package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/proxy"
)

// mcbn proxy check (and 'mcbn proxy client|server --check', the same
// thing): the proxy's own config loading and validation, its PSK sources
// read, and the consent dry run for shares sources. Logic lives in packages
// proxy and gather.

const proxyCheckLong = `Checks a proxy config exactly as 'mcbn proxy client|server --config FILE'
loads it (same parser, same validation, same environment variables: a config
the proxy would refuse fails here with the same message), reads every PSK
file, PSKsecrets file and environment key it names, then runs the consent dry
run for every route with psk.source: shares: it contacts every shareholder
exactly as the proxy would (TLS 1.3, attestation token bound to the
connection, release request), verifies each share against the group's
commitments, and wipes it at once: no share is kept and no key is derived. It
reports, for each shareholder, whether it would release and why not, and exits
1 when the config is refused or fewer than the threshold would release.

The mode comes from the file's mode: key, or --mode when it has none.
'mcbn proxy client --check' and 'mcbn proxy server --check' are the same check.

FILE may also hold only a top-level shares: block (the options of a shares
source); then only the dry run is done.`

const proxyCheckExample = `  $ mcbn proxy check --config client.yaml
  config ok: client proxy, 1 route(s)
  routes[0] (web): 2/3 shares (threshold 2): alice ok, bob ok, carol refused: consent_revoked
  ok: every shares source would reach its threshold`

func newProxyCheckCmd() *cobra.Command {
	c := leaf("check --config FILE [--mode client|server] [--timeout 30s]",
		"check a config and dry-run consent: would the shareholders release? (keeps no share)",
		proxyCheckLong, proxyCheckExample, noArgs)
	fs := c.Flags()
	cfgPath := fs.String("config", "", "proxy config or shares `FILE` (YAML)")
	mode := fs.String("mode", "", "client or server (`MODE`), for a config without a mode: key")
	timeout := fs.Duration("timeout", 30*time.Second, "overall time limit (`DURATION`)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runProxyCheck(*cfgPath, *mode, *timeout, c.OutOrStdout())
	}
	return c
}

func runProxyCheck(cfgPath, mode string, timeout time.Duration, stdout io.Writer) error {
	if cfgPath == "" {
		return usagef("--config is required")
	}
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if sharesOnly(data) {
		return checkSharesFile(cfgPath, timeout, stdout)
	}
	m := proxy.Mode(mode)
	if m == "" {
		c, err := proxy.ParseConfig(data)
		if err != nil {
			return fmt.Errorf("%s: %w", cfgPath, err)
		}
		if m = c.Mode; m == "" {
			return usagef("%s has no mode: key: add mode: client or mode: server, or give --mode", cfgPath)
		}
	}
	return checkProxyConfig(m, proxy.LoadOptions{Flags: map[string]string{"config": cfgPath}}, timeout, stdout)
}

// sharesOnly reports whether data is the stand-alone form: a mapping with
// a shares: key and no routes:.
func sharesOnly(data []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return false
	}
	shares, routes := false, false
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		switch top.Content[i].Value {
		case "shares":
			shares = true
		case "routes":
			routes = true
		}
	}
	return shares && !routes
}

// checkProxyConfig is the check behind 'proxy check' and '--check': load
// and validate the config as the proxy does, build its sources as the proxy
// does (shares sources excepted: they would start gathering), then dry-run
// every shares route.
func checkProxyConfig(mode proxy.Mode, lo proxy.LoadOptions, timeout time.Duration, stdout io.Writer) error {
	cfg, err := proxy.LoadConfig(mode, lo)
	if err != nil {
		return err
	}
	type target struct {
		where string
		cfg   gather.SharesSourceConfig
	}
	var targets []target
	placeholders := map[string]proxy.Source{}
	for i := range cfg.Routes {
		r := &cfg.Routes[i]
		where := fmt.Sprintf("routes[%d] (%s)", i, r.Name)
		if len(r.PSK.Epochs) > 0 {
			// Each epoch's shares source is dry-run like a route's; the
			// route itself is built with the other epochs' sources (files
			// read, as the proxy would) and a placeholder for these.
			ts, err := epochTargets(r, where)
			if err != nil {
				return err
			}
			for _, t := range ts {
				targets = append(targets, target{t.where, t.cfg})
			}
			continue
		}
		if r.PSK.Source != gather.SourceKind {
			continue
		}
		sc, err := sharesTarget(r, where, 0)
		if err != nil {
			return err
		}
		targets = append(targets, target{where, sc})
		placeholders[r.Name] = proxy.NewNotReadySource("checked by the dry run")
	}
	// Every other source is built exactly as the proxy builds it (files
	// read, modes checked), then closed; no socket is opened.
	p, err := proxy.New(cfg, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sources: placeholders})
	if err != nil {
		return err
	}
	p.Close()
	fmt.Fprintf(stdout, "config ok: %s proxy, %d route(s)\n", mode, len(cfg.Routes))
	if len(targets) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	short := 0
	for _, t := range targets {
		prog, err := gather.Check(ctx, t.cfg, nil)
		if err != nil {
			return fmt.Errorf("%s: psk.options: %w", t.where, err)
		}
		fmt.Fprintf(stdout, "%s: %s\n", t.where, prog)
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

// sharesTarget decodes a shares source's options as the proxy gives them
// to the source (SourceSpec.Decode) and settles identity and epoch with
// the route's (epoch 0: a route without epochs).
func sharesTarget(r *proxy.Route, where string, epoch uint64) (gather.SharesSourceConfig, error) {
	var sc gather.SharesSourceConfig
	if err := r.DecodeSourceOptions(&sc); err != nil {
		return sc, fmt.Errorf("%s: psk.source %s: psk.options: %w", where, r.PSK.Source, err)
	}
	switch {
	case sc.Identity == "":
		sc.Identity = r.EffectiveIdentity()
	case r.Identity != "" && sc.Identity != r.Identity:
		return sc, fmt.Errorf("%s: psk.options.identity: %q differs from the route's identity %q", where, sc.Identity, r.Identity)
	}
	switch {
	case sc.Epoch == 0:
		sc.Epoch = epoch
	case epoch != 0 && sc.Epoch != epoch:
		return sc, fmt.Errorf("%s: psk.options.epoch: %d differs from the epoch %d of the route's psk.epochs entry", where, sc.Epoch, epoch)
	}
	return sc, nil
}

type epochTarget struct {
	where string
	cfg   gather.SharesSourceConfig
}

// epochTargets returns the dry runs of r's psk.epochs entries with a
// shares source (Route.EpochRoutes), and replaces each such entry in r by
// a placeholder key so that proxy.New builds the route's other epochs as
// the proxy would without starting a gathering: a shares source built for
// real would contact the shareholders, gather T shares and derive the key
// in this process, which a check must not do. The placeholder is never
// used: the checked proxy is closed without listening.
func epochTargets(r *proxy.Route, where string) ([]epochTarget, error) {
	routes, epochs := r.EpochRoutes()
	var out []epochTarget
	for j := range routes {
		er := &routes[j]
		if er.PSK.Source != gather.SourceKind {
			continue
		}
		ew := fmt.Sprintf("%s epoch %d", where, epochs[j])
		sc, err := sharesTarget(er, ew, epochs[j])
		if err != nil {
			return nil, err
		}
		out = append(out, epochTarget{ew, sc})
		for k := range r.PSK.Epochs {
			if e := &r.PSK.Epochs[k]; e.Epoch != nil && *e.Epoch == epochs[j] {
				e.Source, e.Options = "", yaml.Node{}
				e.Hex = checkPlaceholderKey
			}
		}
	}
	return out, nil
}

// checkPlaceholderKey stands in for a shares epoch's key while the check
// builds the route (never used to open a tunnel).
const checkPlaceholderKey = "00000000000000000000000000000000"

// checkSharesFile dry-runs a stand-alone shares: file.
func checkSharesFile(path string, timeout time.Duration, stdout io.Writer) error {
	targets, err := gather.LoadCheckTargets(path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	short := 0
	for _, t := range targets {
		prog, err := gather.Check(ctx, t.Config, nil)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, t.Where, err)
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
