package tlspsk

import "encoding/binary"

// DTLS 1.2 handshake messages (RFC 6347 4.2). A DTLS handshake message
// has a 12-byte header: type (1), length (3), message_seq (2),
// fragment_offset (3), fragment_length (3). Apart from the ClientHello
// (which has a cookie after the session ID) and the HelloVerifyRequest,
// the bodies are TLS 1.2's, so the TLS 1.2 codecs of tls12_msgs.go and
// msgs.go are reused on the "TLS form" of a message (type, length, body).

const (
	typeHelloVerifyRequest uint8  = 3
	extConnectionID        uint16 = 54 // RFC 9146 3
	maxCookieLen                  = 255
)

// dtlsMsg builds an unfragmented DTLS handshake message: the form that is
// hashed into the transcript (RFC 6347 4.2.6).
func dtlsMsg(typ uint8, seq uint16, body []byte) []byte {
	out := make([]byte, dtlsHandshakeHeaderLen+len(body))
	putFragmentHeader(out, typ, len(body), seq, 0, len(body))
	copy(out[dtlsHandshakeHeaderLen:], body)
	return out
}

func putFragmentHeader(b []byte, typ uint8, length int, seq uint16, off, n int) {
	b[0] = typ
	b[1], b[2], b[3] = byte(length>>16), byte(length>>8), byte(length)
	binary.BigEndian.PutUint16(b[4:], seq)
	b[6], b[7], b[8] = byte(off>>16), byte(off>>8), byte(off)
	b[9], b[10], b[11] = byte(n>>16), byte(n>>8), byte(n)
}

// tlsToDTLS turns a TLS-form message into an unfragmented DTLS message.
func tlsToDTLS(m []byte, seq uint16) []byte { return dtlsMsg(m[0], seq, m[4:]) }

// dtlsToTLS turns an unfragmented DTLS message into TLS form.
func dtlsToTLS(m []byte) []byte {
	body := m[dtlsHandshakeHeaderLen:]
	out := make([]byte, 4+len(body))
	out[0] = m[0]
	copy(out[1:4], m[1:4])
	copy(out[4:], body)
	return out
}

// fragment is one parsed handshake fragment.
type fragment struct {
	typ    uint8
	length int
	seq    uint16
	off    int
	data   []byte
}

// nextFragment splits the first handshake fragment off a record body. ok
// is false if the rest is malformed: a fragment that does not fit its
// record or its message.
func nextFragment(b []byte) (f fragment, rest []byte, ok bool) {
	if len(b) < dtlsHandshakeHeaderLen {
		return f, nil, false
	}
	f.typ = b[0]
	f.length = int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	f.seq = binary.BigEndian.Uint16(b[4:])
	f.off = int(b[6])<<16 | int(b[7])<<8 | int(b[8])
	n := int(b[9])<<16 | int(b[10])<<8 | int(b[11])
	if len(b) < dtlsHandshakeHeaderLen+n || f.off+n > f.length {
		return f, nil, false
	}
	f.data = b[dtlsHandshakeHeaderLen : dtlsHandshakeHeaderLen+n]
	return f, b[dtlsHandshakeHeaderLen+n:], true
}

// helloFields are the ClientHello fields the stateless cookie covers,
// as slices of the received message (nothing is allocated).
type helloFields struct {
	version                           uint16
	random, sessionID, cookie, suites []byte
	compression                       []byte
	extensions                        []byte // the extensions block without its length; nil if absent
}

// peekDTLSClientHello parses a ClientHello body without allocating, for the
// listener, which must answer a flood of (possibly spoofed) hellos without
// keeping or building anything.
func peekDTLSClientHello(body []byte) (h helloFields, ok bool) {
	r := reader{b: body}
	h.version = r.u16()
	h.random = r.take(32)
	h.sessionID = r.vec8()
	h.cookie = r.vec8()
	h.suites = r.vec16()
	h.compression = r.vec8()
	if r.bad || len(h.sessionID) > 32 || len(h.suites) < 2 || len(h.suites)%2 != 0 || len(h.compression) == 0 {
		return h, false
	}
	if len(r.b) == 0 {
		return h, true
	}
	h.extensions = r.vec16()
	return h, r.done()
}

// parseDTLSClientHello parses a ClientHello body into the TLS ClientHello
// the TLS 1.2 code understands (the cookie removed) and returns the cookie.
func parseDTLSClientHello(body []byte) (*clientHello, []byte, error) {
	h, ok := peekDTLSClientHello(body)
	if !ok {
		return nil, nil, alertf(alertDecodeError, "malformed ClientHello")
	}
	// TLS form: type, length, then the body without the cookie vector.
	cookieAt := 2 + 32 + 1 + len(h.sessionID)
	tlsBody := make([]byte, 0, len(body))
	tlsBody = append(tlsBody, body[:cookieAt]...)
	tlsBody = append(tlsBody, body[cookieAt+1+len(h.cookie):]...)
	raw := make([]byte, 4, 4+len(tlsBody))
	raw[0] = typeClientHello
	raw[1], raw[2], raw[3] = byte(len(tlsBody)>>16), byte(len(tlsBody)>>8), byte(len(tlsBody))
	raw = append(raw, tlsBody...)
	ch, err := parseClientHello(raw)
	if err != nil {
		return nil, nil, err
	}
	return ch, h.cookie, nil
}

// dtlsHelloParams is what our client puts in its ClientHello.
type dtlsHelloParams struct {
	random, cookie []byte
	suites         []uint16
	groups         []CurveID // ECDHE_PSK offered: supported_groups and ec_point_formats
	cid            []byte    // non-nil: the connection_id extension with this CID
}

// marshalDTLSClientHello encodes a ClientHello body: version DTLS 1.2, no
// session ID, the cookie, the suites, null compression, and the
// extensions renegotiation_info (empty, RFC 5746), extended_master_secret
// (RFC 7627), supported_groups and ec_point_formats for ECDHE_PSK
// (RFC 8422), and connection_id (RFC 9146) when asked for.
func marshalDTLSClientHello(p *dtlsHelloParams) []byte {
	w := writer{b: make([]byte, 0, 160+len(p.cookie))}
	w.u16(VersionDTLS12)
	w.raw(p.random)
	w.u8(0) // session_id
	c := w.open8()
	w.raw(p.cookie)
	w.close8(c)
	s := w.open16()
	for _, id := range p.suites {
		w.u16(id)
	}
	w.close16(s)
	w.u8(1)
	w.u8(0) // null compression
	exts := w.open16()
	w.raw([]byte{byte(extRenegotiationInfo >> 8), byte(extRenegotiationInfo & 0xff), 0, 1, 0})
	w.raw([]byte{0, byte(extExtendedMasterSecret), 0, 0})
	if len(p.groups) > 0 {
		w.u16(extSupportedGroups)
		e := w.open16()
		l := w.open16()
		for _, g := range p.groups {
			w.u16(uint16(g))
		}
		w.close16(l)
		w.close16(e)
		w.raw([]byte{0, byte(extECPointFormats), 0, 2, 1, 0})
	}
	if p.cid != nil {
		w.u16(extConnectionID)
		e := w.open16()
		v := w.open8()
		w.raw(p.cid)
		w.close8(v)
		w.close16(e)
	}
	w.close16(exts)
	return w.b
}

// marshalHelloVerifyRequest is the HelloVerifyRequest body:
// server_version and cookie (RFC 6347 4.2.1).
func appendHelloVerifyRequest(dst []byte, cookie []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, versionDTLS10)
	dst = append(dst, byte(len(cookie)))
	return append(dst, cookie...)
}

// parseHelloVerifyRequest returns the cookie of a HelloVerifyRequest body.
func parseHelloVerifyRequest(body []byte) ([]byte, error) {
	r := reader{b: body}
	v := r.u16()
	cookie := r.vec8()
	if !r.done() || v>>8 != 0xFE || len(cookie) == 0 {
		return nil, alertf(alertDecodeError, "malformed HelloVerifyRequest")
	}
	return cookie, nil
}

// parseConnectionID returns the CID of a connection_id extension.
func parseConnectionID(data []byte) ([]byte, bool) {
	r := reader{b: data}
	cid := r.vec8()
	return cid, r.done()
}
