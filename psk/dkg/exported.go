package dkg

import (
	"io"

	"github.com/cloudflare/circl/group"
)

// Exports for package psk/reshare, whose resharing ceremony uses the same
// primitives as the DKG: the same HPKE suite and sub-share binding rules,
// the same scalar sampling and Feldman arithmetic over ristretto255.

// SealedLen is the length of a sealed 32-byte sub-share: enc || ciphertext.
const SealedLen = sealedLen

// SealShare encrypts a 32-byte sub-share to the X25519 public key pub with
// HPKE base mode (the suite of hpke.go), returning enc || ciphertext.
func SealShare(pub, info, aad, share []byte) ([]byte, error) {
	return sealShare(pub, info, aad, share)
}

// OpenShare decrypts what SealShare produced with the recipient's private key.
func OpenShare(priv, info, aad, sealed []byte) ([]byte, error) {
	return openShare(priv, info, aad, sealed)
}

// UsableHPKEKey reports whether pub is an X25519 key that accepts encryption.
func UsableHPKEKey(pub []byte) bool { return usableHPKEKey(pub) }

// HPKEKeyPair derives an HPKE key pair from 32 bytes of fresh randomness
// ikm, as Init does: the private key (RFC 9180 SerializePrivateKey) and
// the public key.
func HPKEKeyPair(ikm []byte) (priv, pub []byte, err error) {
	sk, err := kem.DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, err
	}
	if priv, err = sk.Bytes(); err != nil {
		return nil, nil, err
	}
	return priv, sk.PublicKey().Bytes(), nil
}

// HPKEPublicKey returns the public key of a serialized private key.
func HPKEPublicKey(priv []byte) ([]byte, error) {
	sk, err := kem.NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return sk.PublicKey().Bytes(), nil
}

// DecodeHex decodes a field of exactly n bytes of lowercase hex.
func DecodeHex(field, s string, n int) ([]byte, error) { return decodeHex(field, s, n) }

// RandomScalar draws a uniform scalar by rejection sampling from rnd.
func RandomScalar(rnd io.Reader) (group.Scalar, error) { return randomScalar(rnd) }

// DecodeScalar decodes a canonical 32-byte scalar.
func DecodeScalar(b []byte) (group.Scalar, error) { return decodeScalar(b) }

// DecodeElement decodes a canonical 32-byte ristretto255 element.
func DecodeElement(b []byte) (group.Element, error) { return decodeElement(b) }

// Evaluate returns f(x) for the coefficients a_0..a_{T-1} (caller wipes).
func Evaluate(coeffs []group.Scalar, x int) group.Scalar { return evaluate(coeffs, x) }

// Commit returns the Feldman commitments a_j·G as 32-byte encodings.
func Commit(coeffs []group.Scalar) ([][]byte, error) { return commit(coeffs) }

// FeldmanOK checks y·G == sum_j x^j·C_j.
func FeldmanOK(cs []group.Element, x int, y group.Scalar) bool { return feldmanOK(cs, x, y) }
