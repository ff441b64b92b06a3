package reshare

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/dkg"
)

// File type tags and the format version of the ceremony's files.
const (
	TypeKey    = "mcbn-reshare-key"
	TypePub    = "mcbn-reshare-pub"
	TypeParams = "mcbn-reshare-params"
	TypeDeal   = "mcbn-reshare-deal"
	Version    = 1
)

// Key is a new participant's private HPKE key for one ceremony.
type Key struct {
	Participant string
	priv        []byte
	pub         []byte
}

// Pub is a new participant's public key file.
type Pub struct {
	Participant string
	HPKEKey     []byte
	// Source names where the Pub was read from, for messages (not encoded).
	Source string
}

type keyFile struct {
	Version     int    `json:"version"`
	Type        string `json:"type"`
	Participant string `json:"participant"`
	HPKEPrivate string `json:"hpke_private_key"`
}

type pubFile struct {
	Version     int    `json:"version"`
	Type        string `json:"type"`
	Participant string `json:"participant"`
	HPKEKey     string `json:"hpke_key"`
}

// NewKey makes a new participant's HPKE key pair; rnd nil means crypto/rand.
func NewKey(me string, rnd io.Reader) (*Key, *Pub, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if err := psk.CheckName("participant name", me); err != nil {
		return nil, nil, err
	}
	ikm := make([]byte, 32)
	defer psk.Wipe(ikm)
	if _, err := io.ReadFull(rnd, ikm); err != nil {
		return nil, nil, fmt.Errorf("reading randomness: %w", err)
	}
	priv, pub, err := dkg.HPKEKeyPair(ikm)
	if err != nil {
		return nil, nil, err
	}
	k := &Key{Participant: me, priv: priv, pub: pub}
	return k, k.Pub(), nil
}

// Pub returns the public file of k.
func (k *Key) Pub() *Pub {
	return &Pub{Participant: k.Participant, HPKEKey: append([]byte(nil), k.pub...)}
}

// Wipe zeroes the private key.
func (k *Key) Wipe() {
	if k != nil {
		psk.Wipe(k.priv)
	}
}

// Marshal renders the key file. The result is secret.
func (k *Key) Marshal() ([]byte, error) {
	return psk.MarshalFile(keyFile{Version: Version, Type: TypeKey, Participant: k.Participant, HPKEPrivate: hex.EncodeToString(k.priv)})
}

// ParseKey parses a key file's bytes. data is not retained.
func ParseKey(data []byte) (*Key, error) {
	var f keyFile
	if err := psk.DecodeStrict(data, TypeKey, Version, &f); err != nil {
		return nil, err
	}
	defer func() { f.HPKEPrivate = "" }()
	if err := psk.CheckName("participant", f.Participant); err != nil {
		return nil, err
	}
	priv, err := dkg.DecodeHex("hpke_private_key", f.HPKEPrivate, 32)
	if err != nil {
		return nil, err
	}
	pub, err := dkg.HPKEPublicKey(priv)
	if err != nil || !dkg.UsableHPKEKey(pub) {
		psk.Wipe(priv)
		return nil, fmt.Errorf("hpke_private_key of %q is not a usable X25519 key", f.Participant)
	}
	return &Key{Participant: f.Participant, priv: priv, pub: pub}, nil
}

// LoadKey reads a key file, refusing one that group or others can read.
func LoadKey(path string) (*Key, error) {
	data, err := psk.ReadSmallFile(path, true)
	if err != nil {
		return nil, err
	}
	defer psk.Wipe(data)
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteKey writes the key file with mode 0600, refusing to overwrite.
func WriteKey(path string, k *Key) error {
	b, err := k.Marshal()
	if err != nil {
		return err
	}
	defer psk.Wipe(b)
	return psk.WriteFileExclusive(path, b, 0o600)
}

// Marshal renders the pub file.
func (p *Pub) Marshal() ([]byte, error) {
	return psk.MarshalFile(pubFile{Version: Version, Type: TypePub, Participant: p.Participant, HPKEKey: hex.EncodeToString(p.HPKEKey)})
}

// ParsePub parses and validates a pub file's bytes.
func ParsePub(data []byte) (*Pub, error) {
	var f pubFile
	if err := psk.DecodeStrict(data, TypePub, Version, &f); err != nil {
		return nil, err
	}
	if err := psk.CheckName("participant", f.Participant); err != nil {
		return nil, err
	}
	k, err := dkg.DecodeHex(fmt.Sprintf("hpke_key of %q", f.Participant), f.HPKEKey, 32)
	if err != nil {
		return nil, err
	}
	// A low-order point would make every dealer's sealing fail: refuse it
	// when the file is read, not in the middle of the ceremony.
	if !dkg.UsableHPKEKey(k) {
		return nil, fmt.Errorf("hpke_key of %q is not a usable X25519 public key", f.Participant)
	}
	return &Pub{Participant: f.Participant, HPKEKey: k}, nil
}

// LoadPub reads a pub file; errors name the file.
func LoadPub(path string) (*Pub, error) {
	data, err := psk.ReadSmallFile(path, false)
	if err != nil {
		return nil, err
	}
	p, err := ParsePub(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.Source = path
	return p, nil
}

// WritePub writes the pub file (mode 0644), refusing to overwrite.
func WritePub(path string, p *Pub) error {
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	return psk.WriteFileExclusive(path, b, 0o644)
}

// matches reports whether pub is k's public key (constant time; the public
// key is not secret, but the habit costs nothing).
func (k *Key) matches(pub []byte) bool { return subtle.ConstantTimeCompare(k.pub, pub) == 1 }

// short is the first 12 hex digits of a digest, for messages.
func short(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
