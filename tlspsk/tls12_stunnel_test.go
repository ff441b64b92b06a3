package tlspsk

import (
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// stunnel 5.68 (OpenSSL 3.0) with a PSKsecrets file, at TLS 1.2: as a
// client in front of our server, and as a server behind our client.

// stunnelBoundRE matches the line (log level 6) in which stunnel names
// the address it bound: its accept is 127.0.0.1:0, so the kernel picks a
// port no other process can hold (see startOpenSSLServer).
var stunnelBoundRE = regexp.MustCompile(`Service \[svc\] \(FD=\d+\) bound to 127\.0\.0\.1:(\d+)`)

// startStunnel runs stunnel with one service accepting on 127.0.0.1, port
// 0, and returns the address it listens on.
func startStunnel(t *testing.T, service string) (string, *peer) {
	bin := needPeer(t, "stunnel")
	dir := t.TempDir()
	secrets := filepath.Join(dir, "psk.txt")
	if err := os.WriteFile(secrets, []byte("stunnel-id:"+hex.EncodeToString(interopKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "stunnel.conf")
	body := fmt.Sprintf("foreground = yes\npid =\nsyslog = no\ndebug = 6\n[svc]\nPSKsecrets = %s\naccept = 127.0.0.1:0\n%s", secrets, service)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPeer(t, bin, conf)
	m := p.stderr.waitForMatch(t, stunnelBoundRE, p)
	return net.JoinHostPort("127.0.0.1", m[1]), p
}

var stunnelSuites = []string{"PSK-AES128-GCM-SHA256", "ECDHE-PSK-CHACHA20-POLY1305"}

// stunnel client: plain TCP -> stunnel -> TLS 1.2 PSK -> our server.
func TestTLS12StunnelClientToOurServer(t *testing.T) {
	for _, suite := range stunnelSuites {
		t.Run(suite, func(t *testing.T) {
			c, _ := stunnelClientToOurs(t, &Config{Identity: "stunnel-id", Key: interopKey}, "ciphers = "+suite+"\nsslVersionMax = TLSv1.2\n")
			st := c.ConnectionState()
			if st.Version != VersionTLS12 || CipherSuiteName(st.CipherSuite) != suite || st.PSKIdentity != "stunnel-id" {
				t.Fatalf("state %+v", st)
			}
		})
	}
}

// stunnelClientToOurs runs plain TCP -> stunnel (client) -> our server and
// moves interopSize bytes each way.
func stunnelClientToOurs(t *testing.T, cfg *Config, opts string) (*Conn, *peer) {
	t.Helper()
	ours, accepted := listenOurs(t, cfg)
	front, p := startStunnel(t, fmt.Sprintf("client = yes\nconnect = %s\n%s", ours, opts))
	plain, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plain.Close() })
	plain.SetDeadline(time.Now().Add(interopTimeout))
	toServer, toClient := randomBytes(interopSize), randomBytes(interopSize)
	go plain.Write(toServer)
	var c *Conn
	select {
	case c = <-accepted:
	case <-time.After(interopTimeout):
		t.Fatalf("no connection\n%s", tail(p.stderr.Bytes()))
	}
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(toClient))
		io.ReadFull(plain, b)
		got <- b
	}()
	fromClient, err := serveExchange(t, c, toClient, len(toServer))
	if err != nil {
		t.Fatalf("exchange: %v\n%s", err, tail(p.stderr.Bytes()))
	}
	if sum(fromClient) != sum(toServer) || sum(<-got) != sum(toClient) {
		t.Fatal("data mismatch")
	}
	return c, p
}

// ourClientToStunnel runs our client -> stunnel (server) -> plain echo and
// moves interopSize bytes each way.
func ourClientToStunnel(t *testing.T, cfg *Config, opts string) ConnectionState {
	t.Helper()
	front, p := startStunnel(t, fmt.Sprintf("connect = %s\n%s", echoServer(t), opts))
	c, err := Dial("tcp", front, cfg)
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, tail(p.stderr.Bytes()))
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(interopTimeout))
	data := randomBytes(interopSize)
	go c.Write(data)
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if sum(got) != sum(data) {
		t.Fatal("echo differs")
	}
	return c.ConnectionState()
}

// echoServer runs a plain TCP echo server for stunnel to forward to.
func echoServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

// stunnel server: our client -> TLS 1.2 PSK -> stunnel -> plain echo.
func TestTLS12OurClientToStunnelServer(t *testing.T) {
	for _, suite := range stunnelSuites {
		t.Run(suite, func(t *testing.T) {
			id, _ := CipherSuiteByName(suite)
			st := ourClientToStunnel(t, &Config{Identity: "stunnel-id", Key: interopKey, CipherSuites: []uint16{id}}, "ciphers = "+suite+"\nsslVersionMax = TLSv1.2\n")
			if st.Version != VersionTLS12 || st.CipherSuite != id {
				t.Fatalf("state %+v", st)
			}
		})
	}
}
