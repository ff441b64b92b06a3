package shareholder

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
)

var mockMeasurement = strings.Repeat("5a", 48)

// teeYAML inserts a verifier.tee block into a fixture config.
func teeYAML(base, tee string) string {
	return strings.Replace(base, "  clock_skew: 5s\n", "  clock_skew: 5s\n  tee:\n"+tee, 1)
}

// startTEEServer starts name's daemon with tee settings and a policy.
func (f *fixture) startTEEServer(name, policy, tee string, now func() time.Time) *Server {
	f.t.Helper()
	path := filepath.Join(f.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(teeYAML(f.configYAML(name, policy, ConsentGranted), tee)), 0o600); err != nil {
		f.t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		f.t.Fatal(err)
	}
	s, err := NewServer(context.Background(), cfg, ServerOptions{ConfigPath: path, Logger: f.logger(), Now: now})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { s.Close() })
	return s
}

func newMockDir(t *testing.T, cfg attest.MockConfig) *attest.MockTSM {
	t.Helper()
	m, err := attest.CreateMockTSM(filepath.Join(t.TempDir(), "mock-tsm"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mockTEE(m *attest.MockTSM) string {
	return "    accept: [mock-tsm]\n    mock_root: " + filepath.Join(m.Dir, attest.MockRootFile) + "\n"
}

// evidenceFor asks the mock-tsm provider for evidence bound to nonce.
func evidenceFor(t *testing.T, m *attest.MockTSM, aud, nonce string) string {
	t.Helper()
	s, err := attest.NewMockTSMProvider(m.Dir).Token(context.Background(), aud, []string{nonce})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDaemonMockEvidenceAttacks: a real daemon releases to mock-tsm
// evidence bound to the connection, and refuses each attack with a named
// check in its audit log.
func TestDaemonMockEvidenceAttacks(t *testing.T) {
	f := newFixture(t)
	m := newMockDir(t, attest.MockConfig{Measurement: mockMeasurement})
	other := newMockDir(t, attest.MockConfig{Measurement: strings.Repeat("00", 48)})
	pol, err := MockPolicy([]string{mockMeasurement})
	if err != nil {
		t.Fatal(err)
	}
	s := f.startTEEServer("alice", pol, mockTEE(m), nil)
	aud := "mcbn-test-alice"

	// Released: evidence bound to this very connection.
	c := dialServer(t, s)
	if code, ref, rr := c.post(t, requestBody(evidenceFor(t, m, aud, c.nonce))); code != http.StatusOK || rr == nil {
		t.Fatalf("bound mock evidence: %d %+v", code, ref)
	}
	rec := lastAudit(t, f.auditPath("alice"))
	if rec.Decision != DecisionRelease || !strings.HasPrefix(rec.Subject, "mock:") {
		t.Fatalf("audit %+v", rec)
	}

	wrongMeas := newMockDir(t, attest.MockConfig{})
	copyKey(t, m, wrongMeas) // same key and chain, another measurement

	old := dialServer(t, s)
	replayed := evidenceFor(t, m, aud, old.nonce)
	cases := []struct {
		name, check, reason string
		tok                 func(c *conn) string
	}{
		{"REPORTDATA bound to another connection's exporter", "token_nonce", ReasonTokenInvalid,
			func(c *conn) string { return evidenceFor(t, m, aud, strings.Repeat("e", 64)) }},
		{"replayed evidence (an earlier connection's nonce)", "token_nonce", ReasonTokenInvalid,
			func(c *conn) string { return replayed }},
		{"chain not rooted at the trusted root (another mock root)", "token_chain", ReasonTokenInvalid,
			func(c *conn) string { return evidenceFor(t, other, aud, c.nonce) }},
		{"measurement not in the policy", "policy_false", ReasonPolicyDenied,
			func(c *conn) string { return evidenceFor(t, wrongMeas, aud, c.nonce) }},
		{"truncated evidence", "token_malformed_evidence", ReasonTokenInvalid,
			func(c *conn) string { return truncateEvidence(t, evidenceFor(t, m, aud, c.nonce)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialServer(t, s)
			code, ref, _ := c.post(t, requestBody(tc.tok(c)))
			if code == http.StatusOK || ref.Reason != tc.reason {
				t.Fatalf("got %d %+v, want %s", code, ref, tc.reason)
			}
			rec := lastAudit(t, f.auditPath("alice"))
			if !strings.HasPrefix(rec.Detail, tc.check+":") {
				t.Fatalf("audit detail %q, want check %s", rec.Detail, tc.check)
			}
		})
	}

	// Debug, with a trusted chain: copy m's key into a debug config.
	dbgTrusted := newMockDir(t, attest.MockConfig{Measurement: mockMeasurement, Debug: true})
	copyKey(t, m, dbgTrusted)
	c = dialServer(t, s)
	if code, ref, _ := c.post(t, requestBody(evidenceFor(t, dbgTrusted, aud, c.nonce))); code == http.StatusOK || ref.Reason != ReasonTokenInvalid {
		t.Fatalf("debug guest: %d %+v", code, ref)
	}
	if rec := lastAudit(t, f.auditPath("alice")); !strings.HasPrefix(rec.Detail, "token_debug:") {
		t.Fatalf("debug guest audit %q", rec.Detail)
	}
	f.checkLogsClean()
}

// TestDaemonRefusesMockUnlessPolicyNamesIt: mock evidence is refused by a
// daemon that lists mock-tsm but whose policy does not name "mock" (here a
// TDX production preset), and by one that accepts no raw evidence at all.
func TestDaemonRefusesMockUnlessPolicyNamesIt(t *testing.T) {
	f := newFixture(t)
	m := newMockDir(t, attest.MockConfig{Measurement: mockMeasurement})
	prod, err := TDXPolicy(TDXPolicyOptions{MRTDs: []string{mockMeasurement}})
	if err != nil {
		t.Fatal(err)
	}
	// A policy that would otherwise be true for anything: only the
	// "names mock" rule stands between it and a release.
	lax := "true // " + `"mock" in a comment does not count`
	for _, tc := range []struct {
		name, policy, tee string
	}{
		{"production TDX policy", prod, mockTEE(m)},
		{"lax policy not naming mock", lax, mockTEE(m)},
		{"no verifier.tee", f.devPolicy, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *Server
			if tc.tee == "" {
				s = f.startServer("bob", tc.policy, ConsentGranted)
			} else {
				s = f.startTEEServer("bob", tc.policy, tc.tee, nil)
			}
			c := dialServer(t, s)
			code, ref, _ := c.post(t, requestBody(evidenceFor(t, m, "mcbn-test-bob", c.nonce)))
			if code == http.StatusOK || ref.Reason != ReasonTokenInvalid {
				t.Fatalf("got %d %+v", code, ref)
			}
			if rec := lastAudit(t, f.auditPath("bob")); !strings.HasPrefix(rec.Detail, "token_evidence_kind:") {
				t.Fatalf("audit detail %q", rec.Detail)
			}
			s.Close()
		})
	}
	if !policyNamesMock(`assertion.tee == "mock"`) || policyNamesMock(`assertion.tee == "mocked"`) {
		t.Fatal("policyNamesMock")
	}
}

// TestDaemonTDXVendorSample: the Intel-signed sample quote reaches a real
// daemon and is refused for its TCB (collateral fresh at the pinned
// clock), and as "unavailable" once the cached collateral is past its
// nextUpdate.
func TestDaemonTDXVendorSample(t *testing.T) {
	f := newFixture(t)
	coll := filepath.Join(f.dir, "collateral")
	writeSampleCollateral(t, coll)
	quote, err := os.ReadFile("../attest/testdata/tdx/quote_v4.dat")
	if err != nil {
		t.Fatal(err)
	}
	ev, err := attest.EncodeEvidence(&attest.Evidence{Kind: attest.KindTDX, Report: quote})
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := TDXPolicy(TDXPolicyOptions{MRTDs: []string{strings.Repeat("00", 48)}})
	tee := "    accept: [tdx]\n    collateral_dir: " + coll + "\n"
	for _, tc := range []struct {
		name   string
		now    time.Time
		reason string
		check  string
	}{
		{"collateral fresh: TCB below the accepted level", time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC), ReasonTokenInvalid, "token_tcb"},
		{"collateral past nextUpdate", time.Date(2023, 8, 1, 0, 0, 0, 0, time.UTC), ReasonUnavailable, "token_collateral_expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := f.startTEEServer("carol", pol, tee, func() time.Time { return tc.now })
			c := dialServer(t, s)
			code, ref, _ := c.post(t, requestBody(ev))
			if code == http.StatusOK || ref.Reason != tc.reason {
				t.Fatalf("got %d %+v", code, ref)
			}
			if rec := lastAudit(t, f.auditPath("carol")); !strings.HasPrefix(rec.Detail, tc.check+":") {
				t.Fatalf("audit detail %q", rec.Detail)
			}
			s.Close()
		})
	}
}

func TestTEEConfigValidation(t *testing.T) {
	f := newFixture(t)
	m := newMockDir(t, attest.MockConfig{})
	for _, tc := range []struct{ tee, field string }{
		{"    accept: [tdx]\n", "verifier.tee.collateral_dir"},
		{"    accept: [mock-tsm]\n", "verifier.tee.mock_root"},
		{"    accept: [sev-snp]\n    mock_root: " + filepath.Join(m.Dir, attest.MockRootFile) + "\n", "verifier.tee.mock_root"},
		{"    accept: [sgx]\n", "sgx"},
		{"    collateral_dir: /x\n", "verifier.tee.accept"},
		{"    accept: [sev-snp]\n    snp_product: Rome\n", "verifier.tee"},
	} {
		_, err := ParseConfig([]byte(teeYAML(f.configYAML("alice", "true", ConsentGranted), tc.tee)), f.dir)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("tee %q: %v, want an error naming %s", tc.tee, err, tc.field)
		}
	}
	if _, err := ParseConfig([]byte(teeYAML(f.configYAML("alice", "true", ConsentGranted), "    accept: [sev-snp, tdx]\n    collateral_dir: coll\n")), f.dir); err != nil {
		t.Fatal(err)
	}
}

func copyKey(t *testing.T, from, to *attest.MockTSM) {
	t.Helper()
	for _, n := range []string{attest.MockKeyFile, attest.MockChainFile, attest.MockRootFile} {
		b, err := os.ReadFile(filepath.Join(from.Dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to.Dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func truncateEvidence(t *testing.T, s string) string {
	t.Helper()
	e, err := attest.ParseEvidence(s)
	if err != nil {
		t.Fatal(err)
	}
	e.Report = e.Report[:len(e.Report)-1]
	out, err := attest.EncodeEvidence(e)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeSampleCollateral caches go-tdx-guest's sample PCS replies (copied
// into attest/testdata) under their canonical URLs.
func writeSampleCollateral(t *testing.T, dir string) {
	t.Helper()
	td := "../attest/testdata/tdx/"
	read := func(n string) []byte {
		b, err := os.ReadFile(td + n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chain := func(n string) map[string][]string {
		sc := bufio.NewScanner(bytes.NewReader(read(n)))
		sc.Buffer(nil, 1<<20)
		var l []string
		for sc.Scan() {
			l = append(l, sc.Text())
		}
		return map[string][]string{l[0]: {l[1]}}
	}
	c := &attest.CollateralCache{Dir: dir}
	for _, e := range []*attest.CollateralEntry{
		{URL: attest.IntelPCSTDXBase + "/tcb?fmspc=50806f000000", Header: chain("tcbinfo.issuer-chain"), Body: read("sample_tcbInfo_response")},
		{URL: attest.IntelPCSTDXBase + "/qe/identity", Header: chain("qeidentity.issuer-chain"), Body: read("sample_qeIdentity_response")},
		{URL: attest.IntelPCSSGXBase + "/pckcrl?ca=platform&encoding=der", Header: chain("pckcrl.issuer-chain"), Body: read("pckcrl")},
		{URL: attest.IntelRootCRLURL, Body: read("rootcrl.der")},
	} {
		if err := c.Store(e); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzTEEConfig: the verifier.tee block decodes strictly; an accepted
// kinds list sets only the named kinds.
func FuzzTEEConfig(f *testing.F) {
	f.Add([]byte("accept: [tdx, sev-snp]\ncollateral_dir: /var/lib/mcbn\n"))
	f.Add([]byte("accept: [mock-tsm]\nmock_root: root.pem\n"))
	f.Add([]byte("accept: tdx\n"))
	f.Add([]byte("accept: [sgx]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c TEEConfig
		if err := decodeYAMLStrict(data, &c); err != nil {
			return
		}
		if c.Accept.Any() && !strings.Contains(string(data), "accept") {
			t.Fatal("kinds accepted without an accept key")
		}
		if c.Accept.Mock && !strings.Contains(string(data), "mock-tsm") {
			t.Fatal("mock accepted without naming mock-tsm")
		}
	})
}

// FuzzPolicyNamesMock: no panic on any text; a name found is really there.
func FuzzPolicyNamesMock(f *testing.F) {
	f.Add(`assertion.tee == "mock"`)
	f.Add(`true // "mock"`)
	f.Add(`assertion.tee in ['tdx', 'mock']`)
	f.Fuzz(func(t *testing.T, text string) {
		if policyNamesMock(text) && !strings.Contains(text, "mock") && !strings.Contains(text, `\`) {
			t.Fatalf("mock found in %q", text)
		}
	})
}

// TestTokenCannotClaimTEE: a verified token carrying its own "tee" claim
// cannot satisfy a raw-evidence policy: the shareholder sets tee itself.
func TestTokenCannotClaimTEE(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", `assertion.tee == 'tdx'`, ConsentGranted)
	f.att.SetMutate(attest.SetClaim("tdx", "tee"))
	defer f.att.SetMutate()
	c := dialServer(t, s)
	tok, err := f.att.Mint("mcbn-test-alice", []string{c.nonce})
	if err != nil {
		t.Fatal(err)
	}
	code, ref, _ := c.post(t, requestBody(tok))
	if code == http.StatusOK || ref.Reason != ReasonPolicyDenied {
		t.Fatalf("token claiming tee tdx: %d %+v", code, ref)
	}
	// And a policy on tee sees confidential-space for a token.
	s2 := f.startServer("bob", `assertion.tee == 'confidential-space'`, ConsentGranted)
	c2 := dialServer(t, s2)
	tok2, _ := f.att.Mint("mcbn-test-bob", []string{c2.nonce})
	if code, ref, _ := c2.post(t, requestBody(tok2)); code != http.StatusOK {
		t.Fatalf("token under a tee == confidential-space policy: %d %+v", code, ref)
	}
}
