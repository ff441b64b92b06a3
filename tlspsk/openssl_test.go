package tlspsk

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var interopKey = []byte{0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x6f, 0x70, 0x81, 0x92, 0xa3, 0xb4, 0xc5, 0xd6, 0xe7, 0xf8, 0x09,
	0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00}

// Our server against openssl s_client, each suite, default and explicit identity.
func TestOpenSSLClientToOurServer(t *testing.T) {
	bin := needPeer(t, "openssl")
	cases := []struct {
		suite    string
		identity string
		hash     crypto.Hash
	}{
		{"TLS_AES_128_GCM_SHA256", "", crypto.SHA256},
		{"TLS_CHACHA20_POLY1305_SHA256", "", crypto.SHA256},
		{"TLS_AES_256_GCM_SHA384", "", crypto.SHA384},
		{"TLS_AES_128_GCM_SHA256", "alice@example", crypto.SHA256},
	}
	for _, tc := range cases {
		t.Run(tc.suite+"/"+tc.identity, func(t *testing.T) {
			cfg := &Config{Key: interopKey, Identity: tc.identity, PSKHash: tc.hash}
			addr, accepted := listenOurs(t, cfg)
			id, _ := CipherSuiteByName(tc.suite)
			args := append([]string{"s_client", "-connect", addr, "-tls1_3", "-ciphersuites", tc.suite, "-quiet", "-nocommands"},
				opensslPSKArgs(t, interopKey, id)...)
			if tc.identity != "" {
				args = append(args, "-psk_identity", tc.identity)
			}
			c := clientExchange(t, bin, args, accepted)
			st := c.ConnectionState()
			if CipherSuiteName(st.CipherSuite) != tc.suite || st.Group == 0 {
				t.Fatalf("state %+v", st)
			}
			want := tc.identity
			if want == "" {
				want = DefaultIdentity
			}
			if st.PSKIdentity != want {
				t.Fatalf("identity %q", st.PSKIdentity)
			}
		})
	}
}

// Our client against openssl s_server -rev: 1 MiB of lines each way.
func TestOurClientToOpenSSLServer(t *testing.T) {
	bin := needPeer(t, "openssl")
	for _, suite := range []string{"TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_256_GCM_SHA384"} {
		for _, group := range []CurveID{X25519, CurveP256} {
			t.Run(suite+"/"+group.String(), func(t *testing.T) {
				id, _ := CipherSuiteByName(suite)
				addr, p := startOpenSSLServer(t, bin, append([]string{"-nocert", "-tls1_3", "-naccept", "1",
					"-rev", "-ciphersuites", suite}, opensslPSKArgs(t, interopKey, id)...)...)
				h := crypto.SHA256
				if id == TLS_AES_256_GCM_SHA384 {
					h = crypto.SHA384
				}
				cfg := &Config{Key: interopKey, PSKHash: h, CipherSuites: []uint16{id}, CurvePreferences: []CurveID{group}}
				c, err := Dial("tcp", addr, cfg)
				if err != nil {
					t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(interopTimeout))
				st := c.ConnectionState()
				if st.CipherSuite != id || st.Group != group || st.PSKIdentity != DefaultIdentity {
					t.Fatalf("state %+v", st)
				}
				revExchange(t, c)
			})
		}
	}
}

// revExchange sends 1 MiB of lines to a line-reversing peer and checks
// every line comes back reversed.
func revExchange(t *testing.T, c *Conn) {
	t.Helper()
	data := randomLines(interopSize)
	go func() { c.Write(data) }()
	want := lines(data)
	got := make([]byte, 0, len(data))
	buf := make([]byte, 64<<10)
	for len(got) < len(data) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
	}
	// s_server -rev reverses what one read returns: a line cut by a record
	// carrying a KeyUpdate comes back as two reversed pieces.
	gl := lines(got)
	k := 0
	for i, w := range want {
		acc := ""
		for len(acc) < len(w) && k < len(gl) {
			acc += reverse(gl[k])
			k++
		}
		if acc != w {
			t.Fatalf("line %d: got %q, want %q", i, acc, w)
		}
	}
	if k != len(gl) {
		t.Fatalf("%d extra lines", len(gl)-k)
	}
	c.Write([]byte("CLOSE\n"))
	io.Copy(io.Discard, c)
}

// HelloRetryRequest with OpenSSL in both roles.
func TestOpenSSLHelloRetryRequest(t *testing.T) {
	bin := needPeer(t, "openssl")
	t.Run("openssl_server_asks", func(t *testing.T) {
		addr, p := startOpenSSLServer(t, bin, "-nocert", "-psk", hex.EncodeToString(interopKey),
			"-tls1_3", "-naccept", "1", "-rev", "-groups", "P-256")
		c, err := Dial("tcp", addr, &Config{Key: interopKey, CurvePreferences: []CurveID{X25519, CurveP256}})
		if err != nil {
			t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(interopTimeout))
		if st := c.ConnectionState(); !st.HelloRetryRequest || st.Group != CurveP256 {
			t.Fatalf("state %+v", st)
		}
		revExchange(t, c)
	})
	t.Run("our_server_asks", func(t *testing.T) {
		addr, accepted := listenOurs(t, &Config{Key: interopKey, CurvePreferences: []CurveID{X25519}})
		c := clientExchange(t, bin, []string{"s_client", "-connect", addr, "-tls1_3", "-psk", hex.EncodeToString(interopKey),
			"-groups", "P-256:X25519", "-quiet", "-nocommands"}, accepted)
		if st := c.ConnectionState(); !st.HelloRetryRequest || st.Group != X25519 {
			t.Fatalf("state %+v", st)
		}
	})
}

// A client sending 0-RTT data: our server refuses it (no early_data in
// EncryptedExtensions), skips the early records and completes the
// handshake; the early bytes never reach the application.
func TestOpenSSLEarlyDataRefused(t *testing.T) {
	bin := needPeer(t, "openssl")
	addr, accepted := listenOurs(t, &Config{Key: interopKey})
	early := filepath.Join(t.TempDir(), "early.txt")
	os.WriteFile(early, []byte("EARLY DATA MUST NOT BE ACCEPTED\n"), 0o600)
	p := startPeer(t, bin, "s_client", "-connect", addr, "-tls1_3", "-psk_session",
		opensslPSKSessionEarly(t, interopKey, TLS_AES_128_GCM_SHA256, 16384), "-early_data", early, "-nocommands", "-ign_eof")
	p.stdin.Write([]byte("after the handshake\n"))
	c := <-accepted
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
	}
	if got := string(buf[:n]); got != "after the handshake\n" {
		t.Fatalf("server read %q", got)
	}
	c.Close()
	p.wait(t)
	out := string(p.stdout.Bytes())
	if !strings.Contains(out, "Early data was rejected") {
		t.Fatalf("s_client did not report rejected early data:\n%s", tail([]byte(out)))
	}
}

// KeyUpdate with OpenSSL: s_client's "K" command (update requested) must be
// answered by our server; our client's limit-driven updates must be
// accepted by s_server.
func TestOpenSSLKeyUpdate(t *testing.T) {
	bin := needPeer(t, "openssl")
	t.Run("openssl_requests", func(t *testing.T) {
		addr, accepted := listenOurs(t, &Config{Key: interopKey})
		p := startPeer(t, bin, "s_client", "-connect", addr, "-tls1_3", "-psk", hex.EncodeToString(interopKey))
		c := <-accepted
		p.stdin.Write([]byte("before\n"))
		readLine(t, c, "before\n")
		c.in.Lock()
		s0 := append([]byte(nil), c.in.hc.secret...)
		c.in.Unlock()
		c.out.Lock()
		o0 := append([]byte(nil), c.out.hc.secret...)
		c.out.Unlock()
		p.stdin.Write([]byte("K\n"))
		time.Sleep(100 * time.Millisecond)
		p.stdin.Write([]byte("after\n"))
		readLine(t, c, "after\n")
		if _, err := c.Write([]byte("reply under the new key\n")); err != nil {
			t.Fatal(err)
		}
		p.stdout.waitFor(t, "reply under the new key", p)
		c.in.Lock()
		updated := !bytes.Equal(s0, c.in.hc.secret)
		c.in.Unlock()
		c.out.Lock()
		answered := !bytes.Equal(o0, c.out.hc.secret) // we updated ours in reply
		c.out.Unlock()
		if !updated || !answered {
			t.Fatalf("KeyUpdate not processed (read key updated %v, answered %v)\n%s", updated, answered, tail(p.stdout.Bytes()))
		}
	})
	t.Run("we_update", func(t *testing.T) {
		addr, p := startOpenSSLServer(t, bin, "-nocert", "-psk", hex.EncodeToString(interopKey),
			"-tls1_3", "-naccept", "1", "-rev")
		c, err := Dial("tcp", addr, &Config{Key: interopKey})
		if err != nil {
			t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(interopTimeout))
		c.out.Lock()
		c.out.hc.limit = 5 // a KeyUpdate every 5 records
		s0 := append([]byte(nil), c.out.hc.secret...)
		c.out.Unlock()
		revExchange(t, c)
		if bytes.Equal(s0, c.out.hc.secret) {
			t.Fatal("no KeyUpdate sent")
		}
	})
}

func readLine(t *testing.T, c *Conn, want string) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// ExportKeyingMaterial agrees with OpenSSL's exporter (s_client
// -keymatexport), and our key log with OpenSSL's (-keylogfile).
func TestOpenSSLExporterAndKeyLog(t *testing.T) {
	bin := needPeer(t, "openssl")
	var keylog syncBuf
	addr, accepted := listenOurs(t, &Config{Key: interopKey, KeyLogWriter: &keylog})
	theirs := filepath.Join(t.TempDir(), "keylog")
	p := startPeer(t, bin, "s_client", "-connect", addr, "-tls1_3", "-psk", hex.EncodeToString(interopKey),
		"-keymatexport", "EXPORTER-mcbn-test", "-keymatexportlen", "32", "-nocommands", "-keylogfile", theirs)
	p.stdin.Write([]byte("x\n"))
	c := <-accepted
	readLine(t, c, "x\n")
	ekm, err := c.ExportKeyingMaterial("EXPORTER-mcbn-test", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ToUpper(hex.EncodeToString(ekm))
	p.stdout.waitFor(t, "Keying material: "+want, p)
	ref, err := os.ReadFile(theirs)
	if err != nil {
		t.Fatal(err)
	}
	ours := lines(keylog.Bytes())
	if len(ours) != 5 {
		t.Fatalf("%d key log lines", len(ours))
	}
	for _, l := range ours {
		if !strings.Contains(string(ref), l+"\n") {
			t.Fatalf("OpenSSL's key log lacks our line %.40s...", l)
		}
	}
}
