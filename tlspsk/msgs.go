package tlspsk

import "bytes"

// Handshake message types (RFC 8446 4).
const (
	typeClientHello         uint8 = 1
	typeServerHello         uint8 = 2
	typeNewSessionTicket    uint8 = 4
	typeEndOfEarlyData      uint8 = 5
	typeEncryptedExtensions uint8 = 8
	typeCertificate         uint8 = 11
	typeCertificateRequest  uint8 = 13
	typeCertificateVerify   uint8 = 15
	typeFinished            uint8 = 20
	typeKeyUpdate           uint8 = 24
	typeMessageHash         uint8 = 254
)

// helloRetryRandom is SHA-256("HelloRetryRequest") (RFC 8446 4.1.3).
var helloRetryRandom = []byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// clientHello holds the fields of a ClientHello this package uses.
type clientHello struct {
	raw           []byte // the whole message, header included
	legacyVersion uint16
	random        []byte
	sessionID     []byte
	suites        []uint16
	compression   []byte
	extensions    []extension

	versions      []uint16
	hasVersions   bool
	groups        []CurveID
	keyShares     []keyShare
	hasKeyShare   bool
	pskModes      []uint8
	identities    []pskIdentity
	binders       [][]byte
	bindersLen    int // binders vector length incl. its prefix
	cookie        []byte
	earlyData     bool
	serverName    string
	sigAlgs       []byte
	renegotiation []byte
	hasReneg      bool // renegotiation_info present
	ems           bool // extended_master_secret offered
	pointFormats  bool // ec_point_formats present
	uncompressed  bool // ... and lists the uncompressed format
}

// truncated returns the ClientHello up to (not including) the binders,
// over which binders are computed (RFC 8446 4.2.11.2).
func (m *clientHello) truncated() []byte { return m.raw[:len(m.raw)-m.bindersLen] }

// parseClientHello parses a whole ClientHello message (header included).
func parseClientHello(raw []byte) (*clientHello, error) {
	bad := alertf(alertDecodeError, "malformed ClientHello")
	r := reader{b: raw}
	if r.u8() != typeClientHello || r.u24() != len(raw)-4 {
		return nil, bad
	}
	m := &clientHello{raw: raw}
	m.legacyVersion = r.u16()
	m.random = r.take(32)
	m.sessionID = r.vec8()
	cs := reader{b: r.vec16()}
	m.compression = r.vec8()
	if r.bad || len(m.sessionID) > 32 || len(cs.b) < 2 || len(cs.b)%2 != 0 || len(m.compression) == 0 {
		return nil, bad
	}
	for len(cs.b) > 0 {
		m.suites = append(m.suites, cs.u16())
	}
	if len(r.b) == 0 {
		return m, nil // no extensions: an old client
	}
	exts := r.vec16()
	if !r.done() {
		return nil, bad
	}
	var ok bool
	if m.extensions, ok = parseExtensions(exts); !ok {
		return nil, alertf(alertIllegalParameter, "malformed or duplicate ClientHello extensions")
	}
	for i, e := range m.extensions {
		ok := true
		switch e.typ {
		case extSupportedVersions:
			m.versions, ok = parseSupportedVersionsCH(e.data)
			m.hasVersions = true
		case extSupportedGroups:
			m.groups, ok = parseSupportedGroups(e.data)
		case extKeyShare:
			m.keyShares, ok = parseKeyShareCH(e.data)
			m.hasKeyShare = true
		case extPSKModes:
			m.pskModes, ok = parsePSKModes(e.data)
		case extPreSharedKey:
			if i != len(m.extensions)-1 {
				return nil, alertf(alertIllegalParameter, "pre_shared_key is not the last extension")
			}
			m.identities, m.binders, m.bindersLen, ok = parsePreSharedKeyCH(e.data)
		case extCookie:
			m.cookie, ok = parseCookie(e.data)
		case extEarlyData:
			m.earlyData, ok = true, parseEarlyDataCH(e.data)
		case extServerName:
			m.serverName, ok = parseServerName(e.data)
		case extSignatureAlgorithms:
			m.sigAlgs = e.data
		case extRenegotiationInfo:
			m.renegotiation, ok = parseRenegotiationInfo(e.data)
			m.hasReneg = true
		case extExtendedMasterSecret:
			m.ems, ok = true, len(e.data) == 0
		case extECPointFormats:
			m.pointFormats = true
			m.uncompressed, ok = parseECPointFormats(e.data)
		}
		if !ok {
			return nil, bad
		}
	}
	return m, nil
}

// clientHelloParams is what the client puts in its ClientHello.
type clientHelloParams struct {
	random, sessionID []byte
	suites            []uint16
	versions          []uint16
	groups            []CurveID
	shares            []keyShare
	pskModes          []uint8
	identity          []byte
	binderLen         int
	cookie            []byte
	// no13 leaves out the TLS 1.3 extensions (a TLS 1.2-only hello);
	// offer12 adds renegotiation_info, extended_master_secret and
	// ec_point_formats for TLS 1.2.
	no13, offer12 bool
}

// sigAlgsOffered is sent for compatibility; PSK authentication uses none.
var sigAlgsOffered = []uint16{0x0403, 0x0804, 0x0807, 0x0503, 0x0805, 0x0401}

// marshalClientHello encodes a ClientHello with a zero binder and returns
// it with the binders vector length (for truncation).
func marshalClientHello(p *clientHelloParams) (raw []byte, bindersLen int) {
	w := writer{b: make([]byte, 0, 512)}
	w.u8(typeClientHello)
	msg := w.open24()
	w.u16(VersionTLS12)
	w.raw(p.random)
	s := w.open8()
	w.raw(p.sessionID)
	w.close8(s)
	s = w.open16()
	for _, c := range p.suites {
		w.u16(c)
	}
	w.close16(s)
	w.u8(1)
	w.u8(0) // null compression
	exts := w.open16()

	if p.offer12 {
		w.raw([]byte{byte(extRenegotiationInfo >> 8), byte(extRenegotiationInfo & 0xff), 0, 1, 0})
		w.raw([]byte{0, byte(extExtendedMasterSecret), 0, 0})
		w.raw([]byte{0, byte(extECPointFormats), 0, 2, 1, 0})
	}
	var e, l int
	if !p.no13 {
		w.u16(extSupportedVersions)
		e = w.open16()
		l = w.open8()
		for _, v := range p.versions {
			w.u16(v)
		}
		w.close8(l)
		w.close16(e)
	}

	w.u16(extSupportedGroups)
	e = w.open16()
	l = w.open16()
	for _, g := range p.groups {
		w.u16(uint16(g))
	}
	w.close16(l)
	w.close16(e)

	w.u16(extSignatureAlgorithms)
	e = w.open16()
	l = w.open16()
	for _, a := range sigAlgsOffered {
		w.u16(a)
	}
	w.close16(l)
	w.close16(e)

	if p.no13 {
		w.close16(exts)
		w.close24(msg)
		return w.b, 0
	}

	w.u16(extKeyShare)
	e = w.open16()
	l = w.open16()
	for _, k := range p.shares {
		w.u16(uint16(k.group))
		v := w.open16()
		w.raw(k.data)
		w.close16(v)
	}
	w.close16(l)
	w.close16(e)

	if p.cookie != nil {
		w.u16(extCookie)
		e = w.open16()
		v := w.open16()
		w.raw(p.cookie)
		w.close16(v)
		w.close16(e)
	}

	w.u16(extPSKModes)
	e = w.open16()
	l = w.open8()
	w.raw(p.pskModes)
	w.close8(l)
	w.close16(e)

	// pre_shared_key comes last.
	w.u16(extPreSharedKey)
	e = w.open16()
	l = w.open16()
	v := w.open16()
	w.raw(p.identity)
	w.close16(v)
	w.raw([]byte{0, 0, 0, 0}) // obfuscated_ticket_age: 0 for external PSKs
	w.close16(l)
	bl := w.open16()
	b := w.open8()
	w.raw(make([]byte, p.binderLen))
	w.close8(b)
	w.close16(bl)
	w.close16(e)

	w.close16(exts)
	w.close24(msg)
	return w.b, 2 + 1 + p.binderLen
}

// serverHello holds a ServerHello or HelloRetryRequest.
type serverHello struct {
	raw              []byte
	legacyVersion    uint16
	random           []byte
	sessionID        []byte
	suite            uint16
	compression      uint8
	extensions       []extension
	version          uint16 // from supported_versions; 0 if absent
	keyShare         keyShare
	hasKeyShare      bool
	selectedGroup    CurveID // HelloRetryRequest
	selectedIdentity int     // -1 if no pre_shared_key
	cookie           []byte
}

func (m *serverHello) isHRR() bool { return bytes.Equal(m.random, helloRetryRandom) }

// parseServerHello parses a ServerHello or HelloRetryRequest (header included).
func parseServerHello(raw []byte) (*serverHello, error) {
	bad := alertf(alertDecodeError, "malformed ServerHello")
	r := reader{b: raw}
	if r.u8() != typeServerHello || r.u24() != len(raw)-4 {
		return nil, bad
	}
	m := &serverHello{raw: raw, selectedIdentity: -1}
	m.legacyVersion = r.u16()
	m.random = r.take(32)
	m.sessionID = r.vec8()
	m.suite = r.u16()
	m.compression = r.u8()
	if r.bad || len(m.sessionID) > 32 {
		return nil, bad
	}
	if len(r.b) == 0 {
		return m, nil
	}
	exts := r.vec16()
	if !r.done() {
		return nil, bad
	}
	var ok bool
	if m.extensions, ok = parseExtensions(exts); !ok {
		return nil, alertf(alertIllegalParameter, "malformed or duplicate ServerHello extensions")
	}
	hrr := m.isHRR()
	for _, e := range m.extensions {
		ok := true
		switch e.typ {
		case extSupportedVersions:
			m.version, ok = parseSupportedVersionSH(e.data)
		case extKeyShare:
			if hrr {
				m.selectedGroup, ok = parseKeyShareHRR(e.data)
			} else {
				m.keyShare, ok = parseKeyShareSH(e.data)
			}
			m.hasKeyShare = true
		case extPreSharedKey:
			var v uint16
			v, ok = parsePreSharedKeySH(e.data)
			m.selectedIdentity = int(v)
		case extCookie:
			m.cookie, ok = parseCookie(e.data)
		}
		if !ok {
			return nil, bad
		}
	}
	return m, nil
}

type serverHelloParams struct {
	random, sessionID []byte
	suite             uint16
	keyShare          *keyShare // nil for psk_ke
	hrrGroup          CurveID   // set for a HelloRetryRequest
	withPSK           bool
	pskIndex          uint16
}

func marshalServerHello(p *serverHelloParams) []byte {
	w := writer{b: make([]byte, 0, 128)}
	w.u8(typeServerHello)
	msg := w.open24()
	w.u16(VersionTLS12)
	w.raw(p.random)
	s := w.open8()
	w.raw(p.sessionID)
	w.close8(s)
	w.u16(p.suite)
	w.u8(0)
	exts := w.open16()
	w.u16(extSupportedVersions)
	w.u16(2)
	w.u16(VersionTLS13)
	if p.hrrGroup != 0 {
		w.u16(extKeyShare)
		w.u16(2)
		w.u16(uint16(p.hrrGroup))
	} else if p.keyShare != nil {
		w.u16(extKeyShare)
		e := w.open16()
		w.u16(uint16(p.keyShare.group))
		v := w.open16()
		w.raw(p.keyShare.data)
		w.close16(v)
		w.close16(e)
	}
	if p.withPSK {
		w.u16(extPreSharedKey)
		w.u16(2)
		w.u16(p.pskIndex)
	}
	w.close16(exts)
	w.close24(msg)
	return w.b
}

// marshalHandshake wraps a body in a handshake header.
func marshalHandshake(typ uint8, body []byte) []byte {
	out := make([]byte, 4+len(body))
	out[0] = typ
	out[1], out[2], out[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	copy(out[4:], body)
	return out
}

// parseEncryptedExtensions returns the extensions of an EncryptedExtensions.
func parseEncryptedExtensions(raw []byte) ([]extension, error) {
	r := reader{b: raw}
	if r.u8() != typeEncryptedExtensions || r.u24() != len(raw)-4 {
		return nil, alertf(alertDecodeError, "malformed EncryptedExtensions")
	}
	exts := r.vec16()
	if !r.done() {
		return nil, alertf(alertDecodeError, "malformed EncryptedExtensions")
	}
	e, ok := parseExtensions(exts)
	if !ok {
		return nil, alertf(alertIllegalParameter, "malformed or duplicate EncryptedExtensions")
	}
	return e, nil
}

func parseFinished(raw []byte, size int) ([]byte, error) {
	if len(raw) != 4+size || raw[0] != typeFinished || int(raw[1])<<16|int(raw[2])<<8|int(raw[3]) != size {
		return nil, alertf(alertDecodeError, "malformed Finished")
	}
	return raw[4:], nil
}

// parseKeyUpdate returns whether the peer requests an update from us.
// A well-formed message with a request_update other than
// update_not_requested (0) or update_requested (1) is illegal_parameter
// (RFC 8446 4.6.3); a malformed one is decode_error.
func parseKeyUpdate(raw []byte) (bool, error) {
	if len(raw) != 5 || raw[0] != typeKeyUpdate || raw[1] != 0 || raw[2] != 0 || raw[3] != 1 {
		return false, alertf(alertDecodeError, "malformed KeyUpdate")
	}
	if raw[4] > 1 {
		return false, alertf(alertIllegalParameter, "KeyUpdate request_update is neither 0 nor 1")
	}
	return raw[4] == 1, nil
}
