package tlspsk

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Interop with wolfSSL (Debian's libwolfssl), the one library here that
// implements TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256 (RFC 8442): OpenSSL 3.0
// and GnuTLS 3.7 do not. The peer is a small C program written for these
// tests (testdata/wolfpsk/wolfpsk.c), built once per test binary with the
// system's C compiler. Both suites wolfSSL shares with the ChaCha20 ones
// run too, so the new suite is compared with ones OpenSSL already proves.

var wolfSuites = []string{"ECDHE-PSK-AES128-GCM-SHA256", "ECDHE-PSK-CHACHA20-POLY1305", "PSK-CHACHA20-POLY1305"}

var wolfPeer struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// TestMain removes the wolfSSL peer's build directory.
func TestMain(m *testing.M) {
	code := m.Run()
	if wolfPeer.dir != "" {
		os.RemoveAll(wolfPeer.dir)
	}
	os.Exit(code)
}

// needWolfPSK builds the wolfSSL peer; like needPeer it skips without a C
// compiler or libwolfssl-dev, and fails instead under MCBN_REQUIRE_INTEROP=1.
func needWolfPSK(t testing.TB) string {
	t.Helper()
	cc := needPeer(t, "cc")
	wolfPeer.once.Do(func() {
		dir, err := os.MkdirTemp("", "mcbn-wolfpsk-")
		if err != nil {
			wolfPeer.err = err
			return
		}
		wolfPeer.dir = dir
		out := filepath.Join(dir, "wolfpsk")
		b, err := exec.Command(cc, "-O2", "-Wall", "-o", out, filepath.Join("testdata", "wolfpsk", "wolfpsk.c"), "-lwolfssl").CombinedOutput()
		if err != nil {
			wolfPeer.err = fmt.Errorf("building the wolfSSL peer (needs libwolfssl-dev): %v\n%s", err, b)
			return
		}
		wolfPeer.path = out
	})
	if wolfPeer.err != nil {
		if os.Getenv("MCBN_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%v (MCBN_REQUIRE_INTEROP=1)", wolfPeer.err)
		}
		t.Skip(wolfPeer.err)
	}
	return wolfPeer.path
}

var wolfListeningRE = regexp.MustCompile(`listening on (\d+)\n`)

// startWolfServer runs the wolfSSL peer as a server of one connection and
// returns its address.
func startWolfServer(t *testing.T, proto, suite string) (string, *peer) {
	t.Helper()
	p := startPeer(t, needWolfPSK(t), "server", proto, "127.0.0.1", "0", suite, hex.EncodeToString(interopKey), DefaultIdentity, "their-hint")
	m := p.stderr.waitForMatch(t, wolfListeningRE, p)
	return net.JoinHostPort("127.0.0.1", m[1]), p
}

func wolfClientArgs(proto, addr, suite string) []string {
	host, port, _ := net.SplitHostPort(addr)
	return []string{"client", proto, host, port, suite, hex.EncodeToString(interopKey), DefaultIdentity, ""}
}

// wolfGroups: ECDHE_PSK runs with each group we offer by default. Our
// client meets wolfSSL's server on both; wolfSSL's client only on P-256:
// wolfSSL 5.5.4 offers X25519 but then refuses the server's X25519 key in
// a TLS 1.2 ECDHE_PSK handshake ("Bad ECC Peer Key"), from OpenSSL's
// s_server as from ours, so the wolfSSL peer offers P-256 alone.
func wolfGroups(id uint16, wolfClient bool) []CurveID {
	switch {
	case !suiteByID(id).ecdhe:
		return []CurveID{0}
	case wolfClient:
		return []CurveID{CurveP256}
	}
	return []CurveID{X25519, CurveP256}
}

func TestDTLSWolfSSLClientToOurServer(t *testing.T) {
	for _, name := range wolfSuites {
		id, _ := DTLSCipherSuiteByName(name)
		for _, g := range wolfGroups(id, true) {
			t.Run(name+"/"+g.String(), func(t *testing.T) {
				cfg := &DTLSConfig{Config: Config{Key: interopKey, IdentityHint: "mcbn-hint", CipherSuites: DTLSCipherSuites()}}
				if g != 0 {
					cfg.CurvePreferences = []CurveID{g}
				}
				l := listenDTLSTest(t, cfg)
				accepted := acceptDTLS(t, l)
				p := startPeer(t, needWolfPSK(t), wolfClientArgs("dtls", l.Addr().String(), name)...)
				c := waitAccepted(t, accepted)
				st := c.ConnectionState()
				if st.Version != VersionDTLS12 || st.CipherSuite != id || st.Group != g || st.PSKIdentity != DefaultIdentity || !st.ExtendedMasterSecret {
					t.Fatalf("state %+v", st)
				}
				p.stderr.waitFor(t, "hint mcbn-hint\n", p)
				p.stderr.waitFor(t, "cipher "+name, p)
				peerExchange(t, c, p)
			})
		}
	}
}

func TestDTLSOurClientToWolfSSLServer(t *testing.T) {
	for _, name := range wolfSuites {
		id, _ := DTLSCipherSuiteByName(name)
		for _, g := range wolfGroups(id, false) {
			t.Run(name+"/"+g.String(), func(t *testing.T) {
				addr, p := startWolfServer(t, "dtls", name)
				cfg := &DTLSConfig{Config: Config{Key: interopKey, CipherSuites: []uint16{id}}}
				if g != 0 {
					cfg.CurvePreferences = []CurveID{g}
				}
				c, err := DialDTLS("udp", addr, cfg)
				if err != nil {
					t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
				}
				defer c.Close()
				st := c.ConnectionState()
				if st.Version != VersionDTLS12 || st.CipherSuite != id || st.Group != g || !st.ExtendedMasterSecret || st.IdentityHint != "their-hint" {
					t.Fatalf("state %+v", st)
				}
				p.stderr.waitFor(t, "cipher "+name, p)
				peerExchange(t, c, p)
			})
		}
	}
}

// The default configurations: our server chooses the RFC 8442 suite from
// wolfSSL's offer of all its suites, and our client offers it (the wolfSSL
// server accepts nothing else here).
func TestWolfSSLDefaultsChooseECDHEPSKAESGCM(t *testing.T) {
	t.Run("dtls_our_server", func(t *testing.T) {
		l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: interopKey}})
		accepted := acceptDTLS(t, l)
		p := startPeer(t, needWolfPSK(t), wolfClientArgs("dtls", l.Addr().String(), "ALL")...)
		c := waitAccepted(t, accepted)
		if st := c.ConnectionState(); st.CipherSuite != TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256 {
			t.Fatalf("suite %s, want ECDHE-PSK-AES128-GCM-SHA256", DTLSCipherSuiteName(st.CipherSuite))
		}
		peerExchange(t, c, p)
	})
	t.Run("dtls_our_client", func(t *testing.T) {
		addr, p := startWolfServer(t, "dtls", "ECDHE-PSK-AES128-GCM-SHA256")
		c, err := DialDTLS("udp", addr, &DTLSConfig{Config: Config{Key: interopKey}})
		if err != nil {
			t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
		}
		defer c.Close()
		if st := c.ConnectionState(); st.CipherSuite != TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256 {
			t.Fatalf("suite %s, want ECDHE-PSK-AES128-GCM-SHA256", DTLSCipherSuiteName(st.CipherSuite))
		}
		peerExchange(t, c, p)
	})
	t.Run("tls12_our_server", func(t *testing.T) {
		bin := needWolfPSK(t)
		addr, accepted := listenOurs(t, &Config{Key: interopKey})
		c := clientExchange(t, bin, wolfClientArgs("tls", addr, "ALL"), accepted)
		if st := c.ConnectionState(); st.Version != VersionTLS12 || st.CipherSuite != TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256 {
			t.Fatalf("state %+v", st)
		}
	})
}

func TestTLS12WolfSSLClientToOurServer(t *testing.T) {
	for _, name := range wolfSuites {
		id, _ := CipherSuiteByName(name)
		for _, g := range wolfGroups(id, true) {
			t.Run(name+"/"+g.String(), func(t *testing.T) {
				bin := needWolfPSK(t)
				cfg := &Config{Key: interopKey}
				if g != 0 {
					cfg.CurvePreferences = []CurveID{g}
				}
				addr, accepted := listenOurs(t, cfg)
				c := clientExchange(t, bin, wolfClientArgs("tls", addr, name), accepted)
				st := c.ConnectionState()
				if st.Version != VersionTLS12 || st.CipherSuite != id || st.Group != g || st.PSKIdentity != DefaultIdentity || !st.ExtendedMasterSecret {
					t.Fatalf("state %+v", st)
				}
			})
		}
	}
}

func TestTLS12OurClientToWolfSSLServer(t *testing.T) {
	for _, name := range wolfSuites {
		id, _ := CipherSuiteByName(name)
		for _, g := range wolfGroups(id, false) {
			t.Run(name+"/"+g.String(), func(t *testing.T) {
				addr, p := startWolfServer(t, "tls", name)
				cfg := &Config{Key: interopKey, MaxVersion: VersionTLS12, CipherSuites: []uint16{id}}
				if g != 0 {
					cfg.CurvePreferences = []CurveID{g}
				}
				c, err := Dial("tcp", addr, cfg)
				if err != nil {
					t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
				}
				defer c.Close()
				st := c.ConnectionState()
				if st.Version != VersionTLS12 || st.CipherSuite != id || st.Group != g || !st.ExtendedMasterSecret || st.IdentityHint != "their-hint" {
					t.Fatalf("state %+v", st)
				}
				p.stderr.waitFor(t, "cipher "+name, p)
				peerExchange(t, c, p)
			})
		}
	}
}

// What wolfSSL's client hears from our server when the handshake fails on
// the RFC 8442 suite, and what our listener reports: decrypt_error for a
// wrong key, unknown_psk_identity for an identity we do not know. wolfSSL
// exits at once with the alert it received.
func TestDTLSWolfSSLClientAlerts(t *testing.T) {
	wrongKey := bytes.Clone(interopKey)
	wrongKey[0] ^= 1
	for _, tc := range []struct {
		name, key, identity, reason, alert string
		code                               int // the alert's number on the wire
	}{
		{"wrong_key", hex.EncodeToString(wrongKey), DefaultIdentity, "wrong_key", "decrypt_error", 51},
		{"unknown_identity", hex.EncodeToString(interopKey), "nobody", "unknown_identity", "unknown_psk_identity", 115},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails := newDTLSFailures()
			l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: interopKey}, HandshakeFailed: fails.hook})
			host, port, _ := net.SplitHostPort(l.Addr().String())
			p := startPeer(t, needWolfPSK(t), "client", "dtls", host, port, "ECDHE-PSK-AES128-GCM-SHA256", tc.key, tc.identity, "")
			perr := p.wait(t)
			stderr := string(p.stderr.Bytes())
			t.Logf("wolfSSL: %s", strings.TrimSpace(stderr))
			if perr == nil || !strings.Contains(stderr, fmt.Sprintf("fatal alert received: %d\n", tc.code)) {
				t.Fatalf("wolfSSL's client did not end on our %s alert (%d), exit %v: %s", tc.alert, tc.code, perr, stderr)
			}
			err, _ := fails.wait(t)
			var ae *AlertError
			if FailureReason(err) != tc.reason || !asAlert(err, &ae) || ae.Alert.String() != tc.alert || ae.Received {
				t.Fatalf("server failure %v (reason %q), want alert %s sent, reason %s", err, FailureReason(err), tc.alert, tc.reason)
			}
			if len(p.stdout.Bytes()) != 0 {
				t.Fatal("application data crossed a failed handshake")
			}
		})
	}
}
