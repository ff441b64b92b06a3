package dkg

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"
	"github.com/mcbn/mcbn/psk"
)

var rist = group.Ristretto255

// randomScalar draws a uniform scalar by rejection sampling, exactly as
// psk.Split does (circl's ristretto255 RandomScalar ignores its reader):
// read 32 bytes, clear the top 3 bits, accept if below the group order.
func randomScalar(rnd io.Reader) (group.Scalar, error) {
	var b [32]byte
	defer psk.Wipe(b[:])
	s := rist.NewScalar()
	for range 256 {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("reading randomness: %w", err)
		}
		b[31] &= 0x1f
		if s.UnmarshalBinary(b[:]) == nil {
			return s, nil
		}
	}
	return nil, errors.New("randomness source is broken (256 rejections in a row)")
}

// decodeScalar decodes a canonical 32-byte little-endian scalar.
func decodeScalar(b []byte) (group.Scalar, error) {
	s := rist.NewScalar()
	if len(b) != 32 {
		return nil, errors.New("scalar must be 32 bytes")
	}
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return s, nil
}

// decodeElement decodes a canonical ristretto255 encoding.
func decodeElement(b []byte) (group.Element, error) {
	e := rist.NewElement()
	if len(b) != 32 || e.UnmarshalBinary(b) != nil {
		return nil, errors.New("not a valid ristretto255 element")
	}
	again, err := e.MarshalBinary()
	if err != nil || string(again) != string(b) {
		return nil, errors.New("not a canonical ristretto255 encoding")
	}
	return e, nil
}

// wipeScalar zeroes a scalar we hold (circl's internal copies are out of reach).
func wipeScalar(s group.Scalar) {
	if s != nil {
		s.SetUint64(0)
	}
}

// evaluate returns f(x) for the polynomial with the given coefficients
// (a_0 first), by Horner's rule. The caller wipes the result.
func evaluate(coeffs []group.Scalar, x int) group.Scalar {
	xs := rist.NewScalar().SetUint64(uint64(x))
	y := rist.NewScalar()
	for i := len(coeffs) - 1; i >= 0; i-- {
		y.Mul(y, xs)
		y.Add(y, coeffs[i])
	}
	return y
}

// commit returns the Feldman commitments a_j·G as 32-byte encodings.
func commit(coeffs []group.Scalar) ([][]byte, error) {
	out := make([][]byte, len(coeffs))
	for i, c := range coeffs {
		b, err := rist.NewElement().MulGen(c).MarshalBinary()
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

// commitmentsDigest is the digest a Pub file commits to:
// SHA-256("mcbn dkg commitments v1" || u8(T) || C_0 || ... || C_{T-1}).
func commitmentsDigest(cs [][]byte) []byte {
	h := sha256.New()
	h.Write([]byte("mcbn dkg commitments v1"))
	h.Write([]byte{byte(len(cs))})
	for _, c := range cs {
		h.Write(c)
	}
	return h.Sum(nil)
}

// feldmanOK checks y·G == sum_j x^j·C_j.
func feldmanOK(cs []group.Element, x int, y group.Scalar) bool {
	xs := rist.NewScalar().SetUint64(uint64(x))
	acc := rist.Identity()
	for j := len(cs) - 1; j >= 0; j-- {
		acc.Mul(acc, xs)
		acc.Add(acc, cs[j])
	}
	return rist.NewElement().MulGen(y).IsEqual(acc)
}
