package psk

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// DefaultPSKLength is the PSK length in bytes when none is asked for.
const DefaultPSKLength = 32

// DefaultIdentity is OpenSSL's default PSK identity.
const DefaultIdentity = "Client_identity"

// DerivePSK turns a reconstructed 32-byte group secret into a TLS PSK with
// HKDF-SHA256: salt binds the group id, info binds the PSK identity, epoch
// and length, so each (group, identity, epoch) has an independent key.
// length 0 means DefaultPSKLength; otherwise 16..64. See
// docs/key-derivation.md for the exact bytes.
func DerivePSK(secret []byte, groupID, identity string, epoch uint64, length int) ([]byte, error) {
	if length == 0 {
		length = DefaultPSKLength
	}
	if length < 16 || length > 64 {
		return nil, fmt.Errorf("psk length %d out of range 16..64", length)
	}
	if len(secret) != 32 {
		return nil, fmt.Errorf("group secret must be 32 bytes, got %d", len(secret))
	}
	id, err := decodeHex32("group id", groupID)
	if err != nil {
		return nil, err
	}
	if len(identity) == 0 || len(identity) > 0xffff {
		return nil, fmt.Errorf("psk identity must be 1..65535 bytes, got %d", len(identity))
	}
	salt := append([]byte("mcbn psk salt v1"), id...)
	info := []byte("mcbn psk v1")
	info = binary.BigEndian.AppendUint64(info, epoch)
	info = binary.BigEndian.AppendUint16(info, uint16(len(identity)))
	info = append(info, identity...)
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	return hkdf.Key(sha256.New, secret, salt, string(info), length)
}

// LegacyConcat reproduces the original demo's derivation: the lowercase hex
// SHA-256 of the participants' keys written as hex strings and concatenated
// in the order given, exactly as typed (case included). Each key must be
// non-empty hex. Kept only so users of the demo can migrate.
func LegacyConcat(keys ...string) (string, error) {
	if len(keys) == 0 {
		return "", errors.New("need at least one key")
	}
	h := sha256.New()
	for i, k := range keys {
		if k == "" {
			return "", fmt.Errorf("key %d is empty", i+1)
		}
		if _, err := hex.DecodeString(k); err != nil {
			return "", fmt.Errorf("key %d is not hex (an even number of 0-9 a-f characters)", i+1)
		}
		h.Write([]byte(k))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
