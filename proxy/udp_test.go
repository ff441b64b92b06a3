package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
)

// pionQuiet keeps pion, a test peer here, from writing to stderr.
var pionQuiet = &logging.DefaultLoggerFactory{
	DefaultLogLevel: logging.LogLevelDisabled,
	ScopeLevels:     map[string]logging.LogLevel{},
	Writer:          io.Discard,
}

// udpPair starts a DTLS server proxy in front of backend and a client
// proxy in front of it.
func udpPair(t *testing.T, key []byte, backend string, mut func(c, s *Route)) (client, server *testProxy) {
	t.Helper()
	kf := writeSecret(t, "psk.hex", hexKey(key))
	sr := testRoute("dns", "dtls://127.0.0.1:0", "udp://"+backend)
	sr.PSK.File = kf
	cr := testRoute("dns", "udp://127.0.0.1:0", "dtls://placeholder:1")
	cr.PSK.File = kf
	if mut != nil {
		mut(&cr, &sr)
	}
	server = startProxy(t, ModeServer, true, nil, sr)
	cr.Connect = "dtls://" + server.url("dns")
	client = startProxy(t, ModeClient, true, nil, cr)
	return client, server
}

// TestUDPDatagramsThroughBothProxies sends 10,000 datagrams of 1 to 1,200
// bytes from 4 local peers (so 4 DTLS sessions) through both proxies to an
// echo backend and counts what comes back intact.
//
// Loss bound: on loopback nothing is lost in the network, but UDP is
// allowed to drop when a socket buffer fills, so each peer keeps at most
// 50 datagrams in flight and the test accepts up to 1% loss. Corruption
// (a datagram that comes back different) is never accepted.
func TestUDPDatagramsThroughBothProxies(t *testing.T) {
	const peers, perPeer, window, maxSize = 4, 2500, 50, 1200
	before := runtime.NumGoroutine()
	client, server := udpPair(t, randomKey(t), udpEcho(t).String(), nil)
	var mu sync.Mutex
	var lost, corrupt, sent int
	var wg sync.WaitGroup
	for p := 0; p < peers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("udp", client.url("dns"))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.(*net.UDPConn).SetReadBuffer(1 << 20)
			pending := map[uint64][]byte{}
			buf := make([]byte, 2048)
			var myLost, myCorrupt, mySent int
			for seq := uint64(0); seq < perPeer; {
				for j := 0; j < window && seq < perPeer; j++ {
					size := 8 + int(seq*7919%uint64(maxSize-8))
					if seq%97 == 0 {
						size = maxSize
					}
					d := make([]byte, size)
					rand.Read(d[8:])
					binary.BigEndian.PutUint64(d, seq)
					pending[seq] = d
					c.Write(d)
					mySent++
					seq++
				}
				deadline := time.Now().Add(3 * time.Second)
				for len(pending) > 0 {
					c.SetReadDeadline(deadline)
					n, err := c.Read(buf)
					if err != nil {
						break // what is still pending is lost
					}
					if n < 8 {
						myCorrupt++
						continue
					}
					s := binary.BigEndian.Uint64(buf)
					want, ok := pending[s]
					if !ok || !bytes.Equal(want, buf[:n]) {
						myCorrupt++
						continue
					}
					delete(pending, s)
				}
				myLost += len(pending)
				clear(pending)
			}
			mu.Lock()
			lost, corrupt, sent = lost+myLost, corrupt+myCorrupt, sent+mySent
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("UDP: %d datagrams sent through both proxies, %d lost (%.2f%%), %d corrupted", sent, lost, 100*float64(lost)/float64(sent), corrupt)
	if sent != peers*perPeer {
		t.Fatalf("sent %d, want %d", sent, peers*perPeer)
	}
	if corrupt != 0 {
		t.Fatalf("%d datagrams came back altered", corrupt)
	}
	if lost > sent/100 {
		t.Fatalf("lost %d of %d datagrams, more than 1%%", lost, sent)
	}
	if n := metricValue(server.met.sessionsTotal.WithLabelValues("dns")); n != peers {
		t.Fatalf("server udp_sessions_total = %v, want %d (one per local peer)", n, peers)
	}
	// The counter moves after the write returns, which can be after the
	// echo is back: wait for it (bounded).
	waitFor(t, 5*time.Second, "the client's forward counter to cover every echoed datagram", func() bool {
		return int(metricValue(client.met.datagrams.WithLabelValues("dns", "forward"))) >= sent-lost
	})
	client.Close()
	server.Close()
	waitFor(t, 10*time.Second, "goroutines to settle after shutdown", func() bool {
		return runtime.NumGoroutine() <= before+3 // the echo backend's
	})
}

// udpExchange sends msg from a fresh local socket and waits for an answer.
func udpExchange(addr string, msg []byte, wait time.Duration) ([]byte, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		c.Write(msg)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return buf[:n], nil
		}
	}
	return nil, errors.New("no answer")
}

// TestUDPWrongKey: the DTLS handshake with a wrong key ends after the
// bounded timeout with a clear reason on both sides, not endless
// retransmits, and nothing reaches the backend.
func TestUDPWrongKey(t *testing.T) {
	key, other := randomKey(t), randomKey(t)
	client, server := udpPair(t, key, udpEcho(t).String(), func(c, s *Route) {
		c.PSK = PSKConfig{Hex: hexKey(other)}
		c.Timeouts.Handshake = Duration(time.Second)
		s.Timeouts.Handshake = Duration(time.Second)
	})
	start := time.Now()
	if got, err := udpExchange(client.url("dns"), []byte("ping"), 1500*time.Millisecond); err == nil {
		t.Fatalf("answer %q through a tunnel with the wrong key", got)
	}
	waitFor(t, 4*time.Second, "client wrong_key log", func() bool { return strings.Contains(client.logs.String(), "reason=wrong_key") })
	waitFor(t, 4*time.Second, "server wrong_key metric", func() bool {
		return metricValue(server.met.handshakeFailures.WithLabelValues("dns", "wrong_key")) >= 1
	})
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	if !strings.Contains(client.logs.String(), "check that both sides use the same key") {
		t.Fatalf("client log does not say what to check")
	}
	assertNoSecret(t, client.logs.String()+server.logs.String(), key, other)
}

// TestUDPUnknownIdentity: the server names the identity it does not know.
func TestUDPUnknownIdentity(t *testing.T) {
	client, server := udpPair(t, randomKey(t), udpEcho(t).String(), func(c, s *Route) { c.Identity = "mallory" })
	udpExchange(client.url("dns"), []byte("ping"), time.Second)
	waitFor(t, 4*time.Second, "server unknown_identity metric", func() bool {
		return metricValue(server.met.handshakeFailures.WithLabelValues("dns", "unknown_identity")) >= 1
	})
	if !strings.Contains(server.logs.String(), `mallory`) {
		t.Fatalf("server log does not name the identity")
	}
	waitFor(t, 4*time.Second, "client log", func() bool { return strings.Contains(client.logs.String(), "DTLS handshake failed") })
}

// TestUDPGarbageAndLimitsAndIdle: junk datagrams on the DTLS port do not
// disturb a session; max_sessions holds; idle sessions expire.
func TestUDPGarbageAndLimitsAndIdle(t *testing.T) {
	client, server := udpPair(t, randomKey(t), udpEcho(t).String(), func(c, s *Route) {
		c.Limits.MaxSessions = 1
		idle := Duration(700 * time.Millisecond)
		c.Timeouts.Idle, s.Timeouts.Idle = &idle, &idle
	})
	c, err := net.Dial("udp", client.url("dns"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(msg string) error {
		buf := make([]byte, 100)
		for i := 0; i < 10; i++ {
			c.Write([]byte(msg))
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if n, err := c.Read(buf); err == nil {
				if string(buf[:n]) != msg {
					return fmt.Errorf("got %q, want %q", buf[:n], msg)
				}
				return nil
			}
		}
		return errors.New("no answer")
	}
	if err := ask("one"); err != nil {
		t.Fatal(err)
	}
	g, err := net.Dial("udp", server.url("dns"))
	if err != nil {
		t.Fatal(err)
	}
	for _, junk := range [][]byte{[]byte("junk"), bytes.Repeat([]byte{0x16, 0xfe, 0xfd}, 400), {0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5}} {
		g.Write(junk)
	}
	g.Close()
	if err := ask("two"); err != nil {
		t.Fatalf("session broke after garbage on the listener: %v", err)
	}
	// A second local peer is over max_sessions=1.
	if _, err := udpExchange(client.url("dns"), []byte("other"), 600*time.Millisecond); err == nil {
		t.Fatal("a second session opened over max_sessions=1")
	}
	if n := metricValue(client.met.dropped.WithLabelValues("dns", "max_sessions")); n < 1 {
		t.Fatalf("dropped{max_sessions} = %v", n)
	}
	waitFor(t, 4*time.Second, "idle sessions to expire", func() bool {
		return metricValue(client.met.sessionsOpen.WithLabelValues("dns")) == 0 &&
			metricValue(server.met.sessionsOpen.WithLabelValues("dns")) == 0
	})
	if err := ask("three"); err != nil {
		t.Fatalf("no new session after the idle one expired: %v", err)
	}
}

// rebindingConn is a PacketConn whose local socket can be swapped, as a
// NAT rebinding would change the client's source port.
type rebindingConn struct {
	mu   sync.Mutex
	cur  *net.UDPConn
	peer *net.UDPAddr
}

func (r *rebindingConn) conn() *net.UDPConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

func (r *rebindingConn) rebind() error {
	nc, err := net.DialUDP("udp", nil, r.peer)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.cur
	r.cur = nc
	r.mu.Unlock()
	old.Close() // wakes a reader blocked on the old socket
	return nil
}

func (r *rebindingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c := r.conn()
		n, err := c.Read(b)
		if err != nil && c != r.conn() {
			continue // the socket was swapped: read from the new one
		}
		return n, r.peer, err
	}
}
func (r *rebindingConn) WriteTo(b []byte, _ net.Addr) (int, error) { return r.conn().Write(b) }
func (r *rebindingConn) Close() error                              { return r.conn().Close() }
func (r *rebindingConn) LocalAddr() net.Addr                       { return r.conn().LocalAddr() }
func (r *rebindingConn) SetDeadline(t time.Time) error             { return nil }
func (r *rebindingConn) SetReadDeadline(t time.Time) error         { return nil }
func (r *rebindingConn) SetWriteDeadline(t time.Time) error        { return nil }

// TestUDPConnectionIDSurvivesRebinding: a DTLS client whose source port
// changes mid-session keeps its session with the server proxy, because the
// server proxy issues RFC 9146 connection IDs and routes by them.
func TestUDPConnectionIDSurvivesRebinding(t *testing.T) {
	for _, cid := range []bool{true, false} {
		t.Run(fmt.Sprintf("connection_id=%v", cid), func(t *testing.T) { testRebinding(t, cid) })
	}
}

// testRebinding: with connection IDs the session survives a new source
// port; without them it cannot (the control that shows the test can fail).
func testRebinding(t *testing.T, cid bool) {
	key := randomKey(t)
	_, server := udpPair(t, key, udpEcho(t).String(), func(c, s *Route) { s.DTLS.ConnectionID = &cid })
	raddr, _ := net.ResolveUDPAddr("udp", server.url("dns"))
	first, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rebindingConn{cur: first, peer: raddr}
	dc, err := dtls.ClientWithOptions(rc, raddr,
		dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		dtls.WithPSKIdentityHint([]byte(DefaultIdentity)),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_GCM_SHA256),
		dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()),
		dtls.WithLoggerFactory(pionQuiet))
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dc.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	wait := time.Second // long enough on loopback for a session that works
	if cid {
		wait = 3 * time.Second
	}
	echo := func(msg string) error {
		dc.SetDeadline(time.Now().Add(wait))
		if _, err := dc.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, 100)
		n, err := dc.Read(buf)
		if err == nil && string(buf[:n]) != msg {
			err = fmt.Errorf("got %q", buf[:n])
		}
		return err
	}
	if err := echo("before"); err != nil {
		t.Fatal(err)
	}
	oldPort := rc.LocalAddr().String()
	if err := rc.rebind(); err != nil {
		t.Fatal(err)
	}
	err = echo("after rebinding")
	if !cid {
		if err == nil {
			t.Fatal("without connection IDs a rebound client kept its session: the test proves nothing")
		}
		return
	}
	if err != nil {
		t.Fatalf("session lost when the source port changed from %s to %s: %v", oldPort, rc.LocalAddr(), err)
	}
	if n := metricValue(server.met.sessionsTotal.WithLabelValues("dns")); n != 1 {
		t.Fatalf("udp_sessions_total = %v, want 1 (the same session)", n)
	}
}

// TestUDPSuites: each DTLS PSK suite works between our proxies when both
// sides allow only that suite.
func TestUDPSuites(t *testing.T) {
	backend := udpEcho(t).String()
	for _, suite := range dtlsSuiteList() {
		t.Run(suite, func(t *testing.T) {
			client, server := udpPair(t, randomKey(t), backend, func(c, s *Route) {
				c.DTLS.CipherSuites = []string{suite}
				s.DTLS.CipherSuites = []string{suite}
			})
			if got, err := udpExchange(client.url("dns"), []byte(suite), 3*time.Second); err != nil || string(got) != suite {
				t.Fatalf("got %q, %v", got, err)
			}
			waitFor(t, 3*time.Second, "the session log", func() bool {
				return strings.Contains(server.logs.String(), "suite="+suite)
			})
		})
	}
}

// TestUDPCBCSuitesRefused: the CBC suites pion offered are a config error
// naming the field and the reason, not "unknown suite".
func TestUDPCBCSuitesRefused(t *testing.T) {
	for _, suite := range []string{"PSK-AES128-CBC-SHA256", "ecdhe-psk-aes128-cbc-sha256", "TLS_PSK_WITH_AES_128_CBC_SHA256"} {
		yaml := "routes:\n  - listen: dtls://:1\n    connect: udp://127.0.0.1:2\n    psk: {hex: 00112233445566778899aabbccddeeff}\n    dtls: {cipher_suites: [" + suite + "]}\n"
		_, err := load(t, ModeServer, yaml, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "dtls.cipher_suites: DTLS suite \""+suite+"\" is no longer supported") ||
			!strings.Contains(err.Error(), "Lucky13") {
			t.Fatalf("%s: got %v", suite, err)
		}
	}
}
