package reshare

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/dkg"
)

// Participant is a new participant: its name (index = position + 1) and
// the HPKE key its sub-shares are sealed to.
type Participant struct {
	Name    string
	HPKEKey []byte
}

// Params are the public facts of one resharing ceremony. Every dealer and
// every new participant must hold the same Params: compare ID out of band.
type Params struct {
	// Old is the group whose secret is reshared.
	Old *psk.Group
	// Dealers are the old participants who deal, in old index order. Fixing
	// them here (not "whoever shows up") is what makes every new participant
	// combine the same set and so compute the same descriptor.
	Dealers []string
	// Threshold is T' and Participants the new N', in new index order.
	Threshold    int
	Participants []Participant
	// Nonce makes two ceremonies with the same inputs distinct.
	Nonce []byte
	// Source names where the Params were read from (not encoded).
	Source string
}

type participantEntry struct {
	Name    string `json:"name"`
	HPKEKey string `json:"hpke_key"`
}

type paramsFile struct {
	Version      int                `json:"version"`
	Type         string             `json:"type"`
	ReshareID    string             `json:"reshare_id"`
	OldGroup     json.RawMessage    `json:"old_group"`
	Dealers      []string           `json:"dealers"`
	Threshold    int                `json:"threshold"`
	Participants []participantEntry `json:"participants"`
	Nonce        string             `json:"nonce"`
}

// NewParams prepares a ceremony. dealers nil means every old participant;
// names are the new participants in index order, and pubs must hold exactly
// one pub file for each (any order). rnd nil means crypto/rand.
func NewParams(old *psk.Group, dealers []string, threshold int, names []string, pubs []*Pub, rnd io.Reader) (*Params, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if old.Scheme != psk.SchemeShamir {
		return nil, fmt.Errorf("group %q is %s: only %s groups can be reshared (for a new secret, rotate to a new group)", old.Name, old.Scheme, psk.SchemeShamir)
	}
	if dealers == nil {
		for _, p := range old.Participants {
			dealers = append(dealers, p.Name)
		}
	}
	p := &Params{Old: old, Threshold: threshold, Nonce: make([]byte, 32)}
	// Old index order is the canonical order of the dealers.
	p.Dealers = append([]string(nil), dealers...)
	sort.SliceStable(p.Dealers, func(a, b int) bool { return oldIndex(old, p.Dealers[a]) < oldIndex(old, p.Dealers[b]) })
	byName := map[string]*Pub{}
	var bad []string
	for _, pub := range pubs {
		src := pub.Source
		if src == "" {
			src = "pub of " + pub.Participant
		}
		if !contains(names, pub.Participant) {
			bad = append(bad, fmt.Sprintf("%s: %s is not in the new participant list (%s)", src, pub.Participant, strings.Join(names, ",")))
			continue
		}
		if prev := byName[pub.Participant]; prev != nil {
			if !bytes.Equal(prev.HPKEKey, pub.HPKEKey) {
				bad = append(bad, fmt.Sprintf("%s: a second, different pub file of %s (also %s): ask %s which is theirs", src, pub.Participant, prev.Source, pub.Participant))
			}
			continue
		}
		byName[pub.Participant] = pub
	}
	var missing []string
	for _, n := range names {
		pub := byName[n]
		if pub == nil {
			missing = append(missing, n)
			continue
		}
		p.Participants = append(p.Participants, Participant{Name: n, HPKEKey: pub.HPKEKey})
	}
	if len(missing) > 0 {
		bad = append(bad, "no pub file of new participant "+strings.Join(missing, ", ")+": it would receive nothing")
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "; "))
	}
	if _, err := io.ReadFull(rnd, p.Nonce); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return p, nil
}

func contains(names []string, n string) bool {
	for _, m := range names {
		if m == n {
			return true
		}
	}
	return false
}

// oldIndex is the index of name in the old group, or 0.
func oldIndex(g *psk.Group, name string) int {
	if p := g.ParticipantByName(name); p != nil {
		return p.Index
	}
	return 0
}

// N is the number of new participants.
func (p *Params) N() int { return len(p.Participants) }

// Index is the new index of name, or 0.
func (p *Params) Index(name string) int {
	for i, q := range p.Participants {
		if q.Name == name {
			return i + 1
		}
	}
	return 0
}

// Names are the new participants' names in index order.
func (p *Params) Names() []string {
	out := make([]string, len(p.Participants))
	for i, q := range p.Participants {
		out[i] = q.Name
	}
	return out
}

// Refresh reports whether the ceremony keeps the participants (same names,
// same order) and the threshold: a proactive refresh.
func (p *Params) Refresh() bool {
	if p.Threshold != p.Old.Threshold || p.N() != p.Old.N() {
		return false
	}
	for i, q := range p.Participants {
		if q.Name != p.Old.Participants[i].Name {
			return false
		}
	}
	return true
}

// validate checks every rule of the params.
func (p *Params) validate() error {
	old := p.Old
	if old.Scheme != psk.SchemeShamir {
		return fmt.Errorf("old_group %q is %s: only %s groups can be reshared", old.Name, old.Scheme, psk.SchemeShamir)
	}
	seen := map[string]bool{}
	last := 0
	for _, d := range p.Dealers {
		i := oldIndex(old, d)
		if i == 0 {
			return fmt.Errorf("dealer %q is not a participant of the old group %q (%s)", d, old.Name, strings.Join(groupNames(old), ","))
		}
		if seen[d] {
			return fmt.Errorf("dealer %q is listed twice", d)
		}
		if i < last {
			return fmt.Errorf("dealers must be in the old group's index order (%q is out of order)", d)
		}
		seen[d], last = true, i
	}
	if len(p.Dealers) < old.Threshold {
		return fmt.Errorf("%d dealer(s) (%s), but the old group %q needs at least %d of its holders to deal: fewer cannot reshare its secret", len(p.Dealers), strings.Join(p.Dealers, ","), old.Name, old.Threshold)
	}
	n := p.N()
	switch {
	case n > psk.MaxParticipants:
		return fmt.Errorf("too many new participants: %d (at most %d)", n, psk.MaxParticipants)
	case n < psk.MinThreshold:
		return fmt.Errorf("need at least %d new participants, got %d", psk.MinThreshold, n)
	case p.Threshold < psk.MinThreshold:
		return fmt.Errorf("new threshold %d is below %d (a single share would reveal the secret)", p.Threshold, psk.MinThreshold)
	case p.Threshold > n:
		return fmt.Errorf("new threshold %d is greater than the number of new participants %d", p.Threshold, n)
	}
	names := map[string]bool{}
	keys := map[string]string{}
	for _, q := range p.Participants {
		if err := psk.CheckName("new participant name", q.Name); err != nil {
			return err
		}
		if names[q.Name] {
			return fmt.Errorf("new participant %q appears twice", q.Name)
		}
		names[q.Name] = true
		if len(q.HPKEKey) != 32 || !dkg.UsableHPKEKey(q.HPKEKey) {
			return fmt.Errorf("hpke_key of new participant %q is not a usable X25519 public key", q.Name)
		}
		// One key for two names would let one holder open both sub-shares.
		if other, dup := keys[string(q.HPKEKey)]; dup {
			return fmt.Errorf("new participants %q and %q have the same hpke_key: each needs a key of its own (run keygen for each)", other, q.Name)
		}
		keys[string(q.HPKEKey)] = q.Name
	}
	if len(p.Nonce) != 32 {
		return errors.New("nonce must be 32 bytes")
	}
	return nil
}

func groupNames(g *psk.Group) []string {
	out := make([]string, g.N())
	for i, q := range g.Participants {
		out[i] = q.Name
	}
	return out
}

// ID is the reshare id: SHA-256("mcbn reshare params v1" || old group id ||
// u8(D) || for each dealer: u8(old index) || str(name) || u8(T') || u8(N') ||
// for j = 1..N': u8(j) || str(name_j) || hpke_key_j || nonce).
func (p *Params) ID() []byte {
	oldID, _ := hex.DecodeString(p.Old.ID)
	b := append([]byte("mcbn reshare params v1"), oldID...)
	b = append(b, byte(len(p.Dealers)))
	for _, d := range p.Dealers {
		b = append(b, byte(oldIndex(p.Old, d)))
		b = appendStr(b, d)
	}
	b = append(b, byte(p.Threshold), byte(p.N()))
	for j, q := range p.Participants {
		b = append(b, byte(j+1))
		b = appendStr(b, q.Name)
		b = append(b, q.HPKEKey...)
	}
	b = append(b, p.Nonce...)
	sum := sha256.Sum256(b)
	return sum[:]
}

// appendStr appends u8(len(s)) || s; every name is at most 64 bytes.
func appendStr(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

// Marshal renders the params file.
func (p *Params) Marshal() ([]byte, error) {
	og, err := p.Old.Marshal()
	if err != nil {
		return nil, err
	}
	f := paramsFile{
		Version: Version, Type: TypeParams, ReshareID: hex.EncodeToString(p.ID()),
		OldGroup: json.RawMessage(og), Dealers: p.Dealers, Threshold: p.Threshold, Nonce: hex.EncodeToString(p.Nonce),
	}
	for _, q := range p.Participants {
		f.Participants = append(f.Participants, participantEntry{Name: q.Name, HPKEKey: hex.EncodeToString(q.HPKEKey)})
	}
	return psk.MarshalFile(f)
}

// ParseParams parses and fully validates a params file, including the old
// group descriptor it embeds and that reshare_id matches the contents.
func ParseParams(data []byte) (*Params, error) {
	var f paramsFile
	if err := psk.DecodeStrict(data, TypeParams, Version, &f); err != nil {
		return nil, err
	}
	if len(f.OldGroup) == 0 {
		return nil, errors.New(`missing "old_group"`)
	}
	old, err := psk.ParseGroup(f.OldGroup)
	if err != nil {
		return nil, fmt.Errorf("old_group: %v", err)
	}
	p := &Params{Old: old, Dealers: f.Dealers, Threshold: f.Threshold}
	if len(f.Dealers) > psk.MaxParticipants || len(f.Participants) > psk.MaxParticipants {
		return nil, fmt.Errorf("too many dealers or participants (at most %d)", psk.MaxParticipants)
	}
	for i, e := range f.Participants {
		if err := psk.CheckName(fmt.Sprintf("participants[%d] name", i), e.Name); err != nil {
			return nil, err
		}
		k, err := dkg.DecodeHex(fmt.Sprintf("hpke_key of new participant %q", e.Name), e.HPKEKey, 32)
		if err != nil {
			return nil, err
		}
		p.Participants = append(p.Participants, Participant{Name: e.Name, HPKEKey: k})
	}
	if p.Nonce, err = dkg.DecodeHex("nonce", f.Nonce, 32); err != nil {
		return nil, err
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	id, err := dkg.DecodeHex("reshare_id", f.ReshareID, 32)
	if err != nil {
		return nil, err
	}
	if want := p.ID(); !bytes.Equal(id, want) {
		return nil, fmt.Errorf("reshare_id %s does not match the file's contents (digest %s): the file was altered", short(id), short(want))
	}
	return p, nil
}

// LoadParams reads a params file; errors name the file.
func LoadParams(path string) (*Params, error) {
	data, err := psk.ReadSmallFile(path, false)
	if err != nil {
		return nil, err
	}
	p, err := ParseParams(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.Source = path
	return p, nil
}

// WriteParams writes the params file (mode 0644), refusing to overwrite.
func WriteParams(path string, p *Params) error {
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	return psk.WriteFileExclusive(path, b, 0o644)
}
