package tlspsk

// Extension codepoints (RFC 8446 4.2) and one parser per extension. Each
// parser takes the extension_data and reports ok=false on any malformation.

const (
	extServerName          uint16 = 0
	extSupportedGroups     uint16 = 10
	extSignatureAlgorithms uint16 = 13
	extPreSharedKey        uint16 = 41
	extEarlyData           uint16 = 42
	extSupportedVersions   uint16 = 43
	extCookie              uint16 = 44
	extPSKModes            uint16 = 45
	extKeyShare            uint16 = 51
	extRenegotiationInfo   uint16 = 0xff01
)

// PSK key exchange modes.
const (
	pskModePlain uint8 = 0 // psk_ke
	pskModeDHE   uint8 = 1 // psk_dhe_ke
)

type extension struct {
	typ  uint16
	data []byte
}

type keyShare struct {
	group CurveID
	data  []byte
}

type pskIdentity struct {
	identity []byte
	age      uint32
}

// parseExtensions splits an extensions block (without its length) and
// rejects duplicates.
func parseExtensions(b []byte) ([]extension, bool) {
	r := reader{b: b}
	var out []extension
	for len(r.b) > 0 && !r.bad {
		e := extension{typ: r.u16(), data: r.vec16()}
		for _, o := range out {
			if o.typ == e.typ {
				return nil, false
			}
		}
		out = append(out, e)
	}
	return out, !r.bad
}

func parseSupportedVersionsCH(data []byte) ([]uint16, bool) {
	r := reader{b: data}
	l := reader{b: r.vec8()}
	if !r.done() || len(l.b) < 2 || len(l.b)%2 != 0 {
		return nil, false
	}
	var v []uint16
	for len(l.b) > 0 {
		v = append(v, l.u16())
	}
	return v, true
}

func parseSupportedVersionSH(data []byte) (uint16, bool) {
	r := reader{b: data}
	v := r.u16()
	return v, r.done()
}

func parseSupportedGroups(data []byte) ([]CurveID, bool) {
	r := reader{b: data}
	l := reader{b: r.vec16()}
	if !r.done() || len(l.b) < 2 || len(l.b)%2 != 0 {
		return nil, false
	}
	var g []CurveID
	for len(l.b) > 0 {
		g = append(g, CurveID(l.u16()))
	}
	return g, true
}

func parseKeyShareCH(data []byte) ([]keyShare, bool) {
	r := reader{b: data}
	l := reader{b: r.vec16()}
	if !r.done() {
		return nil, false
	}
	var ks []keyShare
	for len(l.b) > 0 {
		k := keyShare{group: CurveID(l.u16()), data: l.vec16()}
		if l.bad || len(k.data) == 0 {
			return nil, false
		}
		for _, o := range ks {
			if o.group == k.group {
				return nil, false // RFC 8446 4.2.8: no duplicate groups
			}
		}
		ks = append(ks, k)
	}
	return ks, true
}

func parseKeyShareSH(data []byte) (keyShare, bool) {
	r := reader{b: data}
	k := keyShare{group: CurveID(r.u16()), data: r.vec16()}
	return k, r.done() && len(k.data) > 0
}

func parseKeyShareHRR(data []byte) (CurveID, bool) {
	r := reader{b: data}
	g := CurveID(r.u16())
	return g, r.done()
}

func parsePSKModes(data []byte) ([]uint8, bool) {
	r := reader{b: data}
	m := r.vec8()
	return m, r.done() && len(m) > 0
}

// parsePreSharedKeyCH returns the offered identities and binders, and the
// length of the binders vector including its 2-byte length prefix.
func parsePreSharedKeyCH(data []byte) (ids []pskIdentity, binders [][]byte, bindersLen int, ok bool) {
	r := reader{b: data}
	il := reader{b: r.vec16()}
	if r.bad || len(il.b) == 0 {
		return nil, nil, 0, false
	}
	bindersLen = len(r.b)
	bl := reader{b: r.vec16()}
	if !r.done() {
		return nil, nil, 0, false
	}
	for len(il.b) > 0 {
		id := pskIdentity{identity: il.vec16()}
		age := il.take(4)
		if il.bad || len(id.identity) == 0 {
			return nil, nil, 0, false
		}
		id.age = uint32(age[0])<<24 | uint32(age[1])<<16 | uint32(age[2])<<8 | uint32(age[3])
		ids = append(ids, id)
	}
	for len(bl.b) > 0 {
		b := bl.vec8()
		if bl.bad || len(b) < 32 {
			return nil, nil, 0, false
		}
		binders = append(binders, b)
	}
	if len(binders) != len(ids) {
		return nil, nil, 0, false
	}
	return ids, binders, bindersLen, true
}

func parsePreSharedKeySH(data []byte) (uint16, bool) {
	r := reader{b: data}
	v := r.u16()
	return v, r.done()
}

func parseCookie(data []byte) ([]byte, bool) {
	r := reader{b: data}
	c := r.vec16()
	return c, r.done() && len(c) > 0
}

func parseEarlyDataCH(data []byte) bool { return len(data) == 0 }

func parseServerName(data []byte) (string, bool) {
	r := reader{b: data}
	l := reader{b: r.vec16()}
	if !r.done() {
		return "", false
	}
	name := ""
	for len(l.b) > 0 {
		typ := l.u8()
		n := l.vec16()
		if l.bad {
			return "", false
		}
		if typ == 0 && name == "" {
			name = string(n)
		}
	}
	return name, true
}
