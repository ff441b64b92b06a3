package attest

import (
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
)

// Raw TEE evidence (docs/attestation.md, "Raw TDX and SEV-SNP evidence").
//
// A proxy on a confidential VM that is not Confidential Space presents the
// hardware's own signed evidence instead of a Google token: a TDX quote or an
// SEV-SNP attestation report, whose 64-byte REPORTDATA binds the evidence to
// the TLS connection it is sent on (EvidenceReportData). It travels in the
// release request's "token" field as an evidence string (EncodeEvidence), so
// the release protocol is unchanged.

// Evidence kinds: the provider names of a proxy's attestation config and the
// "tee" claim of verified evidence.
const (
	KindTDX     = "tdx"
	KindSEVSNP  = "sev-snp"
	KindMockTSM = "mock-tsm"
)

// TEE claim values ("tee" in the normalized claims).
const (
	TEETDX                = "tdx"
	TEESEVSNP             = "sev-snp"
	TEEMock               = "mock"
	TEEConfidentialSpace  = "confidential-space"
	reportDataLabel       = "mcbn-tee-reportdata-v1"
	evidencePrefix        = "mcbn-evidence-v1."
	maxEvidenceString     = 30 << 10 // fits the release request's 32 KiB token bound
	maxEvidenceReport     = 16 << 10 // a TDX quote with its PCK chain is ~5 KiB
	maxEvidenceAux        = 12 << 10 // an SNP certificate table with VCEK, ASK, ARK is ~5 KiB
	evidenceFormatVersion = 1
)

// Evidence errors (see Reason for their codes).
var (
	// ErrEvidenceMalformed: the evidence string, quote or report does not
	// parse, is truncated, or is larger than allowed.
	ErrEvidenceMalformed = errors.New("malformed evidence")
	// ErrEvidenceKind: this verifier does not accept this kind of evidence
	// (e.g. mock evidence against a policy that does not name it).
	ErrEvidenceKind = errors.New("evidence kind not accepted")
	// ErrEvidenceUnsupported: a well-formed format version this build cannot
	// verify (e.g. a TDX v5 quote; see docs/attestation.md).
	ErrEvidenceUnsupported = errors.New("evidence format not supported")
	// ErrChain: the signing certificate chain does not lead to a trusted
	// vendor root (Intel SGX root CA, AMD ARK), or a signature over the
	// evidence does not verify.
	ErrChain = errors.New("evidence not signed by a trusted vendor chain")
	// ErrDebug: the TD or guest runs with debugging enabled, so the host
	// can read its memory. Never accepted, whatever the policy says.
	ErrDebug = errors.New("debug-enabled TEE")
	// ErrTCB: the platform's TCB is below the accepted level (for TDX:
	// Intel's TCB info does not rate it UpToDate).
	ErrTCB = errors.New("TCB below the accepted level")
	// ErrCollateral: the collateral needed to judge the evidence (TCB
	// info, QE identity, CRLs, a VCEK) is not in the local cache. A local
	// condition of the verifier, not a fault of the evidence.
	ErrCollateral = errors.New("collateral unavailable")
	// ErrCollateralExpired: cached collateral is past its nextUpdate; run
	// `mcbn shareholder collateral fetch` again.
	ErrCollateralExpired = errors.New("collateral expired")
)

// EvidenceReportData computes the 64 bytes a proxy puts into REPORTDATA:
//
//	SHA-512( "mcbn-tee-reportdata-v1" || 0x00
//	         || uint16be(len(audience)) || audience
//	         || uint16be(len(nonce))    || nonce )
//
// audience is the shareholder's audience string and nonce the release
// nonce, i.e. the lowercase hex (64 ASCII bytes) of the 32-byte TLS 1.3
// exporter (label EXPORTER-mcbn-share-release-v1) of the connection to the
// shareholder. The exporter mixes both sides' handshake randoms and the
// ECDHE secret, so it is the shareholder's fresh challenge as well as the
// channel binding: evidence made for one connection is useless on any
// other, and so on any later day. Length prefixes keep the encoding
// injective.
func EvidenceReportData(audience, nonce string) [64]byte {
	h := sha512.New()
	h.Write([]byte(reportDataLabel))
	h.Write([]byte{0})
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(audience)))
	h.Write(l[:])
	h.Write([]byte(audience))
	binary.BigEndian.PutUint16(l[:], uint16(len(nonce)))
	h.Write(l[:])
	h.Write([]byte(nonce))
	var out [64]byte
	copy(out[:], h.Sum(nil))
	return out
}

// Evidence is raw TEE evidence as the proxy sends it.
type Evidence struct {
	// Kind is KindTDX, KindSEVSNP or KindMockTSM.
	Kind string
	// Report is the configfs-tsm outblob: the TDX quote, the SNP report,
	// or the mock report.
	Report []byte
	// Aux is the configfs-tsm auxblob: the SNP certificate table (VCEK or
	// VLEK, ASK, ARK) or the mock certificate chain; empty for TDX (the
	// PCK chain is inside the quote).
	Aux []byte
}

type evidenceJSON struct {
	V      int    `json:"v"`
	Kind   string `json:"kind"`
	Report string `json:"report"`
	Aux    string `json:"aux,omitempty"`
}

// EncodeEvidence returns the evidence string carried in the release
// request's token field: "mcbn-evidence-v1." followed by the unpadded
// base64url of a JSON object {"v":1,"kind":...,"report":b64,"aux":b64}
// (standard base64 inside).
func EncodeEvidence(e *Evidence) (string, error) {
	if len(e.Report) == 0 || len(e.Report) > maxEvidenceReport || len(e.Aux) > maxEvidenceAux {
		return "", wrapf(ErrEvidenceMalformed, "report of %d bytes and aux of %d bytes outside the limits", len(e.Report), len(e.Aux))
	}
	j := evidenceJSON{V: evidenceFormatVersion, Kind: e.Kind, Report: base64.StdEncoding.EncodeToString(e.Report)}
	if len(e.Aux) > 0 {
		j.Aux = base64.StdEncoding.EncodeToString(e.Aux)
	}
	b, err := json.Marshal(j)
	if err != nil {
		return "", err
	}
	s := evidencePrefix + base64.RawURLEncoding.EncodeToString(b)
	if len(s) > maxEvidenceString {
		return "", wrapf(ErrEvidenceMalformed, "evidence string of %d bytes, at most %d", len(s), maxEvidenceString)
	}
	return s, nil
}

// IsEvidence reports whether s is an evidence string rather than a JWT
// (a JWT never contains "mcbn-": its first segment is base64url JSON
// starting "ey").
func IsEvidence(s string) bool { return strings.HasPrefix(s, evidencePrefix) }

// ParseEvidence decodes an evidence string strictly: the prefix, bounded
// sizes, one JSON object with known fields, version 1, a known kind, valid
// base64. It does not judge the report itself. Errors never quote input.
func ParseEvidence(s string) (*Evidence, error) {
	if !IsEvidence(s) {
		return nil, wrapf(ErrEvidenceMalformed, "not an evidence string")
	}
	if len(s) > maxEvidenceString {
		return nil, wrapf(ErrEvidenceMalformed, "evidence string of %d bytes, at most %d", len(s), maxEvidenceString)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s[len(evidencePrefix):])
	if err != nil {
		return nil, wrapf(ErrEvidenceMalformed, "evidence is not base64url")
	}
	var j evidenceJSON
	if err := decodeStrict(raw, &j); err != nil {
		return nil, wrapf(ErrEvidenceMalformed, "evidence is not the expected JSON object: %s", err)
	}
	if j.V != evidenceFormatVersion {
		return nil, wrapf(ErrEvidenceUnsupported, "evidence version %d, want %d", j.V, evidenceFormatVersion)
	}
	switch j.Kind {
	case KindTDX, KindSEVSNP, KindMockTSM:
	default:
		return nil, wrapf(ErrEvidenceMalformed, "unknown evidence kind %s", clip(j.Kind))
	}
	e := &Evidence{Kind: j.Kind}
	if e.Report, err = base64.StdEncoding.Strict().DecodeString(j.Report); err != nil {
		return nil, wrapf(ErrEvidenceMalformed, "report is not base64")
	}
	if j.Aux != "" {
		if e.Aux, err = base64.StdEncoding.Strict().DecodeString(j.Aux); err != nil {
			return nil, wrapf(ErrEvidenceMalformed, "aux is not base64")
		}
	}
	if len(e.Report) == 0 || len(e.Report) > maxEvidenceReport {
		return nil, wrapf(ErrEvidenceMalformed, "report is %d bytes, want 1..%d", len(e.Report), maxEvidenceReport)
	}
	if len(e.Aux) > maxEvidenceAux {
		return nil, wrapf(ErrEvidenceMalformed, "aux is %d bytes, at most %d", len(e.Aux), maxEvidenceAux)
	}
	return e, nil
}

// decodeStrict decodes exactly one JSON object with known fields only.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(jsonErrorKind(err))
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	if _, err := dec.Token(); err == nil {
		return errors.New("trailing data")
	}
	return nil
}
