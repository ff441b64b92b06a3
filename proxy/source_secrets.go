package proxy

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// PSKSecretsSource is a stunnel-style PSKsecrets file: one IDENTITY:KEY a
// line, several identities. The format follows stunnel 5.51 and later:
//
//   - the identity is everything before the first colon, the key everything
//     after it (a key may contain colons); a trailing CR is dropped, other
//     whitespace is part of the identity or key;
//   - a key made only of an even number of hex digits is decoded to binary,
//     a key with any other character is used as its ASCII bytes;
//   - the key, once decoded, must be 16 to 512 bytes;
//   - empty lines are skipped; there are no comments.
//
// Three deliberate differences, all refusals of files stunnel would accept:
// an empty identity and a repeated identity are errors, and so is a key made
// only of an odd number of hex digits (stunnel uses it as ASCII text), unless
// oddHexAsText says that is meant: such a key is almost always a hex key with
// a digit lost, and as text it would be a different, weaker key than the one
// the other side has.
type PSKSecretsSource struct {
	*keyTable
	path         string
	first        string
	oddHexAsText bool
}

// NewPSKSecretsSource reads a PSKsecrets file. oddHexAsText makes a key of an
// odd number of hex digits ASCII text, as stunnel reads it, not an error.
func NewPSKSecretsSource(path string, oddHexAsText bool) (*PSKSecretsSource, error) {
	s := &PSKSecretsSource{keyTable: newKeyTable(nil, ""), path: path, oddHexAsText: oddHexAsText}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// FirstIdentity is the identity on the first line: a client's default, as
// stunnel's PSKidentity default is.
func (s *PSKSecretsSource) FirstIdentity() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.first
}

// Reload re-reads the file; on error the previous keys stay.
func (s *PSKSecretsSource) Reload() error {
	if err := CheckSecretFile(s.path); err != nil {
		return err
	}
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	keys, order, err := ParsePSKSecrets(f, s.oddHexAsText)
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	s.mu.Lock()
	s.first = order[0]
	s.mu.Unlock()
	s.replace(keys, fmt.Sprintf("ready: %d identities from %s", len(keys), s.path))
	return nil
}

// maxSecretsLine bounds one line of a PSKsecrets file.
const maxSecretsLine = 64 << 10

// ParsePSKSecrets parses the PSKsecrets format described on
// PSKSecretsSource. It returns the keys and the identities in file order.
// Errors name the line but never quote a key.
func ParsePSKSecrets(r io.Reader, oddHexAsText bool) (map[string][]byte, []string, error) {
	keys := map[string][]byte{}
	var order []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxSecretsLine)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(line) == 0 {
			continue
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			return nil, nil, fmt.Errorf("line %d: not in IDENTITY:KEY format", n)
		}
		id, raw := string(line[:i]), line[i+1:]
		if id == "" {
			return nil, nil, fmt.Errorf("line %d: empty identity", n)
		}
		if len(id) > 65535 {
			return nil, nil, fmt.Errorf("line %d: identity longer than 65535 bytes", n)
		}
		if _, dup := keys[id]; dup {
			return nil, nil, fmt.Errorf("line %d: identity %q appears twice", n, id)
		}
		if len(raw)%2 == 1 && isHex(raw) && !oddHexAsText {
			return nil, nil, fmt.Errorf("line %d: key for %q is %d hex digits, an odd number: a hex key has two digits a byte (is one missing?); to use these characters as an ASCII key, as stunnel would, set psk.odd_hex_as_text: true", n, id, len(raw))
		}
		key, kind := decodeSecretsKey(raw)
		if len(key) < minKeyLen {
			return nil, nil, fmt.Errorf("line %d: %s key for %q is %d bytes, shorter than %d", n, kind, id, len(key), minKeyLen)
		}
		if len(key) > maxKeyLen {
			return nil, nil, fmt.Errorf("line %d: %s key for %q is %d bytes, longer than %d", n, kind, id, len(key), maxKeyLen)
		}
		keys[id] = key
		order = append(order, id)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("line %d: longer than %d bytes", n+1, maxSecretsLine)
		}
		return nil, nil, err
	}
	if len(order) == 0 {
		return nil, nil, errors.New("no IDENTITY:KEY line")
	}
	return keys, order, nil
}

// decodeSecretsKey applies stunnel's rule: all hex digits, even length ->
// binary; anything else -> the bytes as written.
func decodeSecretsKey(raw []byte) ([]byte, string) {
	if len(raw) > 0 && len(raw)%2 == 0 && isHex(raw) {
		k := make([]byte, len(raw)/2)
		if _, err := hex.Decode(k, raw); err == nil {
			return k, "hexadecimal"
		}
	}
	return bytes.Clone(raw), "ASCII"
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
