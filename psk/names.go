package psk

import (
	"encoding/hex"
	"fmt"
	"regexp"
)

// Schemes a group descriptor can name.
const (
	SchemeShamir       = "shamir-feldman-ristretto255"
	SchemeContributory = "contributory-sha256"
)

// Format versions this package reads and writes.
const (
	GroupVersion = 1
	ShareVersion = 1
	KeyVersion   = 1
)

// Limits on group size.
const (
	MinThreshold    = 2
	MaxParticipants = 255
)

// Names of groups and participants become file names, so keep them tame.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkName(field, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s %q is not a valid name (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)", field, name)
	}
	return nil
}

// decodeHex32 decodes a field that must be exactly 32 bytes of lowercase hex.
func decodeHex32(field, s string) ([]byte, error) {
	if len(s) != 64 {
		return nil, fmt.Errorf("%s must be 64 hex characters, got %d", field, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, fmt.Errorf("%s must be lowercase hex", field)
		}
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s must be lowercase hex", field)
	}
	return b, nil
}

// shortID is the first 12 hex digits of a group id, for messages.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
