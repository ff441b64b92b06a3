package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bannerServer is a backend that speaks first (like SMTP): it writes
// banner on accept, then echoes. It counts the connections it accepted.
func bannerServer(t *testing.T, banner []byte) (net.Addr, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
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
			n.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.Write(banner)
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr(), &n
}

// shortPreconnect shortens the bounds for a test.
func shortPreconnect(t *testing.T, idle, sweep time.Duration) {
	oi, os, ow := preconnectIdle, preconnectSweep, preconnectServerWait
	preconnectIdle, preconnectSweep = idle, sweep
	t.Cleanup(func() { preconnectIdle, preconnectSweep, preconnectServerWait = oi, os, ow })
}

// prePair starts a server proxy (preconnect srvPre) in front of backend
// and a client proxy with preconnect cliPre; the sources are key tables
// the test can change.
func prePair(t *testing.T, backend net.Addr, srvPre, cliPre int) (cli *testProxy, pool *preconnectPool, srcS, srcC *keyTable) {
	t.Helper()
	key := randomKey(t)
	srcS = newKeyTable(map[string][]byte{DefaultIdentity: key}, "ready")
	srcC = newKeyTable(map[string][]byte{DefaultIdentity: key}, "ready")
	rs := testRoute("s", "tls://127.0.0.1:0", "tcp://"+backend.String())
	rs.Preconnect = srvPre
	srv := startProxyNoProbe(t, ModeServer, map[string]Source{"s": srcS}, rs)
	rc := testRoute("c", "tcp://127.0.0.1:0", "tls://"+srv.url("s"))
	rc.Preconnect = cliPre
	cli = startProxyNoProbe(t, ModeClient, map[string]Source{"c": srcC}, rc)
	pool = cli.routes[0].(*tcpRoute).pre
	if pool == nil {
		t.Fatal("the client route has no preconnect pool")
	}
	return cli, pool, srcS, srcC
}

// startProxyNoProbe is startProxy without the server's backend probes,
// which would show up in the backend's connection count.
func startProxyNoProbe(t *testing.T, mode Mode, sources map[string]Source, routes ...Route) *testProxy {
	t.Helper()
	cfg := &Config{Mode: mode, Routes: routes, LogLevel: "debug", probeSet: true}
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Sources: sources})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			t.Logf("%s proxy log:\n%s", mode, logs.String())
		}
	})
	return &testProxy{Proxy: p, logs: logs}
}

func (p *preconnectPool) ready() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// TestPreconnectServerFirst: a backend that speaks first, through a
// pre-connected tunnel: the server proxy has not dialled it before the
// tunnel is used, and the banner arrives without the client writing.
func TestPreconnectServerFirst(t *testing.T) {
	banner := []byte("220 mail.example ESMTP\r\n")
	backend, accepted := bannerServer(t, banner)
	cli, pool, _, _ := prePair(t, backend, 1, 2)
	waitFor(t, 10*time.Second, "2 tunnels ready", func() bool { return pool.ready() == 2 })
	time.Sleep(100 * time.Millisecond) // a server that dials at handshake would have by now
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the backend was dialled %d times before any tunnel was used", n)
	}
	for i := 0; i < 3; i++ { // 2 pre-connected, then one past what was ready (or refilled)
		c, err := net.DialTimeout("tcp", cli.url("c"), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(banner))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, banner) {
			t.Fatalf("connection %d: banner %q, %v", i, got, err)
		}
		if _, err := c.Write([]byte("EHLO x\r\n")); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, 8)
		if _, err := io.ReadFull(c, echo); err != nil || string(echo) != "EHLO x\r\n" {
			t.Fatalf("connection %d: echo %q, %v", i, echo, err)
		}
		c.Close()
	}
	if h := pool.handed.Load(); h < 1 {
		t.Fatalf("no connection used a pre-connected tunnel (handed %d)", h)
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("backend accepted %d connections, want 3 (one per used tunnel)", n)
	}
}

// TestPreconnectKeyChangeRetires: a new key retires the ready tunnels
// (made with the old one) and new ones are made with the new key; losing
// the key closes them all.
func TestPreconnectKeyChangeRetires(t *testing.T) {
	shortPreconnect(t, time.Minute, 50*time.Millisecond)
	cli, pool, srcS, srcC := prePair(t, echoServer(t), 1, 2)
	waitFor(t, 10*time.Second, "2 tunnels ready", func() bool { return pool.ready() == 2 })
	old := make([]*readyTunnel, 0, 2)
	pool.mu.Lock()
	old = append(old, pool.idle...)
	pool.mu.Unlock()

	k2 := randomKey(t)
	srcS.replace(map[string][]byte{DefaultIdentity: k2}, "ready")
	srcC.replace(map[string][]byte{DefaultIdentity: k2}, "ready")
	waitFor(t, 10*time.Second, "the old tunnels retired", func() bool { return pool.retired.Load() >= 2 })
	waitFor(t, 10*time.Second, "2 new tunnels ready", func() bool { return pool.ready() == 2 })
	pool.mu.Lock()
	for _, rt := range pool.idle {
		for _, o := range old {
			if rt == o {
				pool.mu.Unlock()
				t.Fatal("a tunnel made with the old key is still ready")
			}
		}
		if rt.keySum != keySum(k2) {
			pool.mu.Unlock()
			t.Fatal("a ready tunnel was not made with the new key")
		}
	}
	pool.mu.Unlock()
	if got, err := roundTrip(t, cli.url("c"), []byte("after rotation")); err != nil || string(got) != "after rotation" {
		t.Fatalf("round trip after rotation: %q, %v", got, err)
	}

	srcC.replace(nil, "lost") // readiness lost: all ready tunnels closed, none made
	waitFor(t, 10*time.Second, "the pool emptied, nothing in flight", func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return len(pool.idle) == 0 && pool.inflight == 0
	})
	made := pool.made.Load()
	time.Sleep(200 * time.Millisecond)
	if pool.ready() != 0 || pool.made.Load() != made {
		t.Fatal("the pool made tunnels without a key")
	}
}

// TestPreconnectTakeChecksKey: even before a sweep, a tunnel made with a
// key the source no longer gives is not handed out.
func TestPreconnectTakeChecksKey(t *testing.T) {
	shortPreconnect(t, time.Minute, time.Hour) // no sweep during the test
	_, pool, _, srcC := prePair(t, echoServer(t), 1, 1)
	waitFor(t, 10*time.Second, "1 tunnel ready", func() bool { return pool.ready() == 1 })
	srcC.replace(map[string][]byte{DefaultIdentity: randomKey(t)}, "ready")
	if tc := pool.take(); tc != nil {
		tc.Close()
		t.Fatal("a tunnel made with the old key was handed out")
	}
	if pool.retired.Load() != 1 {
		t.Fatalf("retired %d, want 1", pool.retired.Load())
	}
}

// TestPreconnectIdleBound: a ready tunnel older than the idle bound is
// closed and replaced, never handed out. Against a server route without
// preconnect the backend is dialled at the handshake, as before, and the
// empty record the client sends on use is harmless.
func TestPreconnectIdleBound(t *testing.T) {
	shortPreconnect(t, 300*time.Millisecond, 50*time.Millisecond)
	backend, accepted := bannerServer(t, nil) // an echo server that counts
	cli, pool, _, _ := prePair(t, backend, 0, 1)
	waitFor(t, 10*time.Second, "2 tunnels retired for idling", func() bool { return pool.retired.Load() >= 2 })
	waitFor(t, 10*time.Second, "the retired tunnels replaced", func() bool { return pool.made.Load() >= 3 })
	if pool.handed.Load() != 0 {
		t.Fatal("a tunnel was handed out with no local connection")
	}
	if accepted.Load() == 0 {
		t.Fatal("a server route without preconnect did not dial its backend at the handshake")
	}
	if got, err := roundTrip(t, cli.url("c"), []byte("idle")); err != nil || string(got) != "idle" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
}

// TestPreconnectPeerClosed: a ready tunnel the server closed (its wait
// ended) is found dead and not handed out.
func TestPreconnectPeerClosed(t *testing.T) {
	shortPreconnect(t, time.Minute, time.Hour)
	preconnectServerWait = 100 * time.Millisecond
	cli, pool, _, _ := prePair(t, echoServer(t), 1, 1)
	waitFor(t, 10*time.Second, "1 tunnel ready", func() bool { return pool.ready() == 1 })
	pool.mu.Lock()
	rt := pool.idle[0]
	pool.mu.Unlock()
	waitFor(t, 10*time.Second, "the server to close the waiting tunnel", func() bool { return peerSpoke(rt.tc.NetConn()) })
	if got, err := roundTrip(t, cli.url("c"), []byte("x")); err != nil || string(got) != "x" {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	if pool.retired.Load() < 1 {
		t.Fatal("the closed tunnel was not retired")
	}
}

// TestPreconnectConfig: preconnect is checked.
func TestPreconnectConfig(t *testing.T) {
	for _, tc := range []struct {
		mode    Mode
		listen  string
		connect string
		n       int
		ok      bool
	}{
		{ModeClient, "tcp://127.0.0.1:1", "tls://127.0.0.1:2", 4, true},
		{ModeServer, "tls://127.0.0.1:1", "tcp://127.0.0.1:2", 1, true},
		{ModeClient, "tcp://127.0.0.1:1", "tls://127.0.0.1:2", -1, false},
		{ModeClient, "tcp://127.0.0.1:1", "tls://127.0.0.1:2", maxPreconnect + 1, false},
		{ModeClient, "udp://127.0.0.1:1", "dtls://127.0.0.1:2", 1, false},
	} {
		r := testRoute("r", tc.listen, tc.connect)
		r.PSK.Hex = hexKey(randomKey(t))
		r.Preconnect = tc.n
		cfg := &Config{Mode: tc.mode, Routes: []Route{r}}
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s %s preconnect %d: %v", tc.mode, tc.listen, tc.n, err)
		}
	}
}

// TestPreconnectTakeWaitsForInflight: with none ready but one being made,
// a taker waits for it (it is further along than a new dial); a second
// taker does not wait for the same one.
func TestPreconnectTakeWaitsForInflight(t *testing.T) {
	shortPreconnect(t, time.Minute, time.Hour)
	_, pool, _, _ := prePair(t, echoServer(t), 1, 1)
	waitFor(t, 10*time.Second, "1 tunnel ready", func() bool { return pool.ready() == 1 })
	pool.mu.Lock()
	rt := pool.idle[0]
	pool.idle = nil
	pool.inflight++ // pretend rt is still being made (and stop the refill)
	pool.mu.Unlock()

	got := make(chan any, 1)
	go func() { got <- pool.take() }()
	waitFor(t, 10*time.Second, "the taker to wait", func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return pool.waiting == 1
	})
	if tc := pool.take(); tc != nil {
		t.Fatal("a second taker got a tunnel that was not there")
	}
	pool.mu.Lock()
	pool.inflight--
	pool.idle = append(pool.idle, rt)
	close(pool.changed)
	pool.changed = make(chan struct{})
	pool.mu.Unlock()
	select {
	case tc := <-got:
		if tc != rt.tc {
			t.Fatalf("the waiting taker got %v, want the tunnel it waited for", tc)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting taker was not woken")
	}
}
