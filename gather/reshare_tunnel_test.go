package gather

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/shareholder"
)

// startProxyFile runs a proxy from a config file (LoadConfig), so that its
// Reload re-reads the file as SIGHUP does.
func startProxyFile(t *testing.T, mode proxy.Mode, path, yaml string) *proxy.Proxy {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := proxy.LoadConfig(mode, proxy.LoadOptions{Flags: map[string]string{"config": path},
		Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// sharesRoute renders a proxy config with one route gathering from f's
// group and entries.
func sharesRoute(f *fixture, listen, connect string, entries []ShareholderConfig) string {
	return fmt.Sprintf("routes:\n  - name: app\n    listen: %s\n    connect: %s\n    psk:\n      source: shares\n      options:\n        epoch: 1\n%s",
		listen, connect, sharesOptions(f, "        ", ModeShare, entries))
}

// pskState is the route's PSK state on /status ("3/5 shares (threshold 3): ...").
func pskState(p *proxy.Proxy) string { return p.Status()[0].PSK.State }

// The issue 15 proof for resharing: a client sends one request every 10 ms
// through a real client and server proxy while the group is reshared from
// 2-of-3 to 3-of-5. The five new daemons start beside the old three; the
// server proxy's config is rewritten to the new group and shareholders and
// reloaded, then (after a moment where the server gathers new shares and
// the client old ones, with the same PSK) the client's; then the old
// daemons stop, and both proxies keep gathering from the new ones. No
// request fails, and each proxy's reload shows in its state.
func TestTunnelReshareWhileTrafficFlows(t *testing.T) {
	f := newFixture(t)
	old := map[string]*shareholder.Server{}
	var oldEntries []ShareholderConfig
	for _, n := range names {
		old[n] = f.startServer(n, f.devPolicy, shareholder.ConsentGranted)
		oldEntries = append(oldEntries, entry(n, old[n]))
	}
	serverPath, clientPath := filepath.Join(f.dir, "server.yaml"), filepath.Join(f.dir, "client.yaml")
	backend := "tcp://" + echoServer(t)
	server := startProxyFile(t, proxy.ModeServer, serverPath, sharesRoute(f, "tls://127.0.0.1:0", backend, oldEntries))
	// The server's port is fixed from now on: its reloaded config names it.
	serverListen := "tls://" + server.Addr("app").String()
	client := startProxyFile(t, proxy.ModeClient, clientPath, sharesRoute(f, "tcp://127.0.0.1:0", serverListen, oldEntries))
	waitFor(t, "server proxy ready", proxyReady(server))
	waitFor(t, "client proxy ready", proxyReady(client))
	addr := client.Addr("app").String()
	clientListen := "tcp://" + addr
	if !roundTrip(addr) {
		t.Fatal("no traffic before the reshare")
	}

	var sent, failed atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			sent.Add(1)
			if !roundTrip(addr) {
				failed.Add(1)
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	nf := reshareFixture(t, f, 3, newNames)
	var newEntries []ShareholderConfig
	for _, n := range newNames {
		newEntries = append(newEntries, entry(n, nf.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	reloadTo := func(p *proxy.Proxy, path, y string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := p.Reload(); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	onNewGroup := func(p *proxy.Proxy) func() bool {
		return func() bool { return proxyReady(p)() && strings.Contains(pskState(p), "/5 shares (threshold 3)") }
	}

	// Failed reloads first: a config file that does not parse, and a group
	// of another secret; each keeps the server on its old group and key.
	other := reshareFixture(t, newFixture(t), 3, newNames) // another key id
	for _, bad := range []struct{ yaml, want string }{
		{"routes: [\n", "re-reading the config"},
		{sharesRoute(other, serverListen, backend, newEntries), "psk.options.group: "},
	} {
		if err := os.WriteFile(serverPath, []byte(bad.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := server.Reload(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("reload of a bad config: %v, want %q", err, bad.want)
		}
		if st := server.Status()[0]; !st.PSK.Ready || st.Reload == nil || st.Reload.State != "failed" || !strings.Contains(st.PSK.State, "/3 shares (threshold 2)") {
			t.Fatalf("after a failed reload: %+v", st)
		}
	}
	reloadTo(server, serverPath, sharesRoute(nf, serverListen, backend, newEntries))
	waitFor(t, "the server gathering the reshared group", onNewGroup(server))
	// The mixed moment: server on new shares, client on old ones.
	if !strings.Contains(pskState(client), "/3 shares (threshold 2)") {
		t.Fatalf("the client moved before its reload: %s", pskState(client))
	}
	for i := range 5 {
		if !roundTrip(addr) {
			t.Fatalf("request %d failed with the server on new shares and the client on old ones", i)
		}
	}

	reloadTo(client, clientPath, sharesRoute(nf, clientListen, serverListen, newEntries))
	waitFor(t, "the client gathering the reshared group", onNewGroup(client))

	// The old shareholders go; both proxies keep gathering (refresh 100ms)
	// from the new ones only.
	for _, s := range old {
		s.Close()
	}
	// 9 more valid shares: at least three rounds of each proxy (T = 3,
	// at most T+1 valid a round), all from the new daemons.
	sr, cr := okShares(t, server), okShares(t, client)
	if sr == 0 || cr == 0 {
		t.Fatal("no mcbn_shares_results_total on the proxies' /metrics")
	}
	waitFor(t, "rounds without the old shareholders", func() bool {
		return okShares(t, server) >= sr+9 && okShares(t, client) >= cr+9
	})
	if !onNewGroup(server)() || !onNewGroup(client)() {
		t.Fatalf("after the old shareholders stopped: server %q, client %q", pskState(server), pskState(client))
	}
	close(stop)
	<-done
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed across the reshare", n, sent.Load())
	}
	if sent.Load() < 10 {
		t.Fatalf("only %d requests sent", sent.Load())
	}
	for _, p := range []*proxy.Proxy{server, client} {
		if st := p.Status()[0].Reload; st == nil || st.State != "ok" {
			t.Fatalf("reload status %+v", st)
		}
	}
	f.checkLogsClean()
	nf.checkLogsClean()
}

// okShares sums the proxy's mcbn_shares_results_total{state="ok"}: the
// valid shares its source gathered so far (T or T+1 a round).
func okShares(t *testing.T, p *proxy.Proxy) int {
	t.Helper()
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	n := 0
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if !strings.HasPrefix(l, "mcbn_shares_results_total{") || !strings.Contains(l, `state="ok"`) {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", l, err)
		}
		n += int(v)
	}
	return n
}

// The shares source in mode share under psk.epochs: two epochs of one
// group give two different keys (the derivation binds the epoch), exactly
// psk.Combine + DerivePSK's for each; both proxies' tunnels work on epoch
// 1, then, after the client's config lists epoch 2 and is reloaded, on
// epoch 2. A client holding epoch 1's key under epoch 2's identity gets no
// tunnel.
func TestTunnelShareModeEpochs(t *testing.T) {
	f := newFixture(t)
	var entries []ShareholderConfig
	for _, n := range names {
		entries = append(entries, entry(n, f.startServer(n, f.devPolicy, shareholder.ConsentGranted)))
	}
	epochsBlock := func(epochs ...int) string {
		var b strings.Builder
		b.WriteString("      rollover: 1m\n      epochs:\n")
		for _, ep := range epochs {
			fmt.Fprintf(&b, "        - epoch: %d\n          source: shares\n          options:\n", ep)
			b.WriteString(sharesOptions(f, "            ", ModeShare, entries))
		}
		return b.String()
	}
	server := startProxyYAML(t, "server", "tls://127.0.0.1:0", "tcp://"+echoServer(t), epochsBlock(1, 2))
	serverAddr := "tls://" + server.Addr("app").String()
	clientPath := filepath.Join(f.dir, "client.yaml")
	clientYAML := func(listen string, epochs ...int) string {
		return fmt.Sprintf("routes:\n  - name: app\n    listen: %s\n    connect: %s\n    psk:\n%s", listen, serverAddr, epochsBlock(epochs...))
	}
	client := startProxyFile(t, proxy.ModeClient, clientPath, clientYAML("tcp://127.0.0.1:0", 1))
	// The server is ready with either epoch's key; the two gather on their
	// own, so wait for both before asking for a tunnel on epoch 1.
	waitFor(t, "server epoch 1 ready", epochReady(server, 1))
	waitFor(t, "server epoch 2 ready", epochReady(server, 2))
	waitFor(t, "client proxy ready", proxyReady(client))
	addr := client.Addr("app").String()
	if !roundTrip(addr) || openedOn(client, 1) == 0 {
		t.Fatal("no tunnel on epoch 1")
	}
	if err := os.WriteFile(clientPath, []byte(clientYAML("tcp://"+addr, 1, 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := client.Reload(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a tunnel on epoch 2", func() bool { return roundTrip(addr) && openedOn(client, 2) > 0 })

	k1, k2 := f.expectedPSK("Client_identity", 1), f.expectedPSK("Client_identity", 2)
	if string(k1) == string(k2) {
		t.Fatal("epochs 1 and 2 derive the same key")
	}
	// Static clients pin what the server's shares sources hold per epoch.
	static := func(epoch int, key []byte) bool {
		y := fmt.Sprintf("mode: client\nroutes:\n  - name: app\n    listen: tcp://127.0.0.1:0\n    connect: %s\n    psk:\n      epochs:\n        - epoch: %d\n          hex: %x\n",
			serverAddr, epoch, key)
		cfg, err := proxy.ParseConfig([]byte(y))
		if err != nil {
			t.Fatalf("%v\n%s", err, y)
		}
		p, err := proxy.New(cfg, proxy.Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		waitFor(t, "static client ready", proxyReady(p))
		return roundTrip(p.Addr("app").String())
	}
	if !static(1, k1) || !static(2, k2) {
		t.Fatal("the server's epoch keys are not psk.Combine + DerivePSK's for each epoch")
	}
	if static(2, k1) {
		t.Fatal("epoch 1's key opened a tunnel as epoch 2")
	}
}
