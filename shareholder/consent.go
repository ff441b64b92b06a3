package shareholder

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The consent line.
//
// `consent:` is read two ways: with the rest of the YAML, and on its own by
// ParseConsentLine, a minimal parser of the one top-level line
//
//	consent: granted|revoked   # optional comment
//
// ParseConfig requires both to agree, so a config that loads has exactly one
// such line. The line alone is what `mcbn shareholder consent revoke` edits
// (a revoke must work even when some other part of the file is broken) and
// what the daemon reports as the consent of a file that does not load. The
// daemon never releases under a file that does not load, whatever the line
// says (see Reload): the line parser can only make it refuse, never release.

// consentKey starts a top-level consent line (column 0, no quotes).
const consentKey = "consent:"

// consentLine is one top-level `consent:` line of a config text.
type consentLine struct {
	valStart, valEnd int    // the value's bytes (quotes included)
	value            string // unquoted value
}

// findConsentLines returns every line starting with "consent:" at column 0.
func findConsentLines(data []byte) []consentLine {
	var out []consentLine
	start := 0
	if bytes.HasPrefix(data, []byte("\ufeff")) {
		start = 3
	}
	for start < len(data) {
		end := bytes.IndexByte(data[start:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += start
		}
		line := data[start:end]
		if bytes.HasPrefix(line, []byte(consentKey)) {
			i := start + len(consentKey)
			for i < end && (data[i] == ' ' || data[i] == '\t') {
				i++
			}
			j := i
			// The value ends at a comment (" #") or the end of the line.
			for j < end && !(data[j] == '#' && j > start && (data[j-1] == ' ' || data[j-1] == '\t')) {
				j++
			}
			for j > i && (data[j-1] == ' ' || data[j-1] == '\t' || data[j-1] == '\r') {
				j--
			}
			v := string(data[i:j])
			if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
				v = v[1 : len(v)-1]
			}
			out = append(out, consentLine{valStart: i, valEnd: j, value: v})
		}
		start = end + 1
	}
	return out
}

// ParseConsentLine returns the value of the one top-level line
// `consent: granted` or `consent: revoked` of a config text, read on its
// own, without parsing the rest of the file.
func ParseConsentLine(data []byte) (string, error) {
	lines := findConsentLines(data)
	switch len(lines) {
	case 0:
		return "", errors.New("no top-level line `consent: granted` or `consent: revoked`")
	case 1:
	default:
		return "", fmt.Errorf("%d top-level consent lines, want exactly one", len(lines))
	}
	switch v := lines[0].value; v {
	case ConsentGranted, ConsentRevoked:
		return v, nil
	default:
		return "", fmt.Errorf("the consent line's value is %q, want granted or revoked", clipField(v, 32))
	}
}

// SetConsent sets the top-level consent value of the config file at path
// to value (granted or revoked), editing only the consent line so comments
// and layout stay as they were, and replacing the file atomically with the
// same mode. It reports whether the file changed.
//
// A revoke edits the consent line even when the rest of the file does not
// load (the daemon refuses every release under such a file anyway, and will
// find the revoke when the file is fixed); when the file has no consent line,
// or several, every one is set to revoked, or one is appended. A grant
// requires the edited file to load. A running daemon notices within its
// reload_interval; RequestReload makes it apply the file at once and
// confirm (what `mcbn shareholder consent` does).
func SetConsent(path, value string) (bool, error) {
	if value != ConsentGranted && value != ConsentRevoked {
		return false, fmt.Errorf("consent %q, want granted or revoked", value)
	}
	// Edit the file itself, not a symlink pointing at it.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	data, err := readSmallFile(path, maxConfigSize)
	if err != nil {
		return false, err
	}
	var edited []byte
	if value == ConsentRevoked {
		edited = revokeConsent(data)
	} else {
		if _, err := ParseConfig(data, filepath.Dir(path)); err != nil {
			return false, fmt.Errorf("config %s: %w (consent is granted only in a config that loads)", path, err)
		}
		if edited, err = editConsent(data, value); err != nil {
			return false, fmt.Errorf("config %s: %w", path, err)
		}
		if _, err := ParseConfig(edited, filepath.Dir(path)); err != nil {
			return false, fmt.Errorf("config %s: the edited file would not load: %w", path, err)
		}
	}
	if bytes.Equal(edited, data) {
		return false, nil
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
	if _, err := ParseConsentLine(data); err != nil {
		return nil, fmt.Errorf("%v; edit it by hand", err)
	}
	l := findConsentLines(data)[0]
	var out bytes.Buffer
	out.Write(data[:l.valStart])
	out.WriteString(value)
	out.Write(data[l.valEnd:])
	return out.Bytes(), nil
}

// revokeConsent sets every top-level consent line's value to revoked, or
// appends the line when there is none. Whatever else the file holds, the
// result's consent line (if the file ever loads) says revoked.
func revokeConsent(data []byte) []byte {
	lines := findConsentLines(data)
	if len(lines) == 0 {
		out := bytes.Clone(data)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		return append(out, consentKey+" "+ConsentRevoked+"\n"...)
	}
	var out bytes.Buffer
	prev := 0
	for _, l := range lines {
		out.Write(data[prev:l.valStart])
		out.WriteString(ConsentRevoked)
		prev = l.valEnd
	}
	out.Write(data[prev:])
	return out.Bytes()
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
