package tlspsk

import (
	"bytes"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// DTLS 1.2 interop with OpenSSL 3.0 (s_client -dtls1_2 and s_server
// -dtls1_2 -nocert): every suite we offer, both roles, checked datagrams
// both ways; the alerts OpenSSL must see (and exit on) for an unknown
// identity, a wrong key and no shared suite; handshake fragmentation at a
// 256-byte MTU. s_client and s_server send what they read from stdin as
// records and print the records they receive; each datagram here is one
// line (the hex of a checked datagram) and the next one waits for it.

// opensslDTLSSuites are the DTLS suites OpenSSL and we share.
var opensslDTLSSuites = []string{"PSK-AES128-GCM-SHA256", "PSK-AES256-GCM-SHA384", "PSK-CHACHA20-POLY1305",
	"ECDHE-PSK-CHACHA20-POLY1305", "PSK-AES128-CCM", "PSK-AES256-CCM", "PSK-AES128-CCM8", "PSK-AES256-CCM8"}

const dtlsInteropLines = 60

// dtlsLine is line i of an exchange: the hex of a checked datagram.
func dtlsLine(i int, tag byte) []byte { return dtlsLineSized(i, tag, 200+i%300) }

func dtlsLineSized(i int, tag byte, size int) []byte {
	d := checkedDatagram(uint32(i)<<8|uint32(tag), size)
	return append([]byte(hex.EncodeToString(d)), '\n')
}

// checkDTLSLine checks a line received by our side.
func checkDTLSLine(t *testing.T, got []byte, i int, tag byte) {
	t.Helper()
	raw, err := hex.DecodeString(strings.TrimSuffix(string(got), "\n"))
	if err != nil {
		t.Fatalf("line %d: not hex: %q", i, got)
	}
	seq, err := verifyDatagram(raw)
	if err != nil || seq != uint32(i)<<8|uint32(tag) {
		t.Fatalf("line %d: %v (seq %x)", i, err, seq)
	}
}

// peerExchange runs the exchange between our conn and a peer process:
// our line i goes out and must show up in the peer's stdout, then the
// peer's line i (written to its stdin) must arrive at our conn. At the
// end the peer's stdout must end with exactly our lines.
func peerExchange(t *testing.T, c net.Conn, p *peer) {
	t.Helper()
	var sent []byte
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(interopTimeout))
	for i := 0; i < dtlsInteropLines; i++ {
		ours := dtlsLine(i, 'o')
		if _, err := c.Write(ours); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		sent = append(sent, ours...)
		p.stdout.waitFor(t, string(ours), p)
		if _, err := p.stdin.Write(dtlsLine(i, 'p')); err != nil {
			t.Fatalf("peer stdin: %v", err)
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read %d: %v\nstderr: %s", i, err, tail(p.stderr.Bytes()))
		}
		checkDTLSLine(t, buf[:n], i, 'p')
	}
	out := p.stdout.Bytes()
	if i := bytes.Index(out, sent[:64]); i < 0 || sum(out[i:]) != sum(sent) {
		t.Fatalf("the peer printed other data than we sent (%d bytes printed)", len(out))
	}
}

// dtlsFailures records the server's handshake failures.
type dtlsFailures struct {
	mu   sync.Mutex
	errs []error
	ids  []string
	ch   chan struct{}
}

func newDTLSFailures() *dtlsFailures { return &dtlsFailures{ch: make(chan struct{}, 16)} }

func (f *dtlsFailures) hook(_ net.Addr, identity string, err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.ids = append(f.ids, identity)
	f.mu.Unlock()
	f.ch <- struct{}{}
}

func (f *dtlsFailures) wait(t *testing.T) (error, string) {
	t.Helper()
	select {
	case <-f.ch:
	case <-time.After(interopTimeout):
		t.Fatal("no handshake failure reported")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs[len(f.errs)-1], f.ids[len(f.ids)-1]
}

// openssl s_client -dtls1_2 against our listener, each suite (ECDHE_PSK
// with each group).
func TestDTLSOpenSSLClientToOurServer(t *testing.T) {
	bin := needPeer(t, "openssl")
	type tc struct {
		suite, groups string
		group         CurveID
	}
	var cases []tc
	for _, s := range opensslDTLSSuites {
		if strings.HasPrefix(s, "ECDHE") {
			cases = append(cases, tc{s, "X25519", X25519}, tc{s, "P-256", CurveP256})
		} else {
			cases = append(cases, tc{s, "", 0})
		}
	}
	for _, k := range cases {
		t.Run(k.suite+"/"+k.groups, func(t *testing.T) {
			l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: interopKey, CipherSuites: DTLSCipherSuites()}})
			accepted := acceptDTLS(t, l)
			args := []string{"s_client", "-dtls1_2", "-connect", l.Addr().String(), "-psk", hex.EncodeToString(interopKey),
				"-cipher", k.suite, "-quiet", "-nocommands"}
			if k.groups != "" {
				args = append(args, "-groups", k.groups)
			}
			p := startPeer(t, bin, args...)
			c := waitAccepted(t, accepted)
			st := c.ConnectionState()
			if st.Version != VersionDTLS12 || DTLSCipherSuiteName(st.CipherSuite) != k.suite || st.Group != k.group ||
				st.PSKIdentity != DefaultIdentity || !st.ExtendedMasterSecret {
				t.Fatalf("state %+v", st)
			}
			peerExchange(t, c, p)
		})
	}
}

func startOpenSSLDTLSServer(t *testing.T, extra ...string) (string, *peer) {
	bin := needPeer(t, "openssl")
	return startOpenSSLServer(t, bin, append([]string{"-dtls1_2", "-nocert", "-naccept", "1",
		"-psk", hex.EncodeToString(interopKey)}, extra...)...)
}

// Our client against openssl s_server -dtls1_2 -nocert, each suite; the
// server sends an identity hint.
func TestDTLSOurClientToOpenSSLServer(t *testing.T) {
	for _, name := range opensslDTLSSuites {
		id, _ := DTLSCipherSuiteByName(name)
		groups := []CurveID{0}
		if dtlsSuiteByID(id).ecdhe {
			groups = []CurveID{X25519, CurveP256}
		}
		for _, g := range groups {
			t.Run(name+"/"+g.String(), func(t *testing.T) {
				addr, p := startOpenSSLDTLSServer(t, "-cipher", name, "-psk_hint", "their-hint")
				cfg := &DTLSConfig{Config: Config{Key: interopKey, CipherSuites: []uint16{id}}}
				if g != 0 {
					cfg.CurvePreferences = []CurveID{g}
				}
				c, err := DialDTLS("udp", addr, cfg)
				if err != nil {
					t.Fatalf("dial: %v\nstdout: %s", err, tail(p.stdout.Bytes()))
				}
				defer c.Close()
				st := c.ConnectionState()
				if st.Version != VersionDTLS12 || st.CipherSuite != id || st.Group != g || !st.ExtendedMasterSecret || st.IdentityHint != "their-hint" {
					t.Fatalf("state %+v", st)
				}
				peerExchange(t, c, p)
			})
		}
	}
}

// What openssl s_client must hear from our server, and exit on at once
// (the guard is interopTimeout; OpenSSL would otherwise retransmit for
// minutes): unknown_psk_identity for an identity we do not know,
// decrypt_error for a wrong key, handshake_failure without a shared suite.
// The listener reports each failure with the reason FailureReason gives.
func TestDTLSOpenSSLClientAlerts(t *testing.T) {
	bin := needPeer(t, "openssl")
	wrongKey := bytes.Clone(interopKey)
	wrongKey[0] ^= 1
	for _, tc := range []struct {
		name, reason, alert, printed string
		args                         []string
		suites                       []uint16
	}{
		{"unknown_identity", "unknown_identity", "unknown_psk_identity", "unknown psk identity",
			[]string{"-psk", hex.EncodeToString(interopKey), "-psk_identity", "nobody"}, nil},
		{"wrong_key", "wrong_key", "decrypt_error", "decrypt error",
			[]string{"-psk", hex.EncodeToString(wrongKey)}, nil},
		{"wrong_key_ecdhe", "wrong_key", "decrypt_error", "decrypt error",
			[]string{"-psk", hex.EncodeToString(wrongKey), "-cipher", "ECDHE-PSK-CHACHA20-POLY1305"}, nil},
		{"no_shared_suite", "no_shared_parameters", "handshake_failure", "handshake failure",
			[]string{"-psk", hex.EncodeToString(interopKey), "-cipher", "PSK-AES128-GCM-SHA256"}, []uint16{TLS_PSK_WITH_AES_128_CCM_8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails := newDTLSFailures()
			l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: interopKey, CipherSuites: tc.suites}, HandshakeFailed: fails.hook})
			p := startPeer(t, bin, append([]string{"s_client", "-dtls1_2", "-connect", l.Addr().String(), "-nocommands"}, tc.args...)...)
			p.wait(t)
			out := strings.ToLower(string(p.stdout.Bytes()) + string(p.stderr.Bytes()))
			if testing.Verbose() {
				for _, line := range strings.Split(out, "\n") {
					if strings.Contains(line, tc.printed) {
						t.Logf("openssl: %s", line)
					}
				}
			}
			if !strings.Contains(out, tc.printed) {
				t.Fatalf("openssl did not report %q:\n%s", tc.printed, tail([]byte(out)))
			}
			err, id := fails.wait(t)
			var ae *AlertError
			if FailureReason(err) != tc.reason || !asAlert(err, &ae) || ae.Alert.String() != tc.alert || ae.Received {
				t.Fatalf("server failure %v (reason %q), want alert %s sent, reason %s", err, FailureReason(err), tc.alert, tc.reason)
			}
			if tc.name == "unknown_identity" && id != "nobody" {
				t.Fatalf("identity %q reported", id)
			}
			if s := l.Stats(); s.Sessions != 0 || s.HandshakeFailures != 1 {
				t.Fatalf("stats after the failure: %+v", s)
			}
		})
	}
}

func asAlert(err error, ae **AlertError) bool {
	for err != nil {
		if a, ok := err.(*AlertError); ok {
			*ae = a
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// Our client with a wrong key against openssl s_server: OpenSSL drops our
// Finished silently (RFC 6347 4.1.2.7 allows it), so the handshake can
// only end at our HandshakeTimeout, with an error that says so.
func TestDTLSOurClientWrongKeyTimesOut(t *testing.T) {
	addr, _ := startOpenSSLDTLSServer(t)
	wrongKey := bytes.Clone(interopKey)
	wrongKey[0] ^= 1
	start := time.Now()
	_, err := DialDTLS("udp", addr, &DTLSConfig{Config: Config{Key: wrongKey, AllowPSKOnly: true},
		HandshakeTimeout: 2 * time.Second, RetransmitInterval: 200 * time.Millisecond})
	if err == nil {
		t.Fatal("handshake with a wrong key succeeded")
	}
	var ae *AlertError
	if asAlert(err, &ae) {
		// OpenSSL may also answer with an alert: then it must name the key.
		if FailureReason(err) != "wrong_key" {
			t.Fatalf("alert %v, reason %q", err, FailureReason(err))
		}
		return
	}
	if FailureReason(err) != "timeout" || !strings.Contains(err.Error(), "the server's Finished") {
		t.Fatalf("error %v (reason %q) after %v", err, FailureReason(err), time.Since(start))
	}
}

// Handshake fragmentation with OpenSSL. OpenSSL caps a hint and an
// identity at 128 bytes and its own MTU at no less than 256, where its PSK
// messages fit whole; so our side fragments, at our smallest MTU (128):
// a 128-byte hint makes our ServerKeyExchange span three records, a
// 128-byte identity our ClientKeyExchange, and OpenSSL reassembles them.
// (Our reassembly of fragments is proven against pion and ourselves.)
func TestDTLSOpenSSLFragmentation(t *testing.T) {
	bin := needPeer(t, "openssl")
	hint := strings.Repeat("h", 128)
	identity := strings.Repeat("i", 128)
	t.Run("openssl_client", func(t *testing.T) {
		l := listenDTLSTest(t, &DTLSConfig{Config: Config{IdentityHint: hint, GetKey: func(id string) ([]byte, error) {
			if id == identity {
				return interopKey, nil
			}
			return nil, nil
		}}, MTU: minDTLSMTU})
		accepted := acceptDTLS(t, l)
		p := startPeer(t, bin, "s_client", "-dtls1_2", "-connect", l.Addr().String(), "-psk", hex.EncodeToString(interopKey),
			"-psk_identity", identity, "-cipher", "ECDHE-PSK-CHACHA20-POLY1305", "-quiet", "-nocommands")
		c := waitAccepted(t, accepted)
		if st := c.ConnectionState(); st.PSKIdentity != identity {
			t.Fatalf("state %+v", st)
		}
		peerExchange(t, c, p)
	})
	t.Run("openssl_server", func(t *testing.T) {
		addr, p := startOpenSSLDTLSServer(t, "-psk_hint", hint, "-cipher", "ECDHE-PSK-CHACHA20-POLY1305")
		c, err := DialDTLS("udp", addr, &DTLSConfig{Config: Config{Identity: identity, Key: interopKey}, MTU: minDTLSMTU})
		if err != nil {
			t.Fatalf("dial: %v\nstdout: %s", err, tail(p.stdout.Bytes()))
		}
		defer c.Close()
		if st := c.ConnectionState(); st.IdentityHint != hint {
			t.Fatalf("hint %q", st.IdentityHint)
		}
		peerExchange(t, c, p)
	})
}
