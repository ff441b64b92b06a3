package tlspsk

import (
	"crypto"
	"crypto/hmac"
)

// The TLS 1.2 key derivation: the PRF of RFC 5246 5 with the suite's hash,
// the master secret (6.3 / 8.1, or RFC 7627 4 with the session hash), the
// key block (6.3), Finished (7.4.9), the PSK premaster secrets of RFC 4279
// 2 and RFC 5489 2, and the exporter of RFC 5705 4.

const (
	masterSecretLen = 48
	verifyDataLen   = 12
)

// prf12 is PRF(secret, label, seed) = P_hash(secret, label || seed).
func prf12(h crypto.Hash, secret []byte, label string, seed []byte, length int) []byte {
	ls := make([]byte, 0, len(label)+len(seed))
	ls = append(append(ls, label...), seed...)
	out := make([]byte, 0, length+h.Size())
	mac := hmac.New(h.New, secret)
	mac.Write(ls)
	a := mac.Sum(nil) // A(1)
	for len(out) < length {
		mac.Reset()
		mac.Write(a)
		mac.Write(ls)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	wipe(out[length:cap(out)])
	return out[:length]
}

// masterSecret12 derives the master secret; with EMS the seed is the
// session hash (the transcript hash through ClientKeyExchange).
func masterSecret12(h crypto.Hash, premaster, clientRandom, serverRandom, sessionHash []byte, ems bool) []byte {
	if ems {
		return prf12(h, premaster, "extended master secret", sessionHash, masterSecretLen)
	}
	seed := append(append([]byte(nil), clientRandom...), serverRandom...)
	return prf12(h, premaster, "master secret", seed, masterSecretLen)
}

// ivLen12 is the implicit part of the nonce: the 4-byte salt of AES-GCM
// (RFC 5288 3) or the 12-byte IV of ChaCha20-Poly1305 (RFC 7905 2).
func ivLen12(s *cipherSuite) int {
	if s.chacha {
		return 12
	}
	return 4
}

// keys12 splits the key block into client and server write keys and IVs
// (AEAD suites have no MAC keys).
func keys12(s *cipherSuite, master, clientRandom, serverRandom []byte) (cKey, sKey, cIV, sIV []byte) {
	seed := append(append([]byte(nil), serverRandom...), clientRandom...)
	n := ivLen12(s)
	kb := prf12(s.hash, master, "key expansion", seed, 2*s.keyLen+2*n)
	cKey, kb = kb[:s.keyLen:s.keyLen], kb[s.keyLen:]
	sKey, kb = kb[:s.keyLen:s.keyLen], kb[s.keyLen:]
	cIV, sIV = kb[:n:n], kb[n:]
	return
}

// finished12 is verify_data = PRF(master, label, Hash(handshake_messages)).
func finished12(h crypto.Hash, master []byte, client bool, transcriptHash []byte) []byte {
	label := "server finished"
	if client {
		label = "client finished"
	}
	return prf12(h, master, label, transcriptHash, verifyDataLen)
}

// pskPremaster builds the premaster secret: other_secret (the ECDHE
// output, or N zero bytes for plain PSK with N the PSK length) and the
// PSK, each with a 2-byte length.
func pskPremaster(other, psk []byte) []byte {
	if other == nil {
		other = make([]byte, len(psk))
	}
	out := make([]byte, 0, 4+len(other)+len(psk))
	out = append(out, byte(len(other)>>8), byte(len(other)))
	out = append(out, other...)
	out = append(out, byte(len(psk)>>8), byte(len(psk)))
	return append(out, psk...)
}

// export12 is the RFC 5705 exporter; a nil context is "no context", which
// differs from an empty one.
func export12(h crypto.Hash, master, clientRandom, serverRandom []byte, label string, context []byte, length int) []byte {
	seed := append(append([]byte(nil), clientRandom...), serverRandom...)
	if context != nil {
		seed = append(seed, byte(len(context)>>8), byte(len(context)))
		seed = append(seed, context...)
	}
	return prf12(h, master, label, seed, length)
}
