package tlspsk

import (
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TLS 1.2 interop with OpenSSL 3.0: each suite both ways, 1 MiB each way.

var opensslSuites12 = []string{"PSK-AES128-GCM-SHA256", "PSK-AES256-GCM-SHA384", "PSK-CHACHA20-POLY1305", "ECDHE-PSK-CHACHA20-POLY1305"}

// openssl s_client -tls1_2 -cipher SUITE against our default server.
func TestTLS12OpenSSLClientToOurServer(t *testing.T) {
	bin := needPeer(t, "openssl")
	type tc struct {
		suite, groups, hint string
		group               CurveID
	}
	var cases []tc
	for _, s := range opensslSuites12 {
		id, _ := CipherSuiteByName(s)
		if suiteByID(id).ecdhe {
			cases = append(cases, tc{s, "", "", X25519}, tc{s, "P-256", "mcbn-hint", CurveP256})
		} else {
			cases = append(cases, tc{s, "", "", 0}, tc{s, "", "mcbn-hint", 0})
		}
	}
	for _, c := range cases {
		t.Run(c.suite+"/"+c.groups+"/"+c.hint, func(t *testing.T) {
			addr, accepted := listenOurs(t, &Config{Key: interopKey, IdentityHint: c.hint})
			args := []string{"s_client", "-connect", addr, "-tls1_2", "-cipher", c.suite, "-psk", hex.EncodeToString(interopKey),
				"-quiet", "-nocommands"}
			if c.groups != "" {
				args = append(args, "-groups", c.groups)
			}
			conn := clientExchange(t, bin, args, accepted)
			st := conn.ConnectionState()
			if st.Version != VersionTLS12 || CipherSuiteName(st.CipherSuite) != c.suite || st.Group != c.group ||
				st.PSKIdentity != DefaultIdentity || !st.ExtendedMasterSecret {
				t.Fatalf("state %+v", st)
			}
		})
	}
}

func startOpenSSLServer12(t *testing.T, extra ...string) (string, *peer) {
	bin := needPeer(t, "openssl")
	return startOpenSSLServer(t, bin, append([]string{"-nocert", "-naccept", "1", "-rev",
		"-psk", hex.EncodeToString(interopKey)}, extra...)...)
}

// Our client against openssl s_server -tls1_2 -nocert -psk, each suite.
func TestTLS12OurClientToOpenSSLServer(t *testing.T) {
	for _, name := range opensslSuites12 {
		id, _ := CipherSuiteByName(name)
		groups := []CurveID{0}
		if suiteByID(id).ecdhe {
			groups = []CurveID{X25519, CurveP256}
		}
		for _, g := range groups {
			t.Run(name+"/"+g.String(), func(t *testing.T) {
				addr, p := startOpenSSLServer12(t, "-tls1_2", "-cipher", name, "-psk_hint", "their-hint")
				cfg := &Config{Key: interopKey, MaxVersion: VersionTLS12, CipherSuites: []uint16{id}}
				if g != 0 {
					cfg.CurvePreferences = []CurveID{g}
				}
				c, err := Dial("tcp", addr, cfg)
				if err != nil {
					t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(interopTimeout))
				st := c.ConnectionState()
				if st.Version != VersionTLS12 || st.CipherSuite != id || st.Group != g || !st.ExtendedMasterSecret || st.IdentityHint != "their-hint" {
					t.Fatalf("state %+v", st)
				}
				revExchange(t, c)
			})
		}
	}
}

// Version negotiation with OpenSSL: a TLS 1.2-only peer gets 1.2 from our
// default configuration, a TLS 1.3 peer gets 1.3.
func TestTLS12OpenSSLVersionNegotiation(t *testing.T) {
	for _, tc := range []struct {
		flag  string
		want  uint16
		suite uint16
	}{
		{"-tls1_2", VersionTLS12, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256},
		{"", VersionTLS13, TLS_AES_128_GCM_SHA256}, // OpenSSL's default: 1.3 and 1.2
	} {
		var flags []string
		if tc.flag != "" {
			flags = []string{tc.flag}
		}
		t.Run("our_client/"+tc.flag, func(t *testing.T) {
			addr, p := startOpenSSLServer12(t, flags...)
			c, err := Dial("tcp", addr, &Config{Key: interopKey})
			if err != nil {
				t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(interopTimeout))
			if st := c.ConnectionState(); st.Version != tc.want || st.CipherSuite != tc.suite {
				t.Fatalf("state %+v", st)
			}
			revExchange(t, c)
		})
		t.Run("our_server/"+tc.flag, func(t *testing.T) {
			bin := needPeer(t, "openssl")
			addr, accepted := listenOurs(t, &Config{Key: interopKey})
			c := clientExchange(t, bin, append([]string{"s_client", "-connect", addr, "-psk", hex.EncodeToString(interopKey), "-quiet", "-nocommands"}, flags...), accepted)
			if st := c.ConnectionState(); st.Version != tc.want || st.CipherSuite != tc.suite {
				t.Fatalf("state %+v", st)
			}
		})
	}
}

// OpenSSL's client checks our server's downgrade sentinel: a machine in the
// middle strips supported_versions from s_client's hello, our 1.3-capable
// server answers with TLS 1.2, and s_client refuses.
func TestTLS12OpenSSLSeesDowngradeSentinel(t *testing.T) {
	bin := needPeer(t, "openssl")
	ours, accepted := listenOurs(t, &Config{Key: interopKey})
	front := downgrader(t, ours)
	p := startPeer(t, bin, "s_client", "-connect", front, "-psk", hex.EncodeToString(interopKey), "-quiet", "-nocommands")
	p.stdin.Write([]byte("must not arrive\n"))
	c := <-accepted
	_, rerr := c.Read(make([]byte, 10))
	perr := p.wait(t)
	out := string(p.stderr.Bytes())
	t.Logf("ours: %v\npeer: %s", rerr, tail([]byte(out)))
	if perr == nil || !strings.Contains(out, "inappropriate fallback") {
		t.Fatalf("s_client did not refuse the downgrade: %v", perr)
	}
	if FailureReason(rerr) != "protocol_error" {
		t.Fatalf("server: %v", rerr)
	}
}

// Exporter and key log against OpenSSL at TLS 1.2.
func TestTLS12OpenSSLExporterAndKeyLog(t *testing.T) {
	bin := needPeer(t, "openssl")
	var keylog syncBuf
	addr, accepted := listenOurs(t, &Config{Key: interopKey, KeyLogWriter: &keylog})
	theirs := filepath.Join(t.TempDir(), "keylog")
	p := startPeer(t, bin, "s_client", "-connect", addr, "-tls1_2", "-psk", hex.EncodeToString(interopKey),
		"-keymatexport", "EXPORTER-mcbn-test", "-keymatexportlen", "32", "-nocommands", "-keylogfile", theirs)
	p.stdin.Write([]byte("x\n"))
	c := <-accepted
	readLine(t, c, "x\n")
	ekm, err := c.ExportKeyingMaterial("EXPORTER-mcbn-test", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	p.stdout.waitFor(t, "Keying material: "+strings.ToUpper(hex.EncodeToString(ekm)), p)
	ref, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	ours := lines(keylog.Bytes())
	if len(ours) != 1 || !strings.HasPrefix(ours[0], "CLIENT_RANDOM ") || !strings.Contains(string(ref), ours[0]+"\n") {
		t.Fatalf("key log %d lines; OpenSSL's lacks ours", len(ours))
	}
}

// Renegotiation is refused: s_client's "R" gets a no_renegotiation warning
// and s_client gives up; data before it passed.
func TestTLS12OpenSSLRenegotiationRefused(t *testing.T) {
	bin := needPeer(t, "openssl")
	addr, accepted := listenOurs(t, &Config{Key: interopKey})
	p := startPeer(t, bin, "s_client", "-connect", addr, "-tls1_2", "-psk", hex.EncodeToString(interopKey))
	c := <-accepted
	p.stdin.Write([]byte("before\n"))
	readLine(t, c, "before\n")
	errc := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 10)); errc <- err }()
	p.stdin.Write([]byte("R\n"))
	p.stderr.waitFor(t, "no renegotiation", p)
	if err := p.wait(t); err == nil {
		t.Fatal("s_client exited 0")
	}
	if st := c.ConnectionState(); st.Version != VersionTLS12 {
		t.Fatalf("state %+v", st)
	}
}

// downgrader is a machine in the middle in front of target: it strips
// supported_versions (and pre_shared_key) from the first ClientHello, so
// the server sees a TLS 1.2 client, and relays the rest untouched. It
// returns the address to connect to.
func downgrader(t *testing.T, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		a, err := l.Accept()
		if err != nil {
			return
		}
		defer a.Close()
		b, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer b.Close()
		hdr := make([]byte, recordHeaderLen)
		if _, err := io.ReadFull(a, hdr); err != nil {
			return
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		io.ReadFull(a, body)
		b.Write(stripVersions(t, append(hdr, body...)))
		go io.Copy(b, a)
		io.Copy(a, b)
	}()
	return l.Addr().String()
}
