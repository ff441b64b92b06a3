package tlspsk

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	_ "crypto/sha256" // registers SHA-256
	_ "crypto/sha512" // registers SHA-384
	"hash"
)

// The TLS 1.3 key schedule of RFC 8446 7.1.

func hashFunc(h crypto.Hash) func() hash.Hash { return h.New }

// expandLabel is HKDF-Expand-Label(secret, label, context, length).
func expandLabel(h crypto.Hash, secret []byte, label string, context []byte, length int) []byte {
	return newLabeler(h, secret).expand(label, context, length)
}

// labeler computes HKDF-Expand-Label (RFC 8446 7.1) for several labels
// under one secret: HKDF-Expand (RFC 5869 2.3) with one keyed HMAC, reset
// between labels, where a call of hkdf.Expand keys a new HMAC (two hash
// states and two pads) each time. Its HMAC state is secret-derived and is
// dropped with it, as hkdf.Expand's would be.
type labeler struct {
	mac  hash.Hash
	used bool
	info []byte   // HkdfLabel || counter
	t    [64]byte // T(i)
}

func newLabeler(h crypto.Hash, secret []byte) *labeler {
	return &labeler{mac: hmac.New(h.New, secret)}
}

func (l *labeler) expand(label string, context []byte, length int) []byte {
	size := l.mac.Size()
	if length < 0 || length > 255*size || len(label) > 255-6 || len(context) > 255 {
		panic("tlspsk: HKDF-Expand-Label: bad length") // only on absurd lengths
	}
	info := append(l.info[:0], byte(length>>8), byte(length), byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	info = append(info, 0)
	l.info = info
	out := make([]byte, length)
	var prev []byte
	for i, n := 1, 0; n < length; i++ {
		// T(i) = HMAC(PRK, T(i-1) | info | i)
		info[len(info)-1] = byte(i)
		if l.used {
			l.mac.Reset()
		}
		l.used = true
		l.mac.Write(prev)
		l.mac.Write(info)
		prev = l.mac.Sum(l.t[:0])
		n += copy(out[n:], prev)
	}
	wipe(l.t[:])
	return out
}

// deriveSecret is Derive-Secret(secret, label, messages) given the
// transcript hash of messages.
func deriveSecret(h crypto.Hash, secret []byte, label string, transcriptHash []byte) []byte {
	return expandLabel(h, secret, label, transcriptHash, h.Size())
}

func extract(h crypto.Hash, ikm, salt []byte) []byte {
	if ikm == nil {
		ikm = make([]byte, h.Size())
	}
	if salt == nil {
		salt = make([]byte, h.Size())
	}
	out, err := hkdf.Extract(hashFunc(h), ikm, salt)
	if err != nil {
		panic("tlspsk: HKDF-Extract: " + err.Error())
	}
	return out
}

func hashOf(h crypto.Hash, b []byte) []byte {
	d := h.New()
	d.Write(b)
	return d.Sum(nil)
}

func emptyHash(h crypto.Hash) []byte { return hashOf(h, nil) }

// earlySecret is HKDF-Extract(0, PSK).
func earlySecret(h crypto.Hash, psk []byte) []byte { return extract(h, psk, nil) }

// binderKey is Derive-Secret(early, "ext binder" | "res binder", "").
func binderKey(h crypto.Hash, early []byte, external bool) []byte {
	label := "res binder"
	if external {
		label = "ext binder"
	}
	return deriveSecret(h, early, label, emptyHash(h))
}

// finishedMAC is HMAC(finished_key, transcriptHash) with
// finished_key = HKDF-Expand-Label(baseKey, "finished", "", Hash.length).
// The PSK binder uses the same construction over the truncated ClientHello.
func finishedMAC(h crypto.Hash, baseKey, transcriptHash []byte) []byte {
	fk := expandLabel(h, baseKey, "finished", nil, h.Size())
	m := hmac.New(h.New, fk)
	m.Write(transcriptHash)
	wipe(fk)
	return m.Sum(nil)
}

// nextSecret is HKDF-Extract(Derive-Secret(prev, "derived", ""), ikm).
func nextSecret(h crypto.Hash, prev, ikm []byte) []byte {
	d := deriveSecret(h, prev, "derived", emptyHash(h))
	s := extract(h, ikm, d)
	wipe(d)
	return s
}

// trafficKeys derives the AEAD key and IV from a traffic secret (7.3).
func trafficKeys(s *cipherSuite, secret []byte) (key, iv []byte) {
	l := newLabeler(s.hash, secret)
	return l.expand("key", nil, s.keyLen), l.expand("iv", nil, 12)
}

// nextTrafficSecret is application_traffic_secret_N+1 (7.2).
func nextTrafficSecret(h crypto.Hash, secret []byte) []byte {
	return expandLabel(h, secret, "traffic upd", nil, h.Size())
}

// exportKeyingMaterial is TLS-Exporter of 7.5.
func exportKeyingMaterial(h crypto.Hash, exporterMaster []byte, label string, context []byte, length int) []byte {
	s := deriveSecret(h, exporterMaster, label, emptyHash(h))
	out := expandLabel(h, s, "exporter", hashOf(h, context), length)
	wipe(s)
	return out
}

// wipe zeroes a secret that is no longer needed.
func wipe(b []byte) { clear(b) }
