package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// proxyCLI runs mcbn with args and returns the exit code and both outputs.
func proxyCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := dispatch(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestProxyCheckRunsTheProxyValidation: 'mcbn proxy check --config F'
// refuses exactly what 'mcbn proxy client|server --config F' refuses, with
// the same message, and '--check' on the proxy is the same check.
func TestProxyCheckRunsTheProxyValidation(t *testing.T) {
	dir := t.TempDir()
	key := writeKey(t, "psk.hex")
	good := fmt.Sprintf("mode: client\nroutes:\n  - name: web\n    listen: tcp://127.0.0.1:0\n    connect: tls://server.example:8443\n    psk: {file: %s}\n", key)
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", strings.Replace(good, "    psk:", "    lisen: tcp://127.0.0.1:1\n    psk:", 1), `line 6: unknown key "lisen"`},
		{"misspelt mode", strings.Replace(good, "mode: client", "mode: sever", 1), `unknown mode "sever" (want client or server)`},
		{"public listen", strings.Replace(good, "tcp://127.0.0.1:0", "tcp://0.0.0.0:19080", 1), "allow_public_listen"},
		{"odd hex key", strings.Replace(good, "psk: {file: "+key+"}", "psk: {secrets: "+writeSecretsFile(t, "alice:"+strings.Repeat("a", 33))+"}", 1), "an odd number"},
		{"missing key file", strings.Replace(good, key, filepath.Join(dir, "nope"), 1), "psk.file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "client.yaml")
			os.WriteFile(f, []byte(tc.yaml), 0o644)
			code, _, proxyErr := proxyCLI("proxy", "client", "--config", f)
			if code != 1 || !strings.Contains(proxyErr, tc.want) {
				t.Fatalf("proxy client: exit %d, %q; want 1 and %q", code, proxyErr, tc.want)
			}
			_, proxyMsg, _ := strings.Cut(proxyErr, ": ") // after "mcbn proxy client: "
			for _, args := range [][]string{{"proxy", "check", "--config", f}, {"proxy", "client", "--check", "--config", f}} {
				code, out, errs := proxyCLI(args...)
				if _, msg, _ := strings.Cut(errs, ": "); code != 1 || msg != proxyMsg {
					t.Fatalf("%v: exit %d, stderr %q, stdout %q; want exit 1 and the proxy's own error %q", args, code, errs, out, proxyErr)
				}
			}
		})
	}
	f := filepath.Join(dir, "client.yaml")
	os.WriteFile(f, []byte(good), 0o644)
	for _, args := range [][]string{{"proxy", "check", "--config", f}, {"proxy", "client", "--check", "--config", f}} {
		if code, out, errs := proxyCLI(args...); code != 0 || out != "config ok: client proxy, 1 route(s)\n" {
			t.Fatalf("%v: exit %d, %q %q", args, code, out, errs)
		}
	}
	// Without a mode: key, proxy check needs --mode.
	os.WriteFile(f, []byte(strings.Replace(good, "mode: client\n", "", 1)), 0o644)
	if code, _, errs := proxyCLI("proxy", "check", "--config", f); code != 2 || !strings.Contains(errs, "give --mode") {
		t.Fatalf("no mode: exit %d %q", code, errs)
	}
	if code, out, errs := proxyCLI("proxy", "check", "--mode", "client", "--config", f); code != 0 || !strings.Contains(out, "config ok") {
		t.Fatalf("--mode client: exit %d %q %q", code, out, errs)
	}
	if code, _, errs := proxyCLI("proxy", "check", "--mode", "server", "--config", f); code != 1 || !strings.Contains(errs, "a server proxy listens for tunnels") {
		t.Fatalf("--mode server on a client config: exit %d %q", code, errs)
	}
}

func writeSecretsFile(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "psk.txt")
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProxyRouteFlagsCannotOverrideConfig: the approved image run with the
// operator's own flags cannot move a route: --connect on a server proxy
// (decrypted traffic to the operator's host) and --listen on a client
// proxy (the server app open to the network) are errors naming the flag,
// and so are the environment variables; a client proxy refuses a public
// plain listener without allow_public_listen even from flags alone.
func TestProxyRouteFlagsCannotOverrideConfig(t *testing.T) {
	key := writeKey(t, "psk.hex")
	dir := t.TempDir()
	server := filepath.Join(dir, "server.yaml")
	os.WriteFile(server, []byte(fmt.Sprintf("mode: server\nroutes:\n  - name: web\n    listen: tls://127.0.0.1:0\n    connect: tcp://127.0.0.1:8080\n    psk: {file: %s}\n", key)), 0o644)
	client := filepath.Join(dir, "client.yaml")
	os.WriteFile(client, []byte(fmt.Sprintf("mode: client\nroutes:\n  - name: web\n    listen: tcp://127.0.0.1:0\n    connect: tls://127.0.0.1:8443\n    psk: {file: %s}\n", key)), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"proxy", "server", "--config", server, "--connect", "tcp://attacker.example:80"},
			"--connect conflicts with --config: a route's addresses come from the config file, which the release policy pins"},
		{[]string{"proxy", "client", "--config", client, "--listen", "tcp://0.0.0.0:19080"},
			"--listen conflicts with --config: a route's addresses come from the config file, which the release policy pins"},
		{[]string{"proxy", "client", "--config", client, "--psk-file", key}, "--psk-file conflicts with --config"},
		{[]string{"proxy", "check", "--config", server}, ""}, // the file alone is fine
		{[]string{"proxy", "client", "--listen", "tcp://0.0.0.0:19080", "--connect", "tls://127.0.0.1:8443", "--psk-file", key, "--check"},
			"routes[0] (route1): listen: tcp://0.0.0.0:19080 is not a loopback address"},
	} {
		code, _, errs := proxyCLI(tc.args...)
		if tc.want == "" {
			if code != 0 {
				t.Errorf("%v: exit %d %q", tc.args, code, errs)
			}
			continue
		}
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, %q; want 1 and %q", tc.args, code, errs, tc.want)
		}
	}
	t.Setenv("MCBN_PROXY_CONNECT", "tcp://attacker.example:80")
	if code, _, errs := proxyCLI("proxy", "server", "--config", server); code != 1 || !strings.Contains(errs, "MCBN_PROXY_CONNECT conflicts with --config") {
		t.Fatalf("MCBN_PROXY_CONNECT: exit %d %q", code, errs)
	}
	os.Unsetenv("MCBN_PROXY_CONNECT")
	t.Setenv("MCBN_PROXY_ROUTE_WEB_CONNECT", "tcp://attacker.example:80")
	if code, _, errs := proxyCLI("proxy", "server", "--config", server); code != 1 || !strings.Contains(errs, "MCBN_PROXY_ROUTE_WEB_CONNECT conflicts with --config") {
		t.Fatalf("MCBN_PROXY_ROUTE_WEB_CONNECT: exit %d %q", code, errs)
	}
}

// consentNet is three shareholder daemons of a 2-of-3 group with consent
// granted, and the dev attester.
type consentNet struct {
	options string // the psk.options block for a route, indented for it
	configs map[string]string
	servers map[string]*shareholder.Server
}

func startConsentNet(t *testing.T) *consentNet {
	t.Helper()
	dir := t.TempDir()
	names := []string{"alice", "bob", "carol"}
	g, shares, err := psk.Split("proxytest", 2, names, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	group := filepath.Join(dir, "group.json")
	psk.WriteGroup(group, g)
	for _, s := range shares {
		psk.WriteShare(filepath.Join(dir, s.Participant+".share.json"), s)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	att, err := attest.StartDevAttester(attest.DevAttesterConfig{Socket: filepath.Join(dir, "a.sock"), ImageDigest: shTestDigest, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { att.Close() })
	policy, err := shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{ImageDigests: []string{shTestDigest}, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "policy.cel"), []byte(policy), 0o644)
	n := &consentNet{configs: map[string]string{}, servers: map[string]*shareholder.Server{}}
	var b strings.Builder
	fmt.Fprintf(&b, "        group: %s\n        attestation: {provider: dev, socket: %s}\n        refresh: 200ms\n        timeout: 5s\n        shareholders:\n", group, att.Socket())
	for _, name := range names {
		path := filepath.Join(dir, name+".yaml")
		os.WriteFile(path, []byte(fmt.Sprintf("name: %s\nlisten: 127.0.0.1:0\nshare_store: file://%s\ngroup: %s\nverifier:\n  issuer: %s\n  audience: aud-%s\npolicy_file: %s\nconsent: granted\naudit_log: %s\nrate_limit: {per_second: 1000, burst: 1000}\nreload_interval: 1h\nmetrics: {listen: \"\"}\n",
			name, filepath.Join(dir, name+".share.json"), group, att.Issuer(), name, filepath.Join(dir, "policy.cel"), filepath.Join(dir, name+"-audit.jsonl"))), 0o600)
		cfg, err := shareholder.LoadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		s, err := shareholder.NewServer(context.Background(), cfg, shareholder.ServerOptions{ConfigPath: path, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		n.configs[name], n.servers[name] = path, s
		fmt.Fprintf(&b, "          - {name: %s, url: \"https://%s\", pin: \"%s\", audience: aud-%s}\n", name, s.Addr(), s.Pin(), name)
	}
	n.options = b.String()
	return n
}

func (n *consentNet) revoke(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := shareholder.SetConsent(n.configs[name], shareholder.ConsentRevoked); err != nil {
			t.Fatal(err)
		}
		if err := n.servers[name].Reload(); err != nil {
			t.Fatal(err)
		}
	}
}

// runProxyConfig runs 'mcbn proxy MODE --config path' in-process and
// returns the running proxy; SIGTERM stops it at the end of the test.
func runProxyConfig(t *testing.T, mode proxy.Mode, path string) *proxy.Proxy {
	t.Helper()
	sig := make(chan os.Signal, 1)
	started := make(chan *proxy.Proxy, 1)
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() {
		done <- runProxy(mode, []string{"--config", path}, io.Discard, logs, sig, started)
	}()
	var p *proxy.Proxy
	select {
	case p = <-started:
	case err := <-done:
		t.Fatalf("%s proxy ended: %v", mode, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s proxy did not start", mode)
	}
	t.Cleanup(func() {
		sig <- syscall.SIGTERM
		<-done
		if t.Failed() {
			t.Logf("%s proxy log:\n%s", mode, logs.String())
		}
	})
	return p
}

// TestProxySharesRevocationClosesOpenTunnels: proxies whose routes gather
// their key from shareholders (psk.source: shares, no close_tunnels_on_loss
// in the config) close an open TCP tunnel and an open UDP session when
// consent drops below the threshold, not only refuse new ones.
func TestProxySharesRevocationClosesOpenTunnels(t *testing.T) {
	net0 := startConsentNet(t)
	tcpBackend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpBackend.Close()
	go func() {
		for {
			c, err := tcpBackend.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	udpBackend, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udpBackend.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, a, err := udpBackend.ReadFrom(buf)
			if err != nil {
				return
			}
			udpBackend.WriteTo(buf[:n], a)
		}
	}()
	dir := t.TempDir()
	route := func(name, listen, connect string) string {
		return fmt.Sprintf("  - name: %s\n    listen: %s\n    connect: %s\n    psk:\n      source: shares\n      options:\n%s", name, listen, connect, net0.options)
	}
	serverPath := filepath.Join(dir, "server.yaml")
	os.WriteFile(serverPath, []byte("mode: server\nroutes:\n"+route("web", "tls://127.0.0.1:0", "tcp://"+tcpBackend.Addr().String())+
		route("dns", "dtls://127.0.0.1:0", "udp://"+udpBackend.LocalAddr().String())), 0o644)
	srv := runProxyConfig(t, proxy.ModeServer, serverPath)
	clientPath := filepath.Join(dir, "client.yaml")
	os.WriteFile(clientPath, []byte("mode: client\nroutes:\n"+route("web", "tcp://127.0.0.1:0", "tls://"+srv.Addr("web").String())+
		route("dns", "udp://127.0.0.1:0", "dtls://"+srv.Addr("dns").String())), 0o644)
	cli := runProxyConfig(t, proxy.ModeClient, clientPath)
	waitUntil(t, 20*time.Second, "both proxies ready", func() bool {
		a, _ := srv.Ready()
		b, _ := cli.Ready()
		return a && b
	})

	tcp, err := net.Dial("tcp", cli.Addr("web").String())
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	buf := make([]byte, 64)
	tcp.SetDeadline(time.Now().Add(10 * time.Second))
	tcp.Write([]byte("ping"))
	if _, err := io.ReadFull(tcp, buf[:4]); err != nil {
		t.Fatalf("TCP echo with consent: %v", err)
	}
	udp, err := net.Dial("udp", cli.Addr("dns").String())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	echo := func(msg string) bool {
		for i := 0; i < 10; i++ {
			udp.Write([]byte(msg))
			udp.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if n, err := udp.Read(buf); err == nil && string(buf[:n]) == msg {
				return true
			}
		}
		return false
	}
	if !echo("one") {
		t.Fatal("no UDP echo with consent")
	}
	open := func(p *proxy.Proxy, route string) int64 {
		for _, r := range p.Status() {
			if r.Name == route {
				return r.Open
			}
		}
		return -1
	}
	if open(srv, "web") != 1 || open(srv, "dns") != 1 {
		t.Fatalf("server proxy: %d tunnels, %d sessions open; want 1 and 1", open(srv, "web"), open(srv, "dns"))
	}

	net0.revoke(t, "bob", "carol")
	waitUntil(t, 20*time.Second, "both proxies to lose the key", func() bool {
		a, _ := srv.Ready()
		b, _ := cli.Ready()
		return !a && !b
	})
	tcp.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := tcp.Read(buf); err == nil || isNetTimeout(err) {
		t.Fatalf("the TCP tunnel is still open after consent was withdrawn (read %d bytes, %v)", n, err)
	}
	waitUntil(t, 10*time.Second, "the open tunnel and session to close on both proxies", func() bool {
		return open(srv, "web") == 0 && open(srv, "dns") == 0 && open(cli, "web") == 0 && open(cli, "dns") == 0
	})
	if echo("two") {
		t.Fatal("the UDP session still carries datagrams after consent was withdrawn")
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isNetTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
