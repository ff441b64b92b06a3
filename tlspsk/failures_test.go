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
	wantReason    string // FailureReason on our side
	wantPeerError string // in the peer's output
}

func TestInteropFailuresOurServer(t *testing.T) {
	key := hex.EncodeToString(interopKey)
	bad := hex.EncodeToString(wrongKey)
	cases := []ourServerCase{
		{"openssl/wrong_key", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_3", "-psk", bad, "-quiet", "-nocommands"}
		}, "wrong_key", "decrypt error"},
		{"openssl/unknown_identity", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_3", "-psk", key, "-psk_identity", "mallory", "-quiet", "-nocommands"}
		}, "unknown_identity", "unknown psk identity"},
		{"openssl/tls1_2_only", "openssl", func(addr, _, _ string) []string {
			return []string{"s_client", "-connect", addr, "-tls1_2", "-psk", key, "-quiet", "-nocommands"}
		}, "no_shared_parameters", "protocol version"},
		{"gnutls/wrong_key", "gnutls-cli", func(_, host, port string) []string {
			return []string{"--pskusername", DefaultIdentity, "--pskkey", bad, "--priority", gnutlsPriority, "-p", port, host}
		}, "wrong_key", "Decrypt"},
		{"gnutls/unknown_identity", "gnutls-cli", func(_, host, port string) []string {
			return []string{"--pskusername", "mallory", "--pskkey", key, "--priority", gnutlsPriority, "-p", port, host}
		}, "unknown_identity", "not known"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bin := needPeer(t, tc.peer)
			addr, accepted := listenOurs(t, &Config{Key: interopKey})
			host, port, _ := splitHostPort(addr)
			p := startPeer(t, bin, tc.args(addr, host, port)...)
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
			if strings.Contains(out, "must not arrive") {
				t.Error("application data crossed")
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
			addr, port := freePort(t)
			p := startPeer(t, bin, append([]string{"s_server", "-accept", port, "-nocert", "-psk", hex.EncodeToString(interopKey),
				"-naccept", "1", "-rev"}, extra...)...)
			p.stdout.waitFor(t, "ACCEPT", p)
			return addr, p
		}
	}
	gnutlsServer := func(t *testing.T) (string, *peer) { return startGnutlsServ(t, DefaultIdentity, interopKey, "") }
	cases := []ourClientCase{
		// OpenSSL 3.0 answers a bad binder with illegal_parameter.
		{"openssl/wrong_key", "openssl", opensslServer("-tls1_3"), &Config{Key: wrongKey}, "wrong_key", "binder does not verify"},
		// OpenSSL ignores an unknown identity, then lacks a certificate:
		// handshake_failure, which cannot be told from other mismatches.
		{"openssl/unknown_identity", "openssl", opensslServer("-tls1_3"), &Config{Key: interopKey, Identity: "mallory"}, "no_shared_parameters", "CONNECTION FAILURE"},
		{"openssl/tls1_2_only", "openssl", opensslServer("-tls1_2"), &Config{Key: interopKey}, "no_shared_parameters", "unsupported protocol"},
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
