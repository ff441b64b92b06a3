package attest

import (
	"encoding/binary"
	"encoding/hex"
)

// Intel TDX DCAP quote layout (Intel TDX DCAP Quoting Library API, "Quote
// Format"), the parts mcbn reads itself. Signature checking is left to
// go-tdx-guest; this parser exists to bound sizes exactly (go-tdx-guest
// tolerates trailing bytes), to tell v4 from v5, and to extract the
// measurements for the normalized claims.
const (
	tdxHeaderSize      = 48
	tdxTeeTypeTDX      = 0x81
	tdxAttKeyECDSAP256 = 2
	tdxBody10Size      = 584 // TD report body, TDX 1.0
	tdxBody15Size      = 648 // TD report body, TDX 1.5 (v5 type 3)
	tdxV5BodyType10    = 2
	tdxV5BodyType15    = 3
	tdxQERepSize       = 384
	tdxSigSize         = 64
	tdxAttKeySize      = 64
	tdxCertTypeQERep   = 6
	tdxCertTypePCKPEM  = 5
	// MaxTDXQuoteSize bounds a quote: 648 bytes of body plus a PCK chain of
	// three certificates is about 5 KiB.
	MaxTDXQuoteSize = 12 << 10
)

// TDXQuote is the parsed, size-checked quote.
type TDXQuote struct {
	Version   int
	BodyType  int // 2 (TDX 1.0) or 3 (TDX 1.5); v4 quotes are 2
	TeeTCBSVN []byte
	MRSeam    []byte
	TDAttrs   []byte
	XFAM      []byte
	MRTD      []byte
	MRConfig  []byte
	MROwner   []byte
	MROwnerCf []byte
	RTMR      [4][]byte
	// ReportData is the 64-byte REPORTDATA.
	ReportData []byte
	// PCKChainPEM is the PEM certificate chain (PCK leaf, intermediate,
	// root) from the certification data.
	PCKChainPEM []byte
}

// Debug reports the TD's DEBUG attribute (TDATTRIBUTES bit 0): the host
// can read and change a debug TD's memory and registers.
func (q *TDXQuote) Debug() bool { return q.TDAttrs[0]&1 != 0 }

// ParseTDXQuote parses a TDX quote of version 4 or 5 and checks that every
// length field nests exactly: no truncation and no trailing bytes.
func ParseTDXQuote(b []byte) (*TDXQuote, error) {
	if len(b) > MaxTDXQuoteSize {
		return nil, wrapf(ErrEvidenceMalformed, "TDX quote is %d bytes, at most %d", len(b), MaxTDXQuoteSize)
	}
	if len(b) < tdxHeaderSize {
		return nil, wrapf(ErrEvidenceMalformed, "TDX quote truncated in its header (%d bytes)", len(b))
	}
	q := &TDXQuote{Version: int(binary.LittleEndian.Uint16(b[0:2]))}
	if k := binary.LittleEndian.Uint16(b[2:4]); k != tdxAttKeyECDSAP256 {
		return nil, wrapf(ErrEvidenceMalformed, "TDX quote attestation key type %d, want %d (ECDSA P-256)", k, tdxAttKeyECDSAP256)
	}
	if t := binary.LittleEndian.Uint32(b[4:8]); t != tdxTeeTypeTDX {
		return nil, wrapf(ErrEvidenceMalformed, "quote TEE type 0x%x, want 0x%x (TDX)", t, tdxTeeTypeTDX)
	}
	off := tdxHeaderSize
	bodySize := tdxBody10Size
	switch q.Version {
	case 4:
		q.BodyType = tdxV5BodyType10
	case 5:
		if len(b) < off+6 {
			return nil, wrapf(ErrEvidenceMalformed, "TDX v5 quote truncated in its body descriptor")
		}
		q.BodyType = int(binary.LittleEndian.Uint16(b[off:]))
		size := binary.LittleEndian.Uint32(b[off+2:])
		switch {
		case q.BodyType == tdxV5BodyType10 && size == tdxBody10Size:
		case q.BodyType == tdxV5BodyType15 && size == tdxBody15Size:
			bodySize = tdxBody15Size
		default:
			return nil, wrapf(ErrEvidenceMalformed, "TDX v5 body type %d with size %d is not a TD report", q.BodyType, size)
		}
		off += 6
	default:
		return nil, wrapf(ErrEvidenceUnsupported, "TDX quote version %d, want 4 or 5", q.Version)
	}
	if len(b) < off+bodySize+4 {
		return nil, wrapf(ErrEvidenceMalformed, "TDX quote truncated in its TD report body")
	}
	body := b[off : off+bodySize]
	q.TeeTCBSVN, q.MRSeam = body[0:16], body[16:64]
	q.TDAttrs, q.XFAM, q.MRTD = body[120:128], body[128:136], body[136:184]
	q.MRConfig, q.MROwner, q.MROwnerCf = body[184:232], body[232:280], body[280:328]
	for i := range q.RTMR {
		q.RTMR[i] = body[328+48*i : 376+48*i]
	}
	q.ReportData = body[520:584]
	off += bodySize
	sigLen := int(binary.LittleEndian.Uint32(b[off:]))
	off += 4
	if rest := len(b) - off; sigLen != rest {
		if sigLen > rest {
			return nil, wrapf(ErrEvidenceMalformed, "TDX quote truncated: signature data of %d bytes, %d present", sigLen, rest)
		}
		return nil, wrapf(ErrEvidenceMalformed, "TDX quote has %d trailing bytes after its signature data", rest-sigLen)
	}
	sig := b[off:]
	if len(sig) < tdxSigSize+tdxAttKeySize+6 {
		return nil, wrapf(ErrEvidenceMalformed, "TDX quote signature data truncated")
	}
	cd := sig[tdxSigSize+tdxAttKeySize:]
	pem, err := tdxCertData(cd, tdxCertTypeQERep)
	if err != nil {
		return nil, err
	}
	// QE report certification data: QE report, its signature, QE
	// authentication data, then the PCK chain as certification data.
	if len(pem) < tdxQERepSize+tdxSigSize+2 {
		return nil, wrapf(ErrEvidenceMalformed, "TDX QE report certification data truncated")
	}
	p := pem[tdxQERepSize+tdxSigSize:]
	authLen := int(binary.LittleEndian.Uint16(p))
	if len(p) < 2+authLen {
		return nil, wrapf(ErrEvidenceMalformed, "TDX QE authentication data truncated")
	}
	chain, err := tdxCertData(p[2+authLen:], tdxCertTypePCKPEM)
	if err != nil {
		return nil, err
	}
	q.PCKChainPEM = chain
	return q, nil
}

// tdxCertData reads one certification data structure (type u16, size u32,
// data) that must fill b exactly.
func tdxCertData(b []byte, wantType uint16) ([]byte, error) {
	if len(b) < 6 {
		return nil, wrapf(ErrEvidenceMalformed, "TDX certification data truncated")
	}
	if t := binary.LittleEndian.Uint16(b); t != wantType {
		return nil, wrapf(ErrEvidenceMalformed, "TDX certification data type %d, want %d", t, wantType)
	}
	size := int(binary.LittleEndian.Uint32(b[2:]))
	if size != len(b)-6 {
		return nil, wrapf(ErrEvidenceMalformed, "TDX certification data of type %d declares %d bytes, %d present", wantType, size, len(b)-6)
	}
	return b[6:], nil
}

// Claims returns the normalized "tdx" claims map of a quote (verified or
// not: EvidenceVerifier.Verify calls it only after verification).
func (q *TDXQuote) Claims(tcbStatus string) map[string]any {
	rtmr := make([]any, 4)
	for i := range q.RTMR {
		rtmr[i] = hex.EncodeToString(q.RTMR[i])
	}
	return map[string]any{
		"quote_version":   int64(q.Version),
		"mrtd":            hex.EncodeToString(q.MRTD),
		"rtmr":            rtmr,
		"mr_config_id":    hex.EncodeToString(q.MRConfig),
		"mr_owner":        hex.EncodeToString(q.MROwner),
		"mr_owner_config": hex.EncodeToString(q.MROwnerCf),
		"mr_seam":         hex.EncodeToString(q.MRSeam),
		"tee_tcb_svn":     hex.EncodeToString(q.TeeTCBSVN),
		"xfam":            hex.EncodeToString(q.XFAM),
		"tcb_status":      tcbStatus,
		"td_attributes":   map[string]any{"debug": q.Debug(), "hex": hex.EncodeToString(q.TDAttrs)},
		"report_data":     hex.EncodeToString(q.ReportData),
	}
}
