package tlspsk

// TLS 1.2 handshake messages for PSK key exchange: ServerHello,
// ServerKeyExchange and ClientKeyExchange for PSK (RFC 4279 2) and
// ECDHE_PSK (RFC 5489 2, with the ECParameters and ECPoint of RFC 8422 5.4),
// ServerHelloDone and HelloRequest (RFC 5246 7.4).

const (
	typeHelloRequest      uint8 = 0
	typeServerKeyExchange uint8 = 12
	typeServerHelloDone   uint8 = 14
	typeClientKeyExchange uint8 = 16
)

const (
	extECPointFormats       uint16 = 11
	extExtendedMasterSecret uint16 = 23
	curveTypeNamed          uint8  = 3 // ECCurveType named_curve
)

// downgradeTLS12 is the last 8 bytes of a TLS 1.3-capable server's random
// when it negotiates TLS 1.2 (RFC 8446 4.1.3).
var downgradeTLS12 = []byte{0x44, 0x4F, 0x57, 0x4E, 0x47, 0x52, 0x44, 0x01}

// downgradeTLS11 is the sentinel for TLS 1.1 and older, which a TLS 1.3
// client must refuse too (RFC 8446 4.1.3) although we never negotiate it.
var downgradeTLS11 = []byte{0x44, 0x4F, 0x57, 0x4E, 0x47, 0x52, 0x44, 0x00}

// marshalServerHello12 encodes a TLS 1.2 ServerHello; the extensions block
// is left out when there are none.
func marshalServerHello12(random, sessionID []byte, suite uint16, exts []extension) []byte {
	w := writer{b: make([]byte, 0, 96)}
	w.u8(typeServerHello)
	msg := w.open24()
	w.u16(VersionTLS12)
	w.raw(random)
	s := w.open8()
	w.raw(sessionID)
	w.close8(s)
	w.u16(suite)
	w.u8(0)
	if len(exts) > 0 {
		e := w.open16()
		for _, x := range exts {
			w.u16(x.typ)
			v := w.open16()
			w.raw(x.data)
			w.close16(v)
		}
		w.close16(e)
	}
	w.close24(msg)
	return w.b
}

// serverKeyExchange12 is the PSK or ECDHE_PSK ServerKeyExchange.
type serverKeyExchange12 struct {
	hint  []byte
	group CurveID // ECDHE_PSK only
	point []byte
}

func marshalServerKeyExchange12(m *serverKeyExchange12, ecdhe bool) []byte {
	w := writer{b: make([]byte, 0, 80+len(m.hint))}
	w.u8(typeServerKeyExchange)
	msg := w.open24()
	v := w.open16()
	w.raw(m.hint)
	w.close16(v)
	if ecdhe {
		w.u8(curveTypeNamed)
		w.u16(uint16(m.group))
		p := w.open8()
		w.raw(m.point)
		w.close8(p)
	}
	w.close24(msg)
	return w.b
}

func parseServerKeyExchange12(raw []byte, ecdhe bool) (*serverKeyExchange12, error) {
	bad := alertf(alertDecodeError, "malformed ServerKeyExchange")
	r := reader{b: raw}
	if r.u8() != typeServerKeyExchange || r.u24() != len(raw)-4 {
		return nil, bad
	}
	m := &serverKeyExchange12{hint: r.vec16()}
	if ecdhe {
		if ct := r.u8(); !r.bad && ct != curveTypeNamed {
			return nil, alertf(alertIllegalParameter, "ServerKeyExchange without a named curve")
		}
		m.group = CurveID(r.u16())
		m.point = r.vec8()
		if !r.bad && len(m.point) == 0 {
			return nil, bad
		}
	}
	if !r.done() {
		return nil, bad
	}
	return m, nil
}

// clientKeyExchange12 is the PSK or ECDHE_PSK ClientKeyExchange.
type clientKeyExchange12 struct {
	identity []byte
	point    []byte // ECDHE_PSK only
}

func marshalClientKeyExchange12(m *clientKeyExchange12, ecdhe bool) []byte {
	w := writer{b: make([]byte, 0, 80+len(m.identity))}
	w.u8(typeClientKeyExchange)
	msg := w.open24()
	v := w.open16()
	w.raw(m.identity)
	w.close16(v)
	if ecdhe {
		p := w.open8()
		w.raw(m.point)
		w.close8(p)
	}
	w.close24(msg)
	return w.b
}

func parseClientKeyExchange12(raw []byte, ecdhe bool) (*clientKeyExchange12, error) {
	bad := alertf(alertDecodeError, "malformed ClientKeyExchange")
	r := reader{b: raw}
	if r.u8() != typeClientKeyExchange || r.u24() != len(raw)-4 {
		return nil, bad
	}
	m := &clientKeyExchange12{identity: r.vec16()}
	if ecdhe {
		m.point = r.vec8()
		if !r.bad && len(m.point) == 0 {
			return nil, bad
		}
	}
	if !r.done() || len(m.identity) == 0 {
		return nil, bad
	}
	return m, nil
}

// parseEmptyMessage checks a message with an empty body (ServerHelloDone,
// HelloRequest).
func parseEmptyMessage(raw []byte, typ uint8) error {
	if len(raw) != 4 || raw[0] != typ || raw[1]|raw[2]|raw[3] != 0 {
		return alertf(alertDecodeError, "malformed handshake message")
	}
	return nil
}

// parseRenegotiationInfo returns renegotiated_connection.
func parseRenegotiationInfo(data []byte) ([]byte, bool) {
	r := reader{b: data}
	v := r.vec8()
	return v, r.done()
}

// parseECPointFormats checks that the uncompressed format (0) is listed.
func parseECPointFormats(data []byte) (uncompressed, ok bool) {
	r := reader{b: data}
	l := r.vec8()
	if !r.done() || len(l) == 0 {
		return false, false
	}
	for _, f := range l {
		if f == 0 {
			uncompressed = true
		}
	}
	return uncompressed, true
}
