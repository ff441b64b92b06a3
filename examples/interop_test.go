package examples_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/tlspsk"
)

// testKey is the interop tests' PSK: a fixed test value, not a secret.
var testKey = bytes.Repeat([]byte{0x5c}, 32)

// staticProxy starts a proxy from YAML and closes it at the end.
func staticProxy(t *testing.T, yaml string) *proxy.Proxy {
	t.Helper()
	cfg, err := proxy.ParseConfig([]byte(yaml))
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

// serverProxy is a server proxy with the test key, a TLS route (1.2 and
// 1.3) to a TCP echo and a DTLS route to a UDP echo.
func serverProxy(t *testing.T) *proxy.Proxy {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "web.psk")
	writeFile(t, keyFile, hex.EncodeToString(testKey)+"\n", 0o600)
	return staticProxy(t, fmt.Sprintf(`mode: server
routes:
  - name: web
    listen: tls://127.0.0.1:0
    connect: tcp://%s
    identity: Client_identity
    psk: {file: %s}
    tls: {min_version: "1.2", max_version: "1.3"}
  - name: dgram
    listen: dtls://127.0.0.1:0
    connect: udp://%s
    identity: Client_identity
    psk: {file: %s}
    dtls: {cipher_suites: [PSK-AES128-GCM-SHA256, PSK-AES128-CCM8, PSK-AES128-CCM]}
`, tcpEcho(t), keyFile, udpEcho(t), keyFile))
}

// The openssl scripts reach the backend through a server proxy over TLS
// 1.3, TLS 1.2 and DTLS 1.2: each sends a line that the echo returns.
func TestOpenSSLScripts(t *testing.T) {
	needTool(t, "openssl")
	p := serverProxy(t)
	for _, c := range []struct{ script, addr string }{
		{"tls13.sh", p.Addr("web").String()},
		{"tls12.sh", p.Addr("web").String()},
		{"dtls.sh", p.Addr("dgram").String()},
	} {
		t.Run(c.script, func(t *testing.T) {
			msg := "interop " + c.script
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", filepath.Join("openssl", c.script), c.addr)
			cmd.WaitDelay = 2 * time.Second // openssl may outlive a killed sh
			cmd.Env = append(os.Environ(), "MCBN_PSK="+hex.EncodeToString(testKey), "MCBN_MESSAGE="+msg)
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), msg) {
				t.Fatalf("%s: no echo (%v):\n%s", c.script, err, out)
			}
		})
	}
}

// stunnelKeys writes the PSKsecrets file both sides read with the
// example's psk-secrets.sh, so the script is exercised too.
func stunnelKeys(t *testing.T, dir string) string {
	t.Helper()
	file := filepath.Join(dir, "psk.txt")
	out, err := exec.Command("sh", "stunnel/psk-secrets.sh", "Client_identity", hex.EncodeToString(testKey), file).CombinedOutput()
	if err != nil {
		t.Fatalf("psk-secrets.sh: %v\n%s", err, out)
	}
	return file
}

// stunnelBoundRE matches stunnel's log line for a bound service (stunnel 5,
// level info): "Service [mcbn] (FD=8) bound to 127.0.0.1:42153".
var stunnelBoundRE = regexp.MustCompile(`Service \[mcbn\] \(FD=\d+\) bound to (\S+:\d+)`)

// startStunnel runs stunnel on the example config with its connect address
// and key file replaced, and returns the address it accepts on. stunnel
// binds port 0 itself and the address is read from its log: a port chosen
// here and closed before stunnel binds it could be taken by anyone else in
// between ("Address already in use" under load).
func startStunnel(t *testing.T, bin, conf, connect, pskFile string) string {
	t.Helper()
	text := readExample(t, "stunnel", conf)
	text = strings.NewReplacer("127.0.0.1:7080", "127.0.0.1:0", "127.0.0.1:7443", "127.0.0.1:0",
		"127.0.0.1:8443", connect, "127.0.0.1:8080", connect, "psk.txt", pskFile,
		"[mcbn]", "debug = info\n[mcbn]").Replace(text)
	path := filepath.Join(t.TempDir(), conf)
	writeFile(t, path, text, 0o600)
	cmd := exec.Command(bin, path)
	var mu sync.Mutex
	var logs bytes.Buffer
	cmd.Stdout = &lockedWriter{mu: &mu, w: &logs}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	bound := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := stunnelBoundRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case bound <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("stunnel %s:\n%s", conf, logs.String())
			mu.Unlock()
		}
	})
	select {
	case addr := <-bound:
		waitDial(t, addr)
		return addr
	case <-done:
		t.Fatalf("stunnel %s exited without binding", conf)
	case <-time.After(20 * time.Second):
		t.Fatalf("stunnel %s did not log its bound address within 20s", conf)
	}
	return ""
}

// lockedWriter serializes writes to a buffer shared with a reader goroutine.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Our server proxy with a stunnel client, and a stunnel server with our
// client proxy: a line goes through and comes back.
func TestStunnel(t *testing.T) {
	bin := needTool(t, "stunnel4", "stunnel")
	dir := t.TempDir()
	secrets := stunnelKeys(t, dir)

	t.Run("stunnel client to mcbn server", func(t *testing.T) {
		srv := staticProxy(t, fmt.Sprintf("mode: server\nroutes:\n  - {name: web, listen: \"tls://127.0.0.1:0\", connect: \"tcp://%s\", psk: {secrets: %s}}\n", tcpEcho(t), secrets))
		accept := startStunnel(t, bin, "client.conf", srv.Addr("web").String(), secrets)
		if !lineEcho(accept, "through stunnel and mcbn") {
			t.Fatal("no echo through stunnel client -> mcbn server proxy")
		}
	})
	t.Run("mcbn client to stunnel server", func(t *testing.T) {
		accept := startStunnel(t, bin, "server.conf", tcpEcho(t), secrets)
		cli := staticProxy(t, fmt.Sprintf("mode: client\nroutes:\n  - {name: web, listen: \"tcp://127.0.0.1:0\", connect: \"tls://%s\", identity: Client_identity, psk: {secrets: %s}}\n", accept, secrets))
		if !lineEcho(cli.Addr("web").String(), "through mcbn and stunnel") {
			t.Fatal("no echo through mcbn client proxy -> stunnel server")
		}
	})
}

// The Wireshark example's premise: a tlspsk client with a key log writes
// the four TLS 1.3 traffic secrets, one NSS line each, for the connection
// it made to a server proxy.
func TestKeyLog(t *testing.T) {
	p := serverProxy(t)
	var keylog bytes.Buffer
	c, err := tlspsk.Dial("tcp", p.Addr("web").String(), &tlspsk.Config{
		Identity: "Client_identity", Key: testKey, MinVersion: tlspsk.VersionTLS13, KeyLogWriter: &keylog,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "keylog\n")
	buf := make([]byte, 7)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "keylog\n" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	for _, label := range []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET ", "SERVER_HANDSHAKE_TRAFFIC_SECRET ", "CLIENT_TRAFFIC_SECRET_0 ", "SERVER_TRAFFIC_SECRET_0 "} {
		if !strings.Contains(keylog.String(), label) {
			t.Errorf("key log lacks %s:\n%s", label, keylog.String())
		}
	}
	mustContain(t, "wireshark/README.md", readExample(t, "wireshark", "README.md"), "--keylog", "tls.keylog_file")
}

// startStunnel reads the address stunnel bound from this log line (stunnel
// 5.68, level info), and from nothing else.
func TestStunnelBoundLine(t *testing.T) {
	for line, want := range map[string]string{
		"2026.12.03 18:28:57 LOG6[ui]: Service [mcbn] (FD=8) bound to 127.0.0.1:42153": "127.0.0.1:42153",
		"2026.12.03 18:28:57 LOG7[ui]: Binding service [mcbn]":                         "",
		"2026.12.03 18:28:57 LOG3[ui]: Error binding service [mcbn] to 127.0.0.1:0":    "",
	} {
		got := ""
		if m := stunnelBoundRE.FindStringSubmatch(line); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("%q: %q, want %q", line, got, want)
		}
	}
}
