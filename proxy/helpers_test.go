package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// freePort returns a loopback port that was free a moment ago (for peers
// that cannot report the port they bound).
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
