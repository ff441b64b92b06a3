package main

import (
	"io"

	"bytes"
	"encoding/hex"
	"github.com/mcbn/mcbn/tlspsk"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const tlsTestKey = "0123456789abcdef0123456789abcdef"

// startTLSEcho runs "mcbn tls server --echo" and returns its address and a stop function.
func startTLSEcho(t *testing.T, args ...string) (string, *bytes.Buffer, func()) {
	t.Helper()
	lc := make(chan net.Listener, 1)
	tlsServeHook = func(l net.Listener) { lc <- l }
	t.Cleanup(func() { tlsServeHook = nil })
	var stderr bytes.Buffer
	var mu sync.Mutex
	done := make(chan int, 1)
	go func() {
		var out bytes.Buffer
		code := dispatch(append([]string{"tls", "server", "--listen", "127.0.0.1:0", "--echo"}, args...), &out, &lockedWriter{&mu, &stderr})
		done <- code
	}()
	var l net.Listener
	select {
	case l = <-lc:
	case code := <-done:
		t.Fatalf("server exited %d: %s", code, stderr.String())
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}
	return l.Addr().String(), &stderr, func() {
		l.Close()
		if code := <-done; code != 0 {
			t.Errorf("server exit %d", code)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func runTLSClientCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	tlsStdin = strings.NewReader(stdin)
	t.Cleanup(func() { tlsStdin = os.Stdin })
	var out, errb bytes.Buffer
	code := dispatch(append([]string{"tls", "client"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestTLSClientServerEcho(t *testing.T) {
	addr, serr, stop := startTLSEcho(t, "--psk", tlsTestKey)
	msg := strings.Repeat("hello over tls-psk\n", 5000)
	code, out, errs := runTLSClientCmd(t, msg, "--psk", tlsTestKey, "--tls1_3", "--cipher", "TLS_CHACHA20_POLY1305_SHA256", addr)
	if code != 0 || out != msg {
		t.Fatalf("exit %d, %d bytes back; stderr: %s", code, len(out), errs)
	}
	for _, want := range []string{"TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", `identity "Client_identity"`, "group X25519MLKEM768"} {
		if !strings.Contains(errs, want) {
			t.Errorf("status line lacks %q: %s", want, errs)
		}
	}
	// Wrong key: exit 1 with the reason; unknown identity likewise.
	code, out, errs = runTLSClientCmd(t, "secret data", "--psk", "00"+tlsTestKey, addr)
	if code != 1 || out != "" || !strings.Contains(errs, "wrong_key") {
		t.Fatalf("wrong key: exit %d, out %q, stderr %s", code, out, errs)
	}
	code, _, errs = runTLSClientCmd(t, "x", "--psk", tlsTestKey, "--psk-identity", "mallory", addr)
	if code != 1 || !strings.Contains(errs, "unknown_identity") {
		t.Fatalf("unknown identity: exit %d, stderr %s", code, errs)
	}
	stop()
	if strings.Contains(serr.String()+errs, tlsTestKey) {
		t.Fatal("a key was printed")
	}
	if !strings.Contains(serr.String(), "listening on 127.0.0.1:") || !strings.Contains(serr.String(), "wrong_key") {
		t.Fatalf("server stderr: %s", serr.String())
	}
}

func TestTLSServerPSKFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "psk.txt")
	other := hex.EncodeToString([]byte("another key of some length"))
	os.WriteFile(path, []byte("# comment\nalice:"+tlsTestKey+"\nbob:"+other+"\n"), 0o600)
	addr, _, stop := startTLSEcho(t, "--psk-file", path)
	defer stop()
	code, out, errs := runTLSClientCmd(t, "hi bob", "--psk", other, "--psk-identity", "bob", "--groups", "P-256", addr)
	if code != 0 || out != "hi bob" || !strings.Contains(errs, "group P-256") {
		t.Fatalf("exit %d out %q stderr %s", code, out, errs)
	}
}

func TestTLSServerPSKFileRefused(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open.txt")
	os.WriteFile(open, []byte("alice:"+tlsTestKey+"\n"), 0o644)
	dup := filepath.Join(dir, "dup.txt")
	os.WriteFile(dup, []byte("alice:"+tlsTestKey+"\nalice:"+tlsTestKey+"\n"), 0o600)
	for _, c := range []struct{ path, want string }{
		{open, "open.txt has mode 0644"},
		{dup, `dup.txt line 2: identity "alice" appears twice`},
	} {
		var out, errb bytes.Buffer
		code := dispatch([]string{"tls", "server", "--psk-file", c.path, "--listen", "127.0.0.1:0"}, &out, &errb)
		if code != 1 || !strings.Contains(errb.String(), c.want) || strings.Contains(errb.String(), tlsTestKey) {
			t.Errorf("%s: exit %d, stderr %q", c.path, code, errb.String())
		}
	}
}

func TestTLSUsage(t *testing.T) {
	for _, args := range [][]string{
		{"127.0.0.1:1"},                // no --psk
		{"--psk", "zz", "127.0.0.1:1"}, // bad hex
		{"--psk", tlsTestKey},          // no address
		{"--psk", tlsTestKey, "--cipher", "RC4", "127.0.0.1:1"}, // unknown suite
	} {
		if code, _, errs := runTLSClientCmd(t, "", args...); code != 2 || strings.Contains(errs, "zz") {
			t.Errorf("%v: exit %d, stderr %s", args, code, errs)
		}
	}
	var out, errb bytes.Buffer
	if code := dispatch([]string{"tls", "server", "--listen", "127.0.0.1:0"}, &out, &errb); code != 2 {
		t.Errorf("server without key: exit %d", code)
	}
}

func TestTLSServerRelay(t *testing.T) {
	lc := make(chan net.Listener, 1)
	tlsServeHook = func(l net.Listener) { lc <- l }
	tlsStdin = strings.NewReader("from server")
	t.Cleanup(func() { tlsServeHook, tlsStdin = nil, os.Stdin })
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- dispatch([]string{"tls", "server", "--listen", "127.0.0.1:0", "--psk", tlsTestKey}, &out, &errb)
	}()
	l := <-lc
	key, _ := hex.DecodeString(tlsTestKey)
	c, err := tlspsk.Dial("tcp", l.Addr().String(), &tlspsk.Config{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("from client"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "from server" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if code := <-done; code != 0 || out.String() != "from client" {
		t.Fatalf("server exit %d, stdout %q, stderr %s", code, out.String(), errb.String())
	}
}

func TestTLS12ClientServer(t *testing.T) {
	addr, serr, stop := startTLSEcho(t, "--psk", tlsTestKey, "--psk-hint", "the-hint")
	msg := strings.Repeat("hello over tls 1.2\n", 5000)
	def12 := tlspsk.CipherSuiteName(tlspsk.DefaultCipherSuites12()[0])
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--tls1_2"}, []string{"TLSv1.2", def12, "group X25519"}},
		{[]string{"--tls1_2", "--groups", "P-256"}, []string{"TLSv1.2", def12, "group P-256"}},
		{[]string{"--cipher", "PSK-AES128-GCM-SHA256"}, []string{"TLSv1.2", "PSK-AES128-GCM-SHA256", "plain PSK, no forward secrecy"}},
		{[]string{"--tls1_2", "--cipher", "PSK-AES256-GCM-SHA384"}, []string{"TLSv1.2", "PSK-AES256-GCM-SHA384"}},
		{nil, []string{"TLSv1.3"}},
	} {
		code, out, errs := runTLSClientCmd(t, msg, append(append([]string{"--psk", tlsTestKey}, tc.args...), addr)...)
		if code != 0 || out != msg {
			t.Fatalf("%v: exit %d, %d bytes back; stderr: %s", tc.args, code, len(out), errs)
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%v: status line lacks %q: %s", tc.args, w, errs)
			}
		}
	}
	code, _, errs := runTLSClientCmd(t, "x", "--psk", "00"+tlsTestKey, "--tls1_2", addr)
	if code != 1 || !strings.Contains(errs, "wrong_key") {
		t.Fatalf("wrong key: exit %d, stderr %s", code, errs)
	}
	stop()
	if strings.Contains(serr.String(), tlsTestKey) {
		t.Fatal("a key was printed")
	}
	if code, _, _ := runTLSClientCmd(t, "", "--psk", tlsTestKey, "--tls1_2", "--tls1_3", addr); code != 2 {
		t.Fatalf("--tls1_2 --tls1_3: exit %d", code)
	}
}

func TestTLS12ServerRequireFS(t *testing.T) {
	addr, _, stop := startTLSEcho(t, "--psk", tlsTestKey, "--require-fs")
	defer stop()
	code, _, errs := runTLSClientCmd(t, "x", "--psk", tlsTestKey, "--cipher", "PSK-AES128-GCM-SHA256", addr)
	if code != 1 || !strings.Contains(errs, "no_shared_parameters") {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
}

// The BRIEF's command: openssl s_client -tls1_2 -cipher PSK-AES128-GCM-SHA256
// against a default "mcbn tls server".
func TestTLS12OpenSSLClientToDefaultServer(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("MCBN_REQUIRE_INTEROP") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	addr, serr, stop := startTLSEcho(t, "--psk", tlsTestKey)
	defer stop()
	cmd := exec.Command(bin, "s_client", "-psk", tlsTestKey, "-psk_identity", tlspsk.DefaultIdentity, "-tls1_2",
		"-cipher", "PSK-AES128-GCM-SHA256", "-connect", addr, "-quiet")
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var out bytes.Buffer
	var mu sync.Mutex
	cmd.Stdout = &lockedWriter{&mu, &out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	pw.Write([]byte("hello from s_client\n"))
	echoed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(out.String(), "hello from s_client")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !echoed() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	pw.Close()
	// -quiet implies -ign_eof, so s_client does not exit on its own.
	cmd.Process.Kill()
	cmd.Wait()
	if !echoed() {
		t.Fatalf("no echo; server stderr: %s", serr.String())
	}
	if !strings.Contains(serr.String(), "TLSv1.2, PSK-AES128-GCM-SHA256") {
		t.Fatalf("server stderr: %s", serr.String())
	}
}

// Every TLS 1.2 suite by its OpenSSL name, chosen on both sides: a server
// held to one suite with --tls1_2 --cipher, and a client asking for it.
func TestTLS12EverySuiteBothSides(t *testing.T) {
	msg := strings.Repeat("every suite\n", 2000)
	for _, suite := range []string{"PSK-AES128-GCM-SHA256", "PSK-AES256-GCM-SHA384", "PSK-CHACHA20-POLY1305", "ECDHE-PSK-CHACHA20-POLY1305"} {
		addr, _, stop := startTLSEcho(t, "--psk", tlsTestKey, "--tls1_2", "--cipher", suite)
		code, out, errs := runTLSClientCmd(t, msg, "--psk", tlsTestKey, "--tls1_2", "--cipher", suite, addr)
		if code != 0 || out != msg || !strings.Contains(errs, "TLSv1.2, "+suite) {
			t.Errorf("%s: exit %d, %d bytes back; stderr: %s", suite, code, len(out), errs)
		}
		// A client that wants another suite meets no shared suite.
		other := "PSK-AES128-GCM-SHA256"
		if suite == other {
			other = "PSK-CHACHA20-POLY1305"
		}
		if code, _, errs := runTLSClientCmd(t, "x", "--psk", tlsTestKey, "--tls1_2", "--cipher", other, addr); code != 1 || !strings.Contains(errs, "no_shared_parameters") {
			t.Errorf("%s server, %s client: exit %d, stderr %s", suite, other, code, errs)
		}
		stop()
	}
}
