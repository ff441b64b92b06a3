// Package examples_test runs or checks every example in this directory, so
// an adopter can trust that the example for their setting works: local
// configs start a real topology, interop scripts run against a server proxy
// when their peer tool is installed (mandatory under MCBN_REQUIRE_INTEROP=1),
// and deployment files that cannot run here (Kubernetes, Cloud Build,
// Confidential Space) are parsed and checked, and their command lines run
// against files laid out as the platform would.
package examples_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// needTool returns the path of an interop peer, skipping the test when it
// is missing unless MCBN_REQUIRE_INTEROP=1 makes that a failure.
func needTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("MCBN_REQUIRE_INTEROP") == "1" {
		t.Fatalf("%s not installed and MCBN_REQUIRE_INTEROP=1", names[0])
	}
	t.Skipf("%s not installed", names[0])
	return ""
}

// tcpEcho and udpEcho are the "server app" of the interop tests.
func tcpEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func udpEcho(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}

// mcbnBuild is the mcbn binary built once per test run (mcbnBinary).
var mcbnBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// mcbnBinary builds ./cmd/mcbn once into a temporary directory (removed by
// TestMain) and returns its path, for tests that run the real command line.
func mcbnBinary(t *testing.T) string {
	t.Helper()
	mcbnBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "mcbn-bin-")
		if err != nil {
			mcbnBuild.err = err
			return
		}
		mcbnBuild.dir = dir
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		path := filepath.Join(dir, "mcbn")
		cmd := exec.Command(goBin, "build", "-o", path, "./cmd/mcbn")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			mcbnBuild.err = fmt.Errorf("go build ./cmd/mcbn: %v\n%s", err, out)
			return
		}
		mcbnBuild.path = path
	})
	if mcbnBuild.err != nil {
		t.Fatal(mcbnBuild.err)
	}
	return mcbnBuild.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if mcbnBuild.dir != "" {
		os.RemoveAll(mcbnBuild.dir)
	}
	os.Exit(code)
}

// waitDial waits until addr accepts TCP connections.
func waitDial(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// lineEcho sends a line to addr and reports whether it came back.
func lineEcho(addr, line string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return false
	}
	buf := make([]byte, len(line)+1)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == line+"\n"
}

// readExample reads a file of this directory.
func readExample(t *testing.T, parts ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}
