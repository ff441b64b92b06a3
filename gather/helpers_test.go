package gather

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// The proxy side is tested against real daemons (package shareholder,
// which gather imports for the wire types anyway) started in process, and
// against fakes standing in for hostile or broken participants.

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
	logs      lockedBuffer // every daemon's and source's log
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
	f.devPolicy, err = shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{ImageDigests: []string{testDigest}, Dev: true})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// expectedPSK is what psk.Combine and DerivePSK give from alice and bob.
func (f *fixture) expectedPSK(identity string, epoch uint64) []byte {
	f.t.Helper()
	secret, err := psk.Combine(f.group, []*psk.Share{f.shares["alice"], f.shares["bob"]})
	if err != nil {
		f.t.Fatal(err)
	}
	defer psk.Wipe(secret)
	k, err := psk.DerivePSK(secret, f.group.ID, identity, epoch, 32)
	if err != nil {
		f.t.Fatal(err)
	}
	return k
}

// configYAML renders a shareholder daemon config for name.
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
func (f *fixture) startServer(name, policy, consent string) *shareholder.Server {
	f.t.Helper()
	path := f.configPath(name)
	if err := os.WriteFile(path, []byte(f.configYAML(name, policy, consent)), 0o600); err != nil {
		f.t.Fatal(err)
	}
	cfg, err := shareholder.LoadConfig(path)
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := shareholder.NewServer(context.Background(), cfg, shareholder.ServerOptions{ConfigPath: path, Logger: f.logger()})
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

// entry is the shareholders: entry for a running daemon.
func entry(name string, s *shareholder.Server) ShareholderConfig {
	return ShareholderConfig{Name: name, URL: "https://" + s.Addr().String(), Pin: s.Pin(), Audience: "mcbn-test-" + name}
}

func (f *fixture) sourceConfig(entries ...ShareholderConfig) SharesSourceConfig {
	return SharesSourceConfig{
		Group: f.groupPath, Shareholders: entries,
		Attestation: AttestationConfig{Provider: "dev", Socket: f.att.Socket()},
		Identity:    "Client_identity", Epoch: 1,
		Refresh: 100 * time.Millisecond, Timeout: 5 * time.Second,
	}
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

// lastAudit returns the last record of an audit log, checking the chain.
func lastAudit(t *testing.T, path string) shareholder.AuditRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := shareholder.VerifyAudit(f); err != nil {
		t.Fatalf("audit chain: %v", err)
	}
	data, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	rec, _, err := shareholder.ParseAuditLine(lines[len(lines)-1])
	if err != nil {
		t.Fatal(err)
	}
	return *rec
}

// metricsGet scrapes a daemon's metrics listener.
func metricsGet(t *testing.T, s *shareholder.Server) string {
	t.Helper()
	if s.MetricsAddr() == nil {
		t.Fatal("no metrics listener")
	}
	resp, err := http.Get("http://" + s.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: HTTP %d", resp.StatusCode)
	}
	return string(b)
}

// httpsGet fetches path from a daemon's release port, pinned.
func httpsGet(t *testing.T, s *shareholder.Server, path string) string {
	t.Helper()
	pin, _ := shareholder.ParsePin(s.Pin())
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyConnection: pinVerifier(pin),
	}}}
	resp, err := c.Get("https://" + s.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// writeJSON answers as a daemon does.
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// startLiar serves a release endpoint that hands out carol's share with a
// wrong value (alice's), as a malicious or broken shareholder would.
func startLiar(t *testing.T, f *fixture) ShareholderConfig {
	t.Helper()
	bad := *f.shares["carol"]
	bad.Value = bytes.Clone(f.shares["alice"].Value)
	return startFakeShareholder(t, "carol", &bad)
}

// startFakeShareholder answers every release request with share.
func startFakeShareholder(t *testing.T, name string, share *psk.Share) ShareholderConfig {
	t.Helper()
	file := marshalShare(t, share)
	return serveFake(t, name, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, shareholder.ReleaseResponse{Version: shareholder.ProtocolVersion, Share: file})
	})
}

func marshalShare(t *testing.T, share *psk.Share) []byte {
	t.Helper()
	file, err := psk.MarshalShare(share)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// serveFake serves handler as a shareholder daemon named name would, over
// TLS 1.3 with a self-signed certificate, and returns its proxy-side entry.
func serveFake(t *testing.T, name string, handler http.HandlerFunc) ShareholderConfig {
	t.Helper()
	return serveFakeWith(t, name, handler, nil)
}

// serveFakeWith is serveFake with a connection state hook (nil: none).
func serveFakeWith(t *testing.T, name string, handler http.HandlerFunc, connState func(net.Conn, http.ConnState)) ShareholderConfig {
	t.Helper()
	cert, err := shareholder.SelfSignedCert(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	// Connections the client abandons once it has T shares end in
	// handshake errors: expected, and not worth a line on stderr.
	srv := &http.Server{Handler: handler, ConnState: connState, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ShareholderConfig{Name: name, URL: "https://" + ln.Addr().String(), Pin: shareholder.SPKIPin(cert.Leaf), Audience: "mcbn-test-" + name}
}

// blackHole accepts connections and never answers.
func blackHole(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
