package dkg

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mcbn/mcbn/psk"
)

// File type tags and the format version of the three ceremony files.
const (
	TypePub    = "mcbn-dkg-pub"
	TypeState  = "mcbn-dkg-state"
	TypeRound1 = "mcbn-dkg-round1"
	Version    = 1
)

const maxFileSize = 1 << 20

type header struct {
	Version *int   `json:"version"`
	Type    string `json:"type"`
}

// decodeStrict checks type and version first (so an unknown version is
// reported as such), then decodes rejecting unknown members and trailing data.
func decodeStrict(data []byte, wantType string, v any) error {
	var h header
	if err := json.Unmarshal(data, &h); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	if h.Type != wantType {
		if h.Type == "" {
			return fmt.Errorf("missing \"type\" (want %q)", wantType)
		}
		return fmt.Errorf("type is %q, want %q", h.Type, wantType)
	}
	if h.Version == nil {
		return errors.New(`missing "version"`)
	}
	if *h.Version != Version {
		return fmt.Errorf("unsupported version %d (this mcbn reads version %d)", *h.Version, Version)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("malformed JSON: trailing data after the object")
	}
	return nil
}

// decodeHex decodes a field of exactly n bytes of lowercase hex.
func decodeHex(field, s string, n int) ([]byte, error) {
	if len(s) != 2*n {
		return nil, fmt.Errorf("%s must be %d hex characters, got %d", field, 2*n, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, fmt.Errorf("%s must be lowercase hex", field)
		}
	}
	return hex.DecodeString(s)
}

func marshalFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// readFile reads a small regular file; with secret set it refuses a file
// that group or others may access, like psk share files.
func readFile(path string, secret bool) ([]byte, error) {
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
	if secret && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: secret file is readable by group or others (mode %04o); run: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: file too large (%d bytes)", path, fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		psk.Wipe(data)
		return nil, fmt.Errorf("%s: file too large", path)
	}
	return data, nil
}

// writeExclusive is psk.WriteFileExclusive: never an overwrite, the exact
// mode from the first byte, removed on any error.
var writeExclusive = psk.WriteFileExclusive

// replaceSecret atomically replaces the secret file at path: a fresh 0600
// file beside it, then a rename, so the old state survives any failure.
func replaceSecret(path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := writeExclusive(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
