package psk

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// ContribKey is one participant's key of a contributory (n-of-n) group: 32
// random bytes the participant generated itself. It is created before the
// group descriptor exists, so it names the group by name, not by id.
type ContribKey struct {
	Group       string
	Participant string
	Key         []byte
}

// keyFile is the JSON form of a ContribKey.
type keyFile struct {
	Version     int    `json:"version"`
	Type        string `json:"type"`
	Group       string `json:"group"`
	Participant string `json:"participant"`
	Key         string `json:"key"`
}

// Wipe zeroes the key.
func (k *ContribKey) Wipe() {
	if k != nil {
		Wipe(k.Key)
	}
}

// NewContribKey generates a participant's key. rnd nil means crypto/rand.
func NewContribKey(groupName, participant string, rnd io.Reader) (*ContribKey, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if err := checkName("group name", groupName); err != nil {
		return nil, err
	}
	if err := checkName("participant name", participant); err != nil {
		return nil, err
	}
	k := make([]byte, 32)
	if _, err := io.ReadFull(rnd, k); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	return &ContribKey{Group: groupName, Participant: participant, Key: k}, nil
}

// KeyCommitment is the public commitment to a participant's key that a
// contributory group descriptor records: lowercase hex of
// SHA-256("mcbn contributory commitment v1" || len||group || len||participant || key).
func KeyCommitment(groupName, participant string, key []byte) string {
	b := []byte("mcbn contributory commitment v1")
	b = appendStr(b, groupName)
	b = appendStr(b, participant)
	b = append(b, key...)
	sum := sha256.Sum256(b)
	Wipe(b)
	return hex.EncodeToString(sum[:])
}

// Commitment returns KeyCommitment for k.
func (k *ContribKey) Commitment() string { return KeyCommitment(k.Group, k.Participant, k.Key) }

// ParseContribKey parses and validates a contributory key file's bytes.
func ParseContribKey(data []byte) (*ContribKey, error) {
	var f keyFile
	if err := decodeStrict(data, TypeKey, KeyVersion, &f); err != nil {
		return nil, err
	}
	defer func() { f.Key = "" }()
	if err := checkName("group", f.Group); err != nil {
		return nil, err
	}
	if err := checkName("participant", f.Participant); err != nil {
		return nil, err
	}
	k, err := decodeHex32(fmt.Sprintf("key of participant %q", f.Participant), f.Key)
	if err != nil {
		return nil, err
	}
	return &ContribKey{Group: f.Group, Participant: f.Participant, Key: k}, nil
}

// LoadContribKey reads a key file, refusing one that group or others can
// read. Errors name the file.
func LoadContribKey(path string) (*ContribKey, error) {
	data, err := readFile(path, true)
	if err != nil {
		return nil, err
	}
	defer Wipe(data)
	k, err := ParseContribKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// MarshalContribKey renders k in the file format. The result is secret.
func MarshalContribKey(k *ContribKey) ([]byte, error) {
	if len(k.Key) != 32 {
		return nil, fmt.Errorf("key of participant %q must be 32 bytes", k.Participant)
	}
	return marshalFile(keyFile{Version: KeyVersion, Type: TypeKey, Group: k.Group, Participant: k.Participant, Key: hex.EncodeToString(k.Key)})
}

// WriteContribKey writes k to path with mode 0600, refusing to overwrite.
func WriteContribKey(path string, k *ContribKey) error {
	b, err := MarshalContribKey(k)
	if err != nil {
		return err
	}
	defer Wipe(b)
	return WriteFileExclusive(path, b, 0o600)
}

// Member is the public part of a contributory participant: its name and the
// commitment to its key (ContribKey.Commitment).
type Member struct {
	Name       string
	Commitment string
}

// NewContributoryGroup builds an N-of-N contributory descriptor from the
// members' public commitments. Participants are ordered by name (byte-wise),
// so the group id does not depend on the order members are listed in. No
// secret is needed: each participant can publish its commitment.
func NewContributoryGroup(name string, members []Member) (*Group, error) {
	ms := append([]Member(nil), members...)
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	g := &Group{Version: GroupVersion, Type: TypeGroup, Name: name, Scheme: SchemeContributory, Threshold: len(ms)}
	for i, m := range ms {
		g.Participants = append(g.Participants, Participant{Index: i + 1, Name: m.Name, Commitment: m.Commitment})
	}
	if err := checkName("group name", name); err != nil {
		return nil, err
	}
	if err := checkSize(len(ms), len(ms)); err != nil {
		return nil, err
	}
	if err := g.seal(); err != nil {
		return nil, err
	}
	return g, nil
}

// VerifyKey checks that k is the key g committed to for its participant.
func VerifyKey(g *Group, k *ContribKey) error {
	if g.Scheme != SchemeContributory {
		return fmt.Errorf("group %q is %s, not %s", g.Name, g.Scheme, SchemeContributory)
	}
	if k.Group != g.Name {
		return fmt.Errorf("key of participant %q belongs to group %q, not %q", k.Participant, k.Group, g.Name)
	}
	p := g.ParticipantByName(k.Participant)
	if p == nil {
		return fmt.Errorf("key of participant %q: no such participant in group %q", k.Participant, g.Name)
	}
	if len(k.Key) != 32 || subtle.ConstantTimeCompare([]byte(k.Commitment()), []byte(p.Commitment)) != 1 {
		return fmt.Errorf("key of participant %d %q does not match its commitment: wrong or corrupted key", p.Index, p.Name)
	}
	return nil
}

// CombineKeys verifies the keys of a contributory group and derives its
// secret. All N keys are needed, in any order; an error names every bad,
// duplicate or missing participant. The caller must Wipe the secret.
func CombineKeys(g *Group, keys []*ContribKey) ([]byte, error) {
	if g.Scheme != SchemeContributory {
		return nil, fmt.Errorf("group %q is %s: combine its shares with Combine", g.Name, g.Scheme)
	}
	var bad []string
	byIndex := make([]*ContribKey, g.N()+1)
	for _, k := range keys {
		if err := VerifyKey(g, k); err != nil {
			bad = append(bad, err.Error())
			continue
		}
		p := g.ParticipantByName(k.Participant)
		if byIndex[p.Index] != nil {
			bad = append(bad, fmt.Sprintf("duplicate key of participant %d %q", p.Index, p.Name))
			continue
		}
		byIndex[p.Index] = k
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "; "))
	}
	var missing []string
	for _, p := range g.Participants {
		if byIndex[p.Index] == nil {
			missing = append(missing, p.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("group %q needs all %d keys, missing %s", g.Name, g.N(), strings.Join(missing, ", "))
	}
	if g.idBytes == nil {
		if err := g.validate(); err != nil {
			return nil, err
		}
	}
	h := sha256.New()
	h.Write([]byte("mcbn contributory secret v1"))
	h.Write(g.idBytes)
	for _, k := range byIndex[1:] {
		h.Write(k.Key)
	}
	return h.Sum(nil), nil
}
