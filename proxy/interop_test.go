package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// Interop with the tools users already have: openssl and stunnel as real
// processes on loopback. A missing binary skips the test unless
// MCBN_REQUIRE_INTEROP=1.

func serverProxy(t *testing.T, listen, backend string, psk PSKConfig, mut func(*Route)) *testProxy {
	t.Helper()
	r := testRoute("svc", listen, backend)
	r.PSK = psk
	if mut != nil {
		mut(&r)
	}
	return startProxy(t, ModeServer, false, nil, r)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenSSLClientTLS13(t *testing.T) {
	openssl := needBinary(t, "openssl")
	key := randomKey(t)
	srv := serverProxy(t, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), PSKConfig{Hex: hexKey(key)}, nil)
	peer := startPeer(t, testCtx(t), openssl, "s_client", "-quiet", "-tls1_3", "-psk", hexKey(key),
		"-psk_identity", DefaultIdentity, "-connect", srv.url("svc"))
	fmt.Fprintln(peer.stdin, "hello through openssl tls1.3")
	waitFor(t, 10*time.Second, "the echo in s_client's output", func() bool {
		return strings.Contains(peer.out.String(), "hello through openssl tls1.3")
	})
	if n := metricValue(srv.met.tunnelsTotal.WithLabelValues("svc")); n != 1 {
		t.Fatalf("tunnels_total = %v", n)
	}
}

// tlspskHasTLS12 reports whether tlspsk completes a TLS 1.2 handshake yet.
func tlspskHasTLS12(key []byte) bool {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	cfg := &tlspsk.Config{Identity: DefaultIdentity, Key: key, MinVersion: tlspsk.VersionTLS12, MaxVersion: tlspsk.VersionTLS12}
	errc := make(chan error, 1)
	go func() { errc <- tlspsk.Server(b, cfg).Handshake() }()
	a.SetDeadline(time.Now().Add(3 * time.Second))
	b.SetDeadline(time.Now().Add(3 * time.Second))
	err := tlspsk.Client(a, cfg).Handshake()
	a.Close()
	return err == nil && <-errc == nil
}

func TestOpenSSLClientTLS12(t *testing.T) {
	openssl := needBinary(t, "openssl")
	key := randomKey(t)
	if !tlspskHasTLS12(key) {
		t.Fatal("tlspsk fails a TLS 1.2 handshake with itself")
	}
	srv := serverProxy(t, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), PSKConfig{Hex: hexKey(key)}, nil)
	peer := startPeer(t, testCtx(t), openssl, "s_client", "-quiet", "-tls1_2", "-cipher", "PSK-AES128-GCM-SHA256",
		"-psk", hexKey(key), "-psk_identity", DefaultIdentity, "-connect", srv.url("svc"))
	fmt.Fprintln(peer.stdin, "hello through openssl tls1.2")
	waitFor(t, 10*time.Second, "the echo in s_client's output", func() bool {
		return strings.Contains(peer.out.String(), "hello through openssl tls1.2")
	})
}

func TestOpenSSLClientDTLS12CCM8(t *testing.T) {
	openssl := needBinary(t, "openssl")
	key := randomKey(t)
	srv := serverProxy(t, "dtls://127.0.0.1:0", "udp://"+udpEcho(t).String(), PSKConfig{Hex: hexKey(key)}, nil)
	peer := startPeer(t, testCtx(t), openssl, "s_client", "-quiet", "-dtls1_2", "-cipher", "PSK-AES128-CCM8",
		"-psk", hexKey(key), "-psk_identity", DefaultIdentity, "-connect", srv.url("svc"))
	fmt.Fprintln(peer.stdin, "hello through openssl dtls1.2")
	waitFor(t, 10*time.Second, "the echo in s_client's output", func() bool {
		return strings.Contains(peer.out.String(), "hello through openssl dtls1.2")
	})
	st := srv.Status()
	if st[0].Open != 1 {
		t.Fatalf("server proxy has %d sessions, want 1", st[0].Open)
	}
}

// clientProxy starts a client proxy in front of a peer server.
func clientProxy(t *testing.T, listen, connect string, psk PSKConfig, mut func(*Route)) *testProxy {
	t.Helper()
	r := testRoute("app", listen, connect)
	r.PSK = psk
	if mut != nil {
		mut(&r)
	}
	return startProxy(t, ModeClient, false, nil, r)
}

func TestClientProxyToOpenSSLServerTLS13(t *testing.T) {
	openssl := needBinary(t, "openssl")
	key := randomKey(t)
	peer, port := openSSLServer(t, openssl, "-psk", hexKey(key), "-nocert", "-tls1_3", "-naccept", "1")
	cp := clientProxy(t, "tcp://127.0.0.1:0", fmt.Sprintf("tls://127.0.0.1:%d", port), PSKConfig{Hex: hexKey(key)}, nil)
	c, err := net.Dial("tcp", cp.url("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, "from the app")
	waitFor(t, 10*time.Second, "s_server to print the app's line", func() bool { return strings.Contains(peer.out.String(), "from the app") })
	fmt.Fprintln(peer.stdin, "from s_server")
	if got := readUntil(t, c, "from s_server"); !strings.Contains(got, "from s_server") {
		t.Fatalf("app got %q", got)
	}
}

func readUntil(t *testing.T, c net.Conn, want string) string {
	t.Helper()
	var got []byte
	buf := make([]byte, 1024)
	for !strings.Contains(string(got), want) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	return string(got)
}

func TestClientProxyToOpenSSLServerDTLS(t *testing.T) {
	openssl := needBinary(t, "openssl")
	key := randomKey(t)
	peer, port := openSSLServer(t, openssl, "-dtls1_2", "-psk", hexKey(key), "-nocert", "-cipher", "PSK-AES128-CCM8")
	cp := clientProxy(t, "udp://127.0.0.1:0", fmt.Sprintf("dtls://127.0.0.1:%d", port), PSKConfig{Hex: hexKey(key)},
		func(r *Route) { r.DTLS.CipherSuites = []string{"PSK-AES128-CCM8"} })
	c, err := net.Dial("udp", cp.url("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("from the app\n"))
	waitFor(t, 10*time.Second, "s_server to print the app's datagram", func() bool { return strings.Contains(peer.out.String(), "from the app") })
	fmt.Fprintln(peer.stdin, "from s_server")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "from s_server") {
		t.Fatalf("app got %q, %v", buf[:n], err)
	}
}

// TestStunnelClientToServerProxy: an unmodified stunnel PSK client, with a
// PSKsecrets file whose first identity has an ASCII key (stunnel's classic
// format), reaches the backend through a server proxy that reads the same
// file.
func TestStunnelClientToServerProxy(t *testing.T) {
	stunnel := needBinary(t, "stunnel")
	secrets := writeSecret(t, "psk.txt",
		"alice:an ASCII key of more than sixteen bytes\nbob:"+hexKey(randomKey(t))+"\n")
	srv := serverProxy(t, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), PSKConfig{Secrets: secrets}, nil)
	port := startStunnel(t, stunnel, func(port int) string {
		return fmt.Sprintf(`foreground = yes
pid =
[mcbn]
client = yes
accept = 127.0.0.1:%d
connect = %s
PSKsecrets = %s
sslVersionMin = TLSv1.3
ciphersuites = TLS_AES_128_GCM_SHA256
`, port, srv.url("svc"), secrets)
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	got, err := roundTrip(t, addr, []byte("through stunnel"))
	if err != nil || string(got) != "through stunnel" {
		t.Fatalf("got %q, %v", got, err)
	}
	if !strings.Contains(srv.logs.String(), "identity=alice") {
		t.Fatalf("the server proxy did not see stunnel's first identity, alice")
	}
}

// TestGnuTLSClient: gnutls-cli with the brief's priority string reaches
// the backend through a server proxy.
func TestGnuTLSClient(t *testing.T) {
	gnutls := needBinary(t, "gnutls-cli")
	key := randomKey(t)
	srv := serverProxy(t, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), PSKConfig{Hex: hexKey(key)}, nil)
	host, port, _ := net.SplitHostPort(srv.url("svc"))
	peer := startPeer(t, testCtx(t), gnutls, "--pskusername", DefaultIdentity, "--pskkey", hexKey(key),
		"--priority", "NORMAL:+ECDHE-PSK:+PSK", "-p", port, host)
	fmt.Fprintln(peer.stdin, "hello through gnutls")
	waitFor(t, 10*time.Second, "the echo in gnutls-cli's output", func() bool {
		return strings.Contains(peer.out.String(), "hello through gnutls")
	})
	if n := metricValue(srv.met.tunnelsTotal.WithLabelValues("svc")); n != 1 {
		t.Fatalf("tunnels_total = %v", n)
	}
}

// TestClientProxyToStunnelServer: a client proxy with the same PSKsecrets
// file (first identity, ASCII key) reaches a backend behind a stunnel PSK
// server.
func TestClientProxyToStunnelServer(t *testing.T) {
	stunnel := needBinary(t, "stunnel")
	secrets := writeSecret(t, "psk.txt", "carol:another ASCII key, long enough\n")
	backend := echoServer(t).String()
	port := startStunnel(t, stunnel, func(port int) string {
		return fmt.Sprintf(`foreground = yes
pid =
[mcbn]
accept = 127.0.0.1:%d
connect = %s
PSKsecrets = %s
sslVersionMin = TLSv1.3
ciphersuites = TLS_AES_128_GCM_SHA256
`, port, backend, secrets)
	})
	cp := clientProxy(t, "tcp://127.0.0.1:0", fmt.Sprintf("tls://127.0.0.1:%d", port), PSKConfig{Secrets: secrets}, nil)
	got, err := roundTrip(t, cp.url("app"), []byte("to stunnel"))
	if err != nil || string(got) != "to stunnel" {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestStartStunnelRetriesTakenPort: the helper that replaced "free port,
// then hope" moves on when stunnel finds the port taken.
func TestStartStunnelRetriesTakenPort(t *testing.T) {
	stunnel := needBinary(t, "stunnel")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	secrets := writeSecret(t, "psk.txt", "carol:another ASCII key, long enough\n")
	ports := []int{taken.Addr().(*net.TCPAddr).Port}
	next := func() int {
		if len(ports) > 0 {
			p := ports[0]
			ports = ports[1:]
			return p
		}
		return freePort(t, "tcp")
	}
	port := startStunnelOn(t, stunnel, func(port int) string {
		return fmt.Sprintf("foreground = yes\npid =\n[mcbn]\nclient = yes\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:9\nPSKsecrets = %s\n", port, secrets)
	}, next)
	if port == taken.Addr().(*net.TCPAddr).Port {
		t.Fatal("startStunnel returned the taken port")
	}
}
