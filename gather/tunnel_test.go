package gather

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/shareholder"
)

// echoServer is the "server app": it echoes what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// startProxy runs a proxy whose route gathers its PSK with psk.source: shares.
func startProxy(t *testing.T, f *fixture, mode, listen, connect string, entries []ShareholderConfig) *proxy.Proxy {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "mode: %s\nroutes:\n  - name: app\n    listen: %s\n    connect: %s\n", mode, listen, connect)
	fmt.Fprintf(&b, "    psk:\n      source: shares\n      options:\n        group: %s\n        attestation: {provider: dev, socket: %s}\n", f.groupPath, f.att.Socket())
	fmt.Fprintf(&b, "        refresh: 100ms\n        timeout: 5s\n        epoch: 1\n        shareholders:\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "          - {name: %s, url: %q, pin: %q, audience: %s}\n", e.Name, e.URL, e.Pin, e.Audience)
	}
	cfg, err := proxy.ParseConfig([]byte(b.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
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

// roundTrip sends a line through the client proxy and reports whether it
// came back.
func roundTrip(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("consent\n")); err != nil {
		return false
	}
	buf := make([]byte, 8)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "consent\n"
}

// Two proxies gather the same 2-of-3 PSK and tunnel traffic with it;
// revoking consent on two shareholders takes the tunnel down, granting it
// again brings it back.
func TestTunnelWithGatheredPSK(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	server := startProxy(t, f, "server", "tls://127.0.0.1:0", "tcp://"+echoServer(t), entries)
	client := startProxy(t, f, "client", "tcp://127.0.0.1:0", "tls://"+server.Addr("app").String(), entries)
	ready := func(p *proxy.Proxy) func() bool { return func() bool { ok, _ := p.Ready(); return ok } }
	waitFor(t, "server proxy ready", ready(server))
	waitFor(t, "client proxy ready", ready(client))
	addr := client.Addr("app").String()
	if !roundTrip(addr) {
		t.Fatal("no traffic through the tunnel")
	}

	for _, n := range []string{"bob", "carol"} {
		if _, err := shareholder.SetConsent(f.configPath(n), shareholder.ConsentRevoked); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "proxies not ready", func() bool { return !ready(server)() && !ready(client)() })
	if _, why := client.Ready(); !strings.Contains(strings.Join(why, " "), "bob refused: consent_revoked") {
		t.Fatalf("readiness does not say why: %v", why)
	}
	if roundTrip(addr) {
		t.Fatal("traffic flowed without consent")
	}

	if _, err := shareholder.SetConsent(f.configPath("bob"), shareholder.ConsentGranted); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "proxies ready again", func() bool { return ready(server)() && ready(client)() })
	waitFor(t, "traffic again", func() bool { return roundTrip(addr) })
}
