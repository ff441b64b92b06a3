package tlspsk

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
)

// The DTLS 1.2 record layer (RFC 6347 4.1). A record header is type (1),
// version (2), epoch (2), sequence number (6) and length (2). Epoch 0 is
// plaintext; epoch 1 is protected by the negotiated AEAD, with the TLS 1.2
// constructions of record12.go where the 64-bit sequence number is
// epoch || sequence (RFC 6347 4.1.2.1): additional data seq_num || type ||
// version || length; the nonce salt || explicit, with the explicit part
// (epoch || sequence, 8 bytes) sent before the ciphertext, for AES-GCM
// (RFC 5288) and AES-CCM (RFC 6655); IV XOR seq_num for ChaCha20-Poly1305
// (RFC 7905 2).
//
// With a connection ID (RFC 9146), a protected record has the type
// tls12_cid, the CID after the sequence number, and carries
// DTLSInnerPlaintext (content || real type || zero padding); its additional
// data is given in dtlsCipher.additionalDataCID.
//
// seal and open work on caller buffers, in place, with the nonce and the
// additional data built in the dtlsCipher: nothing is allocated per record.

// VersionDTLS12 is DTLS 1.2 on the wire ({254, 253}).
const VersionDTLS12 uint16 = 0xFEFD

const (
	versionDTLS10          uint16 = 0xFEFF
	dtlsRecordHeaderLen           = 13
	dtlsHandshakeHeaderLen        = 12
	recordCID              uint8  = 25 // tls12_cid (RFC 9146 4)
	dtlsMaxSeq                    = 1<<48 - 1
	// dtlsMaxRecordBody bounds a record's length field: 2^14 bytes of
	// plaintext plus 2048 of expansion (RFC 6347 4.1, RFC 5246 6.2.3).
	dtlsMaxRecordBody = maxPlaintext + 2048
	maxCIDLen         = 255
)

// dtlsCipher protects one direction of epoch 1.
type dtlsCipher struct {
	suite    *cipherSuite
	aead     cipher.AEAD
	iv       [12]byte // AES: 4-byte salt; ChaCha20: the whole IV
	explicit bool     // AES-GCM and AES-CCM: 8-byte explicit nonce
	nonce    [12]byte
	ad       [13]byte
	adCID    [23 + maxCIDLen]byte
	cid      []byte // the connection ID in this direction's records (nil: none)
	// blocks counts the AES blocks sealed or opened, against the
	// confidentiality limit (limitBlocks; 0: no limit).
	blocks, limitBlocks uint64
}

// AEAD limits. AES-GCM: RFC 8446 5.5 and RFC 9147 4.5.3 allow 2^24.5
// full-size records (2^10 blocks each) per key, so 2^34.5 blocks; CCM
// encrypts each block twice (MAC and key stream), so half that. TLS 1.2
// has no key update, so a session ends at the limit (and a new one is
// negotiated by whoever needs it). ChaCha20-Poly1305 has none short of
// the 48-bit sequence number. The integrity limits of RFC 9147 4.5.3 bound
// the records that fail authentication: 2^36 for AES-GCM and
// ChaCha20-Poly1305, 2^23.5 for AES-CCM (CCM_8, with half the tag, is held
// to the same).
const (
	gcmLimitBlocks  = 1 << 34
	ccmLimitBlocks  = 1 << 33
	gcmForgeryLimit = 1 << 36
	ccmForgeryLimit = 11863283 // 2^23.5
)

// ErrDTLSKeyLimit is returned by a DTLSConn's writes (and reads) once its
// key has protected as much data as its AEAD allows (RFC 9147 4.5.3; AES-GCM
// and AES-CCM only). DTLS 1.2 has no key update: the session is over, and a
// new one (a new handshake) carries on.
var ErrDTLSKeyLimit = errors.New("tlspsk: DTLS session reached the AEAD usage limit of its key; a new session is needed")

func newDTLSCipher(s *cipherSuite, key, iv []byte) (*dtlsCipher, error) {
	aead, err := s.newAEAD(key)
	if err != nil {
		return nil, err
	}
	k := &dtlsCipher{suite: s, aead: aead, explicit: !s.chacha}
	copy(k.iv[:], iv)
	switch {
	case s.chacha:
	case isCCM(s):
		k.limitBlocks = ccmLimitBlocks
	default:
		k.limitBlocks = gcmLimitBlocks
	}
	return k, nil
}

func isCCM(s *cipherSuite) bool {
	for _, c := range dtlsCCMSuites {
		if c == s {
			return true
		}
	}
	return false
}

func (k *dtlsCipher) forgeryLimit() uint64 {
	if isCCM(k.suite) {
		return ccmForgeryLimit
	}
	return gcmForgeryLimit
}

func (k *dtlsCipher) wipe() {
	clear(k.iv[:])
	clear(k.nonce[:])
	clear(k.ad[:])
	clear(k.adCID[:])
	k.aead = nil
}

// overhead is the room protection adds to a record's body.
func (k *dtlsCipher) overhead() int {
	n := k.aead.Overhead()
	if k.explicit {
		n += 8
	}
	if k.cid != nil {
		n += len(k.cid) + 1 // the CID in the header, the inner content type
	}
	return n
}

// makeNonce builds the nonce for epoch||seq.
func (k *dtlsCipher) makeNonce(es uint64) []byte {
	if k.explicit {
		copy(k.nonce[:4], k.iv[:4])
		binary.BigEndian.PutUint64(k.nonce[4:], es)
		return k.nonce[:]
	}
	k.nonce = k.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], es)
	for i := 0; i < 8; i++ {
		k.nonce[4+i] ^= s[i]
	}
	return k.nonce[:]
}

func (k *dtlsCipher) additionalData(es uint64, typ uint8, n int) []byte {
	binary.BigEndian.PutUint64(k.ad[:8], es)
	k.ad[8] = typ
	binary.BigEndian.PutUint16(k.ad[9:], VersionDTLS12)
	binary.BigEndian.PutUint16(k.ad[11:], uint16(n))
	return k.ad[:]
}

// additionalDataCID is RFC 9146 5: seq_num_placeholder (8 x 0xff),
// tls12_cid, cid_length, tls12_cid, version, epoch, sequence_number, cid,
// length_of_DTLSInnerPlaintext.
func (k *dtlsCipher) additionalDataCID(es uint64, n int) []byte {
	ad := k.adCID[:0]
	ad = append(ad, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, recordCID, byte(len(k.cid)), recordCID, 0xFE, 0xFD)
	ad = binary.BigEndian.AppendUint64(ad, es)
	ad = append(ad, k.cid...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(n))
	return ad
}

func (k *dtlsCipher) count(n int) error {
	if k.limitBlocks == 0 {
		return nil
	}
	k.blocks += uint64(n+15)/16 + 2
	if k.blocks > k.limitBlocks {
		return ErrDTLSKeyLimit
	}
	return nil
}

// putHeader writes a record header at b[:13] (b[:13+len(cid)] with a CID).
func putDTLSHeader(b []byte, typ uint8, version uint16, es uint64, cid []byte, n int) int {
	b[0] = typ
	binary.BigEndian.PutUint16(b[1:], version)
	binary.BigEndian.PutUint64(b[3:], es) // epoch (2) and seq (6)
	// PutUint64 wrote bytes 3..10; the length follows the seq (and CID).
	off := 11
	off += copy(b[off:], cid)
	binary.BigEndian.PutUint16(b[off:], uint16(n))
	return off + 2
}

// sealPlain appends an epoch-0 record.
func sealPlainDTLS(dst []byte, typ uint8, version uint16, es uint64, payload []byte) []byte {
	rec, out := growSlice(dst, dtlsRecordHeaderLen+len(payload))
	copy(out[dtlsRecordHeaderLen:], payload)
	putDTLSHeader(out, typ, version, es, nil, len(payload))
	return rec
}

// seal appends a protected record of type typ to dst. payload may alias
// the bytes of dst's spare capacity where the plaintext goes (after the
// header and explicit nonce), for in-place sealing.
func (k *dtlsCipher) seal(dst []byte, typ uint8, es uint64, payload []byte) ([]byte, error) {
	if err := k.count(len(payload)); err != nil {
		return dst, err
	}
	ex := 0
	if k.explicit {
		ex = 8
	}
	hdr := dtlsRecordHeaderLen + len(k.cid)
	inner := len(payload)
	if k.cid != nil {
		inner++ // the real content type
	}
	n := ex + inner + k.aead.Overhead()
	rec, out := growSlice(dst, hdr+n)
	copy(out[hdr+ex:], payload) // memmove: payload may overlap out
	outer := typ
	if k.cid != nil {
		out[hdr+ex+len(payload)] = typ
		outer = recordCID
	}
	putDTLSHeader(out, outer, VersionDTLS12, es, k.cid, n)
	if k.explicit {
		binary.BigEndian.PutUint64(out[hdr:], es)
	}
	var ad []byte
	if k.cid != nil {
		ad = k.additionalDataCID(es, inner)
	} else {
		ad = k.additionalData(es, typ, inner)
	}
	plain := out[hdr+ex : hdr+ex+inner]
	k.aead.Seal(plain[:0], k.makeNonce(es), plain, ad)
	return rec, nil
}

// open decrypts the body of a protected record in place and returns the
// real content type and the plaintext. hdrLen is the header's length
// (13, plus the CID for tls12_cid records).
func (k *dtlsCipher) open(rec []byte, hdrLen int) (uint8, []byte, error) {
	typ := rec[0]
	es := binary.BigEndian.Uint64(rec[3:11])
	body := rec[hdrLen:]
	ex := 0
	if k.explicit {
		ex = 8
	}
	if len(body) < ex+k.aead.Overhead() {
		return 0, nil, errDTLSBadRecord
	}
	ct := body[ex:]
	n := len(ct) - k.aead.Overhead()
	if n > maxPlaintext+1 {
		return 0, nil, errDTLSBadRecord
	}
	var ad []byte
	if typ == recordCID {
		ad = k.additionalDataCIDFor(rec[11:hdrLen-2], es, n)
	} else {
		ad = k.additionalData(es, typ, n)
	}
	// The explicit nonce is the sender's choice (OpenSSL's AES-GCM uses
	// a counter of its own, not epoch||seq): take it from the record.
	nonce := k.makeNonce(es)
	if k.explicit {
		copy(nonce[4:], body[:8])
	}
	plain, err := k.aead.Open(ct[:0], nonce, ct, ad)
	if err != nil {
		return 0, nil, errDTLSBadRecord
	}
	if err := k.count(n); err != nil {
		return 0, nil, err
	}
	if typ == recordCID {
		// DTLSInnerPlaintext: strip the zero padding; the last non-zero
		// byte is the real type.
		i := len(plain) - 1
		for i >= 0 && plain[i] == 0 {
			i--
		}
		if i < 0 {
			return 0, nil, errDTLSBadRecord
		}
		typ, plain = plain[i], plain[:i]
	}
	if len(plain) > maxPlaintext {
		return 0, nil, errDTLSBadRecord
	}
	return typ, plain, nil
}

// additionalDataCIDFor is additionalDataCID for a received CID.
func (k *dtlsCipher) additionalDataCIDFor(cid []byte, es uint64, n int) []byte {
	ad := k.adCID[:0]
	ad = append(ad, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, recordCID, byte(len(cid)), recordCID, 0xFE, 0xFD)
	ad = binary.BigEndian.AppendUint64(ad, es)
	ad = append(ad, cid...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(n))
	return ad
}

var errDTLSBadRecord = errors.New("tlspsk: DTLS record failed authentication")

// dtlsHeader is a parsed record header.
type dtlsHeader struct {
	typ     uint8
	version uint16
	epoch   uint16
	seq     uint64
	cid     []byte
	hdrLen  int
}

// nextDTLSRecord splits the first record off a datagram. cidLen is the
// length of the connection IDs we issued (tls12_cid records carry one of
// that length). ok is false when the rest of the datagram is not a whole
// record (it is then dropped).
func nextDTLSRecord(d []byte, cidLen int) (h dtlsHeader, rec, rest []byte, ok bool) {
	if len(d) < dtlsRecordHeaderLen {
		return h, nil, nil, false
	}
	h.typ = d[0]
	h.version = binary.BigEndian.Uint16(d[1:])
	es := binary.BigEndian.Uint64(d[3:11])
	h.epoch, h.seq = uint16(es>>48), es&dtlsMaxSeq
	h.hdrLen = dtlsRecordHeaderLen
	if h.typ == recordCID {
		if cidLen == 0 || len(d) < dtlsRecordHeaderLen+cidLen {
			return h, nil, nil, false
		}
		h.cid = d[11 : 11+cidLen]
		h.hdrLen += cidLen
	}
	n := int(binary.BigEndian.Uint16(d[h.hdrLen-2:]))
	if n > dtlsMaxRecordBody || len(d) < h.hdrLen+n || h.version>>8 != 0xFE {
		return h, nil, nil, false
	}
	return h, d[:h.hdrLen+n], d[h.hdrLen+n:], true
}

// replayWindow is the anti-replay window of RFC 6347 4.1.2.6 for one
// epoch, as a ring of 64-bit blocks (the bitmap scheme of RFC 6479): a
// record is accepted if its sequence number is above the highest seen, or
// within dtlsReplayWindow below it and not seen yet. The window is
// updated only once the record has been authenticated.
type replayWindow struct {
	any    bool
	top    uint64 // highest sequence number accepted
	blocks [replayBlocks]uint64
}

const (
	replayBlocks = 16
	// dtlsReplayWindow is the window size: the ring less one block, so the
	// block of top never overlaps the oldest one still in the window.
	dtlsReplayWindow = (replayBlocks - 1) * 64
)

// check reports whether seq may be accepted.
func (w *replayWindow) check(seq uint64) bool {
	if !w.any || seq > w.top {
		return true
	}
	if w.top-seq >= dtlsReplayWindow {
		return false
	}
	return w.blocks[(seq>>6)%replayBlocks]&(1<<(seq&63)) == 0
}

// mark records seq as received (after check and authentication).
func (w *replayWindow) mark(seq uint64) {
	if !w.any || seq > w.top {
		from := seq >> 6
		if w.any {
			from = w.top>>6 + 1
		}
		to := seq >> 6
		if to+1-from > replayBlocks {
			from = to + 1 - replayBlocks
		}
		for b := from; b <= to && w.any; b++ {
			w.blocks[b%replayBlocks] = 0
		}
		w.any, w.top = true, seq
	}
	w.blocks[(seq>>6)%replayBlocks] |= 1 << (seq & 63)
}
