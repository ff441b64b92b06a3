package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// The gather section, in process: a dev attester and N shareholder daemons
// on loopback, and the time a shares source (the proxy's PSK source) takes
// from its creation to its first key, for T=3 and several N. The
// shareholders are warm (one discarded gathering per group first), as they
// would be when a proxy restarts; the source is new each run, so each run
// includes its own TLS connections, attestation tokens, share checks,
// reconstruction and derivation.

const (
	gatherT      = 3
	benchDigest  = "sha256:0000000000000000000000000000000000000000000000000000000000000be5"
	gatherPrefix = "mcbn-bench-"
)

// gatherGroup is one T-of-N group with its running shareholders.
type gatherGroup struct {
	n       int
	cfg     gather.SharesSourceConfig
	servers []*shareholder.Server
}

func (g *gatherGroup) close() {
	for _, s := range g.servers {
		s.Close()
	}
}

func runGather(o options, res *Results) error {
	dir, err := os.MkdirTemp("", "mcbn-bench-gather-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	att, err := attest.StartDevAttester(attest.DevAttesterConfig{
		Socket: filepath.Join(dir, "att.sock"), ImageDigest: benchDigest, Key: key, Logger: quiet,
	})
	if err != nil {
		return err
	}
	defer att.Close()
	policy, err := shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{ImageDigests: []string{benchDigest}, Dev: true})
	if err != nil {
		return err
	}
	var groups []*gatherGroup
	defer func() {
		for _, g := range groups {
			g.close()
		}
	}()
	for _, n := range o.gatherN {
		g, err := startGroup(filepath.Join(dir, fmt.Sprintf("n%d", n)), n, att, policy, quiet)
		if err != nil {
			return fmt.Errorf("N=%d: %w", n, err)
		}
		groups = append(groups, g)
		if _, err := gatherOnce(g, quiet); err != nil { // warm the shareholders
			return fmt.Errorf("N=%d: warm-up: %w", n, err)
		}
	}
	times := map[int][]float64{}
	errs := map[int]string{}
	for run := 0; run < o.gatherRuns; run++ {
		for _, g := range groups {
			d, err := gatherOnce(g, quiet)
			if err != nil {
				errs[g.n] = err.Error()
				logf("gather N=%d run %d: %v", g.n, run+1, err)
				continue
			}
			times[g.n] = append(times[g.n], float64(d.Microseconds())/1e3)
		}
	}
	for _, g := range groups {
		f := newFigure("gather", fmt.Sprintf("T=%d, N=%d", gatherT, g.n), "ms", times[g.n])
		if !f.ok() {
			f.Err = errs[g.n]
		}
		logf("gather T=%d N=%d: median %.1f ms over %d runs", gatherT, g.n, f.Median, len(f.Runs))
		res.add(f)
	}
	if len(o.gatherN) > 1 {
		lo, hi := o.gatherN[0], o.gatherN[len(o.gatherN)-1]
		res.addRatio("gather", fmt.Sprintf("ratio N=%d / N=%d", hi, lo),
			fmt.Sprintf("T=%d, N=%d", gatherT, hi), fmt.Sprintf("T=%d, N=%d", gatherT, lo))
	}
	return nil
}

// gatherOnce creates a shares source and returns the time to its first key.
func gatherOnce(g *gatherGroup, log *slog.Logger) (time.Duration, error) {
	start := time.Now()
	src, err := gather.NewSharesSource(g.cfg, nil, log)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	select {
	case <-src.Changes():
	case <-time.After(20 * time.Second):
		return 0, fmt.Errorf("no key after 20s: %s", src.Status().State)
	}
	d := time.Since(start)
	if k, err := src.Key(psk.DefaultIdentity); err != nil || len(k) == 0 {
		return 0, fmt.Errorf("source changed but has no key: %v (%s)", err, src.Status().State)
	}
	return d, nil
}

// startGroup splits a T-of-n group into dir and starts n shareholders.
func startGroup(dir string, n int, att *attest.DevAttester, policy string, log *slog.Logger) (*gatherGroup, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("p%02d", i+1)
	}
	grp, shares, err := psk.Split(fmt.Sprintf("bench-n%d", n), gatherT, names, rand.Reader)
	if err != nil {
		return nil, err
	}
	gpath := filepath.Join(dir, "group.json")
	if err := psk.WriteGroup(gpath, grp); err != nil {
		return nil, err
	}
	g := &gatherGroup{n: n}
	var entries []gather.ShareholderConfig
	for _, s := range shares {
		name := s.Participant
		if err := psk.WriteShare(filepath.Join(dir, name+".share.json"), s); err != nil {
			g.close()
			return nil, err
		}
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(shareholderYAML(dir, name, att.Issuer(), policy)), 0o600); err != nil {
			g.close()
			return nil, err
		}
		cfg, err := shareholder.LoadConfig(path)
		if err != nil {
			g.close()
			return nil, err
		}
		srv, err := shareholder.NewServer(context.Background(), cfg, shareholder.ServerOptions{ConfigPath: path, Logger: log})
		if err != nil {
			g.close()
			return nil, err
		}
		if err := srv.Start(); err != nil {
			g.close()
			return nil, err
		}
		g.servers = append(g.servers, srv)
		entries = append(entries, gather.ShareholderConfig{
			Name: name, URL: "https://" + srv.Addr().String(), Pin: srv.Pin(), Audience: gatherPrefix + name,
		})
	}
	g.cfg = gather.SharesSourceConfig{
		Group: gpath, Shareholders: entries,
		Attestation: gather.AttestationConfig{Provider: "dev", Socket: att.Socket()},
		Identity:    psk.DefaultIdentity, Epoch: 1,
		Refresh: time.Hour, Timeout: 5 * time.Second,
	}
	return g, nil
}

// shareholderYAML is one shareholder daemon's config: loopback, its share
// file, the dev attester as issuer, the ready-made dev policy, consent
// granted, and a rate limit the bench cannot reach.
func shareholderYAML(dir, name, issuer, policy string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nlisten: 127.0.0.1:0\n", name)
	fmt.Fprintf(&b, "share_store: file://%s\n", filepath.Join(dir, name+".share.json"))
	fmt.Fprintf(&b, "group: group.json\n")
	fmt.Fprintf(&b, "verifier:\n  issuer: %s\n  audience: %s%s\n  clock_skew: 5s\n", issuer, gatherPrefix, name)
	fmt.Fprintf(&b, "policy: |\n")
	for _, l := range strings.Split(strings.TrimSpace(policy), "\n") {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, "consent: granted\naudit_log: %s.audit.jsonl\n", name)
	fmt.Fprintf(&b, "rate_limit:\n  per_second: 100000\n  burst: 100000\n")
	fmt.Fprintf(&b, "metrics:\n  listen: \"\"\n") // many daemons: no metrics ports to share
	return b.String()
}
