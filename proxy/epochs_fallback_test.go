package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Client fallback (epochs.go, refusedByServer): a client proxy whose
// newest epoch the server refuses with unknown_psk_identity retries the
// same local connection once on an older epoch it holds, and tries the
// newest again after refusalBackoff.

const fallbackLog = "the server proxy does not accept our newest epoch yet"

// TestEpochFallbackToOlderEpoch: the server lists [1], the client [1,2],
// both ready. Every request succeeds (on epoch 1), the refusal is logged
// once however many connections hit it and shows in /status; once the
// server is reloaded to [1,2], the client's new tunnels move to epoch 2.
func TestEpochFallbackToOlderEpoch(t *testing.T) {
	k1, k2 := randomKey(t), randomKey(t)
	backend := echoServer(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvYAML := func(eps ...ep) string {
		return epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "10m", eps...)
	}
	srvCfg.set(srvYAML(hexEp(1, k1)))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliCfg.set(epochYAML(ModeClient, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), "10m", hexEp(1, k1), hexEp(2, k2)))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	addr := cli.url("svc")

	tr := startTraffic(t, addr)
	// 150 requests at one per 10 ms span more than one refusalBackoff, so
	// the client has tried epoch 2 again at least once.
	tr.more(t, 150)
	if n := tr.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed while the server lacks epoch 2; first: %v", n, tr.firstErr.Load())
	}
	e2 := epochOf(t, cli, 2)
	if e2.ServerRefused < 2 {
		t.Fatalf("client epoch 2: server_refused %d, want at least 2 (first try and a retry after the back-off)", e2.ServerRefused)
	}
	if n := strings.Count(cli.logs.String(), fallbackLog); n != 1 {
		t.Fatalf("the fallback was logged %d times, want once", n)
	}
	if n := epochOf(t, srv, 1).Opened; n < 150 {
		t.Fatalf("server: %d tunnels on epoch 1, want every request's", n)
	}

	// The server catches up: new tunnels move to epoch 2.
	srvCfg.set(srvYAML(hexEp(1, k1), hexEp(2, k2)))
	if err := srv.Reload(); err != nil {
		t.Fatalf("server reload to 1+2: %v", err)
	}
	waitFor(t, 10*time.Second, "the client's tunnels to move to epoch 2", func() bool { return epochOf(t, srv, 2).Opened >= 5 })
	waitFor(t, 5*time.Second, "the refusal to end", func() bool {
		e := epochOf(t, cli, 2)
		return e.ServerRefusedUntil == nil && current(t, cli) == "2"
	})
	if !strings.Contains(cli.logs.String(), "the server proxy accepts our newest epoch now") {
		t.Fatal("the end of the fallback is not logged")
	}
	tr.more(t, 30)
	tr.halt()
	if n := tr.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed; first: %v", n, tr.firstErr.Load())
	}
	// A handshake refused on epoch 2 is not a failure the server proxy
	// logs on the client side per connection.
	if n := strings.Count(cli.logs.String(), "handshake failed"); n != 0 {
		t.Fatalf("the client logged %d handshake failures for refusals it recovered from", n)
	}
	assertNoSecret(t, srv.logs.String()+cli.logs.String(), k1, k2)
}

// TestEpochFallbackNeverUsesRetired: the client's epoch 1 is retired
// (rollover after its epoch 2 became ready) while the server only has 1.
// The client then never offers 1: its requests fail with the server's
// unknown_psk_identity instead of falling back to a retired key.
func TestEpochFallbackNeverUsesRetired(t *testing.T) {
	k1, k2 := randomKey(t), randomKey(t)
	backend := echoServer(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvCfg.set(epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "10m", hexEp(1, k1)))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliCfg.set(epochYAML(ModeClient, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), "300ms", hexEp(1, k1), hexEp(2, k2)))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	addr := cli.url("svc")
	waitFor(t, 10*time.Second, "the client's epoch 1 to retire", func() bool { return epochOf(t, cli, 1).Phase == "retired" })
	before := epochOf(t, srv, 1).Opened
	for i := 0; i < 3; i++ {
		if got, err := roundTrip(t, addr, []byte("x")); err == nil && string(got) == "x" {
			t.Fatalf("request %d went through with the client's epoch 1 retired", i)
		}
	}
	if n := epochOf(t, srv, 1).Opened; n != before {
		t.Fatalf("the client opened %d tunnels on its retired epoch 1", n-before)
	}
	waitFor(t, 5*time.Second, "the client's handshake failures", func() bool {
		return metricValue(cli.met.handshakeFailures.WithLabelValues("svc", reasonUnknownIdentity)) >= 3
	})
}

// TestEpochFallbackPreconnect: with preconnect, the pool's tunnels fall
// back to epoch 1 too, and every request succeeds.
func TestEpochFallbackPreconnect(t *testing.T) {
	k1, k2 := randomKey(t), randomKey(t)
	backend := echoServer(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvCfg.set(strings.Replace(epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "10m", hexEp(1, k1)),
		"    psk:\n", "    preconnect: 2\n    psk:\n", 1))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliCfg.set(strings.Replace(epochYAML(ModeClient, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), "10m", hexEp(1, k1), hexEp(2, k2)),
		"    psk:\n", "    preconnect: 2\n    psk:\n", 1))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	for i := 0; i < 50; i++ {
		msg := fmt.Sprintf("request %d", i)
		if got, err := roundTrip(t, cli.url("svc"), []byte(msg)); err != nil || string(got) != msg {
			t.Fatalf("%s: %q, %v", msg, got, err)
		}
	}
	if n := strings.Count(cli.logs.String(), fallbackLog); n != 1 {
		t.Fatalf("the fallback was logged %d times, want once", n)
	}
}

// TestEpochFallbackUDP: the same for a UDP route: the server lists [1],
// the client [1,2]; a new session falls back to 1 and carries datagrams.
func TestEpochFallbackUDP(t *testing.T) {
	k1, k2 := randomKey(t), randomKey(t)
	backend := udpEcho(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvCfg.set(epochYAML(ModeServer, "dtls://127.0.0.1:0", "udp://"+backend.String(), "10m", hexEp(1, k1)))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliCfg.set(epochYAML(ModeClient, "udp://127.0.0.1:0", "dtls://"+srv.url("svc"), "10m", hexEp(1, k1), hexEp(2, k2)))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	for i := 0; i < 5; i++ {
		msg := fmt.Appendf(nil, "peer %d", i)
		if got, err := udpExchange(cli.url("svc"), msg, 5*time.Second); err != nil || string(got) != string(msg) {
			t.Fatalf("peer %d: %q, %v", i, got, err)
		}
	}
	waitFor(t, 5*time.Second, "5 sessions on epoch 1 at the server", func() bool { return epochOf(t, srv, 1).Opened == 5 })
	if n := epochOf(t, cli, 2).ServerRefused; n < 1 {
		t.Fatal("the client's epoch 2 shows no refusal")
	}
	if n := strings.Count(cli.logs.String(), "DTLS handshake failed"); n != 0 {
		t.Fatalf("the client logged %d DTLS handshake failures for refusals it recovered from", n)
	}
}

// TestEpochFallbackServerKeyPending is the per-epoch consent race: the
// server lists epoch 2 but its key is not gathered yet while the client's
// is. The server answers unknown_psk_identity for /2 (not internal_error),
// the client falls back to 1, and moves to 2 once the server has its key.
func TestEpochFallbackServerKeyPending(t *testing.T) {
	k1, k2 := randomKey(t), randomKey(t)
	backend := echoServer(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvCfg.set(epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "10m",
		hexEp(1, k1), ep{2, "source: test-gather, options: {name: epoch-fb-srv-2}"}))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliCfg.set(epochYAML(ModeClient, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), "10m", hexEp(1, k1), hexEp(2, k2)))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	addr := cli.url("svc")
	for i := 0; i < 20; i++ {
		msg := fmt.Sprintf("request %d", i)
		if got, err := roundTrip(t, addr, []byte(msg)); err != nil || string(got) != msg {
			t.Fatalf("%s while the server's epoch 2 is pending: %q, %v", msg, got, err)
		}
	}
	if n := metricValue(srv.met.handshakeFailures.WithLabelValues("svc", reasonUnknownIdentity)); n < 1 {
		t.Fatalf("server unknown_identity count %v: the pending epoch was not answered with unknown_psk_identity", n)
	}
	gatherSource(t, "epoch-fb-srv-2").set(k2)
	waitFor(t, 10*time.Second, "the client's tunnels to move to epoch 2", func() bool {
		if got, err := roundTrip(t, addr, []byte("ping")); err != nil || string(got) != "ping" {
			t.Fatalf("request after the server gathered epoch 2: %q, %v", got, err)
		}
		return epochOf(t, srv, 2).Opened >= 1
	})
}
