package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestTCPIdleTunnelsHoldNoCopyBuffer opens 200 tunnels through a server
// and a client proxy, lets some carry a burst and all carry a byte, then
// leaves them idle: no half may hold a copy buffer, whether its source is
// a plain socket (read when readable) or TLS (tlspsk's WriteTo). The
// count is of buffers taken from the pool and not given back, not of
// memory, so it does not depend on the machine or the GC.
func TestTCPIdleTunnelsHoldNoCopyBuffer(t *testing.T) {
	const tunnels, burst = 200, 100 << 10
	raiseFileLimit(t, 8*tunnels)
	backend := echoServer(t)
	// 200 handshakes at once (X25519MLKEM768, slower still under the race
	// detector) on a loaded 2-core machine can outlast the default
	// handshake and first-byte timeouts; this test is about buffers, not
	// timeouts, so it gives them room.
	client, server := tcpPair(t, randomKey(t), backend.String(), func(c, s *Route) {
		for _, r := range []*Route{c, s} {
			r.Timeouts.Handshake = Duration(2 * time.Minute)
			r.Timeouts.FirstByte = Duration(2 * time.Minute)
		}
	})
	addr := client.url("web")
	base := bufsOut.Load()

	payload := make([]byte, burst)
	rand.Read(payload)
	conns := make([]net.Conn, tunnels)
	var sent atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, tunnels)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			msg := []byte{byte(i)}
			if i%10 == 0 {
				msg = payload // a full buffer's worth and more, so big reads happen too
			}
			go c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- errors.New("echo differs")
				return
			}
			sent.Add(int64(len(msg)))
			c.SetDeadline(time.Time{})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("opening tunnels: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})

	const want = 0
	waitFor(t, 5*time.Second, "idle tunnels to give their copy buffers back", func() bool {
		return bufsOut.Load()-base == want
	})
	time.Sleep(200 * time.Millisecond)
	if n := bufsOut.Load() - base; n != want {
		t.Fatalf("%d copy buffers held by %d idle tunnels, want %d", n, tunnels, want)
	}

	// Byte counters and the open gauges are kept as before.
	for _, p := range []*testProxy{client, server} {
		if v := metricValue(p.met.tunnelsOpen.WithLabelValues("web")); v != tunnels {
			t.Errorf("%s: tunnels_open %v, want %d", p.cfg.Mode, v, tunnels)
		}
		for _, dir := range []string{"forward", "reverse"} {
			// A counter moves just after its write, so it may trail the echo.
			m := p.met.bytes.WithLabelValues("web", dir)
			waitFor(t, 5*time.Second, string(p.cfg.Mode)+" bytes_total "+dir, func() bool { return metricValue(m) == float64(sent.Load()) })
		}
	}

	// The idle tunnels still work, and closing them gives everything back.
	for i, c := range conns[:20] {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{byte(i), 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			t.Fatalf("tunnel %d after idling: %v", i, err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 10*time.Second, "closed tunnels to give every copy buffer back", func() bool {
		return bufsOut.Load() == base
	})
}

// TestCopyHalfSocketSemantics checks the buffer-less socket copy on its
// own: EOF becomes a half-close of dst, Close and a read deadline end an
// idle wait with an error, and no buffer stays taken in any case.
func TestCopyHalfSocketSemantics(t *testing.T) {
	base := bufsOut.Load()
	pair := func() (src, peer net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		peer, err = net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		src, err = ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close(); peer.Close() })
		return src, peer
	}
	counter := func() prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}) }

	t.Run("eof", func(t *testing.T) {
		src, in := pair()
		dst, out := pair()
		var last atomic.Int64
		ctr := counter()
		done := make(chan error, 1)
		go func() { done <- copyHalf(dst, src, ctr, &last) }()
		msg := bytes.Repeat([]byte("abc"), 50000)
		go func() {
			in.Write(msg)
			in.(*net.TCPConn).CloseWrite()
		}()
		out.SetDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(out) // ends only if dst was half-closed
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("read %d bytes, err %v; want %d", len(got), err, len(msg))
		}
		if err := <-done; err != nil {
			t.Fatalf("copyHalf at EOF: %v", err)
		}
		if v := metricValue(ctr); v != float64(len(msg)) {
			t.Fatalf("counter %v, want %d", v, len(msg))
		}
		if last.Load() == 0 {
			t.Fatal("last activity not recorded")
		}
		// dst is only half-closed: it still reads.
		out.Write([]byte("z"))
		dst.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(dst, make([]byte, 1)); err != nil {
			t.Fatalf("dst after half-close: %v", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		src, _ := pair()
		dst, _ := pair()
		var last atomic.Int64
		done := make(chan error, 1)
		go func() { done <- copyHalf(dst, src, counter(), &last) }()
		time.Sleep(50 * time.Millisecond) // parked in the poller
		src.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end the wait")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		src, _ := pair()
		dst, _ := pair()
		var last atomic.Int64
		src.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		err := copyHalf(dst, src, counter(), &last)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after the deadline: %v, want os.ErrDeadlineExceeded", err)
		}
	})
	if n := bufsOut.Load() - base; n != 0 {
		t.Fatalf("%d copy buffers not given back", n)
	}
}

// TestCountingWriter: the destination of a TLS source's WriteTo counts
// every byte and marks the tunnel active, through Write and through a
// gathered WriteBuffers.
func TestCountingWriter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dst, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	ctr := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	var last atomic.Int64
	cw := &countingWriter{w: dst, ctr: ctr, last: &last}
	if _, err := cw.Write([]byte("one ")); err != nil {
		t.Fatal(err)
	}
	v := net.Buffers{[]byte("two "), []byte("three "), []byte("four")}
	if n, err := cw.WriteBuffers(&v); n != 14 || err != nil || len(v) != 0 {
		t.Fatalf("WriteBuffers: %d, %v, %d pieces left", n, err, len(v))
	}
	dst.(*net.TCPConn).CloseWrite()
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "one two three four" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if v := metricValue(ctr); v != 18 {
		t.Fatalf("counter %v, want 18", v)
	}
	if last.Load() == 0 {
		t.Fatal("last activity not recorded")
	}
}
