package gather

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/shareholder"
)

// startProxyYAML runs a proxy from the route's psk block (indented under
// "    psk:").
func startProxyYAML(t *testing.T, mode, listen, connect, pskBlock string) *proxy.Proxy {
	t.Helper()
	y := fmt.Sprintf("mode: %s\nroutes:\n  - name: app\n    listen: %s\n    connect: %s\n    psk:\n%s", mode, listen, connect, pskBlock)
	cfg, err := proxy.ParseConfig([]byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// sharesOptions renders a shares source's options at the given indent.
func sharesOptions(f *fixture, indent, mode string, entries []ShareholderConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%sgroup: %s\n%sattestation: {provider: dev, socket: %s}\n", indent, f.groupPath, indent, f.att.Socket())
	fmt.Fprintf(&b, "%srefresh: 100ms\n%stimeout: 5s\n%smode: %s\n%sshareholders:\n", indent, indent, indent, mode, indent)
	for _, e := range entries {
		fmt.Fprintf(&b, "%s  - {name: %s, url: %q, pin: %q, audience: %s}\n", indent, e.Name, e.URL, e.Pin, e.Audience)
	}
	return b.String()
}

func onePSK(f *fixture, mode string, entries []ShareholderConfig) string {
	return "      source: shares\n      options:\n" + "        epoch: 1\n" + sharesOptions(f, "        ", mode, entries)
}

func proxyReady(p *proxy.Proxy) func() bool { return func() bool { ok, _ := p.Ready(); return ok } }

// A group gathered in mode evaluate opens and closes the network like
// mode share: evaluate-only daemons, traffic through both proxies, a
// revoke below T stops it, a grant brings it back. A proxy in mode share
// facing one in mode evaluate gets no tunnel (the modes derive different
// keys), it does not fall back to anything weaker.
func TestTunnelEvaluateMode(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startEvalServer(n, 0, 1)))
	}
	server := startProxyYAML(t, "server", "tls://127.0.0.1:0", "tcp://"+echoServer(t), onePSK(f, ModeEvaluate, entries))
	client := startProxyYAML(t, "client", "tcp://127.0.0.1:0", "tls://"+server.Addr("app").String(), onePSK(f, ModeEvaluate, entries))
	waitFor(t, "server proxy ready", proxyReady(server))
	waitFor(t, "client proxy ready", proxyReady(client))
	addr := client.Addr("app").String()
	if !roundTrip(addr) {
		t.Fatal("no traffic through the tunnel in mode evaluate")
	}
	for _, n := range []string{"bob", "carol"} {
		if _, err := shareholder.SetConsent(f.configPath(n), shareholder.ConsentRevoked); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "proxies not ready", func() bool { return !proxyReady(server)() && !proxyReady(client)() })
	if roundTrip(addr) {
		t.Fatal("traffic flowed without consent")
	}
	if _, err := shareholder.SetConsent(f.configPath("bob"), shareholder.ConsentGranted); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "proxies ready again", func() bool { return proxyReady(server)() && proxyReady(client)() })
	waitFor(t, "traffic again", func() bool { return roundTrip(addr) })

	// A daemon serving both modes, a client in mode share: ready, but no tunnel.
	f2 := newFixture(t)
	var both []ShareholderConfig
	for _, n := range names {
		s := f2.startEvalServer(n, 0, 1)
		y, _ := os.ReadFile(f2.configPath(n))
		if err := os.WriteFile(f2.configPath(n), []byte(strings.Replace(string(y), "release: evaluate-only", "release: any", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
		both = append(both, entry(n, s))
	}
	server2 := startProxyYAML(t, "server", "tls://127.0.0.1:0", "tcp://"+echoServer(t), onePSK(f2, ModeEvaluate, both))
	client2 := startProxyYAML(t, "client", "tcp://127.0.0.1:0", "tls://"+server2.Addr("app").String(), onePSK(f2, ModeShare, both))
	waitFor(t, "both ready", func() bool { return proxyReady(server2)() && proxyReady(client2)() })
	if roundTrip(client2.Addr("app").String()) {
		t.Fatal("a mode-share client and a mode-evaluate server agreed on a key")
	}
}

// The epoch change while traffic flows, driven by the participants'
// consent: the daemons admit only epoch 1, so the server proxy's epoch 2
// stays pending; the participants raise max_epoch to 2 and the server
// gathers epoch 2's partials; then the client's config lists epoch 2 too
// (a reload), it gathers them and opens new tunnels on epoch 2. A client
// sends a request every 10 ms throughout: none fails. The server is given
// the next epoch first because the same participants admit it for both
// sides at once: a client that had it first would offer an identity the
// server cannot answer yet.
func TestTunnelEvaluateModeEpochChange(t *testing.T) {
	f := newFixture(t)
	servers := map[string]*shareholder.Server{}
	var entries []ShareholderConfig
	for _, n := range names {
		servers[n] = f.startEvalServer(n, 1, 1)
		entries = append(entries, entry(n, servers[n]))
	}
	block := func(epochs ...int) string {
		var b strings.Builder
		b.WriteString("      rollover: 1m\n      epochs:\n")
		for _, ep := range epochs {
			fmt.Fprintf(&b, "        - epoch: %d\n          source: shares\n          options:\n", ep)
			b.WriteString(sharesOptions(f, "            ", ModeEvaluate, entries))
		}
		return b.String()
	}
	server := startProxyYAML(t, "server", "tls://127.0.0.1:0", "tcp://"+echoServer(t), block(1, 2))
	clientPath := filepath.Join(f.dir, "client.yaml")
	clientYAML := func(epochs ...int) []byte {
		return []byte(fmt.Sprintf("routes:\n  - name: app\n    listen: tcp://127.0.0.1:0\n    connect: tls://%s\n    psk:\n%s", server.Addr("app"), block(epochs...)))
	}
	if err := os.WriteFile(clientPath, clientYAML(1), 0o600); err != nil {
		t.Fatal(err)
	}
	ccfg, err := proxy.LoadConfig(proxy.ModeClient, proxy.LoadOptions{Flags: map[string]string{"config": clientPath},
		Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	client, err := proxy.New(ccfg, proxy.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	waitFor(t, "server proxy ready", proxyReady(server))
	waitFor(t, "client proxy ready", proxyReady(client))
	addr := client.Addr("app").String()
	if !roundTrip(addr) {
		t.Fatal("no traffic on epoch 1")
	}
	phase := func(p *proxy.Proxy, epoch uint64) string {
		for _, e := range p.Status()[0].Epochs.Epochs {
			if e.Epoch == epoch {
				return e.Phase
			}
		}
		return ""
	}
	if ph := phase(server, 2); ph != "pending" {
		t.Fatalf("the server's epoch 2 is %q before the participants admit it", ph)
	}

	var sent, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			sent.Add(1)
			if !roundTrip(addr) {
				failed.Add(1)
			}
		}
	}()

	// The participants admit epoch 2; the server gathers it.
	for _, n := range names {
		y, _ := os.ReadFile(f.configPath(n))
		if err := os.WriteFile(f.configPath(n), []byte(strings.Replace(string(y), "max_epoch: 1", "max_epoch: 2", 1)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := servers[n].Reload(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the server's epoch 2", func() bool { return phase(server, 2) == "current" })
	// The client lists epoch 2 and moves to it.
	if err := os.WriteFile(clientPath, clientYAML(1, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := client.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the client's epoch 2", func() bool { return phase(client, 2) == "current" })
	before := openedOn(client, 2)
	waitFor(t, "a tunnel on epoch 2", func() bool { return roundTrip(addr) && openedOn(client, 2) > before })
	close(stop)
	<-done
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the epoch change", n, sent.Load())
	}
	if sent.Load() < 5 {
		t.Fatalf("only %d requests sent", sent.Load())
	}
	for _, n := range names {
		a, _ := readFile(f.auditPath(n))
		if strings.Contains(a, "mode evaluate, epoch 2,") {
			return
		}
	}
	t.Fatal("no participant audited an evaluation for epoch 2")
}

// openedOn is how many tunnels the proxy opened on epoch so far.
// epochReady reports whether the proxy's first route holds epoch's key.
func epochReady(p *proxy.Proxy, epoch uint64) func() bool {
	return func() bool {
		for _, e := range p.Status()[0].Epochs.Epochs {
			if e.Epoch == epoch {
				return e.Ready
			}
		}
		return false
	}
}

func openedOn(p *proxy.Proxy, epoch uint64) uint64 {
	for _, e := range p.Status()[0].Epochs.Epochs {
		if e.Epoch == epoch {
			return e.Opened
		}
	}
	return 0
}
