package proxy

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// TestSilentConnectionsDoNotLockOutTunnels: many connections to a server
// proxy's TLS port that never send a byte (here 300, with max_connections
// 4 and max_pending_handshakes 16) neither use up max_connections nor keep
// a real tunnel from completing at once: they are pending handshakes, the
// oldest dropped when the bound is reached.
func TestSilentConnectionsDoNotLockOutTunnels(t *testing.T) {
	key := randomKey(t)
	server := startYAML(t, fmt.Sprintf(`mode: server
routes:
  - name: web
    listen: tls://127.0.0.1:0
    connect: tcp://%s
    psk: {hex: %s}
    timeouts: {handshake: 1m, first_byte: 1m}
    limits: {max_connections: 4, max_pending_handshakes: 16}
`, echoServer(t), hexKey(key)))
	client := startYAML(t, fmt.Sprintf(`mode: client
routes:
  - name: web
    listen: tcp://127.0.0.1:0
    connect: tls://%s
    psk: {hex: %s}
    timeouts: {handshake: 5s}
`, server.url("web"), hexKey(key)))
	const silent = 300
	for i := 0; i < silent; i++ {
		c, err := net.Dial("tcp", server.url("web"))
		if err != nil {
			t.Fatalf("silent connection %d: %v", i, err)
		}
		defer c.Close()
	}
	srv := server.routes[0].(*tcpRoute)
	// At least silent-16 evicted: the client proxy's reachability probe
	// (a TCP connect) is a pending connection too, and under load the test
	// runs long enough for one or two probes to land among the silent ones.
	waitFor(t, 10*time.Second, "the silent connections to be accepted (pending 16, the rest dropped)", func() bool {
		return srv.pending.len() == 16 && metricValue(server.met.handshakeFailures.WithLabelValues("web", "evicted")) >= silent-16
	})
	got, err := roundTrip(t, client.url("web"), []byte("real client"))
	if err != nil || string(got) != "real client" {
		t.Fatalf("a real tunnel behind %d silent connections got %q, %v", silent, got, err)
	}
	if n := metricValue(server.met.refused.WithLabelValues("web", "max_connections")); n != 0 {
		t.Fatalf("%v connections refused for max_connections: silent ones were counted as tunnels", n)
	}
}

// TestFirstByteTimeout: a connection that sends nothing is closed after
// timeouts.first_byte, long before the handshake timeout, and counted with
// reason "silent"; one that has started its handshake is not cut by it.
func TestFirstByteTimeout(t *testing.T) {
	server := startYAML(t, fmt.Sprintf(`mode: server
routes:
  - name: web
    listen: tls://127.0.0.1:0
    connect: tcp://%s
    psk: {hex: %s}
    timeouts: {handshake: 1m, first_byte: 300ms}
`, echoServer(t), hexKey(randomKey(t))))
	quiet, err := net.Dial("tcp", server.url("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	started, err := net.Dial("tcp", server.url("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer started.Close()
	started.Write([]byte{22, 3, 1}) // the start of a TLS record header, then nothing
	quiet.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := quiet.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("a silent connection was not closed by the server: %v", err)
	}
	waitFor(t, 5*time.Second, "the silent count", func() bool {
		return metricValue(server.met.handshakeFailures.WithLabelValues("web", "silent")) == 1
	})
	started.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := started.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("a connection that started its handshake was cut by the first-byte timeout: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
