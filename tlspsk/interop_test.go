package tlspsk

// Helpers for interop tests against real peers (OpenSSL, GnuTLS), started
// on loopback. A missing binary skips the test unless MCBN_REQUIRE_INTEROP=1.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const interopTimeout = 20 * time.Second

// interopSize is the amount of data moved each way (at least 1 MiB).
const interopSize = 1 << 20

// needPeer returns the path of a peer binary, or skips (fails in CI).
func needPeer(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("MCBN_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s not found and MCBN_REQUIRE_INTEROP=1: %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}

// peer is a running external process.
type peer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *syncBuf
	stderr *syncBuf
	done   chan struct{}
	err    error
}

// syncBuf is a goroutine-safe buffer that can wait for content.
type syncBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan struct{}
}

func newSyncBuf() *syncBuf { return &syncBuf{ch: make(chan struct{}, 1)} }

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.ch <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *syncBuf) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// waitFor waits until the buffer contains s.
func (b *syncBuf) waitFor(t testing.TB, s string, p *peer) {
	t.Helper()
	deadline := time.After(interopTimeout)
	for !bytes.Contains(b.Bytes(), []byte(s)) {
		select {
		case <-b.ch:
		case <-p.done:
			if !bytes.Contains(b.Bytes(), []byte(s)) {
				t.Fatalf("peer exited before printing %q: %v\nstdout: %q\nstderr: %q", s, p.err, tail(p.stdout.Bytes()), tail(p.stderr.Bytes()))
			}
		case <-deadline:
			t.Fatalf("peer did not print %q\nstdout: %q\nstderr: %q", s, tail(p.stdout.Bytes()), tail(p.stderr.Bytes()))
		}
	}
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

// startPeer starts a process whose stdin stays open until the test ends.
func startPeer(t testing.TB, path string, args ...string) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), interopTimeout)
	cmd := exec.CommandContext(ctx, path, args...)
	p := &peer{cmd: cmd, stdout: newSyncBuf(), stderr: newSyncBuf(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(300 * time.Millisecond):
			cmd.Process.Kill()
			<-p.done
		}
		cancel()
	})
	return p
}

// wait waits for the process to exit.
func (p *peer) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(interopTimeout):
		t.Fatalf("peer did not exit\nstderr: %q", tail(p.stderr.Bytes()))
		return nil
	}
}

// waitForMatch waits until the buffer matches re and returns the
// submatches of the first match.
func (b *syncBuf) waitForMatch(t testing.TB, re *regexp.Regexp, p *peer) []string {
	t.Helper()
	deadline := time.After(interopTimeout)
	for {
		if m := re.FindSubmatch(b.Bytes()); m != nil {
			out := make([]string, len(m))
			for i := range m {
				out[i] = string(m[i])
			}
			return out
		}
		select {
		case <-b.ch:
		case <-p.done:
			if re.Match(b.Bytes()) {
				continue
			}
			t.Fatalf("peer exited before printing /%s/: %v\nstdout: %q\nstderr: %q", re, p.err, tail(p.stdout.Bytes()), tail(p.stderr.Bytes()))
		case <-deadline:
			t.Fatalf("peer did not print /%s/\nstdout: %q\nstderr: %q", re, tail(p.stdout.Bytes()), tail(p.stderr.Bytes()))
		}
	}
}

// stop kills the process and waits for it.
func (p *peer) stop() {
	p.cmd.Process.Kill()
	<-p.done
}

// Peer servers get their port without a window in which another process
// could take it (a port found free, closed and handed to the peer is
// exactly that window, and under load it gets taken: "Address already in
// use"). openssl s_server and stunnel bind port 0 and print the port the
// kernel chose; gnutls-serv cannot report one, so it gets a port that was
// free a moment ago and is started again on a new one when it says the
// address is in use.

var opensslAcceptRE = regexp.MustCompile(`ACCEPT 127\.0\.0\.1:(\d+)\r?\n`)

// startOpenSSLServer runs openssl s_server on 127.0.0.1, port 0, with
// args after "s_server -accept ...", and returns the address it listens
// on.
func startOpenSSLServer(t testing.TB, bin string, args ...string) (string, *peer) {
	t.Helper()
	p := startPeer(t, bin, append([]string{"s_server", "-accept", "127.0.0.1:0"}, args...)...)
	m := p.stdout.waitForMatch(t, opensslAcceptRE, p)
	return net.JoinHostPort("127.0.0.1", m[1]), p
}

// portInUseRetries bounds the restarts of a peer whose port was taken.
const portInUseRetries = 10

// startGnutlsServer runs gnutls-serv with args(port) until it binds its
// IPv4 socket, on a new port each time the last one was in use, and
// returns the loopback address.
func startGnutlsServer(t testing.TB, bin string, args func(port string) []string) (string, *peer) {
	t.Helper()
	return startGnutlsServerPorts(t, bin, args, func() string { return pickPort(t) })
}

// startGnutlsServerPorts is startGnutlsServer with the ports from pick.
func startGnutlsServerPorts(t testing.TB, bin string, args func(port string) []string, pick func() string) (string, *peer) {
	t.Helper()
	for try := 1; ; try++ {
		port := pick()
		p := startPeer(t, bin, args(port)...)
		re := regexp.MustCompile(`IPv4 0\.0\.0\.0 port ` + port + `\.\.\.(done|[^\n]*failed[^\n]*)`)
		m := p.stderr.waitForMatch(t, re, p)
		if m[1] == "done" {
			return net.JoinHostPort("127.0.0.1", port), p
		}
		p.stop()
		if !strings.Contains(m[1], "in use") || try == portInUseRetries {
			t.Fatalf("gnutls-serv could not listen on port %s (try %d): %s", port, try, m[1])
		}
		t.Logf("gnutls-serv: port %s in use, retrying on another", port)
	}
}

// pickPort returns a loopback port that was free a moment ago. Another
// process may take it before the peer binds it: use it only where a
// failed bind is retried (startGnutlsServer).
func pickPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// listenOurs starts our server on loopback and returns its address and a
// channel with the first accepted connection.
func listenOurs(t testing.TB, cfg *Config) (string, <-chan *Conn) {
	t.Helper()
	l, err := Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan *Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		c.SetDeadline(time.Now().Add(interopTimeout))
		t.Cleanup(func() { c.Close() })
		ch <- c.(*Conn)
	}()
	return l.Addr().String(), ch
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// randomLines returns n bytes of random hex text in lines of 64 + "\n".
func randomLines(n int) []byte {
	raw := randomBytes(n / 2)
	var b bytes.Buffer
	h := hex.EncodeToString(raw)
	for len(h) > 0 {
		m := min(len(h), 64)
		b.WriteString(h[:m])
		b.WriteByte('\n')
		h = h[m:]
	}
	return b.Bytes()
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:8]) }

// serveExchange runs on our server side: sends out while reading exactly
// len(want) bytes, checks them, then closes.
func serveExchange(t testing.TB, c *Conn, out []byte, wantLen int) ([]byte, error) {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(out)
		errc <- err
	}()
	got := make([]byte, wantLen)
	_, rerr := io.ReadFull(c, got)
	werr := <-errc
	if rerr != nil || werr != nil {
		return got, fmt.Errorf("read %v, write %v", rerr, werr)
	}
	return got, nil
}

// lines splits text into lines without the newline.
func lines(b []byte) []string {
	var out []string
	s := bufio.NewScanner(bytes.NewReader(b))
	s.Buffer(make([]byte, 1<<16), 1<<20)
	for s.Scan() {
		out = append(out, s.Text())
	}
	return out
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// opensslPSKSession writes an OpenSSL SSL_SESSION (PEM) that holds key as
// a TLS 1.3 external PSK for suite: OpenSSL ties a -psk key to SHA-256, so
// a SHA-384 PSK needs -psk_session. The ASN.1 layout is OpenSSL's
// SSL_SESSION_ASN1 (version, protocol, cipher, session id, master key, ...).
func opensslPSKSession(t testing.TB, key []byte, suite uint16) string {
	return opensslPSKSessionEarly(t, key, suite, 0)
}

// opensslPSKSessionEarly also sets max_early_data, so that s_client sends
// 0-RTT data with the PSK.
func opensslPSKSessionEarly(t testing.TB, key []byte, suite uint16, maxEarly int64) string {
	t.Helper()
	type session struct {
		Version      int
		SSLVersion   int
		Cipher       []byte
		SessionID    []byte
		MasterKey    []byte
		Time         int64 `asn1:"explicit,tag:1"`
		Timeout      int64 `asn1:"explicit,tag:2"`
		MaxEarlyData int64 `asn1:"optional,explicit,tag:15"`
	}
	der, err := asn1.Marshal(session{1, int(VersionTLS13), []byte{byte(suite >> 8), byte(suite)}, []byte{}, key,
		time.Now().Unix(), 86400, maxEarly})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "psk.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "SSL SESSION PARAMETERS", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// opensslPSKArgs returns the OpenSSL options that configure key for suite.
func opensslPSKArgs(t testing.TB, key []byte, suite uint16) []string {
	if suiteByID(suite).hash == crypto.SHA384 {
		return []string{"-psk_session", opensslPSKSession(t, key, suite)}
	}
	return []string{"-psk", hex.EncodeToString(key)}
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }

// gnutlsPSKFile writes a gnutls-serv --pskpasswd file: "identity:hexkey".
func gnutlsPSKFile(t testing.TB, identity string, key []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "psk.passwd")
	if err := os.WriteFile(path, []byte(identity+":"+hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startGnutlsServ starts gnutls-serv --echo and returns its address;
// prio is appended to the TLS 1.3 PSK priority string.
func startGnutlsServ(t testing.TB, identity string, key []byte, prio string) (string, *peer) {
	bin := needPeer(t, "gnutls-serv")
	pskFile := gnutlsPSKFile(t, identity, key)
	return startGnutlsServer(t, bin, func(port string) []string {
		return []string{"--echo", "--crlf", "-p", port, "--pskpasswd", pskFile, "--priority", gnutlsPriority + prio}
	})
}

// gnutlsPriority restricts GnuTLS to TLS 1.3 with PSK key exchanges.
const gnutlsPriority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+PSK:+ECDHE-PSK:+DHE-PSK"

// clientExchange starts a peer client that sends its stdin and prints what
// it receives (s_client -quiet, gnutls-cli), takes the connection it makes
// to our server, moves interopSize random bytes each way and fails unless
// both arrive intact. s_client's output must be the data exactly;
// gnutls-cli prints status lines first, so the data must end its output.
// It returns our side, closed, for its ConnectionState.
func clientExchange(t *testing.T, bin string, args []string, accepted <-chan *Conn) *Conn {
	t.Helper()
	p := startPeer(t, bin, args...)
	toServer, toClient := randomBytes(interopSize), randomBytes(interopSize)
	go func() { p.stdin.Write(toServer) }()
	c := <-accepted
	got, err := serveExchange(t, c, toClient, len(toServer))
	if err != nil {
		t.Fatalf("exchange: %v\nstdout: %s\nstderr: %s", err, tail(p.stdout.Bytes()), tail(p.stderr.Bytes()))
	}
	c.Close()
	p.stdin.Close()
	p.wait(t)
	if sum(got) != sum(toServer) {
		t.Fatal("our server received different data")
	}
	out := p.stdout.Bytes()
	if strings.Contains(filepath.Base(bin), "gnutls") {
		if !bytes.HasSuffix(out, toClient) {
			t.Fatalf("%s printed %d bytes; the data sent is not at the end", filepath.Base(bin), len(out))
		}
	} else if sum(out) != sum(toClient) {
		t.Fatalf("%s received %d bytes, want %d (checksum mismatch)", filepath.Base(bin), len(out), len(toClient))
	}
	return c
}

// The port helpers under the failure they exist for: a port taken by
// another process. gnutls-serv, handed a taken port first, is restarted on
// another one; openssl s_server chooses its own port, and the address it
// reports is the one it serves (stunnel's is proven by its tests).
func TestPeerPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, takenPort, _ := net.SplitHostPort(taken.Addr().String())
	t.Run("gnutls-serv", func(t *testing.T) {
		bin := needPeer(t, "gnutls-serv")
		pskFile := gnutlsPSKFile(t, "gnu", interopKey)
		picks := 0
		addr, p := startGnutlsServerPorts(t, bin, func(port string) []string {
			return []string{"--echo", "--crlf", "-p", port, "--pskpasswd", pskFile, "--priority", gnutlsPriority}
		}, func() string {
			if picks++; picks == 1 {
				return takenPort
			}
			return pickPort(t)
		})
		if picks < 2 || strings.HasSuffix(addr, ":"+takenPort) {
			t.Fatalf("not restarted on another port: %s after %d picks", addr, picks)
		}
		c, err := Dial("tcp", addr, &Config{Identity: "gnu", Key: interopKey})
		if err != nil {
			t.Fatalf("dial %s: %v\nstderr: %s", addr, err, tail(p.stderr.Bytes()))
		}
		c.Close()
	})
	t.Run("openssl", func(t *testing.T) {
		bin := needPeer(t, "openssl")
		addr, p := startOpenSSLServer(t, bin, "-nocert", "-naccept", "1", "-psk", hex.EncodeToString(interopKey))
		c, err := Dial("tcp", addr, &Config{Key: interopKey})
		if err != nil {
			t.Fatalf("dial %s: %v\nstdout: %s", addr, err, tail(p.stdout.Bytes()))
		}
		c.Close()
	})
}
