package tlspsk

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

var wrongKey = []byte("this is not the key you are looking for")

// failing cases against real peers: each side must fail with a clear
// error and no application data may pass.

type ourServerCase struct {
	name, peer    string
	args          func(addr, host, port string) []string
	wantReason    string  // FailureReason on our side
	wantPeerError string  // in the peer's output
	cfg           *Config // our server's; nil: the default
}

func TestInteropFailuresOurServer(t *testing.T) {
	key := hex.EncodeToString(interopKey)
	bad := hex.EncodeToString(wrongKey)
	cases := []ourServerCase{
		{"openssl/wrong_key", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_3", "-psk", bad, "-quiet", "-nocommands"}
		}, "wrong_key", "decrypt error", nil},
		{"openssl/unknown_identity", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_3", "-psk", key, "-psk_identity", "mallory", "-quiet", "-nocommands"}
		}, "unknown_identity", "unknown psk identity", nil},
		{"openssl/tls1_2_only", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_2", "-psk", key, "-quiet", "-nocommands"}
		}, "no_shared_parameters", "protocol version", &Config{Key: interopKey, MinVersion: VersionTLS13}},
		// TLS 1.2: a wrong key shows as a client Finished that does not
		// decrypt; an unknown identity gets unknown_psk_identity.
		{"openssl/tls12/wrong_key", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256", "-psk", bad, "-quiet", "-nocommands"}
		}, "wrong_key", "bad record mac", nil},
		{"openssl/tls12/wrong_key_ecdhe", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_2", "-cipher", "ECDHE-PSK-CHACHA20-POLY1305", "-psk", bad, "-quiet", "-nocommands"}
		}, "wrong_key", "bad record mac", nil},
		{"openssl/tls12/unknown_identity", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_2", "-psk", key, "-psk_identity", "mallory", "-quiet", "-nocommands"}
		}, "unknown_identity", "unknown psk identity", nil},
		{"openssl/tls12/unsupported_suite", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_2", "-cipher", "PSK-AES128-CCM", "-psk", key, "-quiet", "-nocommands"}
		}, "no_shared_parameters", "handshake failure", nil},
		{"openssl/tls12/plain_refused", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256", "-psk", key, "-quiet", "-nocommands"}
		}, "no_shared_parameters", "handshake failure", &Config{Key: interopKey, RequireForwardSecrecy: true}},
		{"gnutls/wrong_key", "gnutls-cli", func(_, host, port string) []string {
			return []string{"--pskusername", DefaultIdentity, "--pskkey", bad, "--priority", gnutlsPriority, "-p", port, host}
		}, "wrong_key", "Decrypt", nil},
		{"gnutls/unknown_identity", "gnutls-cli", func(_, host, port string) []string {
			return []string{"--pskusername", "mallory", "--pskkey", key, "--priority", gnutlsPriority, "-p", port, host}
		}, "unknown_identity", "not known", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bin := needPeer(t, tc.peer)
			cfg := tc.cfg
			if cfg == nil {
				cfg = &Config{Key: interopKey}
			}
			addr, accepted := listenOurs(t, cfg)
			host, port, _ := splitHostPort(addr)
			p := startPeer(t, bin, tc.args(addr, host, port)...)
			// The peer tries to send data; the proof that none crosses is
			// that our Read fails with nothing read.
			p.stdin.Write([]byte("must not arrive\n"))
			c := <-accepted
			buf := make([]byte, 100)
			n, err := c.Read(buf)
			if err == nil || n != 0 {
				t.Fatalf("server read %d bytes, err %v", n, err)
			}
			if got := FailureReason(err); got != tc.wantReason {
				t.Errorf("FailureReason(%v) = %q, want %q", err, got, tc.wantReason)
			}
			c.Close()
			perr := p.wait(t)
			out := string(p.stdout.Bytes()) + string(p.stderr.Bytes())
			t.Logf("ours: %v\npeer (%v): %s", err, perr, tail([]byte(out)))
			if perr == nil && tc.peer == "openssl" {
				t.Errorf("peer exited 0")
			}
			if !strings.Contains(strings.ToLower(out), strings.ToLower(tc.wantPeerError)) {
				t.Errorf("peer output lacks %q", tc.wantPeerError)
			}
		})
	}
}

type ourClientCase struct {
	name, peer string
	start      func(t *testing.T) (string, *peer)
	cfg        *Config
	wantReason string
	wantPeer   string
}

func TestInteropFailuresOurClient(t *testing.T) {
	opensslServer := func(extra ...string) func(t *testing.T) (string, *peer) {
		return func(t *testing.T) (string, *peer) {
			bin := needPeer(t, "openssl")
			return startOpenSSLServer(t, bin, append([]string{"-nocert", "-psk", hex.EncodeToString(interopKey),
				"-naccept", "1", "-rev"}, extra...)...)
		}
	}
	gnutlsServer := func(t *testing.T) (string, *peer) { return startGnutlsServ(t, DefaultIdentity, interopKey, "") }
	cases := []ourClientCase{
		// OpenSSL 3.0 answers a bad binder with illegal_parameter.
		{"openssl/wrong_key", "openssl", opensslServer("-tls1_3"), &Config{Key: wrongKey}, "wrong_key", "binder does not verify"},
		// OpenSSL ignores an unknown identity, then lacks a certificate:
		// handshake_failure, which cannot be told from other mismatches.
		{"openssl/unknown_identity", "openssl", opensslServer("-tls1_3"), &Config{Key: interopKey, Identity: "mallory"}, "no_shared_parameters", "CONNECTION FAILURE"},
		{"openssl/tls1_2_only", "openssl", opensslServer("-tls1_2"), &Config{Key: interopKey, MinVersion: VersionTLS13}, "no_shared_parameters", "unsupported protocol"},
		// TLS 1.2: s_server answers a wrong key with bad_record_mac (our
		// Finished does not decrypt). It accepts any identity at TLS 1.2
		// (printing a warning), so the unknown identity case is tested
		// against gnutls-serv.
		{"openssl/tls12/wrong_key", "openssl", opensslServer("-tls1_2"), &Config{Key: wrongKey, MaxVersion: VersionTLS12}, "wrong_key", "bad record mac"},
		{"openssl/tls12/unsupported_suite", "openssl", opensslServer("-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256"),
			&Config{Key: interopKey, CipherSuites: []uint16{TLS_PSK_WITH_CHACHA20_POLY1305_SHA256}}, "no_shared_parameters", "no shared cipher"},
		// GnuTLS answers both with illegal_parameter (an unknown user gets
		// a random key, so that identities cannot be probed).
		{"gnutls/wrong_key", "gnutls", gnutlsServer, &Config{Key: wrongKey}, "wrong_key", "illegal parameter"},
		{"gnutls/unknown_identity", "gnutls", gnutlsServer, &Config{Key: interopKey, Identity: "mallory"}, "wrong_key", "illegal parameter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, p := tc.start(t)
			c, err := Dial("tcp", addr, tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("handshake succeeded")
			}
			if got := FailureReason(err); got != tc.wantReason {
				t.Errorf("FailureReason(%v) = %q, want %q", err, got, tc.wantReason)
			}
			time.Sleep(50 * time.Millisecond)
			out := string(p.stdout.Bytes()) + string(p.stderr.Bytes())
			t.Logf("ours: %v\npeer: %s", err, tail([]byte(out)))
			if !strings.Contains(strings.ToLower(out), strings.ToLower(tc.wantPeer)) {
				t.Errorf("peer output lacks %q", tc.wantPeer)
			}
		})
	}
}
