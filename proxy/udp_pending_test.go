package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// fakeClientHello is a DTLS handshake record that announces a ClientHello:
// enough for the listener to start a handshake for its source address,
// which a spoofing sender never continues.
var fakeClientHello = []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0}

// Handshakes that never complete do not use up max_sessions: with the
// limit at 2 and more stalled handshakes than that, a real client still
// gets a session at once (not after the stalled ones time out).
func TestUDPStalledHandshakesDoNotLockOut(t *testing.T) {
	client, server := udpPair(t, randomKey(t), udpEcho(t).String(), func(c, s *Route) {
		s.Limits.MaxSessions = 2
		hs := Duration(time.Minute) // stalled handshakes stay for the whole test
		s.Timeouts.Handshake = hs
	})
	for i := 0; i < 6; i++ {
		g, err := net.Dial("udp", server.url("dns"))
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		g.Write(fakeClientHello)
	}
	srv := server.routes[0].(*udpServerRoute)
	waitFor(t, 5*time.Second, "the stalled handshakes to be pending", func() bool { return srv.pending.len() >= 6 })
	got, err := udpExchange(client.url("dns"), []byte("real client"), 5*time.Second)
	if err != nil || string(got) != "real client" {
		t.Fatalf("a real client got %q, %v with 6 stalled handshakes and max_sessions=2", got, err)
	}
	if n := srv.active.Load(); n != 1 {
		t.Fatalf("%d established sessions, want 1", n)
	}
}

// When the pending handshakes reach their bound the oldest is dropped.
func TestPendingHandshakesDropOldest(t *testing.T) {
	p := pendingHandshakes{max: 2}
	a, b, c := new(dtls.Conn), new(dtls.Conn), new(dtls.Conn)
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
