package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/tlspsk"
)

func TestProxyConfigErrorStopsStart(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "server.yaml")
	os.WriteFile(cfg, []byte("routes:\n  - name: web\n    lisen: tls://:8443\n"), 0o644)
	var out, errb bytes.Buffer
	if code := dispatch([]string{"proxy", "server", "--config", cfg}, &out, &errb); code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errb.String())
	}
	if !strings.Contains(errb.String(), `line 3: unknown key "lisen"`) {
		t.Fatalf("stderr %q does not name the key and line", errb.String())
	}
	errb.Reset()
	if code := dispatch([]string{"proxy", "client", "--listen", "tcp://127.0.0.1:1", "--connect", "tls://h:2"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "psk: missing") {
		t.Fatalf("missing PSK: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := dispatch([]string{"proxy", "client", "--bogus"}, &out, &errb); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
}

func TestProxyHelpAndCheck(t *testing.T) {
	var out, errb bytes.Buffer
	if code := dispatch([]string{"proxy", "server", "--help"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "MCBN_PROXY_PSK_FILE") || !strings.Contains(out.String(), "-drain-timeout") {
		t.Fatalf("help: exit %d\n%s", code, out.String())
	}
	out.Reset()
	for _, f := range []string{"client.yaml", "server.yaml"} {
		mode := strings.TrimSuffix(f, ".yaml")
		// The examples name secret files that do not exist here: --check
		// must say so, naming the field.
		code := dispatch([]string{"proxy", mode, "--check", "--config", filepath.Join("..", "..", "examples", "proxy", f)}, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), "psk.file") {
			t.Fatalf("%s: exit %d, stderr %q", f, code, errb.String())
		}
		errb.Reset()
	}
	key := writeKey(t, "psk.hex")
	t.Setenv("MCBN_PROXY_PSK_FILE", key)
	code := dispatch([]string{"proxy", "server", "--check", "--listen", "tls://127.0.0.1:0", "--connect", "tcp://127.0.0.1:9"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "config ok: server proxy, 1 route(s)") {
		t.Fatalf("check: exit %d, %q %q", code, out.String(), errb.String())
	}
}

func writeKey(t *testing.T, name string) string {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(hex.EncodeToString(k)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readKey(t *testing.T, p string) []byte {
	b, _ := os.ReadFile(p)
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestProxyServerSignals runs 'mcbn proxy server' from flags, tunnels
// through it, rotates the key with SIGHUP, and stops it with SIGTERM.
func TestProxyServerSignals(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	keyFile := writeKey(t, "psk.hex")
	sig := make(chan os.Signal, 2)
	started := make(chan *proxy.Proxy, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() {
		done <- runProxy(proxy.ModeServer, []string{"--listen", "tls://127.0.0.1:0", "--connect", "tcp://" + backend.Addr().String(),
			"--psk-file", keyFile, "--log-format", "json"}, io.Discard, &syncWriter{w: &logs}, sig, started)
	}()
	var p *proxy.Proxy
	select {
	case p = <-started:
	case err := <-done:
		t.Fatalf("proxy ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("proxy did not start")
	}
	addr := p.Addr("route1").String()
	echo := func(key []byte) error {
		conn, err := tlspsk.Dial("tcp", addr, &tlspsk.Config{Identity: "Client_identity", Key: key})
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err = io.ReadFull(conn, buf)
		return err
	}
	old := readKey(t, keyFile)
	if err := echo(old); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(keyFile, []byte(hex.EncodeToString(bytes.Repeat([]byte{7}, 32))), 0o600)
	sig <- syscall.SIGHUP
	deadline := time.Now().Add(5 * time.Second)
	for echo(bytes.Repeat([]byte{7}, 32)) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the new key never worked after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if echo(old) == nil {
		t.Fatal("the old key still works after SIGHUP")
	}
	sig <- syscall.SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop the proxy")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still listening after SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"SIGHUP: reloading PSK sources"`) {
		t.Fatalf("no JSON log of the reload:\n%s", logs.String())
	}
}

type syncWriter struct {
	w io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	syncWriterMu.Lock()
	defer syncWriterMu.Unlock()
	return s.w.Write(p)
}

var syncWriterMu sync.Mutex

// TestProxyHelperProcess is not a test: run by TestProxyProcesses as a
// child process, it is the mcbn binary (the usual os/exec helper pattern).
func TestProxyHelperProcess(t *testing.T) {
	if os.Getenv("MCBN_TEST_PROXY_HELPER") != "1" {
		t.Skip("helper process only")
	}
	args := strings.Split(os.Getenv("MCBN_TEST_PROXY_HELPER_ARGS"), "\x1f")
	os.Exit(dispatch(args, os.Stdout, os.Stderr))
}

func freeLoopbackPort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
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

type mcbnProcess struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

func startMcbn(t *testing.T, env []string, args ...string) *mcbnProcess {
	t.Helper()
	p := &mcbnProcess{done: make(chan error, 1)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestProxyHelperProcess$")
	p.cmd.Env = append(append(os.Environ(), "MCBN_TEST_PROXY_HELPER=1", "MCBN_TEST_PROXY_HELPER_ARGS="+strings.Join(args, "\x1f")), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("mcbn %s output:\n%s", args[1], p.out.String())
		}
	})
	return p
}

// TestProxyProcesses runs 'mcbn proxy server' and 'mcbn proxy client' as
// real processes from YAML configs (PSK file for TCP, PSK from the
// environment for UDP), carries HTTP byte-exact and a UDP exchange, then
// stops both with SIGTERM.
func TestProxyProcesses(t *testing.T) {
	if os.Getenv("MCBN_TEST_PROXY_HELPER") == "1" {
		t.Skip()
	}
	body := make([]byte, 256<<10)
	rand.Read(body)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	defer web.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, a, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.WriteTo(bytes.ToUpper(buf[:n]), a)
		}
	}()
	dir := t.TempDir()
	keyFile := writeKey(t, "psk.hex")
	keyHex := strings.TrimSpace(string(must(os.ReadFile(keyFile))))
	p := func(n string) int { return freeLoopbackPort(t, n) }
	tlsPort, dtlsPort, sAdmin, cAdmin, cTCP, cUDP := p("tcp"), p("udp"), p("tcp"), p("tcp"), p("tcp"), p("udp")
	server := filepath.Join(dir, "server.yaml")
	os.WriteFile(server, []byte(fmt.Sprintf(`mode: server
admin: 127.0.0.1:%d
routes:
  - name: web
    listen: tls://127.0.0.1:%d
    connect: tcp://%s
    psk: {file: %s}
  - name: dns
    listen: dtls://127.0.0.1:%d
    connect: udp://%s
    psk: {env: TEST_DNS_PSK}
`, sAdmin, tlsPort, strings.TrimPrefix(web.URL, "http://"), keyFile, dtlsPort, udp.LocalAddr())), 0o644)
	client := filepath.Join(dir, "client.yaml")
	os.WriteFile(client, []byte(fmt.Sprintf(`mode: client
routes:
  - name: web
    listen: tcp://127.0.0.1:%d
    connect: tls://127.0.0.1:%d
    psk: {file: %s}
  - name: dns
    listen: udp://127.0.0.1:%d
    connect: dtls://127.0.0.1:%d
    psk: {env: TEST_DNS_PSK}
`, cTCP, tlsPort, keyFile, cUDP, dtlsPort)), 0o644)
	env := []string{"TEST_DNS_PSK=" + keyHex}
	srv := startMcbn(t, env, "proxy", "server", "--config", server, "--log-format", "json")
	// The HTTP client keeps its connection alive, so the client proxy has a
	// tunnel open at SIGTERM: the short drain timeout ends it.
	cli := startMcbn(t, append(env, fmt.Sprintf("MCBN_PROXY_ADMIN=127.0.0.1:%d", cAdmin), "MCBN_PROXY_DRAIN_TIMEOUT=2s"),
		"proxy", "client", "--config", client)
	for _, port := range []int{sAdmin, cAdmin} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("proxy with admin port %d never ready", port)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://127.0.0.1:%d/", cTCP))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("HTTP through both proxies: %d bytes, %v; want %d bytes byte-exact", len(got), err, len(body))
	}
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", cUDP))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	ok := false
	for i := 0; i < 20 && !ok; i++ {
		c.Write([]byte("datagram"))
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		ok = err == nil && string(buf[:n]) == "DATAGRAM"
	}
	if !ok {
		t.Fatal("no UDP answer through both proxies")
	}
	for _, pr := range []*mcbnProcess{cli, srv} {
		pr.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-pr.done:
			pr.done <- err // for the cleanup
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no exit within 10s of SIGTERM")
		}
	}
	if strings.Contains(srv.out.String()+cli.out.String(), keyHex) {
		t.Fatal("the key appears in a log")
	}
	if !strings.Contains(cli.out.String(), "drain timeout: closing the remaining tunnels") {
		t.Fatalf("client log lacks the drain timeout:\n%s", cli.out.String())
	}
	if !strings.Contains(srv.out.String(), `"msg":"stopped"`) {
		t.Fatalf("server log lacks the stop:\n%s", srv.out.String())
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// An MCBN_PROXY_ variable that names no setting (or no route) stops the
// proxy with one line naming it, under cobra as before: a misspelt
// MCBN_PROXY_PSK_FLIE must not leave the proxy on another key source.
func TestProxyEnvNamesStayStrict(t *testing.T) {
	key := writeKey(t, "psk.hex")
	args := []string{"proxy", "server", "--check", "--listen", "tls://127.0.0.1:0", "--connect", "tcp://127.0.0.1:9", "--psk-file", key}
	if code, out, errs := run(args...); code != 0 {
		t.Fatalf("clean environment: exit %d %q %q", code, out, errs)
	}
	for _, v := range []string{"MCBN_PROXY_PSK_FLIE", "MCBN_PROXY_ROUTE_NOPE_CONNECT"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv(v, "x")
			for _, a := range [][]string{args, args[:2]} { // --check, and the proxy itself
				code, _, errs := run(a...)
				if code != 1 || !oneLine(errs) || !strings.Contains(errs, "environment: "+v) {
					t.Fatalf("%v: exit %d, stderr %q", a, code, errs)
				}
			}
		})
	}
}

// Every setting of package proxy gets a typed placeholder in the help.
func TestProxyFlagPlaceholders(t *testing.T) {
	for _, c := range newRoot().Commands() {
		if c.Name() != "proxy" {
			continue
		}
		for _, m := range c.Commands() {
			m.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if v, ok := f.Value.(*goFlagValue); ok && v.typ != "bool" && proxyPlaceholders[f.Name] == "" {
					t.Errorf("proxy %s --%s: add it to proxyPlaceholders", m.Name(), f.Name)
				}
			})
		}
	}
}
