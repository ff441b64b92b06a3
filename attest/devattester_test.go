package attest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// socketClient returns an HTTP client that talks to a Unix socket.
func socketClient(sock string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// The token socket refuses what the real launcher would refuse.
func TestDevAttesterRequestChecks(t *testing.T) {
	d := startAttester(t, newClock())
	c := socketClient(d.Socket())
	post := func(body string) (int, string) {
		resp, err := c.Post("http://localhost/v1/token", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	seven := `["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]`
	bad := map[string]string{
		"not JSON":         `audience=x`,
		"unknown field":    `{"audience":"a","token_type":"OIDC","nonce":["aaaaaaaaaa"]}`,
		"no token_type":    `{"audience":"a"}`,
		"PKI token":        `{"audience":"a","token_type":"PKI"}`,
		"7 nonces":         `{"audience":"a","token_type":"OIDC","nonces":` + seven + `}`,
		"9-byte nonce":     `{"audience":"a","token_type":"OIDC","nonces":["123456789"]}`,
		"nonce, no aud":    `{"token_type":"OIDC","nonces":["1234567890"]}`,
		"trailing object":  `{"audience":"a","token_type":"OIDC"}{}`,
		"nonces not array": `{"audience":"a","token_type":"OIDC","nonces":"1234567890"}`,
	}
	for name, body := range bad {
		if code, msg := post(body); code != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s), want 400", name, code, msg)
		}
	}
	if code, _ := post(`{"audience":"` + strings.Repeat("a", maxTokenRequest) + `","token_type":"OIDC"}`); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversize body: status %d, want 413", code)
	}
	resp, err := c.Get("http://localhost/v1/token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}
	// No audience and no nonce: the launcher's default audience.
	code, tok := post(`{"token_type":"OIDC"}`)
	if code != http.StatusOK || decodeClaims(t, tok)["aud"] != defaultAudience {
		t.Errorf("default audience: %d %v", code, decodeClaims(t, tok)["aud"])
	}
	if _, ok := decodeClaims(t, tok)["eat_nonce"]; ok {
		t.Error("eat_nonce present without nonces")
	}
}

func TestDevAttesterSocketMode(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o660} {
		key, _ := testKeys(t)
		sock := filepath.Join(t.TempDir(), "m.sock")
		d, err := StartDevAttester(DevAttesterConfig{Socket: sock, SocketMode: mode, Key: key, ImageDigest: testDigest, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != mode {
			t.Errorf("socket mode %v, want socket %#o", fi.Mode(), mode)
		}
		entries, _ := os.ReadDir(filepath.Dir(sock))
		if len(entries) != 1 {
			t.Errorf("directory holds %d entries, want only the socket", len(entries))
		}
		d.Close()
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind after Close: %v", err)
		}
	}
	if _, err := listenUnix(filepath.Join(t.TempDir(), "x.sock"), 0o666); err == nil {
		t.Error("mode 0666 accepted")
	}
}

func TestDevAttesterSocketInUse(t *testing.T) {
	key, _ := testKeys(t)
	d := startAttester(t, newClock())
	_, err := StartDevAttester(DevAttesterConfig{Socket: d.Socket(), Key: key, ImageDigest: testDigest, Logger: quietLogger()})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second attester on a live socket: %v", err)
	}
	// A regular file in the way is not removed.
	path := filepath.Join(t.TempDir(), "f.sock")
	os.WriteFile(path, []byte("x"), 0o600)
	if _, err := StartDevAttester(DevAttesterConfig{Socket: path, Key: key, ImageDigest: testDigest, Logger: quietLogger()}); err == nil {
		t.Fatal("regular file replaced")
	}
	// A stale socket (no listener) is replaced.
	stale := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	d2, err := StartDevAttester(DevAttesterConfig{Socket: stale, Key: key, ImageDigest: testDigest, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	d2.Close()
}

func TestDevAttesterLoopbackOnly(t *testing.T) {
	key, _ := testKeys(t)
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "localhost:0"} {
		_, err := StartDevAttester(DevAttesterConfig{Listen: addr, Socket: filepath.Join(t.TempDir(), "l.sock"), Key: key, ImageDigest: testDigest, Logger: quietLogger()})
		if err == nil {
			t.Errorf("listen %q accepted", addr)
		}
	}
}

func TestDevAttesterKeyFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "dev.key")
	start := func() (*DevAttester, error) {
		return StartDevAttester(DevAttesterConfig{Socket: filepath.Join(dir, "k.sock"), KeyFile: keyFile, ImageDigest: testDigest, Logger: quietLogger()})
	}
	d, err := start()
	if err != nil {
		t.Fatal(err)
	}
	kid := d.KeyID()
	d.Close()
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if d, err = start(); err != nil {
		t.Fatal(err)
	}
	if d.KeyID() != kid {
		t.Errorf("reloaded key has kid %s, want %s", d.KeyID(), kid)
	}
	d.Close()
	os.Chmod(keyFile, 0o640)
	if _, err := start(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "junk.key"), []byte("junk"), 0o600)
	if _, err := loadOrCreateKey(filepath.Join(dir, "junk.key")); err == nil {
		t.Error("junk key file accepted")
	}
}

// With no digest configured, the attester measures its own executable.
func TestDevAttesterDefaultDigest(t *testing.T) {
	want, err := ExecutableDigest()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(want, "sha256:") || len(want) != len("sha256:")+64 {
		t.Fatalf("ExecutableDigest = %q", want)
	}
	key, _ := testKeys(t)
	d, err := StartDevAttester(DevAttesterConfig{Socket: filepath.Join(t.TempDir(), "d.sock"), Key: key, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tok := tokenViaSocket(t, d, testAudience, testNonce)
	c := decodeClaims(t, tok)
	if got := c["submods"].(map[string]any)["container"].(map[string]any)["image_digest"]; got != want || d.ImageDigest() != want {
		t.Errorf("image_digest = %v, want %s", got, want)
	}
	if c["eat_nonce"] != testNonce {
		t.Errorf("single nonce should be a string: %#v", c["eat_nonce"])
	}
}

// Discovery and JWKS are served the way a verifier expects.
func TestDevAttesterDiscovery(t *testing.T) {
	d := startAttester(t, newClock())
	resp, err := http.Get(d.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"issuer":"` + d.Issuer() + `"`, `"jwks_uri":"` + d.JWKSURL() + `"`, `"RS256"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("discovery lacks %s: %s", want, body)
		}
	}
	resp, err = http.Get(d.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, bad := range []string{`"d":`, `"p":`, `"q":`} {
		if strings.Contains(string(body), bad) {
			t.Fatalf("JWKS publishes private key material (%s)", bad)
		}
	}
	if !strings.Contains(string(body), d.KeyID()) {
		t.Errorf("JWKS lacks kid %s", d.KeyID())
	}
}

// Issuing a token is routine (every connection to a shareholder asks for
// one): it is logged at debug, so an info-level log does not grow by a line
// per token, and the token itself is never logged at any level.
func TestDevAttesterTokenLogLevel(t *testing.T) {
	var buf lockedBuffer
	key, _ := testKeys(t)
	d, err := StartDevAttester(DevAttesterConfig{Socket: filepath.Join(t.TempDir(), "a.sock"), Key: key, ImageDigest: testDigest,
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tok, err := d.Provider().Token(context.Background(), "aud", []string{strings.Repeat("ab", 16)})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	out := buf.String()
	if strings.Contains(out, "issued token") {
		t.Errorf("a token issuance logged at info:\n%s", out)
	}
	if strings.Contains(out, tok) || strings.Contains(out, strings.Split(tok, ".")[1]) {
		t.Error("the token reached the log")
	}
}

// lockedBuffer is a log sink safe for the attester's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
