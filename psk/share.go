package psk

import (
	"encoding/hex"
	"fmt"

	"github.com/cloudflare/circl/group"
)

// Share is one participant's secret share of a Shamir group. Value is the
// 32-byte little-endian canonical encoding of the ristretto255 scalar f(Index).
type Share struct {
	GroupID     string
	Index       int
	Participant string
	Value       []byte
}

// shareFile is the JSON form of a Share.
type shareFile struct {
	Version     int    `json:"version"`
	Type        string `json:"type"`
	GroupID     string `json:"group_id"`
	Index       int    `json:"index"`
	Participant string `json:"participant"`
	Value       string `json:"value"`
}

// Wipe zeroes the share value.
func (s *Share) Wipe() {
	if s != nil {
		Wipe(s.Value)
	}
}

// String names the share without revealing its value.
func (s *Share) String() string {
	return fmt.Sprintf("share of participant %d %q in group %s", s.Index, s.Participant, shortID(s.GroupID))
}

// ParseShare parses and validates a share file's bytes (from a file, a
// secret manager or the network). It checks the encoding only; use
// VerifyShare to check the share against its group. data is not retained.
func ParseShare(data []byte) (*Share, error) {
	var f shareFile
	if err := decodeStrict(data, TypeShare, ShareVersion, &f); err != nil {
		return nil, err
	}
	defer func() { f.Value = "" }()
	if _, err := decodeHex32("group_id", f.GroupID); err != nil {
		return nil, err
	}
	if f.Index < 1 || f.Index > MaxParticipants {
		return nil, fmt.Errorf("index %d out of range 1..%d", f.Index, MaxParticipants)
	}
	if err := checkName("participant", f.Participant); err != nil {
		return nil, err
	}
	v, err := decodeHex32(fmt.Sprintf("value of participant %q", f.Participant), f.Value)
	if err != nil {
		return nil, err
	}
	if _, err := decodeScalar(v); err != nil {
		Wipe(v)
		return nil, fmt.Errorf("value of participant %q is not a canonical ristretto255 scalar", f.Participant)
	}
	return &Share{GroupID: f.GroupID, Index: f.Index, Participant: f.Participant, Value: v}, nil
}

// decodeScalar decodes a canonical 32-byte little-endian scalar.
func decodeScalar(b []byte) (group.Scalar, error) {
	s := group.Ristretto255.NewScalar()
	if err := s.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadShare reads a share file, refusing one that group or others can read.
// Errors name the file.
func LoadShare(path string) (*Share, error) {
	data, err := readFile(path, true)
	if err != nil {
		return nil, err
	}
	defer Wipe(data)
	s, err := ParseShare(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// MarshalShare renders a share in the file format. The result is secret.
func MarshalShare(s *Share) ([]byte, error) {
	if len(s.Value) != 32 {
		return nil, fmt.Errorf("share of participant %q: value must be 32 bytes", s.Participant)
	}
	return marshalFile(shareFile{
		Version: ShareVersion, Type: TypeShare, GroupID: s.GroupID,
		Index: s.Index, Participant: s.Participant, Value: hex.EncodeToString(s.Value),
	})
}

// WriteShare writes s to path with mode 0600, refusing to overwrite. The
// file is created 0600 from the start (O_EXCL), never readable by others.
func WriteShare(path string, s *Share) error {
	b, err := MarshalShare(s)
	if err != nil {
		return err
	}
	defer Wipe(b)
	return WriteFileExclusive(path, b, 0o600)
}
