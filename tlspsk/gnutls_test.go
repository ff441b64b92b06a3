package tlspsk

import (
	"encoding/hex"
	"io"
	"os"
	"testing"
	"time"
)

// Our client against gnutls-serv --echo: 1 MiB of random text each way.
func TestOurClientToGnutlsServer(t *testing.T) {
	for _, suite := range []uint16{TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256} {
		for _, group := range []CurveID{X25519, CurveP256} {
			t.Run(CipherSuiteName(suite)+"/"+group.String(), func(t *testing.T) {
				addr, p := startGnutlsServ(t, "gnu", interopKey, "")
				cfg := &Config{Identity: "gnu", Key: interopKey, CipherSuites: []uint16{suite}, CurvePreferences: []CurveID{group}}
				c, err := Dial("tcp", addr, cfg)
				if err != nil {
					t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(interopTimeout))
				st := c.ConnectionState()
				if st.CipherSuite != suite || st.Group != group {
					t.Fatalf("state %+v", st)
				}
				data := randomLines(interopSize) // gnutls-serv --echo is text-only
				go c.Write(data)
				got := make([]byte, len(data))
				if n, err := io.ReadFull(c, got); err != nil {
					t.Fatalf("read after %d bytes: %v\nstderr: %s", n, err, tail(p.stderr.Bytes()))
				}
				if sum(got) != sum(data) {
					t.Fatal("echo differs")
				}
			})
		}
	}
}

// gnutls-cli against our server: 1 MiB each way.
func TestGnutlsClientToOurServer(t *testing.T) {
	bin := needPeer(t, "gnutls-cli")
	for _, prio := range []string{"", ":-AES-128-GCM:-AES-256-GCM:-AES-128-CCM:-AES-256-CBC:-AES-128-CBC"} {
		t.Run("prio"+prio, func(t *testing.T) {
			cfg := &Config{Identity: "gnu", Key: interopKey}
			addr, accepted := listenOurs(t, cfg)
			host, port, _ := splitHostPort(addr)
			c := clientExchange(t, bin, []string{"--pskusername", "gnu", "--pskkey", hex.EncodeToString(interopKey),
				"--priority", gnutlsPriority + prio, "-p", port, "--logfile", os.DevNull, host}, accepted)
			st := c.ConnectionState()
			want := TLS_AES_128_GCM_SHA256
			if prio != "" {
				want = TLS_CHACHA20_POLY1305_SHA256
			}
			if st.CipherSuite != want || st.PSKIdentity != "gnu" || st.Group == 0 {
				t.Fatalf("state %+v", st)
			}
		})
	}
}

// HelloRetryRequest with GnuTLS in both roles.
func TestGnutlsHelloRetryRequest(t *testing.T) {
	t.Run("gnutls_server_asks", func(t *testing.T) {
		addr, p := startGnutlsServ(t, DefaultIdentity, interopKey, ":-GROUP-ALL:+GROUP-SECP256R1")
		c, err := Dial("tcp", addr, &Config{Key: interopKey}) // offers X25519MLKEM768 + X25519 shares
		if err != nil {
			t.Fatalf("dial: %v\nstderr: %s", err, tail(p.stderr.Bytes()))
		}
		defer c.Close()
		if st := c.ConnectionState(); !st.HelloRetryRequest || st.Group != CurveP256 {
			t.Fatalf("state %+v", st)
		}
		c.SetDeadline(time.Now().Add(interopTimeout))
		data := randomLines(interopSize)
		go c.Write(data)
		got := make([]byte, len(data))
		if _, err := io.ReadFull(c, got); err != nil || sum(got) != sum(data) {
			t.Fatalf("echo: %v", err)
		}
	})
	t.Run("our_server_asks", func(t *testing.T) {
		bin := needPeer(t, "gnutls-cli")
		// gnutls-cli sends shares for its first two groups (X25519, P-384);
		// we want P-256, which it supports.
		addr, accepted := listenOurs(t, &Config{Key: interopKey, CurvePreferences: []CurveID{CurveP256}})
		host, port, _ := splitHostPort(addr)
		c := clientExchange(t, bin, []string{"--pskusername", DefaultIdentity, "--pskkey", hex.EncodeToString(interopKey),
			"--priority", gnutlsPriority + ":-GROUP-ALL:+GROUP-X25519:+GROUP-SECP384R1:+GROUP-SECP256R1", "-p", port, "--logfile", os.DevNull, host}, accepted)
		if st := c.ConnectionState(); !st.HelloRetryRequest || st.Group != CurveP256 {
			t.Fatalf("state %+v", st)
		}
	})
}
