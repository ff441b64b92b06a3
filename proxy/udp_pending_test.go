package proxy

import (
	"context"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// Handshake datagrams that never complete do not use up max_sessions nor
// leave state: with the limit at 2 and more such senders than that, the
// server proxy keeps no session for them (tlspsk answers a ClientHello
// without a cookie statelessly), and a real client gets a session at once.
func TestUDPStalledHandshakesDoNotLockOut(t *testing.T) {
	client, server := udpPair(t, randomKey(t), udpEcho(t).String(), func(c, s *Route) {
		s.Limits.MaxSessions = 2
		hs := Duration(time.Minute)
		s.Timeouts.Handshake = hs
	})
	// Six clients that never hear an answer: genuine ClientHellos without
	// a cookie, retransmitted, as from spoofed addresses.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 6; i++ {
		stalledClient(t, ctx, server.url("dns"), randomKey(t), 0)
	}
	srv := server.routes[0].(*udpServerRoute)
	waitFor(t, 5*time.Second, "the fake hellos to be seen", func() bool {
		return srv.ln.Stats().HelloVerifyRequests >= 6
	})
	if st := srv.ln.Stats(); st.Sessions != 0 || st.Handshakes != 0 {
		t.Fatalf("fake ClientHellos left %d sessions, %d handshakes", st.Sessions, st.Handshakes)
	}
	got, err := udpExchange(client.url("dns"), []byte("real client"), 5*time.Second)
	if err != nil || string(got) != "real client" {
		t.Fatalf("a real client got %q, %v with 6 fake handshakes and max_sessions=2", got, err)
	}
	if n := srv.active.Load(); n != 1 {
		t.Fatalf("%d established sessions, want 1", n)
	}
}

// deafAfter passes the first pass datagrams it receives and then hears
// nothing: with 0 a client that never hears the HelloVerifyRequest (as a
// spoofed sender), with 1 a client that proved its address and stalls,
// holding a handshake slot on the server.
type deafAfter struct {
	net.Conn
	mu   sync.Mutex
	pass int
}

func (d *deafAfter) Read(b []byte) (int, error) {
	for {
		n, err := d.Conn.Read(b)
		if err != nil {
			return n, err
		}
		d.mu.Lock()
		ok := d.pass > 0
		d.pass--
		d.mu.Unlock()
		if ok {
			return n, nil
		}
	}
}

// stalledClient starts a tlspsk DTLS client to addr that hears only the
// first pass datagrams; it runs until ctx ends.
func stalledClient(t *testing.T, ctx context.Context, addr string, key []byte, pass int) {
	raw, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	suites, _ := dtlsSuites(nil)
	dc := tlspsk.DTLSClient(&deafAfter{Conn: raw, pass: pass}, &tlspsk.DTLSConfig{
		Config:             tlspsk.Config{Identity: DefaultIdentity, Key: key, CipherSuites: suites},
		RetransmitInterval: 50 * time.Millisecond,
		HandshakeTimeout:   time.Minute,
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		dc.HandshakeContext(ctx)
	}()
	t.Cleanup(func() { dc.Close(); <-done })
}

// limits.max_pending_handshakes bounds the DTLS handshakes in progress:
// with the bound at 2, four clients that return a cookie and then stall
// get two handshakes; the others are dropped and counted as
// handshake_limit in mcbn_proxy_udp_dropped_datagrams_total.
func TestUDPMaxPendingHandshakes(t *testing.T) {
	key := randomKey(t)
	_, server := udpPair(t, key, udpEcho(t).String(), func(c, s *Route) {
		s.Limits.MaxPendingHandshakes = 2
		s.Timeouts.Handshake = Duration(time.Minute)
	})
	srv := server.routes[0].(*udpServerRoute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 4; i++ {
		stalledClient(t, ctx, server.url("dns"), key, 1)
	}
	waitFor(t, 10*time.Second, "handshakes beyond the bound to be dropped as handshake_limit", func() bool {
		return srv.ln.Stats().Handshakes == 2 &&
			metricValue(server.met.dropped.WithLabelValues("dns", "handshake_limit")) >= 1
	})
	if n := srv.ln.Stats().Handshakes; n > 2 {
		t.Fatalf("%d handshakes in progress with max_pending_handshakes=2", n)
	}
	if !strings.Contains(server.logs.String(), "route listening") || !strings.Contains(server.logs.String(), "socket_rcvbuf=") {
		t.Fatalf("the route-listening line does not report the socket buffer:\n%s", server.logs.String())
	}
}

// When the pending TLS handshakes reach their bound the oldest is dropped.
func TestPendingHandshakesDropOldest(t *testing.T) {
	p := pendingHandshakes{max: 2}
	a, b, c := new(net.TCPConn), new(net.TCPConn), new(net.TCPConn)
	if p.add(a) != nil || p.add(b) != nil {
		t.Fatal("evicted below the bound")
	}
	if got := p.add(c); got != a {
		t.Fatal("the oldest was not the one dropped")
	}
	if p.done(a) {
		t.Fatal("a dropped handshake is reported as still pending")
	}
	if !p.done(b) || !p.done(c) || p.len() != 0 {
		t.Fatal("completed handshakes not removed")
	}
}

// TestUDPNoAllocationPerDatagram: once a session is up, carrying a
// datagram through both proxies and back allocates nothing (pion
// allocated some 37 times per datagram, the old client proxy copied each
// datagram into a new slice). The whole process's mallocs are counted, so
// the bound leaves room for background work: well under one per datagram.
func TestUDPNoAllocationPerDatagram(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items on purpose)")
	}
	client, _ := udpPair(t, randomKey(t), udpEcho(t).String(), nil)
	c, err := net.Dial("udp", client.url("dns"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 1200)
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	roundTrip := func() bool {
		if _, err := c.Write(msg); err != nil {
			return false
		}
		n, err := c.Read(buf)
		return err == nil && n == len(msg)
	}
	// Warm up: the handshake, pools and metrics children.
	for i := 0; i < 200; i++ {
		if !roundTrip() {
			t.Fatalf("warm-up round trip %d failed", i)
		}
	}
	const n = 5000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < n; i++ {
		if !roundTrip() {
			t.Fatalf("round trip %d failed", i)
		}
	}
	runtime.ReadMemStats(&after)
	per := float64(after.Mallocs-before.Mallocs) / n
	if per > 0.5 {
		t.Fatalf("%.2f allocations per datagram carried both ways through both proxies, want none", per)
	}
	t.Logf("%.3f allocations per datagram (whole process)", per)
}
