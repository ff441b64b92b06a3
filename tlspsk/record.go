package tlspsk

import (
	"crypto/cipher"
	"encoding/binary"
)

// Record layer (RFC 8446 5). TLS 1.3 protects records with a per-record
// nonce of static IV XOR sequence number and the record header as
// additional data. TLS 1.2 AEAD records (RFC 5288, 7905) differ in nonce
// (explicit for AES-GCM) and additional data; halfConn.version selects the
// construction in seal and open (TLS 1.2: record12.go).

// Content types.
const (
	recordChangeCipherSpec uint8 = 20
	recordAlert            uint8 = 21
	recordHandshake        uint8 = 22
	recordApplicationData  uint8 = 23
)

const (
	recordHeaderLen   = 5
	maxPlaintext      = 1 << 14
	maxCiphertext13   = maxPlaintext + 256
	maxRecordLen      = recordHeaderLen + maxCiphertext13
	maxEmptyRecords   = 100     // consecutive empty records tolerated
	maxEarlyDataSkip  = 1 << 16 // bytes of refused 0-RTT data we skip
	maxHandshakeMsg   = 1 << 16 // largest handshake message we accept
	maxCCSInHandshake = 2       // dummy change_cipher_spec records tolerated
	maxWarningAlerts  = 100     // TLS 1.2 warning alerts tolerated per connection
	aeadTagLen        = 16
	explicitNonceLen  = 8 // TLS 1.2 AES-GCM (RFC 5288 3)
)

// halfConn is one direction of the record layer.
type halfConn struct {
	version uint16 // record protection version; 0 before keys are set
	suite   *cipherSuite
	aead    cipher.AEAD
	iv      [12]byte
	nonce   [12]byte
	ad      [13]byte // TLS 1.2 additional data
	seq     uint64
	secret  []byte // current traffic secret (TLS 1.3), for KeyUpdate
	limit   uint64 // records before we update our sending key (1.3) or stop (1.2)
	// explicit is set for TLS 1.2 AES-GCM: an 8-byte explicit nonce
	// (our sequence number) precedes the ciphertext.
	explicit bool
}

// setKeys13 installs TLS 1.3 keys derived from a traffic secret.
func (hc *halfConn) setKeys13(s *cipherSuite, secret []byte) error {
	key, iv := trafficKeys(s, secret)
	aead, err := s.newAEAD(key)
	wipe(key)
	if err != nil {
		return err
	}
	if hc.secret != nil {
		wipe(hc.secret)
	}
	hc.version, hc.suite, hc.aead, hc.seq, hc.secret = VersionTLS13, s, aead, 0, secret
	copy(hc.iv[:], iv)
	wipe(iv)
	if hc.limit == 0 {
		hc.limit = keyUpdateAfter
	}
	return nil
}

func (hc *halfConn) encrypted() bool { return hc.aead != nil }

// wipe zeroes the traffic secret, IV and nonce and drops the AEAD (whose
// expanded key Go gives no way to clear; it goes to the garbage
// collector). The halfConn then no longer protects records: callers set a
// sticky error first or at the same time, so nothing reads or writes
// through it.
func (hc *halfConn) wipe() {
	wipe(hc.secret)
	hc.secret = nil
	clear(hc.iv[:])
	clear(hc.nonce[:])
	clear(hc.ad[:])
	hc.aead = nil
}

func (hc *halfConn) makeNonce13() []byte {
	hc.nonce = hc.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], hc.seq)
	for i := 0; i < 8; i++ {
		hc.nonce[4+i] ^= s[i]
	}
	return hc.nonce[:]
}

// seal builds one record in buf (which must have room for the header,
// payload, content type and tag) from payload and returns it. For TLS 1.3
// the payload is sealed as TLSInnerPlaintext with no padding. payload may
// alias buf[recordHeaderLen:].
func (hc *halfConn) seal(buf []byte, typ uint8, payload []byte) []byte {
	if hc.aead == nil {
		rec := buf[:recordHeaderLen+len(payload)]
		copy(rec[recordHeaderLen:], payload)
		rec[0], rec[1], rec[2] = typ, 0x03, 0x03
		binary.BigEndian.PutUint16(rec[3:], uint16(len(payload)))
		return rec
	}
	if hc.version == VersionTLS12 {
		return hc.seal12(buf, typ, payload)
	}
	// TLS 1.3: outer type application_data, version 0x0303.
	n := len(payload) + 1 + hc.aead.Overhead()
	rec := buf[:recordHeaderLen+n]
	copy(rec[recordHeaderLen:], payload)
	rec[recordHeaderLen+len(payload)] = typ
	rec[0], rec[1], rec[2] = recordApplicationData, 0x03, 0x03
	binary.BigEndian.PutUint16(rec[3:], uint16(n))
	inner := rec[recordHeaderLen : recordHeaderLen+len(payload)+1]
	hc.aead.Seal(inner[:0], hc.makeNonce13(), inner, rec[:recordHeaderLen])
	hc.seq++
	return rec
}

// open decrypts a full record (header included) in place and returns the
// content type and plaintext. An error is an *AlertError.
func (hc *halfConn) open(rec []byte) (uint8, []byte, error) {
	typ := rec[0]
	body := rec[recordHeaderLen:]
	if hc.aead == nil {
		if len(body) > maxPlaintext {
			return 0, nil, alertf(alertRecordOverflow, "plaintext record too long")
		}
		return typ, body, nil
	}
	if hc.version == VersionTLS12 {
		return hc.open12(rec)
	}
	if typ != recordApplicationData {
		return 0, nil, alertf(alertUnexpectedMessage, "unprotected record after keys were set")
	}
	if len(body) < hc.aead.Overhead()+1 {
		return 0, nil, alertf(alertBadRecordMAC, "record too short")
	}
	plain, err := hc.aead.Open(body[:0], hc.makeNonce13(), body, rec[:recordHeaderLen])
	if err != nil {
		return 0, nil, alertf(alertBadRecordMAC, "record authentication failed")
	}
	hc.seq++
	// Padding does not lift the size limit: the whole TLSInnerPlaintext
	// (content, type, padding) is at most 2^14 + 1 bytes (RFC 8446 5.4).
	if len(plain) > maxPlaintext+1 {
		return 0, nil, alertf(alertRecordOverflow, "inner plaintext too long")
	}
	// Strip zero padding; the last non-zero byte is the real type.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, alertf(alertUnexpectedMessage, "record without content type")
	}
	if i > maxPlaintext {
		return 0, nil, alertf(alertRecordOverflow, "inner plaintext too long")
	}
	return plain[i], plain[:i], nil
}
