package tlspsk

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

var suites12 = []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_AES_256_GCM_SHA384, TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256,
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256}

// Our client and server over TLS 1.2, every suite (and both groups for
// ECDHE_PSK), through the TLS 1.2-only and the combined ClientHello.
func TestTLS12SelfMatrix(t *testing.T) {
	for _, suite := range suites12 {
		groups := []CurveID{0}
		if suiteByID(suite).ecdhe {
			groups = []CurveID{X25519, CurveP256}
		}
		for _, g := range groups {
			for _, combined := range []bool{false, true} {
				name := CipherSuiteName(suite) + "/" + g.String()
				if combined {
					name += "/combined_hello"
				}
				t.Run(name, func(t *testing.T) {
					cc := &Config{Identity: "id", Key: testKey, CipherSuites: []uint16{suite}, MaxVersion: VersionTLS12}
					sc := &Config{Identity: "id", Key: testKey, IdentityHint: "hint", MaxVersion: VersionTLS12}
					if combined { // offers 1.3 and 1.2; the server only speaks 1.2
						cc.MaxVersion = 0
						cc.CipherSuites = []uint16{TLS_AES_128_GCM_SHA256, suite}
					}
					if g != 0 {
						cc.CurvePreferences = []CurveID{g}
					}
					c, s := pair(t, cc, sc)
					if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
						t.Fatalf("client %v, server %v", cerr, serr)
					}
					for _, st := range []ConnectionState{c.ConnectionState(), s.ConnectionState()} {
						if st.Version != VersionTLS12 || st.CipherSuite != suite || st.Group != g || st.PSKIdentity != "id" ||
							!st.ExtendedMasterSecret || !st.HandshakeComplete {
							t.Fatalf("state %+v", st)
						}
					}
					if h := c.ConnectionState().IdentityHint; h != "hint" {
						t.Fatalf("hint %q", h)
					}
					exchange(t, c, s, 1<<20)
				})
			}
		}
	}
}

// Plain PSK without a hint: no ServerKeyExchange at all.
func TestTLS12PlainNoHint(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey, CipherSuites: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}}, &Config{Key: testKey})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	if st := c.ConnectionState(); st.Version != VersionTLS12 || st.Group != 0 || st.IdentityHint != "" {
		t.Fatalf("%+v", st)
	}
	exchange(t, c, s, 1000)
}

func TestTLS12VersionNegotiation(t *testing.T) {
	def12 := DefaultCipherSuites12()[0] // ECDHE_PSK, AES-128-GCM or ChaCha20 by CPU
	for _, tc := range []struct {
		name   string
		cc, sc *Config
		want   uint16
		suite  uint16
	}{
		{"both_default", &Config{Key: testKey}, &Config{Key: testKey}, VersionTLS13, TLS_AES_128_GCM_SHA256},
		{"client_1.2_only", &Config{Key: testKey, MaxVersion: VersionTLS12}, &Config{Key: testKey}, VersionTLS12, def12},
		{"server_1.2_only", &Config{Key: testKey}, &Config{Key: testKey, MaxVersion: VersionTLS12}, VersionTLS12, def12},
		{"client_1.2_suites_only", &Config{Key: testKey, CipherSuites: []uint16{TLS_PSK_WITH_CHACHA20_POLY1305_SHA256}}, &Config{Key: testKey}, VersionTLS12, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256},
		{"client_allows_plain", &Config{Key: testKey, MaxVersion: VersionTLS12, AllowPSKOnly: true}, &Config{Key: testKey}, VersionTLS12, def12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t, tc.cc, tc.sc)
			if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
				t.Fatal(cerr, serr)
			}
			if st := c.ConnectionState(); st.Version != tc.want || st.CipherSuite != tc.suite {
				t.Fatalf("%+v", st)
			}
			exchange(t, c, s, 1000)
		})
	}
}

// Failures at TLS 1.2 on both sides.
func TestTLS12FailuresSelf(t *testing.T) {
	plain := []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}
	for _, tc := range []struct {
		name           string
		cc, sc         *Config
		client, server string
	}{
		{"wrong_key", &Config{Key: []byte("other key"), MaxVersion: VersionTLS12}, &Config{Key: testKey}, "wrong_key", "wrong_key"},
		{"wrong_key_plain", &Config{Key: []byte("other key"), CipherSuites: plain}, &Config{Key: testKey}, "wrong_key", "wrong_key"},
		{"unknown_identity", &Config{Key: testKey, Identity: "eve", MaxVersion: VersionTLS12}, &Config{Key: testKey}, "unknown_identity", "unknown_identity"},
		{"suite_mismatch", &Config{Key: testKey, CipherSuites: []uint16{TLS_PSK_WITH_CHACHA20_POLY1305_SHA256}}, &Config{Key: testKey, CipherSuites: plain}, "no_shared_parameters", "no_shared_parameters"},
		// A default client offers no plain PSK suite.
		{"default_client_no_plain", &Config{Key: testKey, MaxVersion: VersionTLS12}, &Config{Key: testKey, CipherSuites: plain}, "no_shared_parameters", "no_shared_parameters"},
		{"server_requires_fs", &Config{Key: testKey, CipherSuites: plain}, &Config{Key: testKey, RequireForwardSecrecy: true}, "no_shared_parameters", "no_shared_parameters"},
		{"server_1.3_only", &Config{Key: testKey, MaxVersion: VersionTLS12}, &Config{Key: testKey, MinVersion: VersionTLS13}, "no_shared_parameters", "no_shared_parameters"},
		{"client_1.3_only", &Config{Key: testKey, MinVersion: VersionTLS13}, &Config{Key: testKey, MaxVersion: VersionTLS12}, "no_shared_parameters", "no_shared_parameters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t, tc.cc, tc.sc)
			cerr, serr := handshakeBoth(c, s)
			if FailureReason(cerr) != tc.client || FailureReason(serr) != tc.server {
				t.Fatalf("client %v (%s), server %v (%s)", cerr, FailureReason(cerr), serr, FailureReason(serr))
			}
			if strings.Contains(cerr.Error()+serr.Error(), string(testKey)) {
				t.Fatal("key in error")
			}
			if _, err := c.Write([]byte("x")); err == nil {
				t.Fatal("write after failed handshake")
			}
		})
	}
}

func TestTLS12ConfigConflict(t *testing.T) {
	c, s := pair(t, &Config{Key: testKey, AllowPSKOnly: true, RequireForwardSecrecy: true}, &Config{Key: testKey})
	if cerr, _ := handshakeBoth(c, s); FailureReason(cerr) != "local_error" {
		t.Fatal(cerr)
	}
}

// stripVersions rewrites a ClientHello record without supported_versions,
// as an attacker downgrading the client to TLS 1.2 would.
func stripVersions(t *testing.T, rec []byte) []byte {
	ch, err := parseClientHello(rec[recordHeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	w := writer{}
	w.u8(typeClientHello)
	m := w.open24()
	w.u16(ch.legacyVersion)
	w.raw(ch.random)
	v := w.open8()
	w.raw(ch.sessionID)
	w.close8(v)
	v = w.open16()
	for _, s := range ch.suites {
		w.u16(s)
	}
	w.close16(v)
	v = w.open8()
	w.raw(ch.compression)
	w.close8(v)
	e := w.open16()
	for _, x := range ch.extensions {
		if x.typ == extSupportedVersions || x.typ == extPreSharedKey {
			continue
		}
		w.u16(x.typ)
		v := w.open16()
		w.raw(x.data)
		w.close16(v)
	}
	w.close16(e)
	w.close24(m)
	return append([]byte{recordHandshake, 3, 1, byte(len(w.b) >> 8), byte(len(w.b))}, w.b...)
}

// A machine in the middle strips supported_versions from our default
// client's hello: our 1.3-capable server answers with TLS 1.2 and the
// downgrade sentinel, and the client aborts with illegal_parameter.
func TestTLS12DowngradeSentinel(t *testing.T) {
	for _, serverMax := range []uint16{VersionTLS13, VersionTLS12} {
		t.Run(map[uint16]string{VersionTLS13: "server_1.3_capable", VersionTLS12: "server_1.2_only"}[serverMax], func(t *testing.T) {
			cRaw, mitmC := net.Pipe()
			mitmS, sRaw := net.Pipe()
			go func() {
				hdr := make([]byte, recordHeaderLen)
				if _, err := io.ReadFull(mitmC, hdr); err != nil {
					return
				}
				body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
				io.ReadFull(mitmC, body)
				mitmS.Write(stripVersions(t, append(hdr, body...)))
				go io.Copy(mitmS, mitmC)
				io.Copy(mitmC, mitmS)
				mitmC.Close()
			}()
			c := Client(cRaw, &Config{Key: testKey})
			s := Server(sRaw, &Config{Key: testKey, MaxVersion: serverMax})
			defer c.Close()
			defer s.Close()
			cerr, serr := handshakeBoth(c, s)
			var ae *AlertError
			if serverMax == VersionTLS13 {
				if !errors.As(cerr, &ae) || ae.Alert != alertIllegalParameter || ae.Received || !strings.Contains(cerr.Error(), "downgrade") {
					t.Fatalf("client %v", cerr)
				}
				if !errors.As(serr, &ae) || ae.Alert != alertIllegalParameter || !ae.Received {
					t.Fatalf("server %v", serr)
				}
				return
			}
			// Without the sentinel the client goes on; the altered
			// transcript then fails the Finished check.
			if cerr == nil || strings.Contains(cerr.Error(), "downgrade") || serr == nil {
				t.Fatalf("client %v, server %v", cerr, serr)
			}
		})
	}
}

// Exporter (RFC 5705) and key log for TLS 1.2.
func TestTLS12ExportAndKeyLog(t *testing.T) {
	var klc, kls bytes.Buffer
	c, s := pair(t, &Config{Key: testKey, MaxVersion: VersionTLS12, KeyLogWriter: &klc}, &Config{Key: testKey, KeyLogWriter: &kls})
	if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
		t.Fatal(cerr, serr)
	}
	a, err1 := c.ExportKeyingMaterial("EXPORTER-test", nil, 40)
	b, err2 := s.ExportKeyingMaterial("EXPORTER-test", nil, 40)
	e, err3 := c.ExportKeyingMaterial("EXPORTER-test", []byte{}, 40)
	if err1 != nil || err2 != nil || err3 != nil || !bytes.Equal(a, b) || len(a) != 40 || bytes.Equal(a, e) {
		t.Fatalf("exporter: %x %x %x %v %v %v", a, b, e, err1, err2, err3)
	}
	if klc.String() != kls.String() || !strings.HasPrefix(klc.String(), "CLIENT_RANDOM ") || len(klc.String()) != len("CLIENT_RANDOM ")+64+1+96+1 {
		t.Fatalf("key log %q / %q", klc.String(), kls.String())
	}
}
