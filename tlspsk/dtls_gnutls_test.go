package tlspsk

import (
	"encoding/hex"
	"strings"
	"testing"
)

// DTLS 1.2 interop with GnuTLS 3.7 (gnutls-cli --udp, gnutls-serv --udp
// --echo): the plain PSK suites, AES-GCM, ChaCha20 and the four CCM ones,
// both roles; ECDHE-PSK against gnutls-serv only (gnutls-cli 3.7.9 crashes
// in every ECDHE-PSK handshake, with gnutls-serv too).

const gnutlsDTLSPriority = "NORMAL:-VERS-ALL:+VERS-DTLS1.2:-KX-ALL"

var gnutlsDTLSSuites = []struct {
	suite uint16
	prio  string
}{
	{TLS_PSK_WITH_AES_128_GCM_SHA256, ":+PSK:-CIPHER-ALL:+AES-128-GCM"},
	{TLS_PSK_WITH_AES_256_GCM_SHA384, ":+PSK:-CIPHER-ALL:+AES-256-GCM"},
	{TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, ":+PSK:-CIPHER-ALL:+CHACHA20-POLY1305"},
	{TLS_PSK_WITH_AES_128_CCM, ":+PSK:-CIPHER-ALL:+AES-128-CCM"},
	{TLS_PSK_WITH_AES_256_CCM, ":+PSK:-CIPHER-ALL:+AES-256-CCM"},
	{TLS_PSK_WITH_AES_128_CCM_8, ":+PSK:-CIPHER-ALL:+AES-128-CCM-8"},
	{TLS_PSK_WITH_AES_256_CCM_8, ":+PSK:-CIPHER-ALL:+AES-256-CCM-8"},
	{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, ":+ECDHE-PSK:-CIPHER-ALL:+CHACHA20-POLY1305"},
}

// Our client against gnutls-serv --udp --echo, each suite.
func TestDTLSOurClientToGnutlsServer(t *testing.T) {
	bin := needPeer(t, "gnutls-serv")
	for _, s := range gnutlsDTLSSuites {
		t.Run(DTLSCipherSuiteName(s.suite), func(t *testing.T) {
			pskFile := gnutlsPSKFile(t, "gnu", interopKey)
			addr, p := startGnutlsServer(t, bin, func(port string) []string {
				return []string{"--udp", "--echo", "-p", port, "--pskpasswd", pskFile, "--pskhint", "gnu-hint",
					"--priority", gnutlsDTLSPriority + s.prio}
			})
			c, err := DialDTLS("udp", addr, &DTLSConfig{Config: Config{Identity: "gnu", Key: interopKey, CipherSuites: []uint16{s.suite}}})
			if err != nil {
				t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
			}
			defer c.Close()
			st := c.ConnectionState()
			if st.CipherSuite != s.suite || !st.ExtendedMasterSecret || st.IdentityHint != "gnu-hint" || (st.Group != 0) != dtlsSuiteByID(s.suite).ecdhe {
				t.Fatalf("state %+v", st)
			}
			echoExchange(t, c, 100)
		})
	}
}

// echoExchange sends n checked datagrams to an echo server and checks each
// comes back. gnutls-serv echoes at most 254 bytes of a record: the lines
// are shorter.
func echoExchange(t *testing.T, c *DTLSConn, n int) {
	t.Helper()
	buf := make([]byte, 64<<10)
	for i := 0; i < n; i++ {
		d := dtlsLineSized(i, 'e', 40+i%80) // a line: the echo servers work on text
		if _, err := c.Write(d); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		checkDTLSLine(t, buf[:m], i, 'e')
	}
}

// gnutls-cli --udp against our listener, each plain PSK suite.
func TestDTLSGnutlsClientToOurServer(t *testing.T) {
	bin := needPeer(t, "gnutls-cli")
	for _, s := range gnutlsDTLSSuites {
		if dtlsSuiteByID(s.suite).ecdhe {
			continue // gnutls-cli 3.7.9 crashes on ECDHE-PSK
		}
		t.Run(DTLSCipherSuiteName(s.suite), func(t *testing.T) {
			l := listenDTLSTest(t, &DTLSConfig{Config: Config{Identity: "gnu", Key: interopKey, CipherSuites: DTLSCipherSuites()}})
			accepted := acceptDTLS(t, l)
			host, port, _ := splitHostPort(l.Addr().String())
			p := startPeer(t, bin, "--udp", "-p", port, host, "--pskusername", "gnu", "--pskkey", hex.EncodeToString(interopKey),
				"--priority", gnutlsDTLSPriority+s.prio)
			c := waitAccepted(t, accepted)
			if st := c.ConnectionState(); st.CipherSuite != s.suite || st.PSKIdentity != "gnu" || !st.ExtendedMasterSecret {
				t.Fatalf("state %+v", st)
			}
			peerExchange(t, c, p)
		})
	}
}

// gnutls-cli hears our alerts too: a wrong key is decrypt_error, an
// unknown identity unknown_psk_identity.
func TestDTLSGnutlsClientAlerts(t *testing.T) {
	bin := needPeer(t, "gnutls-cli")
	wrongKey := append([]byte(nil), interopKey...)
	wrongKey[0] ^= 1
	for _, tc := range []struct {
		name, identity, reason, printed string
		key                             []byte
	}{
		{"wrong_key", "gnu", "wrong_key", "received alert [51]", wrongKey},
		{"unknown_identity", "nobody", "unknown_identity", "received alert [115]", interopKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails := newDTLSFailures()
			l := listenDTLSTest(t, &DTLSConfig{Config: Config{Identity: "gnu", Key: interopKey}, HandshakeFailed: fails.hook})
			host, port, _ := splitHostPort(l.Addr().String())
			p := startPeer(t, bin, "--udp", "-p", port, host, "--pskusername", tc.identity, "--pskkey", hex.EncodeToString(tc.key),
				"--priority", gnutlsDTLSPriority+":+PSK")
			p.wait(t)
			err, _ := fails.wait(t)
			if FailureReason(err) != tc.reason {
				t.Fatalf("server: %v (reason %q)", err, FailureReason(err))
			}
			if out := strings.ToLower(string(p.stderr.Bytes()) + string(p.stdout.Bytes())); !strings.Contains(out, tc.printed) {
				t.Fatalf("gnutls-cli did not report an alert:\n%s", tail([]byte(out)))
			}
		})
	}
}
