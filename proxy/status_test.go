package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blackhole is a middlebox during a partition: it accepts TCP connections
// and never forwards or answers a byte. It counts the connections.
func blackhole(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			n.Add(1)
		}
	}()
	return ln.Addr().String(), &n
}

// TestStatusDuringPartition: a client proxy whose server proxy sits behind
// a middlebox that accepts TCP and never answers. Its TCP probe connects,
// which must not make /status claim the server proxy is reachable; a
// tunnel's handshake times out, after which /status says unreachable with
// the reason, and later probes that connect do not turn it back to ok.
func TestStatusDuringPartition(t *testing.T) {
	addr, accepted := blackhole(t)
	client := startYAML(t, fmt.Sprintf(`mode: client
admin: 127.0.0.1:0
probe_interval: 50ms
routes:
  - name: web
    listen: tcp://127.0.0.1:0
    connect: tls://%s
    psk: {hex: %s}
    timeouts: {handshake: 500ms}
`, addr, hexKey(randomKey(t))))
	waitFor(t, 5*time.Second, "a probe", func() bool { return accepted.Load() >= 2 })
	st := getStatus(t, client)
	if r := st.Routes[0]; r.Destination.State == "reachable" {
		t.Fatalf("after a TCP connect alone /status says the server proxy is reachable: %+v", r)
	}
	if r := st.Routes[0]; r.Destination.State != "port_open" {
		t.Fatalf("destination state %q after TCP probes, want port_open", r.Destination.State)
	}
	got, _ := roundTrip(t, client.url("web"), []byte("anyone?"))
	if len(got) != 0 {
		t.Fatalf("got %q through a black hole", got)
	}
	check := func(when string) {
		t.Helper()
		r := getStatus(t, client).Routes[0]
		if r.State != "destination_unreachable" || r.Destination.State != "unreachable" ||
			!strings.Contains(r.Destination.Error, "handshake") || !strings.Contains(r.Destination.Error, "timeout") {
			t.Fatalf("%s: /status route %+v; want destination_unreachable with the handshake timeout", when, r)
		}
	}
	check("after the handshake timed out")
	n := accepted.Load()
	waitFor(t, 5*time.Second, "more probes", func() bool { return accepted.Load() >= n+3 })
	check("after later probes connected")
}

// TestStatusReachableAfterHandshake: the counterpart: a completed tunnel
// handshake is what says reachable, and a wrong key says handshake_failing.
func TestStatusReachableAfterHandshake(t *testing.T) {
	key := randomKey(t)
	client, server := tcpPair(t, key, echoServer(t).String(), nil)
	if got, err := roundTrip(t, client.url("web"), []byte("hi")); err != nil || string(got) != "hi" {
		t.Fatalf("%q, %v", got, err)
	}
	if r := getStatus(t, client).Routes[0]; r.State != "ok" || r.Destination.State != "reachable" {
		t.Fatalf("after a tunnel: %+v", r)
	}
	cr := testRoute("web", "tcp://127.0.0.1:0", "tls://"+server.url("web"))
	cr.PSK.Hex = hexKey(randomKey(t))
	wrong := startProxy(t, ModeClient, true, nil, cr)
	roundTrip(t, wrong.url("web"), []byte("hi"))
	if r := getStatus(t, wrong).Routes[0]; r.State != "handshake_failing" || r.Destination.State != "handshake_failed" ||
		!strings.Contains(r.Destination.Error, "wrong_key") {
		t.Fatalf("after a wrong-key handshake: %+v", r)
	}
}

// TestDTLSPeerDownIsUnreachable: a client proxy whose DTLS server proxy is
// down (the port answers ICMP port unreachable: connection refused) says
// so, instead of blaming the protocol.
func TestDTLSPeerDownIsUnreachable(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	down := pc.LocalAddr().String()
	pc.Close() // nothing listens there now: the kernel answers port unreachable
	client := startYAML(t, fmt.Sprintf(`mode: client
admin: 127.0.0.1:0
routes:
  - name: dns
    listen: udp://127.0.0.1:0
    connect: dtls://%s
    psk: {hex: %s}
    timeouts: {handshake: 3s}
    dtls: {flight_interval: 100ms}
`, down, hexKey(randomKey(t))))
	c, err := net.Dial("udp", client.url("dns"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("query"))
	waitFor(t, 10*time.Second, "the handshake failure to be logged", func() bool {
		return strings.Contains(client.logs.String(), "DTLS handshake failed")
	})
	logs := client.logs.String()
	if !strings.Contains(logs, "peer not reachable: connection refused") || strings.Contains(logs, "does not speak the expected protocol") {
		t.Fatalf("a down DTLS peer is not reported as unreachable:\n%s", logs)
	}
	if n := metricValue(client.met.handshakeFailures.WithLabelValues("dns", "unreachable")); n != 1 {
		t.Fatalf("handshake_failures{reason=unreachable} = %v, want 1", n)
	}
	if r := getStatus(t, client).Routes[0]; r.State != "destination_unreachable" || !strings.Contains(r.Destination.Error, "connection refused") {
		t.Fatalf("/status route %+v, want destination_unreachable: connection refused", r)
	}
}
