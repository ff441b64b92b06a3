package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// raiseFileLimit lifts RLIMIT_NOFILE to its hard limit: 1,000 tunnels are
// about 6,000 descriptors in this one process.
func raiseFileLimit(t *testing.T, need uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if rl.Cur < need {
		// CI must run this test: a machine that cannot is a failure there.
		if os.Getenv("CI") != "" || os.Getenv("MCBN_REQUIRE_INTEROP") == "1" {
			t.Fatalf("RLIMIT_NOFILE %d < %d needed (raise the hard limit, e.g. ulimit -Hn)", rl.Cur, need)
		}
		t.Skipf("RLIMIT_NOFILE %d < %d needed", rl.Cur, need)
	}
}

// TestTCPConcurrentTunnels opens 1,000 tunnels at once through both
// proxies, each echoing its own random data checked by SHA-256, then shuts
// everything down and checks no goroutine is left behind.
func TestTCPConcurrentTunnels(t *testing.T) {
	const tunnels, size = 1000, 16 << 10
	raiseFileLimit(t, 8*tunnels)
	before := runtime.NumGoroutine()
	backendLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backendDone := make(chan struct{})
	go func() {
		defer close(backendDone)
		for {
			c, err := backendLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	client, server := tcpPair(t, randomKey(t), backendLn.Addr().String(), func(c, s *Route) {
		// A burst of 1,000 SYNs can overflow the SYN queue (a 1s retransmit):
		// this test is about concurrency, so the timeouts are generous.
		for _, r := range []*Route{c, s} {
			r.Timeouts.Handshake = Duration(30 * time.Second)
			r.Timeouts.Dial = Duration(20 * time.Second)
		}
	})
	addr := client.url("web")

	// Phase 1: all tunnels open (dial and first echo) before any data runs,
	// so the proxies really hold 1,000 at once.
	conns := make([]net.Conn, tunnels)
	errs := make(chan error, tunnels)
	for i := range conns {
		go func() {
			c, err := net.DialTimeout("tcp", addr, 20*time.Second)
			if err == nil {
				c.SetDeadline(time.Now().Add(60 * time.Second))
				if _, err = c.Write([]byte{1}); err == nil {
					_, err = io.ReadFull(c, make([]byte, 1))
				}
			}
			conns[i] = c
			errs <- err
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatalf("opening a tunnel: %v", err)
		}
	}
	if open := server.routes[0].open(); open != tunnels {
		t.Fatalf("server proxy has %d tunnels open, want %d", open, tunnels)
	}
	// Phase 2: every tunnel echoes its own random data.
	for _, c := range conns {
		go func() {
			defer c.Close()
			data := make([]byte, size)
			rand.Read(data)
			want := sha256.Sum256(data)
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(data)
				c.(*net.TCPConn).CloseWrite()
				werr <- err
			}()
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err == nil {
				err = <-werr
			}
			if err == nil && (n != size || !bytes.Equal(h.Sum(nil), want[:])) {
				err = io.ErrUnexpectedEOF
			}
			errs <- err
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			t.Fatalf("echo through a tunnel: %v", err)
		}
	}
	waitFor(t, 10*time.Second, "tunnels to close", func() bool {
		return server.routes[0].open() == 0 && client.routes[0].open() == 0
	})
	client.Close()
	server.Close()
	backendLn.Close()
	<-backendDone
	waitFor(t, 10*time.Second, "goroutines to settle", func() bool {
		return runtime.NumGoroutine() <= before+5
	})
	t.Logf("goroutines: %d before, %d after shutdown", before, runtime.NumGoroutine())
}
