package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// Key rotation by epochs (epochs.go): real client and server proxies,
// real tlspsk, configs re-read on Reload as SIGHUP does.

// ep is one psk.epochs entry: its epoch and the key source as the inside
// of a YAML flow mapping ("hex: ..." or "source: test-gather, options: ...").
type ep struct {
	n   uint64
	src string
}

func hexEp(n uint64, key []byte) ep { return ep{n, "hex: " + hexKey(key)} }

func epochYAML(mode Mode, listen, connect, rollover string, eps ...ep) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mode: %s\nadmin: 127.0.0.1:0\nlog_level: debug\nprobe_interval: 0s\nroutes:\n", mode)
	fmt.Fprintf(&b, "  - name: svc\n    listen: %s\n    connect: %s\n    timeouts: {handshake: 5s, dial: 2s}\n    psk:\n", listen, connect)
	if rollover != "" {
		fmt.Fprintf(&b, "      rollover: %s\n", rollover)
	}
	b.WriteString("      epochs:\n")
	for _, e := range eps {
		fmt.Fprintf(&b, "        - {epoch: %d, %s}\n", e.n, e.src)
	}
	return b.String()
}

// memConfig is a config file in memory: LoadConfig reads it at the start
// and again on every Reload, as the proxy command does with --config.
type memConfig struct {
	mu   sync.Mutex
	text string
}

func (m *memConfig) set(s string) {
	m.mu.Lock()
	m.text = s
	m.mu.Unlock()
}

func (m *memConfig) load(mode Mode) (*Config, error) {
	return LoadConfig(mode, LoadOptions{
		Flags:  map[string]string{"config": "proxy.yaml"},
		Getenv: func(string) (string, bool) { return "", false },
		Read: func(string) ([]byte, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			return []byte(m.text), nil
		},
	})
}

func startEpochProxy(t *testing.T, m *memConfig, mode Mode) *testProxy {
	t.Helper()
	cfg, err := m.load(mode)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
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

func epochsOf(t *testing.T, p *testProxy) *EpochsStatus {
	t.Helper()
	st := p.Status()
	if len(st) != 1 || st[0].Epochs == nil {
		t.Fatalf("status has no epochs: %+v", st)
	}
	return st[0].Epochs
}

func epochOf(t *testing.T, p *testProxy, n uint64) EpochStatus {
	t.Helper()
	for _, e := range epochsOf(t, p).Epochs {
		if e.Epoch == n {
			return e
		}
	}
	t.Fatalf("epoch %d not in status: %+v", n, epochsOf(t, p))
	return EpochStatus{}
}

func current(t *testing.T, p *testProxy) string {
	t.Helper()
	if c := epochsOf(t, p).Current; c != nil {
		return fmt.Sprint(*c)
	}
	return "none"
}

// dialTLS makes one TLS-PSK handshake with identity and key.
func dialTLS(addr, identity string, key []byte) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tlspsk.Client(c, &tlspsk.Config{Identity: identity, Key: key})
	defer tc.Close()
	return tc.Handshake()
}

// echoLine writes msg on c and reads it back.
func echoLine(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// traffic sends one request (a new connection, so a new tunnel) every
// 10 ms through addr until stopped, counting successes and failures.
type traffic struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
	stop, done chan struct{}
}

func startTraffic(t *testing.T, addr string) *traffic {
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			msg := fmt.Sprintf("request %d", i)
			got, err := roundTrip(t, addr, []byte(msg))
			if err != nil || string(got) != msg {
				tr.failed.Add(1)
				tr.firstErr.CompareAndSwap(nil, fmt.Sprintf("request %d: got %q, err %v", i, got, err))
				continue
			}
			tr.ok.Add(1)
		}
	}()
	t.Cleanup(tr.halt)
	return tr
}

func (tr *traffic) halt() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	<-tr.done
}

// more waits for n more successful requests (or a failure).
func (tr *traffic) more(t *testing.T, n int64) {
	t.Helper()
	target := tr.ok.Load() + n
	waitFor(t, 30*time.Second, fmt.Sprintf("%d more requests", n), func() bool { return tr.ok.Load() >= target || tr.failed.Load() > 0 })
	if tr.failed.Load() > 0 {
		t.Fatalf("a request failed: %v", tr.firstErr.Load())
	}
}

// TestEpochRotationContinuousTraffic: one request every 10 ms through a
// client and a server proxy while both rotate from epoch 7 to 7+8 (server
// first) and then to 8 only: no request fails, a tunnel opened on epoch 7
// stays up and carries data throughout, new tunnels use epoch 8, and the
// server refuses epoch 7 once it is gone.
func TestEpochRotationContinuousTraffic(t *testing.T) {
	k7, k8 := randomKey(t), randomKey(t)
	backend := echoServer(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvYAML := func(eps ...ep) string {
		return epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "10m", eps...)
	}
	srvCfg.set(srvYAML(hexEp(7, k7)))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliYAML := func(eps ...ep) string {
		return epochYAML(ModeClient, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), "10m", eps...)
	}
	cliCfg.set(cliYAML(hexEp(7, k7)))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	addr := cli.url("svc")

	long, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if err := echoLine(long, "long-lived tunnel, before"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the long-lived tunnel on epoch 7 at the server", func() bool { return epochOf(t, srv, 7).Open == 1 })

	tr := startTraffic(t, addr)
	tr.more(t, 30)

	// 1. Servers first: they accept 7 and 8.
	srvCfg.set(srvYAML(hexEp(7, k7), hexEp(8, k8)))
	if err := srv.Reload(); err != nil {
		t.Fatalf("server reload to 7+8: %v", err)
	}
	if c, p7 := current(t, srv), epochOf(t, srv, 7).Phase; c != "8" || p7 != "rollover" {
		t.Fatalf("server after 7+8: current %s, epoch 7 %s; want 8 and rollover", c, p7)
	}
	tr.more(t, 30)
	if c := current(t, cli); c != "7" {
		t.Fatalf("client current epoch %s before its reload, want 7", c)
	}

	// 2. Then clients: they switch to 8 at once.
	cliCfg.set(cliYAML(hexEp(7, k7), hexEp(8, k8)))
	if err := cli.Reload(); err != nil {
		t.Fatalf("client reload to 7+8: %v", err)
	}
	if c := current(t, cli); c != "8" {
		t.Fatalf("client current epoch %s after its reload, want 8", c)
	}
	tr.more(t, 40)
	if err := echoLine(long, "long-lived tunnel, during the rollover"); err != nil {
		t.Fatalf("the long-lived tunnel broke during the rollover: %v", err)
	}

	// 3. Later: 8 only, servers first, then clients.
	srvCfg.set(srvYAML(hexEp(8, k8)))
	if err := srv.Reload(); err != nil {
		t.Fatalf("server reload to 8: %v", err)
	}
	if e7 := epochOf(t, srv, 7); e7.Phase != "retired" || e7.InConfig || e7.RetiredAt == nil || e7.Open != 1 {
		t.Fatalf("server epoch 7 after the reload to 8: %+v; want retired, not in the config, the long-lived tunnel still open", e7)
	}
	tr.more(t, 30)
	cliCfg.set(cliYAML(hexEp(8, k8)))
	if err := cli.Reload(); err != nil {
		t.Fatalf("client reload to 8: %v", err)
	}
	tr.more(t, 40)
	if err := echoLine(long, "long-lived tunnel, after"); err != nil {
		t.Fatalf("the long-lived tunnel broke after epoch 7 was retired: %v", err)
	}
	tr.halt()
	if n := tr.failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed; first: %v", n, n+tr.ok.Load(), tr.firstErr.Load())
	}
	t.Logf("%d requests, none failed", tr.ok.Load())

	// New tunnels use epoch 8; epoch 7's count does not move.
	before7, before8 := epochOf(t, srv, 7).Opened, epochOf(t, srv, 8).Opened
	for i := 0; i < 5; i++ {
		if got, err := roundTrip(t, addr, []byte("new tunnel")); err != nil || string(got) != "new tunnel" {
			t.Fatalf("request after the rotation: %q, %v", got, err)
		}
	}
	waitFor(t, 5*time.Second, "5 new tunnels on epoch 8 at the server", func() bool { return epochOf(t, srv, 8).Opened == before8+5 })
	if n := epochOf(t, srv, 7).Opened; n != before7 {
		t.Fatalf("epoch 7 tunnels went from %d to %d after the rotation", before7, n)
	}
	// The retired identity is refused; the new one works.
	if err := dialTLS(srv.url("svc"), DefaultIdentity+"/7", k7); tlspsk.FailureReason(err) != reasonUnknownIdentity {
		t.Fatalf("identity /7 after retirement: %v (%s), want unknown_identity", err, tlspsk.FailureReason(err))
	}
	if err := dialTLS(srv.url("svc"), DefaultIdentity+"/8", k8); err != nil {
		t.Fatalf("identity /8: %v", err)
	}
	// Metrics: the current epoch and the tunnels per epoch; no key anywhere.
	_, m := httpGet(t, "http://"+srv.AdminAddr().String()+"/metrics")
	for _, want := range []string{`mcbn_proxy_epoch_current{route="svc"} 8`, `mcbn_proxy_epoch_tunnels_total{epoch="8",route="svc"}`,
		`mcbn_proxy_epoch_tunnels_total{epoch="7",route="svc"}`, `mcbn_proxy_epoch_ready{epoch="7",route="svc"} 0`} {
		if !strings.Contains(m, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
	_, st := httpGet(t, "http://"+srv.AdminAddr().String()+"/status")
	_, cst := httpGet(t, "http://"+cli.AdminAddr().String()+"/status")
	assertNoSecret(t, srv.logs.String()+cli.logs.String()+m+st+cst, k7, k8)
	if err := echoLine(long, "long-lived tunnel, at the end"); err != nil {
		t.Fatal(err)
	}
}

// TestEpochClientWaitsForNewestAndLossClosesOnlyItsEpoch: epoch 8's key is
// gathered (a registered source that can lose its key). A client keeps
// using 7 while 8 is not ready and switches as soon as it is. When the
// server's epoch 8 loses its key, the tunnels opened on 8 close and the
// tunnel on 7 stays.
func TestEpochClientWaitsForNewestAndLossClosesOnlyItsEpoch(t *testing.T) {
	k7, k8 := randomKey(t), randomKey(t)
	backend := echoServer(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvCfg.set(epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "",
		hexEp(7, k7), ep{8, "source: test-gather, options: {name: epoch-srv-8}"}))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliCfg.set(epochYAML(ModeClient, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), "",
		hexEp(7, k7), ep{8, "source: test-gather, options: {name: epoch-cli-8}"}))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	addr := cli.url("svc")
	if epochsOf(t, srv).Rollover != DefaultRollover.String() {
		t.Fatalf("rollover %s, want the default %s", epochsOf(t, srv).Rollover, DefaultRollover)
	}
	if c, p := current(t, cli), epochOf(t, cli, 8).Phase; c != "7" || p != "pending" {
		t.Fatalf("client: current %s, epoch 8 %s; want 7 and pending", c, p)
	}
	long7, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer long7.Close()
	if err := echoLine(long7, "on seven"); err != nil {
		t.Fatal(err)
	}

	gatherSource(t, "epoch-srv-8").set(k8)
	waitFor(t, 5*time.Second, "the server to take epoch 8", func() bool { return current(t, srv) == "8" })
	if c := current(t, cli); c != "7" {
		t.Fatalf("client switched to %s before its epoch 8 key was ready", c)
	}
	if got, err := roundTrip(t, addr, []byte("still seven")); err != nil || string(got) != "still seven" {
		t.Fatalf("request on epoch 7 while the client's 8 is pending: %q, %v", got, err)
	}
	gatherSource(t, "epoch-cli-8").set(k8)
	waitFor(t, 5*time.Second, "the client to switch to epoch 8", func() bool { return current(t, cli) == "8" })
	long8, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer long8.Close()
	if err := echoLine(long8, "on eight"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the tunnel on epoch 8 at the server", func() bool { return epochOf(t, srv, 8).Open == 1 })
	waitFor(t, 5*time.Second, "one tunnel open on epoch 7 at the server (the short ones closed)", func() bool { return epochOf(t, srv, 7).Open == 1 })

	// Consent for epoch 8 is withdrawn at the server.
	gatherSource(t, "epoch-srv-8").set(nil)
	long8.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := long8.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the epoch 8 tunnel is still open after its key was lost (read %d bytes)", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the epoch 8 tunnel was not closed within 5 s of its key being lost")
	}
	if err := echoLine(long7, "seven lives on"); err != nil {
		t.Fatalf("the epoch 7 tunnel broke when epoch 8 lost its key: %v", err)
	}
	waitFor(t, 5*time.Second, "the loss log", func() bool {
		return strings.Contains(srv.logs.String(), "PSK lost for an epoch: closed its open tunnels")
	})
}

// TestEpochRetiredAfterRollover: rollover after epoch 8 became ready,
// epoch 7 is retired: its identity is refused with unknown_psk_identity,
// its state says so, and re-reading the unchanged config keeps it retired.
func TestEpochRetiredAfterRollover(t *testing.T) {
	k7, k8 := randomKey(t), randomKey(t)
	cfg := &memConfig{}
	cfg.set(epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), "300ms", hexEp(7, k7), hexEp(8, k8)))
	srv := startEpochProxy(t, cfg, ModeServer)
	waitFor(t, 10*time.Second, "epoch 7 to retire", func() bool { return epochOf(t, srv, 7).Phase == "retired" })
	e7 := epochOf(t, srv, 7)
	if e7.RetiredAt == nil || !strings.Contains(e7.State, "rollover") || e7.Ready {
		t.Fatalf("retired epoch 7: %+v", e7)
	}
	if err := dialTLS(srv.url("svc"), DefaultIdentity+"/7", k7); tlspsk.FailureReason(err) != reasonUnknownIdentity {
		t.Fatalf("identity /7 after the rollover: %v, want unknown_identity", err)
	}
	if err := dialTLS(srv.url("svc"), DefaultIdentity+"/8", k8); err != nil {
		t.Fatalf("identity /8: %v", err)
	}
	// Without the epoch, or with a non-canonical one, the identity is unknown.
	for _, id := range []string{DefaultIdentity, DefaultIdentity + "/08", DefaultIdentity + "/+8", "other/8"} {
		if err := dialTLS(srv.url("svc"), id, k8); tlspsk.FailureReason(err) != reasonUnknownIdentity {
			t.Fatalf("identity %q: %v, want unknown_identity", id, err)
		}
	}
	waitFor(t, 5*time.Second, "the unknown_identity count", func() bool {
		return metricValue(srv.met.handshakeFailures.WithLabelValues("svc", reasonUnknownIdentity)) == 5
	})
	if err := srv.Reload(); err != nil {
		t.Fatalf("reloading the unchanged config: %v", err)
	}
	if p := epochOf(t, srv, 7).Phase; p != "retired" {
		t.Fatalf("epoch 7 is %s after a reload of the same config, want retired", p)
	}
	if err := dialTLS(srv.url("svc"), DefaultIdentity+"/7", k7); tlspsk.FailureReason(err) != reasonUnknownIdentity {
		t.Fatalf("identity /7 after the reload: %v, want unknown_identity", err)
	}
}

// TestEpochOpenSSLBothIdentities: during the rollover, openssl s_client
// gets through with IDENTITY/7 and with IDENTITY/8; once a reload drops 7,
// s_client with /7 hears unknown psk identity.
func TestEpochOpenSSLBothIdentities(t *testing.T) {
	openssl := needBinary(t, "openssl")
	k7, k8 := randomKey(t), randomKey(t)
	backend := echoServer(t)
	cfg := &memConfig{}
	yml := func(eps ...ep) string {
		return epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "10m", eps...)
	}
	cfg.set(yml(hexEp(7, k7), hexEp(8, k8)))
	srv := startEpochProxy(t, cfg, ModeServer)
	for _, c := range []struct {
		epoch string
		key   []byte
		tls   string
	}{{"7", k7, "-tls1_3"}, {"8", k8, "-tls1_3"}, {"7", k7, "-tls1_2"}, {"8", k8, "-tls1_2"}} {
		args := []string{"s_client", "-quiet", c.tls, "-psk", hexKey(c.key), "-psk_identity", DefaultIdentity + "/" + c.epoch, "-connect", srv.url("svc")}
		if c.tls == "-tls1_2" {
			args = append(args, "-cipher", "ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256")
		}
		peer := startPeer(t, testCtx(t), openssl, args...)
		line := "hello on epoch " + c.epoch + " " + c.tls
		fmt.Fprintln(peer.stdin, line)
		waitFor(t, 10*time.Second, "the echo through epoch "+c.epoch+" "+c.tls, func() bool { return strings.Contains(peer.out.String(), line) })
		peer.stdin.Close()
	}
	cfg.set(yml(hexEp(8, k8)))
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	peer := startPeer(t, testCtx(t), openssl, "s_client", "-tls1_3", "-psk", hexKey(k7), "-psk_identity", DefaultIdentity+"/7", "-connect", srv.url("svc"))
	waitFor(t, 10*time.Second, "s_client to hear unknown psk identity", func() bool { return strings.Contains(peer.out.String(), "unknown psk identity") })
}

// TestEpochFailedReloadKeepsEpochs: a reload whose config does not load, or
// whose epochs cannot be applied, changes nothing: both epochs still work,
// /status shows the failure, nothing fails open.
func TestEpochFailedReloadKeepsEpochs(t *testing.T) {
	k7, k8, k9 := randomKey(t), randomKey(t), randomKey(t)
	cfg := &memConfig{}
	yml := func(eps ...ep) string {
		return epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+echoServer(t).String(), "10m", eps...)
	}
	good := yml(hexEp(7, k7), hexEp(8, k8))
	cfg.set(good)
	srv := startEpochProxy(t, cfg, ModeServer)
	check := func(stage string) {
		t.Helper()
		for _, c := range []struct {
			id  string
			key []byte
		}{{DefaultIdentity + "/7", k7}, {DefaultIdentity + "/8", k8}} {
			if err := dialTLS(srv.url("svc"), c.id, c.key); err != nil {
				t.Fatalf("%s: %s no longer works: %v", stage, c.id, err)
			}
		}
		if err := dialTLS(srv.url("svc"), DefaultIdentity+"/9", k9); err == nil {
			t.Fatalf("%s: epoch 9 was accepted", stage)
		}
	}
	check("start")
	for _, c := range []struct{ name, text, want string }{
		{"broken yaml", "routes: [", "re-reading the config"},
		{"invalid epoch", yml(hexEp(7, k7), hexEp(8, k8), ep{9, "hex: 0011"}), "psk.epochs[2].hex: key is 2 bytes"},
		{"decreasing epochs", yml(hexEp(8, k8), hexEp(7, k7)), "psk.epochs[1].epoch"},
		{"an epoch's key changed", yml(hexEp(7, k7), hexEp(8, k9)), "epoch 8's key source changed"},
		{"unbuildable new epoch", yml(hexEp(7, k7), hexEp(8, k8), ep{9, "file: /nonexistent/epoch9.psk"}), "psk.epochs[2] (epoch 9): psk.file"},
		{"no epochs any more", "mode: server\nroutes:\n  - name: svc\n    listen: tls://127.0.0.1:0\n    connect: tcp://127.0.0.1:9\n    psk: {hex: " + hexKey(k9) + "}\n",
			"one key source instead of epochs"},
		{"route renamed", strings.Replace(good, "name: svc", "name: other", 1), `no route "svc"`},
	} {
		cfg.set(c.text)
		err := srv.Reload()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: reload error %v, want one containing %q", c.name, err, c.want)
		}
		if st := srv.Status()[0].Reload; st == nil || st.State != "failed" {
			t.Fatalf("%s: /status reload %+v, want failed", c.name, st)
		}
		check(c.name)
		assertNoSecret(t, err.Error(), k7, k8, k9)
	}
	if !strings.Contains(srv.logs.String(), "PSK reload failed; keeping the previous key") {
		t.Fatal("the failed reloads were not logged")
	}
	// A good reload still works afterwards; a retired epoch does not come back.
	cfg.set(yml(hexEp(8, k8)))
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	cfg.set(good)
	if err := srv.Reload(); err == nil || !strings.Contains(err.Error(), "epoch 7 was retired") {
		t.Fatalf("re-adding retired epoch 7: %v", err)
	}
	if err := dialTLS(srv.url("svc"), DefaultIdentity+"/7", k7); tlspsk.FailureReason(err) != reasonUnknownIdentity {
		t.Fatalf("identity /7 after a refused re-add: %v", err)
	}
	if err := dialTLS(srv.url("svc"), DefaultIdentity+"/8", k8); err != nil {
		t.Fatal(err)
	}
}

// TestEpochConfigErrors: every mistake in psk.epochs names its field.
func TestEpochConfigErrors(t *testing.T) {
	const k = "00112233445566778899aabbccddeeff"
	route := func(psk string) string {
		return "routes:\n  - name: web\n    listen: tls://127.0.0.1:8443\n    connect: tcp://127.0.0.1:8080\n    psk:\n" + psk
	}
	for _, c := range []struct{ name, psk, want string }{
		{"missing epoch", "      epochs: [{hex: " + k + "}]\n", "routes[0] (web): psk.epochs[0].epoch: missing"},
		{"duplicate", "      epochs: [{epoch: 7, hex: " + k + "}, {epoch: 7, hex: " + k + "}]\n", "routes[0] (web): psk.epochs[1].epoch: 7 is listed twice"},
		{"decreasing", "      epochs: [{epoch: 8, hex: " + k + "}, {epoch: 7, hex: " + k + "}]\n", "routes[0] (web): psk.epochs[1].epoch: 7 is below psk.epochs[0].epoch 8"},
		{"no source", "      epochs: [{epoch: 7}]\n", "routes[0] (web): psk.epochs[0]: no key source"},
		{"two sources", "      epochs: [{epoch: 7, hex: " + k + ", file: /x}]\n", "psk.epochs[0].hex and psk.epochs[0].file are all set"},
		{"bad hex", "      epochs: [{epoch: 7, hex: " + k + "}, {epoch: 8, hex: zz}]\n", "routes[0] (web): psk.epochs[1].hex: key is not valid hex"},
		{"unknown kind", "      epochs: [{epoch: 7, source: nope}]\n", `routes[0] (web): psk.epochs[0].source: unknown kind "nope"`},
		{"options without source", "      epochs: [{epoch: 7, hex: " + k + ", options: {a: 1}}]\n", "psk.epochs[0].options: only used with psk.epochs[0].source"},
		{"negative rollover", "      rollover: -1m\n      epochs: [{epoch: 7, hex: " + k + "}]\n", "routes[0] (web): psk.rollover: must be positive"},
		{"rollover without epochs", "      rollover: 1m\n      hex: " + k + "\n", "routes[0] (web): psk.rollover: only used with psk.epochs"},
		{"epochs and hex", "      hex: " + k + "\n      epochs: [{epoch: 7, hex: " + k + "}]\n", "routes[0] (web): psk.hex: not used with psk.epochs"},
		{"nested epochs", "      epochs: [{epoch: 7, epochs: [{epoch: 8, hex: " + k + "}]}]\n", "routes[0] (web): psk.epochs[0]: an epoch has one key source"},
		{"negative epoch", "      epochs: [{epoch: -1, hex: " + k + "}]\n", "want"},
		{"unknown key", "      epochs: [{epoch: 7, hexx: " + k + "}]\n", `unknown key "hexx"`},
	} {
		_, err := load(t, ModeServer, route(c.psk), nil, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), k) {
			t.Errorf("%s: the error quotes the key: %v", c.name, err)
		}
	}
	udp := "routes:\n  - listen: dtls://127.0.0.1:8443\n    connect: udp://127.0.0.1:8080\n    psk: {epochs: [{epoch: 1, hex: " + k + "}]}\n"
	if _, err := load(t, ModeServer, udp, nil, nil); err != nil { // UDP routes take epochs (epochs_udp_test.go)
		t.Errorf("udp route with epochs: %v", err)
	}
	good := route("      rollover: 1h\n      epochs:\n        - {epoch: 7, hex: " + k + "}\n        - {epoch: 18446744073709551615, env: MCBN_PROXY_TEST_EPOCH_KEY}\n")
	c, err := LoadConfig(ModeServer, LoadOptions{Flags: map[string]string{"config": "c.yaml"}, Read: func(string) ([]byte, error) { return []byte(good), nil },
		Getenv: func(string) (string, bool) { return "", false }, Environ: func() []string { return []string{"MCBN_PROXY_TEST_EPOCH_KEY=" + k} }})
	if err != nil {
		t.Fatalf("good epochs config: %v", err)
	}
	if p := c.Routes[0].PSK; len(p.Epochs) != 2 || *p.Epochs[1].Epoch != 1<<64-1 || p.Rollover.D() != time.Hour {
		t.Fatalf("parsed %+v", p)
	}
}

// TestEpochSourceSpec: each epoch's source is built for its epoch.
var (
	specMu  sync.Mutex
	specGot = map[uint64]string{}
)

func init() {
	RegisterSource("test-epoch-spec", func(spec SourceSpec) (Source, error) {
		specMu.Lock()
		specGot[spec.Epoch] = spec.Identity
		specMu.Unlock()
		return NewStaticSource(spec.Identity, make([]byte, 32)), nil
	})
}

func TestEpochSourceSpec(t *testing.T) {
	specMu.Lock()
	clear(specGot)
	specMu.Unlock()
	r := testRoute("web", "tls://127.0.0.1:0", "tcp://127.0.0.1:9")
	r.Identity = "billing"
	r.PSK = PSKConfig{Epochs: []EpochConfig{{Epoch: ptr(uint64(3)), PSKConfig: PSKConfig{Source: "test-epoch-spec"}},
		{Epoch: ptr(uint64(4)), PSKConfig: PSKConfig{Source: "test-epoch-spec"}}}}
	src, id, err := buildSource(&r, ModeServer, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	specMu.Lock()
	got := maps.Clone(specGot)
	specMu.Unlock()
	if id != "billing" || got[3] != "billing" || got[4] != "billing" || len(got) != 2 {
		t.Fatalf("identity %q, specs %v", id, got)
	}
	if _, err := src.Key("billing/4"); err != nil {
		t.Fatalf("billing/4: %v", err)
	}
	if _, err := src.Key("billing"); err != ErrUnknownIdentity {
		t.Fatalf("billing without an epoch: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func FuzzParseEpochIdentity(f *testing.F) {
	for _, s := range []string{"Client_identity/7", "billing/0", "a/b/18446744073709551615", "x/18446744073709551616", "x/08", "x/+8", "x/", "/1", "noepoch", "x/-1", "x/1 ", "é/9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, n, ok := parseEpochIdentity(s)
		if !ok {
			return
		}
		// One epoch, one identity: parsing and writing back agree.
		if epochIdentity(id, n) != s {
			t.Fatalf("%q parsed as (%q, %d) but writes back as %q", s, id, n, epochIdentity(id, n))
		}
	})
}

// TestEpochRetiredStillFollowsConsent: retirement refuses new tunnels on
// an epoch, but a tunnel still open on it stays under its consent: when
// the retired epoch's gathering source loses the key, the tunnel closes.
// A retired static epoch's source is released at once.
func TestEpochRetiredStillFollowsConsent(t *testing.T) {
	k7, k8 := randomKey(t), randomKey(t)
	backend := echoServer(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	e7 := ep{7, "source: test-gather, options: {name: retired-srv-7}"}
	srvCfg.set(epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "100ms", e7))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	gatherSource(t, "retired-srv-7").set(k7)
	waitFor(t, 5*time.Second, "server epoch 7 ready", func() bool { return current(t, srv) == "7" })
	cliCfg.set(epochYAML(ModeClient, "tcp://127.0.0.1:0", "tls://"+srv.url("svc"), "", hexEp(7, k7)))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	long, err := net.Dial("tcp", cli.url("svc"))
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if err := echoLine(long, "on seven"); err != nil {
		t.Fatal(err)
	}
	srvCfg.set(epochYAML(ModeServer, "tls://127.0.0.1:0", "tcp://"+backend.String(), "100ms", e7, hexEp(8, k8)))
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "epoch 7 to retire", func() bool { return epochOf(t, srv, 7).Phase == "retired" })
	if err := echoLine(long, "retired but open"); err != nil {
		t.Fatalf("retirement closed an open tunnel: %v", err)
	}
	gatherSource(t, "retired-srv-7").set(nil)
	long.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := long.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the tunnel on retired epoch 7 outlived its consent (read %d bytes)", n)
	}
	// Once its last tunnel is gone the retired epoch holds no source.
	waitFor(t, 5*time.Second, "epoch 7 to hold no tunnel", func() bool { return epochOf(t, srv, 7).Open == 0 })
	es := srv.routes[0].base().epochs()
	es.mu.RLock()
	held := es.entries[0].src != nil
	es.mu.RUnlock()
	if held {
		t.Fatal("retired epoch 7 still holds its source after its last tunnel closed")
	}
}

// TestSameKeySource: an epoch's source compares by value: re-formatting
// its options is no change, another option value or key is.
func TestSameKeySource(t *testing.T) {
	parse := func(s string) *PSKConfig {
		t.Helper()
		c, err := ParseConfig([]byte("routes:\n  - psk:\n      epochs:\n" + s))
		if err != nil {
			t.Fatal(err)
		}
		return &c.Routes[0].PSK.Epochs[0].PSKConfig
	}
	flow := parse("        - {epoch: 8, source: shares, options: {group: g.json, shareholders: [a, b]}}\n")
	block := parse("        - epoch: 8\n          source: shares\n          options:\n            shareholders:\n              - a\n              - b\n            group: g.json\n")
	other := parse("        - {epoch: 8, source: shares, options: {group: g.json, shareholders: [a, c]}}\n")
	hex1 := parse("        - {epoch: 8, hex: 00112233445566778899aabbccddeeff}\n")
	hex2 := parse("        - {epoch: 8, hex: 00112233445566778899aabbccddeefe}\n")
	if !sameKeySource(flow, block) {
		t.Fatal("the same options in block style count as a change")
	}
	for _, c := range [][2]*PSKConfig{{flow, other}, {hex1, hex2}, {flow, hex1}} {
		if sameKeySource(c[0], c[1]) {
			t.Fatalf("different sources count as the same: %+v / %+v", c[0], c[1])
		}
	}
	if !sameKeySource(hex1, parse("        - {epoch: 8, hex: 00112233445566778899aabbccddeeff}\n")) {
		t.Fatal("the same hex key counts as a change")
	}
}

func TestEpochRoutes(t *testing.T) {
	c, err := ParseConfig([]byte("routes:\n  - identity: billing\n    psk:\n      epochs:\n        - {epoch: 7, hex: 00112233445566778899aabbccddeeff}\n        - {epoch: 8, source: shares, options: {group: g.json}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	rs, eps := c.Routes[0].EpochRoutes()
	if len(rs) != 2 || eps[0] != 7 || eps[1] != 8 || rs[1].PSK.Source != "shares" || rs[1].Identity != "billing" || len(rs[1].PSK.Epochs) != 0 {
		t.Fatalf("%+v %v", rs, eps)
	}
	var o struct {
		Group string `yaml:"group"`
	}
	if err := rs[1].DecodeSourceOptions(&o); err != nil || o.Group != "g.json" {
		t.Fatalf("options %+v, %v", o, err)
	}
	if rs, _ := (&Route{}).EpochRoutes(); rs != nil {
		t.Fatal("a route without epochs has epoch routes")
	}
}
