package kms

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/mcbn/mcbn/psk"
)

// The sealed-share file format. See docs/key-derivation.md, "Sealed shares".
const (
	TypeSealedShare = "mcbn-sealed-share"
	SealedVersion   = 1
	// AADLabel starts the additional authenticated data: a domain label and
	// the format version, so a ciphertext made for any other purpose with
	// the same key does not decrypt as a sealed share.
	AADLabel = "mcbn sealed share v1"
	// MaxSealedFileSize bounds a sealed-share file.
	MaxSealedFileSize = 64 << 10
	// maxCiphertext bounds the KMS ciphertext. A share file is about 250
	// bytes; Cloud KMS adds well under 100 bytes.
	maxCiphertext = 8 << 10
)

var (
	// nameRE is psk's participant-name rule (names become file names).
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// kmsKeyRE is a Cloud KMS crypto key resource name. Resource ids are
	// 1-63 of letters, digits, _ and -; locations also hold lowercase
	// letters, digits and -.
	kmsKeyRE        = regexp.MustCompile(`^projects/[a-z0-9][a-z0-9.:-]{0,62}/locations/[a-z0-9-]{1,63}/keyRings/[A-Za-z0-9_-]{1,63}/cryptoKeys/[A-Za-z0-9_-]{1,63}$`)
	kmsKeyVersionRE = regexp.MustCompile(`^(projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+)/cryptoKeyVersions/[1-9][0-9]{0,18}$`)
)

// SealedShare is one participant's share encrypted with its Cloud KMS key.
// It is public: only the approved workload, through the participant's WIF
// pool, can have KMS decrypt it.
type SealedShare struct {
	Version     int    `json:"version"`
	Type        string `json:"type"`
	GroupID     string `json:"group_id"`
	Index       int    `json:"index"`
	Participant string `json:"participant"`
	// KMSKey is the crypto key that sealed the share
	// (projects/P/locations/L/keyRings/R/cryptoKeys/K).
	KMSKey string `json:"kms_key"`
	// KeyVersion is the key version KMS reported (informational: Decrypt
	// takes the crypto key and finds the version in the ciphertext).
	KeyVersion string `json:"kms_key_version,omitempty"`
	// Ciphertext is the KMS ciphertext of the share file, standard base64.
	Ciphertext string `json:"ciphertext"`

	ct []byte // decoded Ciphertext
}

// CiphertextBytes returns the decoded KMS ciphertext.
func (s *SealedShare) CiphertextBytes() []byte { return append([]byte(nil), s.ct...) }

// String names the sealed share without its ciphertext.
func (s *SealedShare) String() string {
	id := s.GroupID
	if len(id) > 12 {
		id = id[:12]
	}
	return fmt.Sprintf("sealed share of participant %d %q in group %s under %s", s.Index, s.Participant, id, s.KMSKey)
}

// AAD returns the additional authenticated data a share of participant
// (index) in group groupID (64 hex digits) is sealed with:
//
//	"mcbn sealed share v1" || 0x00 || group id (32 bytes) || index (1 byte)
//	|| len(participant) (1 byte) || participant
//
// The label has a fixed length and the name is length-prefixed, so the
// encoding is unambiguous.
func AAD(groupID string, index int, participant string) ([]byte, error) {
	id, err := decodeGroupID(groupID)
	if err != nil {
		return nil, err
	}
	if index < 1 || index > 255 {
		return nil, fmt.Errorf("index %d out of range 1..255", index)
	}
	if !nameRE.MatchString(participant) {
		return nil, fmt.Errorf("participant name %s is not a valid name", clip(participant, 64))
	}
	b := make([]byte, 0, len(AADLabel)+1+32+2+len(participant))
	b = append(b, AADLabel...)
	b = append(b, 0)
	b = append(b, id...)
	b = append(b, byte(index), byte(len(participant)))
	b = append(b, participant...)
	return b, nil
}

func decodeGroupID(s string) ([]byte, error) {
	if len(s) != 64 {
		return nil, fmt.Errorf("group_id must be 64 lowercase hex digits, got %d characters", len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, errors.New("group_id must be lowercase hex")
		}
	}
	return hex.DecodeString(s)
}

// ValidKMSKey reports whether name is a Cloud KMS crypto key resource name.
func ValidKMSKey(name string) bool { return kmsKeyRE.MatchString(name) }

// validate checks every field and decodes the ciphertext.
func (s *SealedShare) validate() error {
	if s.Version != SealedVersion {
		return fmt.Errorf("unsupported version %d (this mcbn reads version %d)", s.Version, SealedVersion)
	}
	if s.Type != TypeSealedShare {
		return fmt.Errorf("type is %s, want %q", clip(s.Type, 40), TypeSealedShare)
	}
	if _, err := AAD(s.GroupID, s.Index, s.Participant); err != nil {
		return err
	}
	if !kmsKeyRE.MatchString(s.KMSKey) {
		return fmt.Errorf("kms_key %s is not projects/P/locations/L/keyRings/R/cryptoKeys/K", clip(s.KMSKey, 200))
	}
	if s.KeyVersion != "" {
		m := kmsKeyVersionRE.FindStringSubmatch(s.KeyVersion)
		if m == nil || m[1] != s.KMSKey {
			return fmt.Errorf("kms_key_version %s is not a version of kms_key", clip(s.KeyVersion, 200))
		}
	}
	if s.Ciphertext == "" {
		return errors.New(`missing "ciphertext"`)
	}
	if base64.StdEncoding.DecodedLen(len(s.Ciphertext)) > maxCiphertext {
		return fmt.Errorf("ciphertext longer than %d bytes", maxCiphertext)
	}
	ct, err := base64.StdEncoding.Strict().DecodeString(s.Ciphertext)
	if err != nil {
		return errors.New("ciphertext is not standard base64")
	}
	s.ct = ct
	return nil
}

// ParseSealed parses and validates a sealed-share file: the type and
// version first (so an unknown version is reported as such), then every
// field, refusing unknown members and trailing data.
func ParseSealed(data []byte) (*SealedShare, error) {
	if len(data) > MaxSealedFileSize {
		return nil, fmt.Errorf("sealed share is %d bytes, at most %d allowed", len(data), MaxSealedFileSize)
	}
	var h struct {
		Version *int   `json:"version"`
		Type    string `json:"type"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return nil, fmt.Errorf("malformed JSON: %s", jsonError(err))
	}
	switch {
	case h.Type == "":
		return nil, fmt.Errorf("missing \"type\" (want %q)", TypeSealedShare)
	case h.Type != TypeSealedShare:
		return nil, fmt.Errorf("type is %s, want %q", clip(h.Type, 40), TypeSealedShare)
	case h.Version == nil:
		return nil, errors.New(`missing "version"`)
	case *h.Version != SealedVersion:
		return nil, fmt.Errorf("unsupported version %d (this mcbn reads version %d)", *h.Version, SealedVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	s := new(SealedShare)
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("malformed JSON: %s", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("malformed JSON: trailing data after the object")
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// jsonError describes a decoding error in one bounded line.
func jsonError(err error) string { return clip(err.Error(), 120) }

// Marshal renders the sealed share as its file format (indented JSON and a
// final newline).
func (s *SealedShare) Marshal() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// LoadSealed reads and parses a sealed-share file; errors name the file.
// The file is public, so its mode is not checked.
func LoadSealed(path string) (*SealedShare, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxSealedFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	s, err := ParseSealed(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// WriteSealed writes s to path with mode 0644 (the file is not secret),
// refusing to overwrite an existing file.
func WriteSealed(path string, s *SealedShare) error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	return psk.WriteFileExclusive(path, b, 0o644)
}
