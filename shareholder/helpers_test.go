package shareholder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
)

const testDigest = "sha256:a76fd40d851d895f6eee2b047ceaf84fcb06812ef1707dbc9a22e4e74f4cfd1f"

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// attesterKey is generated once per test binary: RSA generation is slow.
func attesterKey() *rsa.PrivateKey {
	keyOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fixture is a 2-of-3 group (alice, bob, carol) on disk plus a dev attester.
type fixture struct {
	t         *testing.T
	dir       string
	group     *psk.Group
	groupPath string
	shares    map[string]*psk.Share
	att       *attest.DevAttester
	devPolicy string
	logs      lockedBuffer // every daemon's log
}

// lockedBuffer collects log output from several goroutines.
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

// logger writes debug-level logs into f.logs.
func (f *fixture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// checkLogsClean fails if any log holds a share value or a JWT.
func (f *fixture) checkLogsClean() {
	f.t.Helper()
	logs := f.logs.String()
	if strings.Contains(logs, "eyJ") {
		f.t.Error("a log holds a JWT")
	}
	for n, s := range f.shares {
		if strings.Contains(logs, hex.EncodeToString(s.Value)) {
			f.t.Errorf("a log holds %s's share", n)
		}
	}
}

var names = []string{"alice", "bob", "carol"}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	g, shares, err := psk.Split("demo", 2, names, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, group: g, groupPath: filepath.Join(dir, "group.json"), shares: map[string]*psk.Share{}}
	if err := psk.WriteGroup(f.groupPath, g); err != nil {
		t.Fatal(err)
	}
	for _, s := range shares {
		f.shares[s.Participant] = s
		if err := psk.WriteShare(filepath.Join(dir, s.Participant+".share.json"), s); err != nil {
			t.Fatal(err)
		}
	}
	f.att, err = attest.StartDevAttester(attest.DevAttesterConfig{
		Socket: filepath.Join(dir, "att.sock"), ImageDigest: testDigest, Key: attesterKey(), Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.att.Close() })
	f.devPolicy, err = ConfidentialSpacePolicy(CSPolicyOptions{ImageDigests: []string{testDigest}, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// configYAML renders a shareholder config for name.
func (f *fixture) configYAML(name, policy, consent string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nlisten: 127.0.0.1:0\n", name)
	fmt.Fprintf(&b, "share_store: file://%s\n", filepath.Join(f.dir, name+".share.json"))
	fmt.Fprintf(&b, "group: group.json\n")
	fmt.Fprintf(&b, "verifier:\n  issuer: %s\n  audience: mcbn-test-%s\n  clock_skew: 5s\n", f.att.Issuer(), name)
	fmt.Fprintf(&b, "policy: |\n")
	for _, l := range strings.Split(strings.TrimSpace(policy), "\n") {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, "consent: %s # participant's decision\n", consent)
	fmt.Fprintf(&b, "audit_log: %s.audit.jsonl\n", name)
	fmt.Fprintf(&b, "rate_limit:\n  per_second: 1000\n  burst: 1000\n")
	fmt.Fprintf(&b, "reload_interval: 50ms\n")
	fmt.Fprintf(&b, "metrics:\n  listen: 127.0.0.1:0\n")
	fmt.Fprintf(&b, "audit_refusals_per_second: 10000\n")
	return b.String()
}

// startServer writes name's config and starts its daemon.
func (f *fixture) startServer(name, policy, consent string) *Server {
	f.t.Helper()
	path := filepath.Join(f.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(f.configYAML(name, policy, consent)), 0o600); err != nil {
		f.t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := NewServer(context.Background(), cfg, ServerOptions{ConfigPath: path, Logger: f.logger()})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

func (f *fixture) configPath(name string) string { return filepath.Join(f.dir, name+".yaml") }

func (f *fixture) auditPath(name string) string { return filepath.Join(f.dir, name+".audit.jsonl") }

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// waitFor polls cond until it holds, failing the test after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// conn is one pinned TLS 1.3 connection to a server, with its nonce.
type conn struct {
	c     *tls.Conn
	nonce string
	br    *bufio.Reader
}

func dialServer(t *testing.T, s *Server) *conn {
	t.Helper()
	pin, _ := ParsePin(s.Pin())
	c, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyConnection: pinVerifier(pin),
		NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cs := c.ConnectionState()
	n, err := ChannelNonce(&cs)
	if err != nil {
		t.Fatal(err)
	}
	return &conn{c: c, nonce: n, br: bufio.NewReader(c)}
}

// post sends body to the release endpoint on this connection and returns
// the status and the decoded reply.
func (c *conn) post(t *testing.T, body []byte) (int, Refusal, *ReleaseResponse) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "https://"+c.c.RemoteAddr().String()+ReleasePath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := req.Write(c.c); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var ref Refusal
	var rr *ReleaseResponse
	if resp.StatusCode == http.StatusOK {
		rr = new(ReleaseResponse)
		if err := json.Unmarshal(data, rr); err != nil {
			t.Fatalf("release reply: %v", err)
		}
	} else if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatalf("refusal reply %q: %v", data, err)
	}
	return resp.StatusCode, ref, rr
}

func requestBody(token string) []byte {
	b, _ := json.Marshal(ReleaseRequest{Version: ProtocolVersion, Token: token})
	return b
}

// lastAudit returns the last record of an audit log, checking the chain.
func lastAudit(t *testing.T, path string) AuditRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := VerifyAudit(f); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	data, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	rec, _, err := ParseAuditLine(lines[len(lines)-1])
	if err != nil {
		t.Fatal(err)
	}
	return *rec
}
