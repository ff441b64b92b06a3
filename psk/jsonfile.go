package psk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File type tags, the "type" member of every mcbn key-material file.
const (
	TypeGroup = "mcbn-group"
	TypeShare = "mcbn-share"
	TypeKey   = "mcbn-contributory-key"
)

const maxFileSize = 1 << 20

// header is what every file starts with; read first so that an unknown
// version is reported as such rather than as an unknown field.
type header struct {
	Version *int   `json:"version"`
	Type    string `json:"type"`
}

// FileType reports the "type" member of a key-material file (TypeGroup,
// TypeShare or TypeKey) without validating the rest.
func FileType(data []byte) (string, error) {
	var h header
	if err := json.Unmarshal(data, &h); err != nil {
		return "", fmt.Errorf("malformed JSON: %v", err)
	}
	switch h.Type {
	case TypeGroup, TypeShare, TypeKey:
		return h.Type, nil
	case "":
		return "", errors.New(`missing "type" (not an mcbn group, share or key file)`)
	}
	return "", fmt.Errorf("unknown type %q", h.Type)
}

// decodeStrict checks the header (type and version) and then decodes data
// into v, rejecting unknown members and trailing data.
func decodeStrict(data []byte, wantType string, wantVersion int, v any) error {
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
	if *h.Version != wantVersion {
		return fmt.Errorf("unsupported version %d (this mcbn reads version %d)", *h.Version, wantVersion)
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

// readFile reads a small regular file. With secret set it refuses a file
// that group or others may read, and says how to fix it.
func readFile(path string, secret bool) ([]byte, error) {
	data, perm, err := readFileMode(path)
	if err != nil {
		return nil, err
	}
	if secret {
		if err := checkSecretMode(path, perm); err != nil {
			Wipe(data)
			return nil, err
		}
	}
	return data, nil
}

// checkSecretMode refuses permissions that let group or others read.
func checkSecretMode(path string, perm os.FileMode) error {
	if perm&0o077 != 0 {
		return fmt.Errorf("%s: secret file is readable by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	return nil
}

// readFileMode reads a small regular file and returns its permission bits
// as seen on the open descriptor.
func readFileMode(path string) ([]byte, os.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxFileSize {
		return nil, 0, fmt.Errorf("%s: file too large (%d bytes)", path, fi.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, 0, err
	}
	if len(data) > maxFileSize {
		Wipe(data)
		return nil, 0, fmt.Errorf("%s: file too large", path)
	}
	return data, fi.Mode().Perm(), nil
}

// FileTypeOf reports the "type" of the file at path without a permission
// check and without keeping its contents (for inspect and dispatch).
func FileTypeOf(path string) (string, error) {
	data, _, err := readFileMode(path)
	if err != nil {
		return "", err
	}
	defer Wipe(data)
	t, err := FileType(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// WriteFileExclusive creates path with mode perm, failing if it exists, so
// there is never a moment where a secret file is readable by others and never
// an overwrite. On any error the file is removed. Every key-material file of
// the project (shares, DKG state, sealed shares) is written through it.
func WriteFileExclusive(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: already exists, refusing to overwrite", path)
		}
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	// The umask can only have removed bits; make the mode exact anyway.
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// marshalFile renders v as indented JSON with a final newline.
func marshalFile(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// writePublic writes a public file (a group descriptor) with mode 0644,
// refusing to overwrite.
func writePublic(path string, v any) error {
	b, err := marshalFile(v)
	if err != nil {
		return err
	}
	return WriteFileExclusive(filepath.Clean(path), b, 0o644)
}
