package tlspsk

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
)

// DTLS 1.2 interop with pion/dtls v3 (the library the proxy used before):
// each suite both of us implement, both roles, checked datagrams both
// ways; fragmentation both ways at a small MTU; connection IDs.

var pionDTLSSuites = []uint16{
	TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
	TLS_PSK_WITH_AES_128_CCM, TLS_PSK_WITH_AES_128_CCM_8, TLS_PSK_WITH_AES_256_CCM_8,
}

var pionQuiet = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled, ScopeLevels: map[string]logging.LogLevel{}, Writer: io.Discard}

// pionClient dials addr with pion; identity is what it sends.
func pionClient(t *testing.T, addr string, suite uint16, identity string, key []byte, extra ...dtls.ClientOption) *dtls.Conn {
	t.Helper()
	raddr, _ := net.ResolveUDPAddr("udp", addr)
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	opts := []dtls.ClientOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		dtls.WithPSKIdentityHint([]byte(identity)),
		dtls.WithCipherSuites(dtls.CipherSuiteID(suite)),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithLoggerFactory(pionQuiet),
	}
	c, err := dtls.ClientWithOptions(pc, raddr, append(opts, extra...)...)
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), dtlsTestTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("pion handshake: %v", err)
	}
	return c
}

// pionListener serves pion DTLS on loopback with key for any identity.
func pionListener(t *testing.T, suite uint16, hint string, key []byte, extra ...dtls.ServerOption) (net.Listener, <-chan *dtls.Conn) {
	t.Helper()
	opts := []dtls.ServerOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		dtls.WithCipherSuites(dtls.CipherSuiteID(suite)),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithLoggerFactory(pionQuiet),
	}
	if hint != "" {
		opts = append(opts, dtls.WithPSKIdentityHint([]byte(hint)))
	}
	ln, err := dtls.ListenWithOptions("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan *dtls.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		dc := c.(*dtls.Conn)
		t.Cleanup(func() { dc.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), dtlsTestTimeout)
		defer cancel()
		if err := dc.HandshakeContext(ctx); err != nil {
			close(ch)
			return
		}
		ch <- dc
	}()
	return ln, ch
}

func TestDTLSPionClientToOurServer(t *testing.T) {
	for _, id := range pionDTLSSuites {
		t.Run(DTLSCipherSuiteName(id), func(t *testing.T) {
			l := listenDTLSTest(t, &DTLSConfig{Config: Config{Identity: "pion-client", Key: interopKey, CipherSuites: DTLSCipherSuites()}})
			accepted := acceptDTLS(t, l)
			pc := pionClient(t, l.Addr().String(), id, "pion-client", interopKey)
			c := waitAccepted(t, accepted)
			if st := c.ConnectionState(); st.CipherSuite != id || st.PSKIdentity != "pion-client" || !st.ExtendedMasterSecret {
				t.Fatalf("state %+v", st)
			}
			pingPong(t, pc, c, 100, 1200)
		})
	}
}

func TestDTLSOurClientToPionServer(t *testing.T) {
	for _, id := range pionDTLSSuites {
		t.Run(DTLSCipherSuiteName(id), func(t *testing.T) {
			ln, accepted := pionListener(t, id, "pion-hint", interopKey)
			c, err := DialDTLS("udp", ln.Addr().String(), &DTLSConfig{Config: Config{Identity: "ours", Key: interopKey, CipherSuites: []uint16{id}}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pc, ok := <-accepted
			if !ok {
				t.Fatal("pion handshake failed")
			}
			if st := c.ConnectionState(); st.CipherSuite != id || st.IdentityHint != "pion-hint" || !st.ExtendedMasterSecret {
				t.Fatalf("state %+v", st)
			}
			if st, _ := pc.ConnectionState(); string(st.IdentityHint) != "ours" {
				t.Fatalf("pion saw identity %q", st.IdentityHint)
			}
			pingPong(t, c, pc, 100, 1200)
		})
	}
}

// Fragmentation with pion both ways: a 300-byte identity and hint at MTU
// 256 on both sides, so each side's key exchange message spans records.
func TestDTLSPionFragmentation(t *testing.T) {
	identity, hint := strings.Repeat("i", 300), strings.Repeat("h", 300)
	suite := TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256
	t.Run("pion_client", func(t *testing.T) {
		l := listenDTLSTest(t, &DTLSConfig{Config: Config{IdentityHint: hint, GetKey: func(id string) ([]byte, error) {
			if id == identity {
				return interopKey, nil
			}
			return nil, nil
		}}, MTU: 256})
		accepted := acceptDTLS(t, l)
		pc := pionClient(t, l.Addr().String(), suite, identity, interopKey, dtls.WithMTU(256))
		c := waitAccepted(t, accepted)
		pingPong(t, pc, c, 10, 1200)
	})
	t.Run("pion_server", func(t *testing.T) {
		ln, accepted := pionListener(t, suite, hint, interopKey, dtls.WithMTU(256))
		c, err := DialDTLS("udp", ln.Addr().String(), &DTLSConfig{Config: Config{Identity: identity, Key: interopKey}, MTU: 256})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pc, ok := <-accepted
		if !ok {
			t.Fatal("pion handshake failed")
		}
		if c.ConnectionState().IdentityHint != hint {
			t.Fatal("hint lost")
		}
		pingPong(t, c, pc, 10, 1200)
	})
}

// Connection IDs (RFC 9146) with pion: pion's client sending the CID our
// server issues (and asking for none, as the proxy's client did), or also
// asking for one of its own; our client sending the CID pion's server
// issues.
func TestDTLSPionConnectionID(t *testing.T) {
	suite := TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256
	for _, tc := range []struct {
		name string
		gen  func() []byte
	}{
		{"pion_client_only_sends", dtls.OnlySendCIDGenerator()},
		{"pion_client_wants_cid", dtls.RandomCIDGenerator(4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := listenDTLSTest(t, &DTLSConfig{Config: Config{Identity: "pion-client", Key: interopKey}, ConnectionIDLength: 8})
			accepted := acceptDTLS(t, l)
			pc := pionClient(t, l.Addr().String(), suite, "pion-client", interopKey, dtls.WithConnectionIDGenerator(tc.gen))
			c := waitAccepted(t, accepted)
			if len(c.ConnectionID()) != 8 {
				t.Fatalf("CID %x", c.ConnectionID())
			}
			pingPong(t, pc, c, 50, 1200)
		})
	}
	t.Run("pion_server", func(t *testing.T) {
		ln, accepted := pionListener(t, suite, "", interopKey, dtls.WithConnectionIDGenerator(dtls.RandomCIDGenerator(8)))
		relay := newUDPRelay(t, ln.Addr(), func(bool, []byte) relayAction { return relayForward })
		c, err := DialDTLS("udp", relay.addr(), &DTLSConfig{Config: Config{Key: interopKey}, ConnectionIDLength: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pc, ok := <-accepted
		if !ok {
			t.Fatal("pion handshake failed")
		}
		pingPong(t, c, pc, 50, 1200)
		relay.mu.Lock()
		last := relay.seen[0][len(relay.seen[0])-1]
		relay.mu.Unlock()
		if last[0] != recordCID {
			t.Fatalf("our records to pion have type %d, want tls12_cid", last[0])
		}
	})
}
