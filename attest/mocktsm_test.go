package attest

import (
	"context"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newMock(t testing.TB, cfg MockConfig) (*MockTSM, *x509.CertPool) {
	t.Helper()
	m, err := CreateMockTSM(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadCertPool(filepath.Join(m.Dir, MockRootFile))
	if err != nil {
		t.Fatal(err)
	}
	return m, pool
}

func mockVerifier(t testing.TB, roots *x509.CertPool) *EvidenceVerifier {
	t.Helper()
	v, err := NewEvidenceVerifier(EvidenceVerifierConfig{Audience: testAud, MockRoots: roots})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func nonceN(i int) string { return strings.Repeat(string(rune('a'+i)), 64) }

func TestMockTSMRoundTrip(t *testing.T) {
	m, roots := newMock(t, MockConfig{Measurement: strings.Repeat("11", 48), SVN: 3})
	p := NewMockTSMProvider(m.Dir)
	tok, err := p.Token(context.Background(), testAud, []string{nonceN(0)})
	if err != nil {
		t.Fatal(err)
	}
	if !IsEvidence(tok) {
		t.Fatal("not an evidence string")
	}
	c, err := mockVerifier(t, roots).Verify(context.Background(), tok, nonceN(0))
	if err != nil {
		t.Fatal(err)
	}
	if c.StringAt("tee") != TEEMock || c.StringAt("mock", "measurement") != strings.Repeat("11", 48) || c.Raw["mock"].(map[string]any)["svn"] != int64(3) {
		t.Fatalf("claims %v", c.Raw)
	}
	if !strings.HasPrefix(c.Subject(), "mock:") {
		t.Fatalf("subject %q", c.Subject())
	}
	// The configfs-tsm lookalike entry is cleaned up after each report.
	if ents, _ := os.ReadDir(filepath.Join(m.Dir, "report")); len(ents) != 0 {
		t.Fatalf("%d report entries left behind", len(ents))
	}
	// Exactly one nonce and an audience.
	if _, err := p.Token(context.Background(), testAud, []string{nonceN(0), nonceN(1)}); !errors.Is(err, ErrRequest) {
		t.Fatalf("two nonces: %v", err)
	}
}

// TestMockAttacks is the binding/replay/debug/kind attack table, at the
// verifier, with mock evidence (the same checks run for TDX and SNP).
func TestMockAttacks(t *testing.T) {
	m, roots := newMock(t, MockConfig{})
	other, _ := newMock(t, MockConfig{})
	dbg, _ := newMock(t, MockConfig{Debug: true})
	// dbg signs with its own root; trust both.
	dbgRoot, _ := os.ReadFile(filepath.Join(dbg.Dir, MockRootFile))
	roots2, _ := LoadCertPool(filepath.Join(m.Dir, MockRootFile))
	blk, _ := pem.Decode(dbgRoot)
	dc, _ := x509.ParseCertificate(blk.Bytes)
	roots2.AddCert(dc)

	tok := func(m *MockTSM, aud, nonce string) string {
		s, err := NewMockTSMProvider(m.Dir).Token(context.Background(), aud, []string{nonce})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rep, aux, _ := m.Sign(make([]byte, 64))
	cases := []struct {
		name  string
		roots *x509.CertPool
		tok   string
		nonce string
		want  error
	}{
		{"REPORTDATA bound to another connection's exporter", roots, tok(m, testAud, nonceN(1)), nonceN(2), ErrNonce},
		{"replayed evidence (old nonce)", roots, tok(m, testAud, nonceN(3)), nonceN(4), ErrNonce},
		{"evidence for another audience", roots, tok(m, "https://other.example", nonceN(5)), nonceN(5), ErrNonce},
		{"mock evidence, mock not accepted", nil, tok(m, testAud, nonceN(6)), nonceN(6), ErrEvidenceKind},
		{"chain not rooted at the configured root", roots, tok(other, testAud, nonceN(7)), nonceN(7), ErrChain},
		{"debug-enabled guest", roots2, tok(dbg, testAud, nonceN(8)), nonceN(8), ErrDebug},
		{"truncated report", roots, evidenceString(t, KindMockTSM, rep[:len(rep)-1], aux), nonceN(0), ErrEvidenceMalformed},
		{"oversized report", roots, evidenceString(t, KindMockTSM, append(append([]byte{}, rep...), 0), aux), nonceN(0), ErrEvidenceMalformed},
		{"tampered report", roots, evidenceString(t, KindMockTSM, flip(rep, 20), aux), nonceN(0), ErrChain},
		{"no chain", roots, evidenceString(t, KindMockTSM, rep, nil), nonceN(0), ErrEvidenceMalformed},
		{"not evidence", roots, "mcbn-evidence-v1.!!", nonceN(0), ErrEvidenceMalformed},
		{"no nonce", roots, tok(m, testAud, nonceN(9)), "", ErrNonce},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewEvidenceVerifier(EvidenceVerifierConfig{Audience: testAud, MockRoots: tc.roots})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), tc.tok, tc.nonce)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if Reason(err) == "internal" {
				t.Fatalf("no named reason for %v", err)
			}
		})
	}
}

func TestEvidenceReportDataLayout(t *testing.T) {
	// The documented bytes, spelled out.
	msg := append([]byte("mcbn-tee-reportdata-v1\x00"), 0, 3)
	msg = append(msg, "aud"...)
	msg = append(msg, 0, 2)
	msg = append(msg, "n1"...)
	want := sha512Sum(msg)
	if got := EvidenceReportData("aud", "n1"); got != want {
		t.Fatal("REPORTDATA differs from the documented layout")
	}
	if EvidenceReportData("a", "bn") == EvidenceReportData("ab", "n") {
		t.Fatal("encoding is not injective")
	}
}

func TestParseEvidenceStrict(t *testing.T) {
	good := evidenceString(t, KindMockTSM, []byte{1}, nil)
	if _, err := ParseEvidence(good); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"no prefix":     "eyJhbGciOiJSUzI1NiJ9.e30.sig",
		"bad base64":    "mcbn-evidence-v1.***",
		"unknown field": "mcbn-evidence-v1." + b64url([]byte(`{"v":1,"kind":"tdx","report":"AQ==","x":1}`)),
		"unknown kind":  "mcbn-evidence-v1." + b64url([]byte(`{"v":1,"kind":"sgx","report":"AQ=="}`)),
		"bad version":   "mcbn-evidence-v1." + b64url([]byte(`{"v":2,"kind":"tdx","report":"AQ=="}`)),
		"empty report":  "mcbn-evidence-v1." + b64url([]byte(`{"v":1,"kind":"tdx","report":""}`)),
		"trailing":      "mcbn-evidence-v1." + b64url([]byte(`{"v":1,"kind":"tdx","report":"AQ=="} {}`)),
		"too long":      "mcbn-evidence-v1." + strings.Repeat("A", maxEvidenceString),
	} {
		if _, err := ParseEvidence(s); err == nil || Reason(err) == "internal" {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func sha512Sum(b []byte) [64]byte { return sha512.Sum512(b) }
