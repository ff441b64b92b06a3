package attest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	"github.com/google/uuid"
)

// The vendor samples in testdata/ are real, vendor-signed evidence shipped
// with go-tdx-guest v0.3.1 (testing/testdata: a TDX v4 quote from a
// Sapphire Rapids E4 part with its PCS collateral) and go-sev-guest v0.15.0
// (verify/testdata: a Milan SNP report and its VCEK). Their certificates and
// collateral have validity windows in the past, so they are verified at
// fixed times inside those windows (see docs/attestation.md):
var (
	tdxSampleTime = time.Date(2023, time.July, 1, 1, 0, 0, 0, time.UTC) // TCB info nextUpdate is 2023-07-18
	tdxStaleTime  = time.Date(2023, time.August, 1, 0, 0, 0, 0, time.UTC)
	snpSampleTime = time.Date(2023, time.January, 1, 0, 0, 0, 0, time.UTC) // VCEK valid 2022-09-24..2029-09-24
)

const (
	sampleFMSPC = "50806f000000"
	testAud     = "https://shareholder.example:8441"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issuerChain reads a "<header name>\n<value>\n" file.
func issuerChain(t testing.TB, name string) map[string][]string {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(readTestdata(t, name)))
	sc.Buffer(nil, 1<<20)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 2 {
		t.Fatalf("%s: want 2 lines", name)
	}
	return map[string][]string{lines[0]: {lines[1]}}
}

// tdxCollateral maps the canonical PCS URLs to the sample replies.
func tdxCollateral(t testing.TB) map[string]*CollateralEntry {
	t.Helper()
	return map[string]*CollateralEntry{
		IntelPCSTDXBase + "/tcb?fmspc=" + sampleFMSPC:        {Header: issuerChain(t, "tdx/tcbinfo.issuer-chain"), Body: readTestdata(t, "tdx/sample_tcbInfo_response")},
		IntelPCSTDXBase + "/qe/identity":                     {Header: issuerChain(t, "tdx/qeidentity.issuer-chain"), Body: readTestdata(t, "tdx/sample_qeIdentity_response")},
		IntelPCSSGXBase + "/pckcrl?ca=platform&encoding=der": {Header: issuerChain(t, "tdx/pckcrl.issuer-chain"), Body: readTestdata(t, "tdx/pckcrl")},
		IntelRootCRLURL: {Body: readTestdata(t, "tdx/rootcrl.der")},
	}
}

func writeTDXCache(t testing.TB, dir string) {
	t.Helper()
	c := &CollateralCache{Dir: dir}
	for u, e := range tdxCollateral(t) {
		e.URL = u
		if err := c.Store(e); err != nil {
			t.Fatal(err)
		}
	}
}

func tdxVerifier(t testing.TB, dir string, now time.Time) *EvidenceVerifier {
	t.Helper()
	v, err := NewEvidenceVerifier(EvidenceVerifierConfig{Audience: testAud, AcceptTDX: true, CollateralDir: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func evidenceString(t testing.TB, kind string, rep, aux []byte) string {
	t.Helper()
	s, err := EncodeEvidence(&Evidence{Kind: kind, Report: rep, Aux: aux})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTDXVendorSampleTCBBelowLevel: the Intel-signed sample quote passes
// every check up to the TCB level (the PCK chain to the embedded Intel root,
// the quote and QE report signatures, the collateral's signatures and
// freshness, both CRLs), and the sample TCB info, published after the
// sample platform's TCB, matches no level for it: a real "TCB below the
// accepted level", refused as such. A tampered copy fails earlier, on the
// signature, which shows the genuine one got past it.
func TestTDXVendorSampleTCBBelowLevel(t *testing.T) {
	dir := t.TempDir()
	writeTDXCache(t, dir)
	quote := readTestdata(t, "tdx/quote_v4.dat")
	_, err := tdxVerifier(t, dir, tdxSampleTime).verifyTDX(quote)
	if !errors.Is(err, ErrTCB) || Reason(err) != "tcb" {
		t.Fatalf("sample quote: %v, want the TCB refusal", err)
	}
	if _, err := tdxVerifier(t, dir, tdxSampleTime).verifyTDX(flip(quote, tdxHeaderSize+136)); !errors.Is(err, ErrChain) {
		t.Fatalf("tampered sample quote: %v, want a signature refusal", err)
	}
	q, err := ParseTDXQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	c := q.Claims("UpToDate")
	if q.Debug() || c["mrtd"] != hex.EncodeToString(q.MRTD) || len(c["rtmr"].([]any)) != 4 || c["td_attributes"].(map[string]any)["debug"] != false {
		t.Fatalf("claims %v", c)
	}
}

func TestTDXCollateralFetchedFromServerVerifies(t *testing.T) {
	coll := tdxCollateral(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for u, e := range coll {
			if strings.HasSuffix(u, r.URL.RequestURI()) {
				for k, v := range e.Header {
					w.Header()[k] = v
				}
				w.Write(e.Body)
				return
			}
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	dir := t.TempDir()
	urls, err := FetchCollateral(context.Background(), &CollateralCache{Dir: dir}, FetchOptions{
		FMSPCs: []string{sampleFMSPC},
		Rewrite: map[string]string{
			"https://api.trustedservices.intel.com":          srv.URL,
			"https://certificates.trustedservices.intel.com": srv.URL,
		},
		Client: srv.Client(),
	})
	if err != nil || len(urls) != 4 {
		t.Fatalf("fetch: %v %v", urls, err)
	}
	// Reaching the TCB verdict means the fetched collateral was complete,
	// Intel-signed and fresh (see TestTDXVendorSampleTCBBelowLevel).
	if _, err := tdxVerifier(t, dir, tdxSampleTime).verifyTDX(readTestdata(t, "tdx/quote_v4.dat")); !errors.Is(err, ErrTCB) {
		t.Fatalf("quote against fetched collateral: %v", err)
	}
	// A failing server leaves an error naming the URL.
	bad := httptest.NewServer(http.NotFoundHandler())
	defer bad.Close()
	_, err = FetchCollateral(context.Background(), &CollateralCache{Dir: t.TempDir()}, FetchOptions{FMSPCs: []string{sampleFMSPC}, Rewrite: map[string]string{"https://api.trustedservices.intel.com": bad.URL}, Client: bad.Client()})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("fetch from a failing server: %v", err)
	}
	if _, err := CollateralURLs(FetchOptions{FMSPCs: []string{"xyz"}}); err == nil {
		t.Fatal("bad FMSPC accepted")
	}
}

// TestTDXAttacks is the TDX attack table on real vendor evidence.
func TestTDXAttacks(t *testing.T) {
	dir := t.TempDir()
	writeTDXCache(t, dir)
	quote := readTestdata(t, "tdx/quote_v4.dat")
	otherRoot := x509.NewCertPool()
	otherRoot.AddCert(selfSigned(t))
	v5 := toV5(quote)
	cases := []struct {
		name string
		v    *EvidenceVerifier
		rep  []byte
		want error
	}{
		{"truncated quote", tdxVerifier(t, dir, tdxSampleTime), quote[:len(quote)-1], ErrEvidenceMalformed},
		{"truncated header", tdxVerifier(t, dir, tdxSampleTime), quote[:40], ErrEvidenceMalformed},
		{"trailing bytes (as shipped in the sample)", tdxVerifier(t, dir, tdxSampleTime), readTestdata(t, "tdx/quote_v4_with_trailing.dat"), ErrEvidenceMalformed},
		{"oversized quote", tdxVerifier(t, dir, tdxSampleTime), append(append([]byte{}, quote...), make([]byte, MaxTDXQuoteSize-len(quote)+1)...), ErrEvidenceMalformed},
		{"TCB below the accepted level (vendor sample)", tdxVerifier(t, dir, tdxSampleTime), quote, ErrTCB},
		{"collateral past nextUpdate", tdxVerifier(t, dir, tdxStaleTime), quote, ErrCollateralExpired},
		{"collateral not cached", tdxVerifier(t, t.TempDir(), tdxSampleTime), quote, ErrCollateral},
		{"chain not rooted at Intel", func() *EvidenceVerifier {
			v := tdxVerifier(t, dir, tdxSampleTime)
			v.cfg.tdxRoots = otherRoot
			return v
		}(), quote, ErrChain},
		{"tampered measurement", tdxVerifier(t, dir, tdxSampleTime), flip(quote, tdxHeaderSize+136), ErrChain},
		{"v5 quote (parses, not verifiable here)", tdxVerifier(t, dir, tdxSampleTime), v5, ErrEvidenceUnsupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(context.Background(), evidenceString(t, KindTDX, tc.rep, nil), strings.Repeat("ab", 32))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// Not accepted at all by a verifier without TDX.
	v, _ := NewEvidenceVerifier(EvidenceVerifierConfig{Audience: testAud, AcceptSNP: true})
	if _, err := v.Verify(context.Background(), evidenceString(t, KindTDX, quote, nil), strings.Repeat("ab", 32)); !errors.Is(err, ErrEvidenceKind) {
		t.Fatalf("TDX evidence to an SNP-only verifier: %v", err)
	}
}

func TestTDXV5Parses(t *testing.T) {
	quote := readTestdata(t, "tdx/quote_v4.dat")
	q4, err := ParseTDXQuote(quote)
	if err != nil {
		t.Fatal(err)
	}
	q5, err := ParseTDXQuote(toV5(quote))
	if err != nil {
		t.Fatal(err)
	}
	if q5.Version != 5 || !bytes.Equal(q5.MRTD, q4.MRTD) || !bytes.Equal(q5.ReportData, q4.ReportData) || !bytes.Equal(q5.PCKChainPEM, q4.PCKChainPEM) {
		t.Fatal("v5 layout parsed differently from v4")
	}
}

// toV5 rewrites a v4 quote into the v5 layout (body descriptor type 2).
// The signature no longer covers it; it only exercises the parser.
func toV5(v4 []byte) []byte {
	out := append([]byte{}, v4[:tdxHeaderSize]...)
	binary.LittleEndian.PutUint16(out, 5)
	out = binary.LittleEndian.AppendUint16(out, tdxV5BodyType10)
	out = binary.LittleEndian.AppendUint32(out, tdxBody10Size)
	return append(out, v4[tdxHeaderSize:]...)
}

func flip(b []byte, i int) []byte {
	c := append([]byte{}, b...)
	c[i] ^= 1
	return c
}

func selfSigned(t testing.TB) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Intel SGX Root CA"}, NotBefore: time.Unix(0, 0), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// --- SEV-SNP ---

func snpVerifier(t testing.TB, dir string) *EvidenceVerifier {
	t.Helper()
	v, err := NewEvidenceVerifier(EvidenceVerifierConfig{Audience: testAud, AcceptSNP: true, CollateralDir: dir, SNPProduct: "milan", Now: func() time.Time { return snpSampleTime }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// vcekTable is an SNP certificate table (the auxblob) holding the VCEK.
func vcekTable(t testing.TB, vcek []byte) []byte {
	t.Helper()
	ct := &sevabi.CertTable{Entries: []sevabi.CertTableEntry{{GUID: uuid.MustParse(sevabi.VcekGUID), RawCert: vcek}}}
	return ct.Marshal()
}

func TestSNPVendorSampleVerifiesOffline(t *testing.T) {
	rep := readTestdata(t, "snp/attestation.bin")
	vcek := readTestdata(t, "snp/vcek.testcer")
	r, err := snpVerifier(t, "").verifySNP(context.Background(), rep, vcekTable(t, vcek))
	if err != nil {
		t.Fatalf("the AMD-signed sample report does not verify: %v", err)
	}
	if r.tee != TEESEVSNP || r.claims["vmpl"] != int64(0) || r.claims["signer"] != "vcek" {
		t.Fatalf("claims %v", r.claims)
	}
	// The sample guest was launched with the DEBUG policy bit (0xb0000):
	// a real debug-enabled guest, which Verify refuses (TestSNPDebugRefused).
	if !r.debug || r.claims["policy"].(map[string]any)["debug"] != true {
		t.Fatalf("sample policy debug not reported: %v", r.claims["policy"])
	}
	// A verifier with a collateral cache (as one that also accepts TDX has)
	// takes the VCEK sent with the report and the embedded AMD roots, and
	// fetches nothing.
	if _, err := snpVerifier(t, t.TempDir()).verifySNP(context.Background(), rep, vcekTable(t, vcek)); err != nil {
		t.Fatalf("sample report with its VCEK, verifier with an empty cache: %v", err)
	}
	// The VCEK may come from the collateral cache instead of the report.
	dir := t.TempDir()
	repProto, _ := sevabi.ReportToProto(rep)
	u := kds.VCEKCertURL("Milan", repProto.GetChipId(), kds.TCBVersion(repProto.GetReportedTcb()))
	for url, body := range map[string][]byte{u: vcek, "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain": readTestdata(t, "snp/ask_ark_milan.pem")} {
		if err := (&CollateralCache{Dir: dir}).Store(&CollateralEntry{URL: url, Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := snpVerifier(t, dir).verifySNP(context.Background(), rep, nil); err != nil {
		t.Fatalf("sample report with the VCEK from the cache: %v", err)
	}
	if _, err := snpVerifier(t, t.TempDir()).verifySNP(context.Background(), rep, nil); !errors.Is(err, ErrCollateral) {
		t.Fatalf("sample report, VCEK neither sent nor cached: %v", err)
	}
}

func TestSNPDebugRefused(t *testing.T) {
	// Verify refuses on the binding first for the sample (its REPORTDATA
	// is 0102030405...), so the debug verdict is checked on its claims and
	// at the Verify level with mock evidence (TestMockAttacks).
	rep := readTestdata(t, "snp/attestation.bin")
	r, err := snpVerifier(t, "").verifySNP(context.Background(), rep, vcekTable(t, readTestdata(t, "snp/vcek.testcer")))
	if err != nil || !r.debug {
		t.Fatalf("debug not detected: %v", err)
	}
}

func TestSNPAttacks(t *testing.T) {
	rep := readTestdata(t, "snp/attestation.bin")
	vcek := readTestdata(t, "snp/vcek.testcer")
	aux := vcekTable(t, vcek)
	// A report re-signed with an attacker's key under a self-made VCEK.
	forged, forgedAux := forgeSNP(t, rep)
	cases := []struct {
		name     string
		rep, aux []byte
		want     error
	}{
		{"truncated report", rep[:len(rep)-1], aux, ErrEvidenceMalformed},
		{"oversized report", append(append([]byte{}, rep...), 0), aux, ErrEvidenceMalformed},
		{"tampered measurement", flip(rep, 0x90), aux, ErrChain},
		{"chain not rooted at AMD", forged, forgedAux, ErrChain},
		{"garbage certificate table", rep, []byte("not a table"), ErrEvidenceMalformed},
		{"bound to another connection", rep, aux, ErrNonce},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := snpVerifier(t, "").Verify(context.Background(), evidenceString(t, KindSEVSNP, tc.rep, tc.aux), strings.Repeat("cd", 32))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func forgeSNP(t testing.TB, rep []byte) ([]byte, []byte) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "SEV-VCEK"}, Issuer: pkix.Name{CommonName: "SEV-Milan"}, NotBefore: time.Unix(0, 0), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	raw := append([]byte{}, rep...)
	sum := sha512.Sum384(sevabi.SignedComponent(raw))
	r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	if err := sevabi.SetSignature(r, s, raw); err != nil {
		t.Fatal(err)
	}
	return raw, vcekTable(t, der)
}
