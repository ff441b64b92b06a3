package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// tcpPair starts a server proxy in front of backend and a client proxy in
// front of it, both with key in a 0600 file.
func tcpPair(t *testing.T, key []byte, backend string, mut func(c, s *Route)) (client, server *testProxy) {
	t.Helper()
	kf := writeSecret(t, "psk.hex", hexKey(key)+"\n")
	sr := testRoute("web", "tls://127.0.0.1:0", "tcp://"+backend)
	sr.PSK.File = kf
	cr := testRoute("web", "tcp://127.0.0.1:0", "tls://placeholder:1")
	cr.PSK.File = kf
	if mut != nil {
		mut(&cr, &sr)
	}
	server = startProxy(t, ModeServer, true, nil, sr)
	cr.Connect = "tls://" + server.url("web")
	client = startProxy(t, ModeClient, true, nil, cr)
	return client, server
}

func TestTCPHTTPThroughBothProxies(t *testing.T) {
	body := make([]byte, 1<<20)
	rand.Read(body)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Upload-SHA256", fmt.Sprintf("%x", sha256.Sum256(up)))
		w.Write(body)
	}))
	defer backend.Close()
	key := randomKey(t)
	client, server := tcpPair(t, key, strings.TrimPrefix(backend.URL, "http://"), nil)

	upload := make([]byte, 300<<10)
	rand.Read(upload)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 3; i++ {
		resp, err := hc.Post("http://"+client.url("web")+"/x", "application/octet-stream", bytes.NewReader(upload))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("response differs: got %d bytes, want %d", len(got), len(body))
		}
		if h := resp.Header.Get("X-Upload-SHA256"); h != fmt.Sprintf("%x", sha256.Sum256(upload)) {
			t.Fatalf("upload arrived altered")
		}
	}
	if n := metricValue(server.met.tunnelsTotal.WithLabelValues("web")); n != 3 {
		t.Fatalf("server tunnels_total = %v, want 3", n)
	}
	// A copier counts bytes once its write returns, which can be just after
	// the app read them: wait for the count instead of racing it.
	waitFor(t, 5*time.Second, "server reverse bytes >= 3 MiB", func() bool {
		return metricValue(server.met.bytes.WithLabelValues("web", "reverse")) >= 3<<20
	})
	assertNoSecret(t, client.logs.String()+server.logs.String(), key)
}

// TestTCPHalfClose: the app shuts its write side and still receives a
// response the backend sends only after seeing that EOF.
func TestTCPHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	answer := make([]byte, 200<<10)
	rand.Read(answer)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, _ := io.ReadAll(c) // until the client's half-close arrives
				sum := sha256.Sum256(req)
				c.Write(sum[:])
				c.Write(answer)
			}()
		}
	}()
	client, _ := tcpPair(t, randomKey(t), ln.Addr().String(), nil)
	req := []byte("request that ends with a half-close")
	got, err := roundTrip(t, client.url("web"), req)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(req)
	if !bytes.Equal(got, append(sum[:], answer...)) {
		t.Fatalf("got %d bytes, want %d (hash of request + answer)", len(got), 32+len(answer))
	}
}

func TestTCPWrongKeyAndUnknownIdentity(t *testing.T) {
	backend := echoServer(t)
	key, other := randomKey(t), randomKey(t)
	for _, tc := range []struct {
		name   string
		mut    func(c, s *Route)
		reason string
	}{
		{"wrong key", func(c, s *Route) { c.PSK = PSKConfig{Hex: hexKey(other)} }, "wrong_key"},
		{"unknown identity", func(c, s *Route) { c.Identity = "mallory" }, "unknown_identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := tcpPair(t, key, backend.String(), tc.mut)
			got, err := roundTrip(t, client.url("web"), []byte("hello"))
			if err == nil && len(got) > 0 {
				t.Fatalf("a peer with the wrong PSK got data through: %q", got)
			}
			waitFor(t, 5*time.Second, "server failure metric", func() bool {
				return metricValue(server.met.handshakeFailures.WithLabelValues("web", tc.reason)) == 1
			})
			waitFor(t, 5*time.Second, "client log", func() bool { return strings.Contains(client.logs.String(), "reason="+tc.reason) })
			if !strings.Contains(server.logs.String(), "peer=127.0.0.1:") {
				t.Fatalf("server log does not name the peer:\n%s", server.logs.String())
			}
			if tc.reason == "unknown_identity" && !strings.Contains(server.logs.String(), `mallory`) {
				t.Fatalf("server log does not name the offered identity")
			}
			if n := metricValue(server.met.tunnelsTotal.WithLabelValues("web")); n != 0 {
				t.Fatalf("tunnels_total = %v after a refused peer", n)
			}
			assertNoSecret(t, client.logs.String()+server.logs.String(), key, other)
		})
	}
}

// TestTCPBackendDown: the tunnel closes cleanly, /status says the backend is
// unreachable (not the PSK), and the failure is counted.
func TestTCPBackendDown(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	client, server := tcpPair(t, randomKey(t), dead, nil)
	start := time.Now()
	got, _ := roundTrip(t, client.url("web"), []byte("anyone there?"))
	if len(got) != 0 {
		t.Fatalf("got %q from a dead backend", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("tunnel to a dead backend took %v to close", d)
	}
	waitFor(t, 3*time.Second, "dial failure metric", func() bool {
		return metricValue(server.met.dialFailures.WithLabelValues("web")) >= 1
	})
	st := getStatus(t, server)
	if st.Routes[0].State != "destination_unreachable" || !st.Routes[0].PSK.Ready || !st.Ready {
		t.Fatalf("status = %+v, want destination_unreachable with the PSK ready", st.Routes[0])
	}
	if !strings.Contains(server.logs.String(), "backend unreachable") {
		t.Fatalf("no backend-unreachable log")
	}
	if n := metricValue(server.met.handshakeFailures.WithLabelValues("web", "wrong_key")); n != 0 {
		t.Fatalf("a dead backend was counted as a handshake failure")
	}
}

// TestTCPGarbageOnListener: junk on the TLS port fails alone; an open
// tunnel keeps working and a new one still opens.
func TestTCPGarbageOnListener(t *testing.T) {
	backend := echoServer(t)
	client, server := tcpPair(t, randomKey(t), backend.String(), nil)
	c, err := net.Dial("tcp", client.url("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	echo := func(msg string) {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, buf, err)
		}
	}
	echo("before")
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		bytes.Repeat([]byte{0x16, 0x03, 0x01, 0xff, 0xff}, 2000),
		{0x16, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5},
	} {
		g, err := net.Dial("tcp", server.url("web"))
		if err != nil {
			t.Fatal(err)
		}
		g.SetDeadline(time.Now().Add(5 * time.Second))
		g.Write(junk)
		io.Copy(io.Discard, g) // the server must close it
		g.Close()
	}
	echo("after")
	got, err := roundTrip(t, client.url("web"), []byte("new tunnel"))
	if err != nil || string(got) != "new tunnel" {
		t.Fatalf("new tunnel after garbage: %q, %v", got, err)
	}
	waitFor(t, 3*time.Second, "protocol_error count", func() bool {
		return metricValue(server.met.handshakeFailures.WithLabelValues("web", "protocol_error")) >= 1
	})
}

// fakeSource is a Source the test controls.
type fakeSource struct {
	mu      sync.Mutex
	key     []byte
	changes chan struct{}
}

func newFakeSource() *fakeSource { return &fakeSource{changes: make(chan struct{}, 1)} }

func (f *fakeSource) set(k []byte) {
	f.mu.Lock()
	f.key = k
	f.mu.Unlock()
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

func (f *fakeSource) Key(id string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.key == nil {
		return nil, NotReady("1/3 shares (threshold 2)")
	}
	if id != DefaultIdentity {
		return nil, ErrUnknownIdentity
	}
	return f.key, nil
}

func (f *fakeSource) Status() SourceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.key == nil {
		return SourceStatus{State: "1/3 shares (threshold 2)"}
	}
	return SourceStatus{Ready: true, State: "ready"}
}

func (f *fakeSource) Changes() <-chan struct{} { return f.changes }
func (f *fakeSource) Close() error             { return nil }

type statusDoc struct {
	Ready  bool          `json:"ready"`
	Routes []RouteStatus `json:"routes"`
}

func getStatus(t *testing.T, p *testProxy) statusDoc {
	t.Helper()
	var st statusDoc
	resp, err := http.Get("http://" + p.AdminAddr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := jsonDecode(resp.Body, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestNotReadySource: no key yet -> tunnels refused, /readyz 503 with the
// reason, /status psk_not_ready; the key arrives -> all fine, by itself.
func TestNotReadySource(t *testing.T) {
	backend := echoServer(t)
	src := newFakeSource()
	srv := startProxy(t, ModeServer, true, map[string]Source{"web": src}, testRoute("web", "tls://127.0.0.1:0", "tcp://"+backend.String()))
	key := randomKey(t)
	cr := testRoute("web", "tcp://127.0.0.1:0", "tls://"+srv.url("web"))
	cr.PSK.Hex = hexKey(key)
	client := startProxy(t, ModeClient, false, nil, cr)
	admin := "http://" + srv.AdminAddr().String()

	code, body := httpGet(t, admin+"/readyz")
	if code != 503 || !strings.Contains(body, "PSK not available yet") {
		t.Fatalf("/readyz = %d %q, want 503 naming the PSK", code, body)
	}
	if code, _ := httpGet(t, admin+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if st := getStatus(t, srv); st.Ready || st.Routes[0].State != "psk_not_ready" || st.Routes[0].PSK.State != "1/3 shares (threshold 2)" {
		t.Fatalf("status = %+v", st)
	}
	for i := 0; i < 5; i++ {
		if got, _ := roundTrip(t, client.url("web"), []byte("x")); len(got) != 0 {
			t.Fatalf("tunnel opened without a PSK")
		}
	}
	if n := strings.Count(srv.logs.String(), "PSK not available yet"); n != 1 {
		t.Fatalf("not-ready refusal logged %d times for one burst, want 1", n)
	}
	if n := metricValue(srv.met.refused.WithLabelValues("web", "psk_not_ready")); n != 5 {
		t.Fatalf("refused{psk_not_ready} = %v, want 5", n)
	}
	src.set(key)
	waitFor(t, 3*time.Second, "psk_ready gauge", func() bool { return metricValue(srv.met.pskReady.WithLabelValues("web")) == 1 })
	if got, err := roundTrip(t, client.url("web"), []byte("now")); string(got) != "now" {
		t.Fatalf("after the key arrived: %q, %v", got, err)
	}
	if code, _ := httpGet(t, admin+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d after the key arrived", code)
	}
	code, metrics := httpGet(t, admin+"/metrics")
	for _, want := range []string{"mcbn_proxy_tunnels_total", "mcbn_proxy_connections_refused_total", "mcbn_proxy_psk_ready", "go_goroutines"} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
	assertNoSecret(t, metrics+srv.logs.String()+client.logs.String(), key)
	if strings.Contains(srv.logs.String(), "/healthz") || strings.Contains(srv.logs.String(), "/readyz") {
		t.Fatalf("health probes were logged")
	}
}

// TestTCPMaxConnections: the limit holds, is logged once per burst, and
// frees up when tunnels close.
func TestTCPMaxConnections(t *testing.T) {
	backend := echoServer(t)
	client, server := tcpPair(t, randomKey(t), backend.String(), func(c, s *Route) { s.Limits.MaxConnections = 2 })
	var open []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", client.url("web"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("hi"))
		io.ReadFull(c, make([]byte, 2))
		open = append(open, c)
	}
	for i := 0; i < 4; i++ {
		if got, _ := roundTrip(t, client.url("web"), []byte("x")); len(got) != 0 {
			t.Fatalf("tunnel %d over the limit went through", i+3)
		}
	}
	if n := metricValue(server.met.refused.WithLabelValues("web", "max_connections")); n != 4 {
		t.Fatalf("refused{max_connections} = %v, want 4", n)
	}
	if n := strings.Count(server.logs.String(), "limit reached"); n != 1 {
		t.Fatalf("limit logged %d times for one burst, want 1", n)
	}
	for _, c := range open {
		c.Close()
	}
	waitFor(t, 3*time.Second, "tunnels to close", func() bool { return server.routes[0].open() == 0 })
	if got, _ := roundTrip(t, client.url("web"), []byte("again")); string(got) != "again" {
		t.Fatalf("no tunnel after the limit freed up")
	}
}

// TestTCPReloadKeepsTunnels: SIGHUP's Reload swaps the key; the open
// tunnel survives, new tunnels need the new key; a broken file keeps the
// old key.
func TestTCPReloadKeepsTunnels(t *testing.T) {
	backend := echoServer(t)
	k1, k2 := randomKey(t), randomKey(t)
	client, server := tcpPair(t, k1, backend.String(), nil)
	c, err := net.Dial("tcp", client.url("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	echo := func(msg string) error {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		_, err := io.ReadFull(c, buf)
		return err
	}
	if err := echo("one"); err != nil {
		t.Fatal(err)
	}
	// Rotate the server's key only: the open tunnel must stay up.
	path := server.cfg.Routes[0].PSK.File
	if err := os.WriteFile(path, []byte(hexKey(k2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := server.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := echo("two"); err != nil {
		t.Fatalf("open tunnel broke on reload: %v", err)
	}
	if got, _ := roundTrip(t, client.url("web"), []byte("x")); len(got) != 0 {
		t.Fatalf("a new tunnel with the old key went through after the reload")
	}
	// The client gets the new key too: new tunnels work again.
	if err := client.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, _ := roundTrip(t, client.url("web"), []byte("x")); string(got) != "x" {
		t.Fatalf("new tunnel with the new key failed")
	}
	// A broken file is refused and the key stays.
	os.WriteFile(path, []byte("not hex"), 0o600)
	if err := server.Reload(); err == nil {
		t.Fatal("reload of a broken file succeeded")
	}
	if got, _ := roundTrip(t, client.url("web"), []byte("y")); string(got) != "y" {
		t.Fatalf("a failed reload dropped the key")
	}
	if err := echo("three"); err != nil {
		t.Fatalf("open tunnel broke: %v", err)
	}
	assertNoSecret(t, client.logs.String()+server.logs.String(), k1, k2)
}

// TestTCPDrain: Shutdown stops accepting at once, lets an open tunnel
// finish, and closes one that outlives the drain timeout.
func TestTCPDrain(t *testing.T) {
	backend := echoServer(t)
	client, server := tcpPair(t, randomKey(t), backend.String(), nil)
	c, err := net.Dial("tcp", client.url("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("a"))
	io.ReadFull(c, make([]byte, 1))

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	start := time.Now()
	go func() { server.Shutdown(ctx); close(done) }()
	waitFor(t, 2*time.Second, "listener to close", func() bool {
		g, err := net.Dial("tcp", server.url("web"))
		if err == nil {
			g.Close()
		}
		return err != nil
	})
	// The open tunnel still works during the drain.
	if _, err := c.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("open tunnel broke during the drain: %v", err)
	}
	select {
	case <-done:
		if d := time.Since(start); d < time.Second {
			t.Fatalf("Shutdown returned after %v, before the drain timeout, with a tunnel open", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the drain timeout")
	}
	if _, err := io.ReadAll(c); err != nil && !isClosedErr(err) {
		t.Fatalf("read after drain: %v", err)
	}
	if !strings.Contains(server.logs.String(), "drain timeout") {
		t.Fatalf("no drain-timeout log")
	}
}

func isClosedErr(err error) bool {
	return err == nil || strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed")
}

// TestTCPIdleTimeout: a tunnel with no traffic either way is closed after
// timeouts.idle; one with traffic is not.
func TestTCPIdleTimeout(t *testing.T) {
	backend := echoServer(t)
	client, _ := tcpPair(t, randomKey(t), backend.String(), func(c, s *Route) {
		idle := Duration(400 * time.Millisecond)
		s.Timeouts.Idle = &idle
	})
	busy, err := net.Dial("tcp", client.url("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	quiet, err := net.Dial("tcp", client.url("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	quiet.SetDeadline(time.Now().Add(5 * time.Second))
	busy.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	for time.Since(start) < 1200*time.Millisecond {
		busy.Write([]byte("x"))
		if _, err := io.ReadFull(busy, make([]byte, 1)); err != nil {
			t.Fatalf("busy tunnel closed after %v: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, err := quiet.Read(make([]byte, 1)); err == nil {
		t.Fatalf("quiet tunnel still open: read %d", n)
	}
}

// TestTCPServerHalfCloseToTLSPeer: when the backend half-closes, a TLS
// peer of the server proxy gets close_notify and a TCP FIN, and can still
// send: the backend receives what it sends afterwards.
func TestTCPServerHalfCloseToTLSPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // the proxy's probes connect here too: they send nothing
				defer c.Close()
				c.Write([]byte("hello"))
				c.(*net.TCPConn).CloseWrite()
				if b, _ := io.ReadAll(c); len(b) > 0 {
					got <- string(b)
				}
			}()
		}
	}()
	key := randomKey(t)
	r := testRoute("web", "tls://127.0.0.1:0", "tcp://"+ln.Addr().String())
	r.PSK.Hex = hexKey(key)
	srv := startProxy(t, ModeServer, false, nil, r)
	tc, err := tlspsk.Dial("tcp", srv.url("web"), &tlspsk.Config{Identity: DefaultIdentity, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(tc)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q, %v", b, err)
	}
	if n, err := tc.NetConn().Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("no TCP FIN after close_notify: %d, %v", n, err)
	}
	if _, err := tc.Write([]byte("still talking")); err != nil {
		t.Fatal(err)
	}
	tc.CloseWrite()
	select {
	case s := <-got:
		if s != "still talking" {
			t.Fatalf("backend got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend never got the data sent after the half-close")
	}
}
