package tlspsk

import (
	"bufio"
	"encoding/hex"
	"errors"
	"net"
	"testing"
	"time"
)

// TestEmptyRecordSelf: WriteEmptyRecord sends a zero-length application
// data record that WaitRecord returns on and Read skips, in TLS 1.3 and
// 1.2 (ECDHE_PSK and plain PSK).
func TestEmptyRecordSelf(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func() *Config
	}{
		{"TLS1.3", func() *Config { return &Config{Key: testKey} }},
		{"TLS1.2 ECDHE_PSK", func() *Config {
			return &Config{Key: testKey, MaxVersion: VersionTLS12, CipherSuites: []uint16{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256}}
		}},
		{"TLS1.2 PSK", func() *Config {
			return &Config{Key: testKey, MaxVersion: VersionTLS12, CipherSuites: []uint16{TLS_PSK_WITH_AES_128_GCM_SHA256}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t, tc.cfg(), tc.cfg())
			if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
				t.Fatalf("handshake: client %v, server %v", cerr, serr)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			s.SetDeadline(time.Now().Add(10 * time.Second))
			if err := c.WriteEmptyRecord(); err != nil {
				t.Fatalf("WriteEmptyRecord: %v", err)
			}
			if err := s.WaitRecord(); err != nil {
				t.Fatalf("WaitRecord on an empty record: %v", err)
			}
			// Nothing more is pending: WaitRecord now blocks until the
			// deadline (not sticky).
			s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			var ne net.Error
			if err := s.WaitRecord(); !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("WaitRecord with nothing sent: %v, want a timeout", err)
			}
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			c.WriteEmptyRecord()
			c.Write([]byte("data"))
			buf := make([]byte, 16)
			n, err := s.Read(buf) // skips the empty record
			if err != nil || string(buf[:n]) != "data" {
				t.Fatalf("Read after an empty record: %q, %v", buf[:n], err)
			}
			// Data already buffered: WaitRecord returns at once, Read gets it.
			c.Write([]byte("more"))
			if err := s.WaitRecord(); err != nil {
				t.Fatal(err)
			}
			if n, err = s.Read(buf); err != nil || string(buf[:n]) != "more" {
				t.Fatalf("Read after WaitRecord: %q, %v", buf[:n], err)
			}
			// And the other direction.
			if err := s.WriteEmptyRecord(); err != nil {
				t.Fatal(err)
			}
			s.Write([]byte("back"))
			if n, err = c.Read(buf); err != nil || string(buf[:n]) != "back" {
				t.Fatalf("client Read: %q, %v", buf[:n], err)
			}
		})
	}
}

// TestEmptyRecordOpenSSL: openssl s_server accepts our zero-length
// application data records in TLS 1.3 and 1.2 and goes on.
func TestEmptyRecordOpenSSL(t *testing.T) {
	bin := needPeer(t, "openssl")
	for _, tc := range []struct {
		name string
		args []string
		cfg  *Config
	}{
		{"TLS1.3", []string{"-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256"}, &Config{Key: interopKey, CipherSuites: []uint16{TLS_AES_128_GCM_SHA256}}},
		{"TLS1.2", []string{"-tls1_2", "-cipher", "ECDHE-PSK-CHACHA20-POLY1305"}, &Config{Key: interopKey, MaxVersion: VersionTLS12,
			CipherSuites: []uint16{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, p := startOpenSSLServer(t, bin, append([]string{"-nocert", "-naccept", "1", "-rev",
				"-psk", hex.EncodeToString(interopKey)}, tc.args...)...)
			c, err := Dial("tcp", addr, tc.cfg)
			if err != nil {
				t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(interopTimeout))
			for i := 0; i < 3; i++ {
				if err := c.WriteEmptyRecord(); err != nil {
					t.Fatal(err)
				}
			}
			c.Write([]byte("hello\n"))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != "olleh\n" {
				t.Fatalf("reply %q, %v\nstderr: %s", line, err, tail(p.stderr.Bytes()))
			}
		})
	}
}

// TestKeySharePoolOpenSSL: handshakes with pooled key shares interoperate
// with OpenSSL in both roles (OpenSSL 3.0 has no ML-KEM: it takes the
// client's pooled X25519 share; our server answers with a pooled X25519
// key pair).
func TestKeySharePoolOpenSSL(t *testing.T) {
	bin := needPeer(t, "openssl")
	p := NewKeySharePool(2, time.Minute)
	defer p.Close()
	p.takeX25519()
	waitFilled(t, p, 2, 2)
	before := p.Stats().Hits

	addr, sp := startOpenSSLServer(t, bin, "-nocert", "-tls1_3", "-naccept", "1", "-rev",
		"-ciphersuites", "TLS_AES_128_GCM_SHA256", "-psk", hex.EncodeToString(interopKey))
	c, err := Dial("tcp", addr, &Config{Key: interopKey, KeyShares: p})
	if err != nil {
		t.Fatalf("dial: %v\nstderr: %s", err, tail(sp.stderr.Bytes()))
	}
	c.SetDeadline(time.Now().Add(interopTimeout))
	c.Write([]byte("pooled\n"))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "deloop\n" {
		t.Fatalf("reply %q, %v", line, err)
	}
	c.Close()

	scfg := &Config{Key: interopKey, KeyShares: p}
	saddr, accepted := listenOurs(t, scfg)
	args := append([]string{"s_client", "-connect", saddr, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256",
		"-groups", "X25519", "-quiet", "-nocommands"}, opensslPSKArgs(t, interopKey, TLS_AES_128_GCM_SHA256)...)
	sc := clientExchange(t, bin, args, accepted)
	if g := sc.ConnectionState().Group; g != X25519 {
		t.Fatalf("group %v, want X25519", g)
	}
	if p.Stats().Hits < before+3 { // client: ML-KEM + 2 X25519; server: 1 X25519
		t.Fatalf("pool hits %d -> %d: the handshakes did not use pooled shares", before, p.Stats().Hits)
	}
}
