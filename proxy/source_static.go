package proxy

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// Limits on a PSK, the same as stunnel's and OpenSSL's.
const (
	minKeyLen = 16
	maxKeyLen = 512
)

// keyTable is the state shared by the static sources: a map from identity
// to key, swapped whole on reload.
type keyTable struct {
	mu      sync.RWMutex
	keys    map[string][]byte
	state   string
	since   time.Time
	changes chan struct{}
}

func newKeyTable(keys map[string][]byte, state string) *keyTable {
	return &keyTable{keys: keys, state: state, since: time.Now(), changes: make(chan struct{}, 1)}
}

func (t *keyTable) Key(identity string) ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.keys) == 0 {
		return nil, NotReady(t.state)
	}
	k, ok := t.keys[identity]
	if !ok {
		return nil, ErrUnknownIdentity
	}
	return bytes.Clone(k), nil
}

func (t *keyTable) Status() SourceStatus {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return SourceStatus{Ready: len(t.keys) > 0, State: t.state, Since: t.since}
}

func (t *keyTable) Changes() <-chan struct{} { return t.changes }

func (t *keyTable) Close() error { return nil }

// replace installs keys and reports whether anything changed.
func (t *keyTable) replace(keys map[string][]byte, state string) bool {
	t.mu.Lock()
	changed := !sameKeys(t.keys, keys)
	t.keys, t.state = keys, state
	if changed {
		t.since = time.Now()
	}
	t.mu.Unlock()
	if changed {
		select {
		case t.changes <- struct{}{}:
		default:
		}
	}
	return changed
}

func sameKeys(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for id, k := range a {
		if o, ok := b[id]; !ok || subtle.ConstantTimeCompare(k, o) != 1 {
			return false
		}
	}
	return true
}

// NewStaticSource returns a source that always has key for identity (a
// key from a flag or from the environment).
func NewStaticSource(identity string, key []byte) Source {
	return newKeyTable(map[string][]byte{identity: bytes.Clone(key)}, "ready: static key")
}

// NewNotReadySource returns a source that never has a key; state says why
// (shown in /status).
func NewNotReadySource(state string) Source { return newKeyTable(nil, state) }

// ParseHexKey decodes a PSK written in hex as OpenSSL's -psk takes it:
// surrounding whitespace is ignored, an optional 0x prefix is allowed, and
// the key must be 16 to 512 bytes. Errors never quote the input.
func ParseHexKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if s == "" {
		return nil, errors.New("empty key")
	}
	k, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("key is not valid hex (%d characters; want an even number of 0-9a-f)", len(s))
	}
	if len(k) < minKeyLen || len(k) > maxKeyLen {
		return nil, fmt.Errorf("key is %d bytes; want %d to %d", len(k), minKeyLen, maxKeyLen)
	}
	return k, nil
}

// CheckSecretFile refuses a file that is not regular or that group or
// others may read or write: a PSK file is a secret, like a share file.
func CheckSecretFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: a PSK file must not be accessible to group or others (chmod 600 %s)", path, perm, path)
	}
	return nil
}

// FileSource is a key in a file, as hex text (whitespace trimmed). It
// re-reads the file on Reload; a bad file keeps the previous key.
type FileSource struct {
	*keyTable
	path     string
	identity string
}

// NewFileSource reads a hex key for identity from path.
func NewFileSource(identity, path string) (*FileSource, error) {
	s := &FileSource{keyTable: newKeyTable(nil, ""), path: path, identity: identity}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the file.
func (s *FileSource) Reload() error {
	if err := CheckSecretFile(s.path); err != nil {
		return err
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	k, err := ParseHexKey(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", s.path, err)
	}
	s.replace(map[string][]byte{s.identity: k}, "ready: key from file "+s.path)
	return nil
}
