package shareholder

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcbn/mcbn/attest"
)

// noIssuer drops verifier.issuer from a fixture config.
func noIssuer(t *testing.T, y string) string {
	t.Helper()
	i := strings.Index(y, "  issuer: ")
	if i < 0 {
		t.Fatal("no issuer line")
	}
	j := strings.IndexByte(y[i:], '\n')
	return y[:i] + y[i+j+1:]
}

// TestEvidenceOnlyNeedsNoIssuer: verifier.issuer may be left out when
// verifier.tee.accept lists raw evidence kinds (a participant that will
// not trust a token issuer); such a daemon releases to bound evidence and
// refuses every token, naming why in its audit log. Without either, the
// config error names verifier.issuer.
func TestEvidenceOnlyNeedsNoIssuer(t *testing.T) {
	f := newFixture(t)
	_, err := ParseConfig([]byte(noIssuer(t, f.configYAML("alice", "true", ConsentGranted))), f.dir)
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "verifier.issuer" || !strings.Contains(err.Error(), "verifier.tee.accept") {
		t.Fatalf("no issuer, no tee: %v", err)
	}

	m := newMockDir(t, attest.MockConfig{Measurement: mockMeasurement})
	pol, err := MockPolicy([]string{mockMeasurement})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.dir, "alice.yaml")
	y := noIssuer(t, teeYAML(f.configYAML("alice", pol, ConsentGranted), mockTEE(m)))
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("evidence only, no issuer: %v", err)
	}
	s, err := NewServer(t.Context(), cfg, ServerOptions{ConfigPath: path, Logger: f.logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	c := dialServer(t, s)
	if code, ref, rr := c.post(t, requestBody(evidenceFor(t, m, "mcbn-test-alice", c.nonce))); code != http.StatusOK || rr == nil {
		t.Fatalf("bound mock evidence: %d %+v", code, ref)
	}
	c = dialServer(t, s)
	tok, err := f.att.Mint("mcbn-test-alice", []string{c.nonce})
	if err != nil {
		t.Fatal(err)
	}
	if code, ref, _ := c.post(t, requestBody(tok)); code == http.StatusOK || ref.Reason != ReasonTokenInvalid {
		t.Fatalf("a token to an evidence-only daemon: %d %+v", code, ref)
	}
	if rec := lastAudit(t, f.auditPath("alice")); !strings.HasPrefix(rec.Detail, "token_evidence_kind:") || !strings.Contains(rec.Detail, "verifier.issuer is empty") {
		t.Fatalf("audit detail %q", rec.Detail)
	}
}

// TestEvidenceVerifierPerDaemon: the raw evidence verifier belongs to a
// daemon's config state, not to the package: two daemons in one process
// keep their own (each built once, not rebuilt every time the other one
// is used), each trusts only its own mock root, and a reload that changes
// the root takes effect.
func TestEvidenceVerifierPerDaemon(t *testing.T) {
	f := newFixture(t)
	m1 := newMockDir(t, attest.MockConfig{Measurement: mockMeasurement})
	m2 := newMockDir(t, attest.MockConfig{Measurement: mockMeasurement})
	pol, err := MockPolicy([]string{mockMeasurement})
	if err != nil {
		t.Fatal(err)
	}
	a := f.startTEEServer("alice", pol, mockTEE(m1), nil)
	b := f.startTEEServer("bob", pol, mockTEE(m2), nil)
	released := func(s *Server, name string, m *attest.MockTSM) bool {
		t.Helper()
		c := dialServer(t, s)
		code, _, _ := c.post(t, requestBody(evidenceFor(t, m, "mcbn-test-"+name, c.nonce)))
		return code == http.StatusOK
	}
	verifierOf := func(s *Server) *attest.EvidenceVerifier {
		t.Helper()
		v, err := s.evidenceVerifier(s.state.Load())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for range 2 { // interleaved
		if !released(a, "alice", m1) || released(a, "alice", m2) {
			t.Fatal("alice: not exactly her own mock root trusted")
		}
		if !released(b, "bob", m2) || released(b, "bob", m1) {
			t.Fatal("bob: not exactly his own mock root trusted")
		}
	}
	va := verifierOf(a)
	if verifierOf(b) == va {
		t.Fatal("two daemons share one evidence verifier")
	}
	released(b, "bob", m2)
	if verifierOf(a) != va {
		t.Fatal("alice's evidence verifier was rebuilt because bob's was used")
	}

	// Alice's config moves to m2's root: the reloaded state has its own.
	y, _ := os.ReadFile(f.configPath("alice"))
	y = []byte(strings.Replace(string(y), filepath.Join(m1.Dir, attest.MockRootFile), filepath.Join(m2.Dir, attest.MockRootFile), 1))
	if err := os.WriteFile(f.configPath("alice"), y, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if !released(a, "alice", m2) || released(a, "alice", m1) {
		t.Fatal("alice's reloaded mock root not in force")
	}
	if verifierOf(a) == va {
		t.Fatal("the reloaded state kept the old evidence verifier")
	}
}
