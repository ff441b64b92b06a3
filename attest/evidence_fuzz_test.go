package attest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func FuzzParseTDXQuote(f *testing.F) {
	q := readTestdata(f, "tdx/quote_v4.dat")
	f.Add(q)
	f.Add(toV5(q))
	f.Add(q[:tdxHeaderSize+10])
	f.Add(readTestdata(f, "tdx/quote_v4_with_trailing.dat"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseTDXQuote(b)
		if err != nil {
			if Reason(err) == "internal" {
				t.Fatalf("unnamed error: %v", err)
			}
			return
		}
		// A parsed quote is bounded and its pieces lie inside it.
		if len(b) > MaxTDXQuoteSize || len(p.MRTD) != 48 || len(p.ReportData) != 64 || !bytes.Contains(b, p.PCKChainPEM) {
			t.Fatal("accepted an out-of-bounds quote")
		}
		p.Claims("UpToDate")
	})
}

func FuzzParseMockReport(f *testing.F) {
	m, err := CreateMockTSM(f.TempDir(), MockConfig{})
	if err != nil {
		f.Fatal(err)
	}
	rep, _, err := m.Sign(make([]byte, 64))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rep)
	f.Add(rep[:mockHeaderLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseMockReport(b)
		if err != nil {
			if Reason(err) == "internal" {
				t.Fatalf("unnamed error: %v", err)
			}
			return
		}
		if len(b) != mockHeaderLen+len(r.Signature) {
			t.Fatal("length not exact")
		}
	})
}

func FuzzParseEvidence(f *testing.F) {
	f.Add(evidenceString(f, KindTDX, []byte{1, 2, 3}, nil))
	f.Add(evidenceString(f, KindSEVSNP, []byte{1}, []byte{2}))
	f.Add("mcbn-evidence-v1.")
	f.Add("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEvidence(s)
		if err != nil {
			if Reason(err) == "internal" {
				t.Fatalf("unnamed error: %v", err)
			}
			return
		}
		if len(e.Report) == 0 || len(e.Report) > maxEvidenceReport || len(e.Aux) > maxEvidenceAux {
			t.Fatal("accepted out-of-bounds evidence")
		}
	})
}

// FuzzVerifyEvidence runs whole evidence strings through a verifier that
// accepts every kind (the TDX and SNP parsers of go-tdx-guest and
// go-sev-guest included): no panic, and every refusal is named.
func FuzzVerifyEvidence(f *testing.F) {
	m, err := CreateMockTSM(f.TempDir(), MockConfig{})
	if err != nil {
		f.Fatal(err)
	}
	roots, err := LoadCertPool(m.Dir + "/" + MockRootFile)
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	writeTDXCache(f, dir)
	v, err := NewEvidenceVerifier(EvidenceVerifierConfig{Audience: testAud, AcceptTDX: true, AcceptSNP: true, MockRoots: roots, CollateralDir: dir, SNPProduct: "milan", Now: func() time.Time { return tdxSampleTime }})
	if err != nil {
		f.Fatal(err)
	}
	tok, err := NewMockTSMProvider(m.Dir).Token(context.Background(), testAud, []string{strings.Repeat("a", 64)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add(evidenceString(f, KindTDX, readTestdata(f, "tdx/quote_v4.dat"), nil))
	f.Add(evidenceString(f, KindSEVSNP, readTestdata(f, "snp/attestation.bin"), vcekTable(f, readTestdata(f, "snp/vcek.testcer"))))
	f.Fuzz(func(t *testing.T, s string) {
		_, err := v.Verify(context.Background(), s, strings.Repeat("a", 64))
		if err != nil && Reason(err) == "internal" {
			t.Fatalf("unnamed error: %v", err)
		}
	})
}
