package tlspsk

import (
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// Cells of the TLS 1.2 interop matrix in docs/tlspsk.md that the other
// tls12_*_test.go files leave open: stunnel with the two suites they do not
// run, version negotiation of our default Config against GnuTLS and
// stunnel, our client's refusal of a HelloRequest and its check of the
// downgrade sentinel against OpenSSL, and the 2^24-record AES-GCM limit.

// stunnel with the suites TestTLS12StunnelClientToOurServer and
// TestTLS12OurClientToStunnelServer leave out, 1 MiB each way.
func TestTLS12MatrixStunnelOtherSuites(t *testing.T) {
	for _, suite := range []string{"PSK-AES256-GCM-SHA384", "PSK-CHACHA20-POLY1305"} {
		id, _ := CipherSuiteByName(suite)
		t.Run("stunnel_client/"+suite, func(t *testing.T) {
			c, p := stunnelClientToOurs(t, &Config{Identity: "stunnel-id", Key: interopKey},
				"ciphers = "+suite+"\nsslVersionMax = TLSv1.2\n")
			if st := c.ConnectionState(); st.Version != VersionTLS12 || st.CipherSuite != id || st.PSKIdentity != "stunnel-id" {
				t.Fatalf("state %+v\n%s", st, tail(p.stderr.Bytes()))
			}
		})
		t.Run("stunnel_server/"+suite, func(t *testing.T) {
			st := ourClientToStunnel(t, &Config{Identity: "stunnel-id", Key: interopKey, CipherSuites: []uint16{id}},
				"ciphers = "+suite+"\nsslVersionMax = TLSv1.2\n")
			if st.Version != VersionTLS12 || st.CipherSuite != id {
				t.Fatalf("state %+v", st)
			}
		})
	}
}

// Version negotiation of our default Config (no CipherSuites, no version
// bounds) against GnuTLS and stunnel: a TLS 1.2-only peer gets TLS 1.2 and
// ECDHE_PSK, a TLS 1.3 peer gets TLS 1.3. (OpenSSL: in
// TestTLS12OpenSSLVersionNegotiation.)
func TestTLS12MatrixDefaultConfigNegotiation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		prio   string
		groups []CurveID // nil: the default
		want   uint16
		suite  uint16
		group  CurveID
	}{
		{"gnutls-serv/tls1.2", gnutlsPriority12 + ":+ECDHE-PSK:+PSK", nil, VersionTLS12, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, X25519},
		{"gnutls-serv/tls1.2/P-256", gnutlsPriority12 + ":+ECDHE-PSK:+PSK", []CurveID{CurveP256}, VersionTLS12, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, CurveP256},
		{"gnutls-serv/tls1.3+1.2", "NORMAL:+ECDHE-PSK:+PSK", nil, VersionTLS13, TLS_AES_128_GCM_SHA256, X25519}, // GnuTLS 3.7 predates the hybrid
	} {
		t.Run("our_client/"+tc.name, func(t *testing.T) {
			addr, p := startGnutlsServ12(t, "gnu", interopKey, tc.prio)
			c, err := Dial("tcp", addr, &Config{Identity: "gnu", Key: interopKey, CurvePreferences: tc.groups})
			if err != nil {
				t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(interopTimeout))
			if st := c.ConnectionState(); st.Version != tc.want || st.CipherSuite != tc.suite || st.Group != tc.group {
				t.Fatalf("state %+v", st)
			}
			data := randomLines(interopSize)
			go c.Write(data)
			got := make([]byte, len(data))
			if n, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read after %d bytes: %v", n, err)
			}
			if sum(got) != sum(data) {
				t.Fatal("echo differs")
			}
		})
	}
	for _, tc := range []struct {
		name, opts string
		want       uint16
		suite      uint16
	}{
		{"tls1.2", "sslVersionMax = TLSv1.2\n", VersionTLS12, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256},
		{"tls1.3", "sslVersionMin = TLSv1.3\n", VersionTLS13, TLS_AES_128_GCM_SHA256},
	} {
		t.Run("stunnel_client/"+tc.name, func(t *testing.T) {
			c, p := stunnelClientToOurs(t, &Config{Identity: "stunnel-id", Key: interopKey}, tc.opts)
			if st := c.ConnectionState(); st.Version != tc.want || st.CipherSuite != tc.suite {
				t.Fatalf("state %+v\n%s", st, tail(p.stderr.Bytes()))
			}
		})
		t.Run("stunnel_server/"+tc.name, func(t *testing.T) {
			st := ourClientToStunnel(t, &Config{Identity: "stunnel-id", Key: interopKey}, tc.opts)
			if st.Version != tc.want || st.CipherSuite != tc.suite {
				t.Fatalf("state %+v", st)
			}
		})
	}
}

// Our client refuses renegotiation: openssl s_server's "r" command sends a
// HelloRequest, our client answers no_renegotiation (a warning), and
// s_server, which wanted the renegotiation, gives up with handshake_failure.
// Data before it passed both ways.
func TestTLS12MatrixOurClientRefusesHelloRequest(t *testing.T) {
	bin := needPeer(t, "openssl")
	addr, p := startOpenSSLServer(t, bin, "-nocert", "-naccept", "1", "-tls1_2",
		"-psk", hex.EncodeToString(interopKey))
	c, err := Dial("tcp", addr, &Config{Key: interopKey})
	if err != nil {
		t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(interopTimeout))
	if st := c.ConnectionState(); st.Version != VersionTLS12 {
		t.Fatalf("state %+v", st)
	}
	c.Write([]byte("to server\n"))
	p.stdout.waitFor(t, "to server", p)
	p.stdin.Write([]byte("to client\n"))
	readLine(t, c, "to client\n")
	p.stdin.Write([]byte("r\n"))
	_, err = c.Read(make([]byte, 10))
	var ae *AlertError
	if !errors.As(err, &ae) || !ae.Received || ae.Alert != alertHandshakeFailure {
		t.Fatalf("read: %v\nstdout: %s\nstderr: %s", err, tail(p.stdout.Bytes()), tail(p.stderr.Bytes()))
	}
	p.wait(t)
	out := string(p.stdout.Bytes()) + string(p.stderr.Bytes())
	t.Logf("ours: %v\npeer: %s", err, tail([]byte(out)))
	if !strings.Contains(out, "no renegotiation") {
		t.Fatal("s_server did not report our no_renegotiation alert")
	}
}

// Our default client checks OpenSSL's downgrade sentinel: a machine in the
// middle strips supported_versions (and pre_shared_key) from our hello,
// s_server (TLS 1.3-capable) answers with TLS 1.2 and the sentinel, and our
// client aborts with illegal_parameter.
func TestTLS12MatrixOurClientSeesOpenSSLSentinel(t *testing.T) {
	bin := needPeer(t, "openssl")
	addr, p := startOpenSSLServer(t, bin, "-nocert", "-naccept", "1", "-psk", hex.EncodeToString(interopKey))
	front := downgrader(t, addr)
	_, err := Dial("tcp", front, &Config{Key: interopKey})
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Received || ae.Alert != alertIllegalParameter || !strings.Contains(err.Error(), "downgrade") {
		t.Fatalf("dial: %v\nstdout: %s", err, tail(p.stdout.Bytes()))
	}
	time.Sleep(50 * time.Millisecond)
	out := string(p.stdout.Bytes()) + string(p.stderr.Bytes())
	t.Logf("ours: %v\npeer: %s", err, tail([]byte(out)))
	if !strings.Contains(out, "illegal parameter") {
		t.Fatal("s_server did not report our illegal_parameter alert")
	}
}

// A TLS 1.2 AES-GCM write key cannot be updated: after 2^24 records under
// it Write fails (reconnect) while reading goes on; ChaCha20-Poly1305 has
// no such limit. The sequence number is moved to the limit by hand.
func TestTLS12MatrixAESGCMRecordLimit(t *testing.T) {
	for _, suite := range []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256} {
		t.Run(CipherSuiteName(suite), func(t *testing.T) {
			c, s := pair(t, &Config{Key: testKey, CipherSuites: []uint16{suite}}, &Config{Key: testKey})
			if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			defer s.Close()
			defer c.Close()
			exchange(t, c, s, 1000)
			if suiteByID(suite).chacha {
				if c.out.hc.limit != ^uint64(0) {
					t.Fatalf("ChaCha20-Poly1305 limit %d", c.out.hc.limit)
				}
				return
			}
			if c.out.hc.limit != 1<<24 {
				t.Fatalf("AES-GCM limit %d", c.out.hc.limit)
			}
			c.out.hc.seq = c.out.hc.limit
			if n, err := c.Write([]byte("x")); n != 0 || !errors.Is(err, errTLS12Limit) {
				t.Fatalf("write at the limit: %d, %v", n, err)
			}
			if _, err := c.Write([]byte("x")); !errors.Is(err, errTLS12Limit) {
				t.Fatalf("second write: %v", err)
			}
			// The read side goes on.
			go s.Write([]byte("y"))
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil || b[0] != 'y' {
				t.Fatalf("read after the limit: %q, %v", b, err)
			}
		})
	}
}
