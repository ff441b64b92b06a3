package attest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	sevabi "github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	sevverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	tdxverify "github.com/google/go-tdx-guest/verify"
)

// EvidenceVerifierConfig configures an EvidenceVerifier.
type EvidenceVerifierConfig struct {
	// Audience is bound into REPORTDATA (EvidenceReportData). Required.
	Audience string
	// AcceptTDX and AcceptSNP enable verification of those kinds; evidence
	// of a kind not enabled is refused with ErrEvidenceKind.
	AcceptTDX, AcceptSNP bool
	// MockRoots, when set, enables mock-tsm evidence chained to one of
	// these roots. Nil: mock evidence is refused with ErrEvidenceKind.
	MockRoots *x509.CertPool
	// CollateralDir is the collateral cache (CollateralCache). Required for
	// TDX; for SNP it supplies VCEK/VLEK certificates a report comes
	// without.
	CollateralDir string
	// SNPProduct names the AMD product line ("Milan", "Genoa", "Turin")
	// for version 2 reports, which do not carry it; "" means: take it from
	// the report or its certificates.
	SNPProduct string
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	// tdxRoots and snpRoots replace the embedded vendor roots (tests only).
	tdxRoots *x509.CertPool
	snpRoots map[string][]*trust.AMDRootCerts
}

// intelSGXRootCA is Intel's SGX Root CA (the root of every PCK chain and of
// the PCS collateral signing chains), pinned here rather than taken from
// anything the evidence carries.
//
//go:embed roots/intel_sgx_root_ca.pem
var intelSGXRootCA []byte

func intelRoots() *x509.CertPool {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(intelSGXRootCA) {
		panic("attest: embedded Intel SGX root CA does not parse")
	}
	return pool
}

// EvidenceVerifier verifies raw TEE evidence offline: the signature chain
// to the embedded Intel or AMD root, collateral from the local cache, the
// REPORTDATA binding, and no debug mode. It is safe for concurrent use.
type EvidenceVerifier struct {
	cfg EvidenceVerifierConfig
}

// NewEvidenceVerifier checks cfg.
func NewEvidenceVerifier(cfg EvidenceVerifierConfig) (*EvidenceVerifier, error) {
	if cfg.Audience == "" {
		return nil, errors.New("attest: evidence verifier needs an audience")
	}
	if cfg.AcceptTDX && cfg.CollateralDir == "" {
		return nil, errors.New("attest: TDX evidence needs a collateral cache directory")
	}
	switch strings.ToLower(cfg.SNPProduct) {
	case "", "milan", "genoa", "turin":
	default:
		return nil, fmt.Errorf("attest: SEV-SNP product %q, want Milan, Genoa or Turin", cfg.SNPProduct)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.tdxRoots == nil {
		cfg.tdxRoots = intelRoots()
	}
	return &EvidenceVerifier{cfg: cfg}, nil
}

// verified is the outcome of a kind-specific verification.
type verified struct {
	tee        string
	sub        string
	reportData []byte
	debug      bool
	claims     map[string]any // the kind's sub-map
}

// Verify checks the evidence string s for the connection whose release
// nonce is wantNonce and returns normalized claims: Raw holds "tee" and one
// of "tdx", "snp" or "mock" (docs/attestation.md lists every claim).
func (v *EvidenceVerifier) Verify(ctx context.Context, s, wantNonce string) (*Claims, error) {
	if wantNonce == "" {
		return nil, wrapf(ErrNonce, "no nonce to check against (channel binding is mandatory)")
	}
	e, err := ParseEvidence(s)
	if err != nil {
		return nil, err
	}
	var r *verified
	switch {
	case e.Kind == KindTDX && v.cfg.AcceptTDX:
		r, err = v.verifyTDX(e.Report)
	case e.Kind == KindSEVSNP && v.cfg.AcceptSNP:
		r, err = v.verifySNP(ctx, e.Report, e.Aux)
	case e.Kind == KindMockTSM && v.cfg.MockRoots != nil:
		r, err = v.verifyMock(e.Report, e.Aux)
	default:
		return nil, wrapf(ErrEvidenceKind, "%s evidence is not accepted by this verifier", e.Kind)
	}
	if err != nil {
		return nil, err
	}
	// Checked only after the signature: REPORTDATA is then the TEE's word.
	want := EvidenceReportData(v.cfg.Audience, wantNonce)
	if subtle.ConstantTimeCompare(r.reportData, want[:]) != 1 {
		return nil, wrapf(ErrNonce, "REPORTDATA does not bind this connection's exporter and this audience")
	}
	// A debug TD or guest lets the host read and change its memory, the
	// share included: refused here whatever the policy says.
	if r.debug {
		return nil, wrapf(ErrDebug, "the %s evidence reports debugging enabled", r.tee)
	}
	key := map[string]string{TEETDX: "tdx", TEESEVSNP: "snp", TEEMock: "mock"}[r.tee]
	return &Claims{Raw: map[string]any{"tee": r.tee, key: r.claims}, subject: r.sub}, nil
}

// --- TDX ---

func (v *EvidenceVerifier) verifyTDX(raw []byte) (*verified, error) {
	q, err := ParseTDXQuote(raw)
	if err != nil {
		return nil, err
	}
	if q.Version != 4 {
		return nil, wrapf(ErrEvidenceUnsupported, "TDX quote version %d parses but cannot be verified by this build (go-tdx-guest v0.3.1 verifies v4 only)", q.Version)
	}
	cache := &CollateralCache{Dir: v.cfg.CollateralDir}
	opts := &tdxverify.Options{
		CheckRevocations: true, GetCollateral: true, Getter: cache,
		Now: v.cfg.Now(), TrustedRoots: v.cfg.tdxRoots,
	}
	if err := tdxverify.RawTdxQuote(raw, opts); err != nil {
		return nil, classifyTDX(err, cache)
	}
	sub := "tdx"
	if blk, _ := pem.Decode(q.PCKChainPEM); blk != nil {
		sum := sha256.Sum256(blk.Bytes)
		sub = "tdx:pck:" + hex.EncodeToString(sum[:8])
	}
	// go-tdx-guest refuses every TCB level other than UpToDate (platform
	// and QE), so a quote that verified has that status.
	return &verified{tee: TEETDX, sub: sub, reportData: q.ReportData, debug: q.Debug(), claims: q.Claims("UpToDate")}, nil
}

// tdxExpired are go-tdx-guest's freshness failures of collateral. It
// wraps them with %v, so they are matched by text.
var tdxExpired = []error{
	tdxverify.ErrTcbInfoExpired, tdxverify.ErrQeIdentityExpired, tdxverify.ErrRootCaCrlExpired,
	tdxverify.ErrPCKCrlExpired, tdxverify.ErrTcbInfoSigningCertExpired, tdxverify.ErrTcbInfoRootCertExpired,
	tdxverify.ErrQeIdentitySigningCertExpired, tdxverify.ErrQeIdentityRootCertExpired,
	tdxverify.ErrPCKCrlSigningCertExpired, tdxverify.ErrPCKCrlRootCertExpired,
}

func classifyTDX(err error, cache *CollateralCache) error {
	msg := err.Error()
	if u := cache.Missed(); u != "" {
		return wrapf(ErrCollateral, "TDX collateral %s is not cached; run `mcbn shareholder collateral fetch`", clip(u))
	}
	for _, e := range tdxExpired {
		if strings.Contains(msg, e.Error()) {
			return wrapf(ErrCollateralExpired, "TDX collateral: %s; run `mcbn shareholder collateral fetch`", e.Error())
		}
	}
	if errors.Is(err, tdxverify.ErrTcbStatus) || strings.Contains(msg, "TCB Status is not") || strings.Contains(msg, tdxverify.ErrTcbStatus.Error()) ||
		strings.Contains(msg, "failed TCB status check") || strings.Contains(msg, "no matching TCB level") {
		return wrapf(ErrTCB, "TDX TCB is not UpToDate: %s", clipMsg(msg))
	}
	return wrapf(ErrChain, "TDX quote: %s", clipMsg(msg))
}

// clipMsg bounds a library error for logs.
func clipMsg(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// --- SEV-SNP ---

// SNP guest policy bits (AMD SEV-SNP ABI, GUEST_POLICY).
const (
	snpPolicySMT          = 1 << 16
	snpPolicyMigrateMA    = 1 << 18
	snpPolicyDebug        = 1 << 19
	snpPolicySingleSocket = 1 << 20
)

func (v *EvidenceVerifier) verifySNP(ctx context.Context, raw, aux []byte) (*verified, error) {
	if len(raw) != sevabi.ReportSize {
		return nil, wrapf(ErrEvidenceMalformed, "SEV-SNP report is %d bytes, want exactly %d", len(raw), sevabi.ReportSize)
	}
	if err := sevabi.ValidateReportFormat(raw); err != nil {
		return nil, wrapf(ErrEvidenceMalformed, "SEV-SNP report: %s", clipMsg(err.Error()))
	}
	rep, err := sevabi.ReportToProto(raw)
	if err != nil {
		return nil, wrapf(ErrEvidenceMalformed, "SEV-SNP report: %s", clipMsg(err.Error()))
	}
	table := new(sevabi.CertTable)
	if len(aux) > 0 {
		if err := table.Unmarshal(aux); err != nil {
			return nil, wrapf(ErrEvidenceMalformed, "SEV-SNP certificate table: %s", clipMsg(err.Error()))
		}
	}
	att := &spb.Attestation{Report: rep, CertificateChain: table.Proto()}
	opts := &sevverify.Options{Now: v.cfg.Now(), TrustedRoots: v.cfg.snpRoots, DisableCertFetching: true}
	var cache *CollateralCache
	_, errV := table.GetByGUIDString(sevabi.VcekGUID)
	_, errL := table.GetByGUIDString(sevabi.VlekGUID)
	if errV != nil && errL != nil && v.cfg.CollateralDir != "" {
		// No VCEK or VLEK came with the report: "fetching" it (and the
		// ASK/ARK chain) reads the local cache only. With one present,
		// nothing is fetched and the embedded AMD roots anchor it.
		cache = &CollateralCache{Dir: v.cfg.CollateralDir}
		opts.DisableCertFetching, opts.Getter = false, sevGetter{cache}
	}
	if p := v.cfg.SNPProduct; p != "" {
		// Validated by NewEvidenceVerifier; KDS spells it capitalised.
		opts.Product, _ = kds.ParseProductLine(strings.ToUpper(p[:1]) + strings.ToLower(p[1:]))
	}
	if err := sevverify.SnpAttestationContext(ctx, att, opts); err != nil {
		if cache != nil && cache.Missed() != "" {
			return nil, wrapf(ErrCollateral, "SEV-SNP certificate %s is not cached", clip(cache.Missed()))
		}
		if errors.Is(err, sevverify.ErrMissingVlek) || strings.Contains(err.Error(), "could not fetch") {
			return nil, wrapf(ErrCollateral, "SEV-SNP: %s", clipMsg(err.Error()))
		}
		return nil, wrapf(ErrChain, "SEV-SNP report: %s", clipMsg(err.Error()))
	}
	return snpVerified(rep), nil
}

func snpVerified(rep *spb.Report) *verified {
	pol := rep.GetPolicy()
	tcb := func(x uint64) map[string]any {
		p := kds.DecomposeTCBVersion(kds.TCBVersion(x))
		return map[string]any{"bootloader": int64(p.BlSpl), "tee": int64(p.TeeSpl), "snp": int64(p.SnpSpl), "microcode": int64(p.UcodeSpl)}
	}
	signer := "vcek"
	if info, err := sevabi.ParseSignerInfo(rep.GetSignerInfo()); err == nil && info.SigningKey == sevabi.VlekReportSigner {
		signer = "vlek"
	}
	sum := sha256.Sum256(rep.GetChipId())
	return &verified{
		tee: TEESEVSNP, sub: "sev-snp:chip:" + hex.EncodeToString(sum[:8]),
		reportData: rep.GetReportData(), debug: pol&snpPolicyDebug != 0,
		claims: map[string]any{
			"report_version":    int64(rep.GetVersion()),
			"measurement":       hex.EncodeToString(rep.GetMeasurement()),
			"host_data":         hex.EncodeToString(rep.GetHostData()),
			"id_key_digest":     hex.EncodeToString(rep.GetIdKeyDigest()),
			"author_key_digest": hex.EncodeToString(rep.GetAuthorKeyDigest()),
			"family_id":         hex.EncodeToString(rep.GetFamilyId()),
			"image_id":          hex.EncodeToString(rep.GetImageId()),
			"guest_svn":         int64(rep.GetGuestSvn()),
			"vmpl":              int64(rep.GetVmpl()),
			"signer":            signer,
			"policy": map[string]any{
				"debug": pol&snpPolicyDebug != 0, "migrate_ma": pol&snpPolicyMigrateMA != 0,
				"smt": pol&snpPolicySMT != 0, "single_socket": pol&snpPolicySingleSocket != 0,
				"abi_major": int64((pol >> 8) & 0xff), "abi_minor": int64(pol & 0xff),
			},
			"tcb":           tcb(rep.GetReportedTcb()),
			"committed_tcb": tcb(rep.GetCommittedTcb()),
			"launch_tcb":    tcb(rep.GetLaunchTcb()),
		},
	}
}

// --- mock ---

func (v *EvidenceVerifier) verifyMock(raw, aux []byte) (*verified, error) {
	m, err := ParseMockReport(raw)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := aux; len(rest) > 0; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, wrapf(ErrEvidenceMalformed, "mock certificate chain is not PEM certificates")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, wrapf(ErrEvidenceMalformed, "mock certificate chain: %s", clipMsg(err.Error()))
		}
		certs = append(certs, c)
		if len(certs) > 4 {
			return nil, wrapf(ErrEvidenceMalformed, "mock certificate chain longer than 4")
		}
	}
	if len(certs) == 0 {
		return nil, wrapf(ErrEvidenceMalformed, "mock evidence has no certificate chain")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: v.cfg.MockRoots, Intermediates: inter, CurrentTime: v.cfg.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, wrapf(ErrChain, "mock attestation key is not certified by the configured mock root: %s", clipMsg(err.Error()))
	}
	pub, ok := certs[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		return nil, wrapf(ErrChain, "mock attestation key is not ECDSA P-384")
	}
	sum := sha512.Sum384(m.Signed)
	if !ecdsa.VerifyASN1(pub, sum[:], m.Signature) {
		return nil, wrapf(ErrChain, "mock report signature does not verify")
	}
	leaf := sha256.Sum256(certs[0].Raw)
	return &verified{
		tee: TEEMock, sub: "mock:" + hex.EncodeToString(leaf[:8]), reportData: m.ReportData, debug: m.Debug,
		claims: map[string]any{
			"measurement": hex.EncodeToString(m.Measurement),
			"host_data":   hex.EncodeToString(m.HostData),
			"svn":         int64(m.SVN),
			"debug":       m.Debug,
		},
	}, nil
}

// LoadCertPool reads a PEM file of one or more CA certificates (the
// mock-tsm root a test shareholder trusts).
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// SNPReportClaims returns the normalized "snp" claims of a raw report
// WITHOUT verifying it: for tooling (printing a measurement to pin) and
// tests. Verify is the only way to claims a shareholder may trust.
func SNPReportClaims(raw []byte) (map[string]any, error) {
	if len(raw) != sevabi.ReportSize {
		return nil, wrapf(ErrEvidenceMalformed, "SEV-SNP report is %d bytes, want exactly %d", len(raw), sevabi.ReportSize)
	}
	rep, err := sevabi.ReportToProto(raw)
	if err != nil {
		return nil, wrapf(ErrEvidenceMalformed, "SEV-SNP report: %s", clipMsg(err.Error()))
	}
	return snpVerified(rep).claims, nil
}
