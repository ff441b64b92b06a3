package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a log sink tests can read while the proxy writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// writeSecret writes a 0600 file in the test's temp dir.
func writeSecret(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testProxy is a proxy under test with its log.
type testProxy struct {
	*Proxy
	logs *syncBuffer
}

// startProxy starts a proxy with the given routes; listeners may use port 0.
func startProxy(t *testing.T, mode Mode, admin bool, sources map[string]Source, routes ...Route) *testProxy {
	t.Helper()
	// Only server proxies probe: a client's probe would dial the server
	// proxy under test and show up in its counters.
	cfg := &Config{Mode: mode, Routes: routes, LogLevel: "debug", probeSet: true}
	if mode == ModeServer {
		cfg.ProbeInterval = Duration(200 * time.Millisecond)
	}
	if admin {
		cfg.Admin = "127.0.0.1:0"
	}
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Sources: sources})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	tp := &testProxy{Proxy: p, logs: logs}
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			t.Logf("%s proxy log:\n%s", mode, logs.String())
		}
	})
	return tp
}

func (p *testProxy) url(route string) string {
	return p.Addr(route).String()
}

// assertNoSecret fails if a key shows up in the logs in any usual form.
func assertNoSecret(t *testing.T, logs string, keys ...[]byte) {
	t.Helper()
	for _, k := range keys {
		for _, form := range []string{hex.EncodeToString(k), strings.ToUpper(hex.EncodeToString(k)), string(k)} {
			if len(form) >= 16 && strings.Contains(logs, form) {
				t.Fatalf("a key appears in the log")
			}
		}
	}
}

// echoServer is a TCP backend that echoes, half-closing when the client
// does.
func echoServer(t *testing.T) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr()
}

// udpEcho is a UDP backend that echoes each datagram.
func udpEcho(t *testing.T) net.Addr {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pc.SetReadBuffer(4 << 20)
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, a, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			pc.WriteToUDPAddrPort(buf[:n], a)
		}
	}()
	return pc.LocalAddr()
}

// freePort returns a loopback port that was free a moment ago. Another
// process may take it before it is used, so peers that can bind port 0
// themselves do (openSSLServer); stunnel cannot, and startStunnel retries
// on a port that turns out to be taken.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

var acceptLineRE = regexp.MustCompile(`ACCEPT 127\.0\.0\.1:(\d+)`)

// openSSLServer runs openssl s_server with args on a loopback port it binds
// itself (-accept 127.0.0.1:0) and returns the port from its ACCEPT line.
func openSSLServer(t *testing.T, openssl string, args ...string) (*peerProcess, int) {
	t.Helper()
	peer := startPeer(t, testCtx(t), openssl, append(append([]string{"s_server"}, args...), "-accept", "127.0.0.1:0")...)
	var port int
	waitFor(t, 10*time.Second, "s_server to accept", func() bool {
		m := acceptLineRE.FindStringSubmatch(peer.out.String())
		if m == nil {
			return false
		}
		port, _ = strconv.Atoi(m[1])
		return true
	})
	return peer, port
}

// startStunnel runs stunnel with the config conf(port) makes for a free
// loopback port, and returns the port once stunnel has bound it. stunnel
// cannot bind port 0 and report it, so a port taken between freePort and
// stunnel's bind ("Address already in use") is retried with another.
func startStunnel(t *testing.T, stunnel string, conf func(port int) string) int {
	t.Helper()
	return startStunnelOn(t, stunnel, conf, func() int { return freePort(t, "tcp") })
}

// startStunnelOn is startStunnel with the ports to try given by next.
func startStunnelOn(t *testing.T, stunnel string, conf func(port int) string, next func() int) int {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		port := next()
		path := filepath.Join(t.TempDir(), "stunnel.conf")
		// debug = 6 makes stunnel log "Service [...] bound to ..." once
		// its listener is up.
		if err := os.WriteFile(path, []byte("debug = 6\n"+conf(port)), 0o600); err != nil {
			t.Fatal(err)
		}
		peer := startPeer(t, testCtx(t), stunnel, path)
		bound := fmt.Sprintf("bound to 127.0.0.1:%d", port)
		var taken bool
		waitFor(t, 10*time.Second, "stunnel to bind its port", func() bool {
			out := peer.out.String()
			taken = strings.Contains(out, "Address already in use")
			return taken || strings.Contains(out, bound)
		})
		if !taken {
			return port
		}
		t.Logf("stunnel: port %d was taken, trying another", port)
	}
	t.Fatal("stunnel found 5 ports in a row taken")
	return 0
}

// needBinary finds an interop peer; without it the test is skipped unless
// MCBN_REQUIRE_INTEROP=1, which makes it fail.
func needBinary(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("MCBN_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s not found and MCBN_REQUIRE_INTEROP=1", name)
		}
		t.Skipf("%s not found", name)
	}
	return p
}

// peerProcess runs an interop peer, collecting its output, and kills it at
// the end of the test.
type peerProcess struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	stdin io.WriteCloser
}

func startPeer(t *testing.T, ctx context.Context, path string, args ...string) *peerProcess {
	t.Helper()
	cmd := exec.CommandContext(ctx, path, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(path), out.String())
		}
	})
	return &peerProcess{cmd: cmd, out: out, stdin: stdin}
}

func hexKey(k []byte) string { return hex.EncodeToString(k) }

// tcpRoute and udp routes with defaults for tests.
func testRoute(name, listen, connect string) Route {
	return Route{Name: name, Listen: listen, Connect: connect,
		Timeouts: Timeouts{Handshake: Duration(3 * time.Second), Dial: Duration(2 * time.Second)}}
}

// roundTrip writes msg on a fresh connection to addr, half-closes, and
// returns everything read back.
func roundTrip(t *testing.T, addr string, msg []byte) ([]byte, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	c.(*net.TCPConn).CloseWrite()
	return io.ReadAll(c)
}
