package dkg

import (
	"crypto/ecdh"
	"crypto/hpke"
	"errors"
)

// The HPKE suite (RFC 9180, base mode): DHKEM(X25519, HKDF-SHA256) 0x0020,
// HKDF-SHA256 0x0001, ChaCha20-Poly1305 0x0003, from the standard library.
var (
	kem  = hpke.DHKEM(ecdh.X25519())
	kdf  = hpke.HKDFSHA256()
	aead = hpke.ChaCha20Poly1305()
)

// sealedLen is enc (32) || ciphertext of a 32-byte scalar (32 + 16 tag).
const sealedLen = 32 + 32 + 16

// round1 is the round number bound into every sub-share.
const round1 = 1

// hpkeInfo binds a sub-share to the ceremony:
// "mcbn dkg v1 sub-share" || ceremony id || params.
func hpkeInfo(p Params, ceremony []byte) []byte {
	b := append([]byte("mcbn dkg v1 sub-share"), ceremony...)
	return appendParams(b, p)
}

// hpkeAAD binds it to the round, sender, recipient and the sender's
// commitments: u8(round) || u8(i) || str(sender) || u8(j) || str(recipient)
// || commitments digest.
func hpkeAAD(p Params, sender, recipient string, cdigest []byte) []byte {
	b := []byte{round1, byte(p.Index(sender))}
	b = appendStr(b, sender)
	b = append(b, byte(p.Index(recipient)))
	b = appendStr(b, recipient)
	return append(b, cdigest...)
}

// usableHPKEKey reports whether a key accepts encryption: X25519 takes any
// 32 bytes, but a low-order point makes every Diffie-Hellman fail, which
// would stop everyone's deal; refuse it when the pub file is read instead.
func usableHPKEKey(pub []byte) bool {
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return false
	}
	_, _, err = hpke.NewSender(pk, kdf, aead, nil)
	return err == nil
}

// sealShare encrypts a 32-byte sub-share to pub, returning enc || ciphertext.
func sealShare(pub []byte, info, aad, share []byte) ([]byte, error) {
	pk, err := kem.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	enc, s, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		return nil, err
	}
	ct, err := s.Seal(aad, share)
	if err != nil {
		return nil, err
	}
	return append(enc, ct...), nil
}

// openShare decrypts enc || ciphertext with the recipient's private key.
func openShare(priv []byte, info, aad, sealed []byte) ([]byte, error) {
	if len(sealed) != sealedLen {
		return nil, errors.New("sealed sub-share has the wrong length")
	}
	sk, err := kem.NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	r, err := hpke.NewRecipient(sealed[:32], sk, kdf, aead, info)
	if err != nil {
		return nil, err
	}
	return r.Open(aad, sealed[32:])
}
