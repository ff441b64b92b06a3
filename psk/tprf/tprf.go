// Package tprf is mcbn's threshold verifiable PRF on ristretto255 (the
// 2HashDH construction evaluated by a threshold of participants): for an
// input e = (group KeyID, PSK identity, epoch), participant i holding the
// Shamir share x_i answers Y_i = x_i·H(e) with a Chaum-Pedersen proof that
// log_G X_i = log_H(e) Y_i, where X_i = x_i·G is its public verification key
// computed from the group's Feldman commitments. T valid partials combine
// with Lagrange coefficients at 0 into Y = x·H(e), and the epoch's PSK is
// HKDF-SHA256 over Y and e. Whoever combines never sees x or any x_i.
//
// The byte-level formats are in docs/key-derivation.md ("Threshold PRF").
package tprf

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/cloudflare/circl/group"

	"github.com/mcbn/mcbn/psk"
)

// Domain separation tags. Every hash in the construction has its own, so
// no output of one can be replayed as the input of another.
const (
	// Version names this construction in every tag.
	Version = "mcbn-tprf-v1"
	// DSTHashToGroup is hash_to_group's DST for H(e).
	DSTHashToGroup = Version + " hash-to-group"
	// DSTChallenge is hash_to_scalar's DST for the proof challenge.
	DSTChallenge = Version + " dleq-challenge"
	// DSTNonce is hash_to_scalar's DST for the prover's hedged nonce.
	DSTNonce = Version + " dleq-nonce"
	// inputLabel starts the encoded input.
	inputLabel = Version + " input"
	// pskSaltLabel and pskInfoLabel start HKDF's salt and info.
	pskSaltLabel = "mcbn tprf salt v1"
	pskInfoLabel = "mcbn tprf psk v1"
)

var rist = group.Ristretto255

// Input is what the PRF is evaluated on: the group's KeyID (psk.Group.KeyID,
// 64 hex digits), the PSK identity and the epoch.
type Input struct {
	KeyID    string
	Identity string
	Epoch    uint64
}

// String names the input without anything secret (it holds nothing secret).
func (in Input) String() string {
	id := in.KeyID
	if len(id) > 12 {
		id = id[:12]
	}
	return fmt.Sprintf("group %s identity %q epoch %d", id, in.Identity, in.Epoch)
}

// check validates the input's fields and returns the decoded KeyID.
func (in Input) check() ([]byte, error) {
	if len(in.KeyID) != 64 {
		return nil, fmt.Errorf("key id is %d characters, want 64 hex digits", len(in.KeyID))
	}
	id, err := hex.DecodeString(in.KeyID)
	if err != nil || hex.EncodeToString(id) != in.KeyID {
		return nil, errors.New("key id is not 64 lowercase hex digits")
	}
	if len(in.Identity) == 0 || len(in.Identity) > 0xffff {
		return nil, fmt.Errorf("psk identity must be 1..65535 bytes, got %d", len(in.Identity))
	}
	return id, nil
}

// Encode returns the input's canonical bytes, the message hashed to the
// group:
//
//	"mcbn-tprf-v1 input" || KeyID (32 bytes) || epoch (8, big-endian)
//	|| len(identity) (2, big-endian) || identity
func (in Input) Encode() ([]byte, error) {
	id, err := in.check()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(inputLabel)+32+8+2+len(in.Identity))
	b = append(b, inputLabel...)
	b = append(b, id...)
	b = binary.BigEndian.AppendUint64(b, in.Epoch)
	b = binary.BigEndian.AppendUint16(b, uint16(len(in.Identity)))
	return append(b, in.Identity...), nil
}

// Point returns H(e): the input hashed to ristretto255 (RFC 9380
// hash_to_group for ristretto255, expand_message_xmd with SHA-512) with
// DSTHashToGroup.
func (in Input) Point() (group.Element, error) {
	msg, err := in.Encode()
	if err != nil {
		return nil, err
	}
	return rist.HashToElement(msg, []byte(DSTHashToGroup)), nil
}

// Group is a psk group prepared for evaluation and verification: its
// Feldman commitments decoded once, the participants' verification keys
// X_i computed on first use. Safe for concurrent use.
type Group struct {
	g       *psk.Group
	commits []group.Element

	mu   sync.Mutex
	keys map[int]group.Element
}

// NewGroup prepares g, which must be a Shamir group with Feldman
// commitments (a split or DKG group; contributory groups have no shares).
func NewGroup(g *psk.Group) (*Group, error) {
	if g == nil {
		return nil, errors.New("no group")
	}
	if g.Scheme != psk.SchemeShamir {
		return nil, fmt.Errorf("group %q is %s; the threshold PRF needs a %s group (its Feldman commitments give the verification keys)", g.Name, g.Scheme, psk.SchemeShamir)
	}
	if len(g.Commitments) != g.Threshold {
		return nil, fmt.Errorf("group %q has %d commitments for threshold %d", g.Name, len(g.Commitments), g.Threshold)
	}
	tg := &Group{g: g, keys: map[int]group.Element{}}
	for i, c := range g.Commitments {
		e, err := decodeElement(c)
		if err != nil {
			return nil, fmt.Errorf("group %q commitments[%d]: %v", g.Name, i, err)
		}
		tg.commits = append(tg.commits, e)
	}
	return tg, nil
}

// PSK returns the underlying descriptor.
func (tg *Group) PSK() *psk.Group { return tg.g }

// VerificationKey returns X_i = Σ_j C_j·i^j, participant index's public key
// (x_i·G for its share x_i), from the Feldman commitments C_j.
func (tg *Group) VerificationKey(index int) (group.Element, error) {
	if tg.g.Participant(index) == nil {
		return nil, fmt.Errorf("index %d is not a participant of group %q (1..%d)", index, tg.g.Name, tg.g.N())
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if x, ok := tg.keys[index]; ok {
		return x, nil
	}
	// Horner: X = C_{T-1}; X = X·i + C_j for j = T-2 .. 0.
	i := rist.NewScalar().SetUint64(uint64(index))
	x := rist.NewElement().Set(tg.commits[len(tg.commits)-1])
	for j := len(tg.commits) - 2; j >= 0; j-- {
		x.Mul(x, i)
		x.Add(x, tg.commits[j])
	}
	tg.keys[index] = x
	return x, nil
}

// Input returns the PRF input of this group for identity and epoch.
func (tg *Group) Input(identity string, epoch uint64) Input {
	return Input{KeyID: tg.g.KeyID(), Identity: identity, Epoch: epoch}
}

// DerivePSK turns the combined output Y = x·H(e) into the epoch's TLS PSK
// with HKDF-SHA256 (the outer hash of 2HashDH: the PSK depends on e and Y):
//
//	ikm  = Y (32-byte canonical ristretto255 encoding)
//	salt = "mcbn tprf salt v1" || KeyID (32 bytes)
//	info = "mcbn tprf psk v1" || epoch (8, big-endian)
//	       || len(identity) (2, big-endian) || identity || length (2, big-endian)
//
// length 0 means psk.DefaultPSKLength; otherwise 16..64.
func DerivePSK(y group.Element, in Input, length int) ([]byte, error) {
	if length == 0 {
		length = psk.DefaultPSKLength
	}
	if length < 16 || length > 64 {
		return nil, fmt.Errorf("psk length %d out of range 16..64", length)
	}
	id, err := in.check()
	if err != nil {
		return nil, err
	}
	if y == nil || y.IsIdentity() {
		return nil, errors.New("the combined output is the identity element")
	}
	ikm, err := y.MarshalBinary()
	if err != nil {
		return nil, err
	}
	defer psk.Wipe(ikm)
	salt := append([]byte(pskSaltLabel), id...)
	info := []byte(pskInfoLabel)
	info = binary.BigEndian.AppendUint64(info, in.Epoch)
	info = binary.BigEndian.AppendUint16(info, uint16(len(in.Identity)))
	info = append(info, in.Identity...)
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	return hkdf.Key(sha256.New, ikm, salt, string(info), length)
}

// ReferencePSK computes the PSK directly from the group secret x (32-byte
// canonical scalar, as psk.Combine returns it): x·H(e), then DerivePSK.
// For tests and for a TEE that holds the secret; the threshold path never
// calls it.
func ReferencePSK(secret []byte, in Input, length int) ([]byte, error) {
	x := rist.NewScalar()
	if err := x.UnmarshalBinary(secret); err != nil {
		return nil, errors.New("group secret is not a canonical scalar")
	}
	defer x.SetUint64(0)
	h, err := in.Point()
	if err != nil {
		return nil, err
	}
	return DerivePSK(rist.NewElement().Mul(h, x), in, length)
}

// decodeElement decodes a canonical ristretto255 element from hex.
func decodeElement(s string) (group.Element, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, errors.New("not 32 bytes of hex")
	}
	return elementFromBytes(b)
}

// elementFromBytes decodes a canonical 32-byte ristretto255 encoding.
func elementFromBytes(b []byte) (group.Element, error) {
	e := rist.NewElement()
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, errors.New("not a valid ristretto255 element")
	}
	if again, err := e.MarshalBinary(); err != nil || string(again) != string(b) {
		return nil, errors.New("not a canonical ristretto255 encoding")
	}
	return e, nil
}

// scalarFromBytes decodes a canonical 32-byte little-endian scalar.
func scalarFromBytes(b []byte) (group.Scalar, error) {
	s := rist.NewScalar()
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, errors.New("not a canonical ristretto255 scalar")
	}
	return s, nil
}
