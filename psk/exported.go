package psk

import (
	"encoding/hex"
	"fmt"
)

// The helpers below let sibling packages (psk/reshare) build descriptors and
// read and write their own files with exactly the rules of this package's
// files, rather than with copies of them.

// NewShamirGroup builds and seals a Shamir descriptor from public facts only:
// participants in index order, the Feldman commitments (32-byte ristretto255
// encodings) and, for a group born of a resharing, the KeyID it inherits
// ("" for none). The id is computed and everything is validated.
func NewShamirGroup(name string, threshold int, participants []string, commitments [][]byte, inheritedKeyID string) (*Group, error) {
	g := &Group{Version: GroupVersion, Type: TypeGroup, Name: name, Scheme: SchemeShamir, Threshold: threshold, InheritedKeyID: inheritedKeyID}
	if err := checkName("group name", name); err != nil {
		return nil, err
	}
	if err := checkSize(threshold, len(participants)); err != nil {
		return nil, err
	}
	for i, p := range participants {
		g.Participants = append(g.Participants, Participant{Index: i + 1, Name: p})
	}
	for i, c := range commitments {
		if len(c) != 32 {
			return nil, fmt.Errorf("commitments[%d] must be 32 bytes", i)
		}
		g.Commitments = append(g.Commitments, hex.EncodeToString(c))
	}
	if err := g.seal(); err != nil {
		return nil, err
	}
	return g, nil
}

// DecodeStrict checks a file's "type" and "version" first (so an unknown
// version is reported as such) and then decodes it into v, rejecting
// unknown members and trailing data.
func DecodeStrict(data []byte, wantType string, wantVersion int, v any) error {
	return decodeStrict(data, wantType, wantVersion, v)
}

// ReadSmallFile reads a regular file of at most 1 MiB. With secret set it
// refuses a file that group or others may read, saying how to fix it.
func ReadSmallFile(path string, secret bool) ([]byte, error) { return readFile(path, secret) }

// MarshalFile renders v as two-space indented JSON with a final newline.
func MarshalFile(v any) ([]byte, error) { return marshalFile(v) }

// CheckName enforces the rule for group and participant names (they become
// file names); field names the value in the error.
func CheckName(field, name string) error { return checkName(field, name) }
