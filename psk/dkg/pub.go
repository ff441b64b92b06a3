package dkg

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Pub is a participant's public ceremony file: its keys and a digest of its
// Feldman commitments, bound to the ceremony parameters. Everyone receives
// everyone's Pub before anyone deals.
type Pub struct {
	Params
	Participant string
	// HPKEKey is the X25519 public key sub-shares to this participant are
	// sealed to.
	HPKEKey []byte
	// SignKey is the Ed25519 key that signs this participant's round 1.
	SignKey []byte
	// CommitmentsDigest commits the dealer to its polynomial before it sees
	// anyone else's (see commitmentsDigest).
	CommitmentsDigest []byte
	// Source names where the Pub was read from, for messages (not encoded).
	Source string
}

type pubFile struct {
	Version           int      `json:"version"`
	Type              string   `json:"type"`
	Group             string   `json:"group"`
	Threshold         int      `json:"threshold"`
	Participants      []string `json:"participants"`
	Participant       string   `json:"participant"`
	HPKEKey           string   `json:"hpke_key"`
	SignKey           string   `json:"sign_key"`
	CommitmentsDigest string   `json:"commitments_digest"`
}

// Marshal renders the Pub file.
func (p *Pub) Marshal() ([]byte, error) {
	return marshalFile(pubFile{
		Version: Version, Type: TypePub, Group: p.Group, Threshold: p.Threshold,
		Participants: p.Participants, Participant: p.Participant,
		HPKEKey: hex.EncodeToString(p.HPKEKey), SignKey: hex.EncodeToString(p.SignKey),
		CommitmentsDigest: hex.EncodeToString(p.CommitmentsDigest),
	})
}

// ParsePub parses and validates a Pub file.
func ParsePub(data []byte) (*Pub, error) {
	var f pubFile
	if err := decodeStrict(data, TypePub, &f); err != nil {
		return nil, err
	}
	p := &Pub{Params: Params{Group: f.Group, Threshold: f.Threshold, Participants: f.Participants}, Participant: f.Participant}
	if err := p.Params.Validate(); err != nil {
		return nil, err
	}
	if p.Index(p.Participant) == 0 {
		return nil, fmt.Errorf("participant %q is not in the participant list", p.Participant)
	}
	var err error
	if p.HPKEKey, err = decodeHex("hpke_key", f.HPKEKey, 32); err != nil {
		return nil, err
	}
	if !usableHPKEKey(p.HPKEKey) {
		return nil, fmt.Errorf("hpke_key of %q is not a usable X25519 public key", p.Participant)
	}
	if p.SignKey, err = decodeHex("sign_key", f.SignKey, ed25519.PublicKeySize); err != nil {
		return nil, err
	}
	if p.CommitmentsDigest, err = decodeHex("commitments_digest", f.CommitmentsDigest, 32); err != nil {
		return nil, err
	}
	return p, nil
}

// LoadPub reads a Pub file; errors name the file.
func LoadPub(path string) (*Pub, error) {
	data, err := readFile(path, false)
	if err != nil {
		return nil, err
	}
	p, err := ParsePub(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.Source = path
	return p, nil
}

// WritePub writes the Pub file (mode 0644), refusing to overwrite.
func WritePub(path string, p *Pub) error {
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	return writeExclusive(path, b, 0o644)
}

// Fingerprint is SHA-256("mcbn dkg pub v1" || params || str(participant) ||
// hpke_key || sign_key || commitments_digest): what the ceremony id is made of.
func (p *Pub) Fingerprint() []byte {
	b := appendParams([]byte("mcbn dkg pub v1"), p.Params)
	b = appendStr(b, p.Participant)
	b = append(b, p.HPKEKey...)
	b = append(b, p.SignKey...)
	b = append(b, p.CommitmentsDigest...)
	sum := sha256.Sum256(b)
	return sum[:]
}

// ceremonyID is SHA-256("mcbn dkg ceremony v1" || params || fp_1 || ... || fp_N)
// over the fingerprints of all N Pub files in index order.
func ceremonyID(p Params, fps [][]byte) []byte {
	b := appendParams([]byte("mcbn dkg ceremony v1"), p)
	for _, fp := range fps {
		b = append(b, fp...)
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// short is the first 12 hex digits of a digest, for messages.
func short(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
