package shareholder

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// consentLineRE matches a top-level consent line, keeping a trailing comment.
var consentLineRE = regexp.MustCompile(`(?m)^consent:[ \t]*("?)(granted|revoked)("?)([ \t]*#.*)?$`)

// SetConsent sets the top-level consent value of the config file at path
// to value (granted or revoked), editing only that line so comments and
// layout stay as they were, and replacing the file atomically with the same
// mode. The edited file must still be a valid config. It reports whether the
// value changed. A running daemon notices within its reload_interval (it
// polls the file) or at once on SIGHUP.
func SetConsent(path, value string) (bool, error) {
	if value != ConsentGranted && value != ConsentRevoked {
		return false, fmt.Errorf("consent %q, want granted or revoked", value)
	}
	data, err := readSmallFile(path, maxConfigSize)
	if err != nil {
		return false, err
	}
	old, err := ParseConfig(data, filepath.Dir(path))
	if err != nil {
		return false, fmt.Errorf("config %s: %w", path, err)
	}
	if old.Consent == value {
		return false, nil
	}
	edited, err := editConsent(data, value)
	if err != nil {
		return false, fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := ParseConfig(edited, filepath.Dir(path)); err != nil {
		return false, fmt.Errorf("config %s: the edited file would not load: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if err := replaceFile(path, edited, fi.Mode().Perm()); err != nil {
		return false, err
	}
	return true, nil
}

// editConsent replaces the value of the one top-level consent line of a
// config text, keeping everything else byte for byte.
func editConsent(data []byte, value string) ([]byte, error) {
	locs := consentLineRE.FindAllSubmatchIndex(data, -1)
	if len(locs) != 1 {
		return nil, fmt.Errorf("expected exactly one top-level line `consent: granted|revoked`, found %d; edit it by hand", len(locs))
	}
	l := locs[0]
	var out bytes.Buffer
	out.Write(data[:l[4]])
	out.WriteString(value)
	out.Write(data[l[5]:])
	return out.Bytes(), nil
}

// replaceFile writes data to a temporary file beside path and renames it
// over path, so a reader sees the old or the new file, never half of one.
func replaceFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	return nil
}
