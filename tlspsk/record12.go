package tlspsk

import "encoding/binary"

// TLS 1.2 AEAD record protection. The additional data is
// seq_num || type || version || plaintext length (RFC 5246 6.2.3.3). The
// nonce is salt || explicit for AES-GCM, with the explicit part (our
// sequence number) sent before the ciphertext (RFC 5288 3), and IV XOR
// sequence number for ChaCha20-Poly1305 (RFC 7905 2), as in TLS 1.3.

// tls12RecordLimit bounds the records we send under one TLS 1.2 AES-GCM
// key, which cannot be updated: the TLS 1.3 bound of RFC 8446 5.5 applies
// to the same construction. ChaCha20-Poly1305 has no practical limit.
const tls12RecordLimit = keyUpdateAfter

// setKeys12 installs a TLS 1.2 write or read key.
func (hc *halfConn) setKeys12(s *cipherSuite, key, iv []byte) error {
	aead, err := s.newAEAD(key)
	if err != nil {
		return err
	}
	hc.version, hc.suite, hc.aead, hc.seq = VersionTLS12, s, aead, 0
	hc.explicit = !s.chacha
	hc.iv = [12]byte{}
	copy(hc.iv[:], iv)
	hc.limit = ^uint64(0)
	if !s.chacha {
		hc.limit = tls12RecordLimit
	}
	return nil
}

// additionalData12 builds the additional data in hc.ad (a local array
// would escape into the AEAD call: one allocation per record).
func (hc *halfConn) additionalData12(typ uint8, n int) []byte {
	ad := &hc.ad
	binary.BigEndian.PutUint64(ad[:8], hc.seq)
	ad[8], ad[9], ad[10] = typ, 3, 3
	binary.BigEndian.PutUint16(ad[11:], uint16(n))
	return ad[:]
}

func (hc *halfConn) seal12(buf []byte, typ uint8, payload []byte) []byte {
	ex := 0
	if hc.explicit {
		ex = explicitNonceLen
	}
	n := ex + len(payload) + hc.aead.Overhead()
	rec := buf[:recordHeaderLen+n]
	copy(rec[recordHeaderLen+ex:], payload) // payload may alias buf[recordHeaderLen:]
	rec[0], rec[1], rec[2] = typ, 3, 3
	binary.BigEndian.PutUint16(rec[3:], uint16(n))
	var nonce []byte
	if hc.explicit {
		binary.BigEndian.PutUint64(rec[recordHeaderLen:], hc.seq)
		copy(hc.nonce[:4], hc.iv[:4])
		copy(hc.nonce[4:], rec[recordHeaderLen:recordHeaderLen+8])
		nonce = hc.nonce[:]
	} else {
		nonce = hc.makeNonce13()
	}
	plain := rec[recordHeaderLen+ex : recordHeaderLen+ex+len(payload)]
	hc.aead.Seal(plain[:0], nonce, plain, hc.additionalData12(typ, len(payload)))
	hc.seq++
	return rec
}

func (hc *halfConn) open12(rec []byte) (uint8, []byte, error) {
	typ := rec[0]
	body := rec[recordHeaderLen:]
	ex := 0
	if hc.explicit {
		ex = explicitNonceLen
	}
	if len(body) < ex+hc.aead.Overhead() {
		return 0, nil, alertf(alertBadRecordMAC, "record too short")
	}
	var nonce []byte
	if hc.explicit {
		copy(hc.nonce[:4], hc.iv[:4])
		copy(hc.nonce[4:], body[:8])
		nonce = hc.nonce[:]
	} else {
		nonce = hc.makeNonce13()
	}
	ct := body[ex:]
	n := len(ct) - hc.aead.Overhead()
	if n > maxPlaintext {
		return 0, nil, alertf(alertRecordOverflow, "record plaintext too long")
	}
	plain, err := hc.aead.Open(ct[:0], nonce, ct, hc.additionalData12(typ, n))
	if err != nil {
		return 0, nil, alertf(alertBadRecordMAC, "record authentication failed")
	}
	hc.seq++
	return typ, plain, nil
}
