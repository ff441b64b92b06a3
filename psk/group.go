package psk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/group"
)

// Participant is one member of a group. Index runs 1..N in descriptor order;
// for Shamir it is also the x-coordinate of the participant's share.
type Participant struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	// Commitment is set for contributory groups only: the hex SHA-256
	// commitment to the participant's key (see KeyCommitment).
	Commitment string `json:"commitment,omitempty"`
}

// Group is the public group descriptor. Build one with Split or
// NewContributoryGroup, read one with ParseGroup or LoadGroup.
type Group struct {
	Version      int           `json:"version"`
	Type         string        `json:"type"`
	Name         string        `json:"name"`
	ID           string        `json:"id"`
	Scheme       string        `json:"scheme"`
	Threshold    int           `json:"threshold"`
	Participants []Participant `json:"participants"`
	// Commitments are the Feldman commitments a_0·G .. a_{T-1}·G of a Shamir
	// group, each a 32-byte ristretto255 encoding in hex.
	Commitments []string `json:"commitments,omitempty"`
	// InheritedKeyID is set on a group born of a resharing (package
	// psk/reshare): the KeyID of the group it was reshared from, so the
	// unchanged secret keeps deriving the same PSKs. It is part of the
	// canonical form, so it cannot be added or changed without changing ID.
	InheritedKeyID string `json:"key_id,omitempty"`

	feldman []group.Element // decoded Commitments
	idBytes []byte          // decoded ID
}

// KeyID is the id the key derivation binds (DerivePSK's groupID, the
// threshold PRF's input). It is the group's own ID; a group born of a
// resharing keeps its ancestor's KeyID, so the same secret derives the
// same PSKs across a change of participants or threshold.
func (g *Group) KeyID() string {
	if g.InheritedKeyID != "" {
		return g.InheritedKeyID
	}
	return g.ID
}

// N is the number of participants.
func (g *Group) N() int { return len(g.Participants) }

// Participant returns the participant with the given index, or nil.
func (g *Group) Participant(index int) *Participant {
	if index < 1 || index > len(g.Participants) {
		return nil
	}
	return &g.Participants[index-1]
}

// ParticipantByName returns the participant with the given name, or nil.
func (g *Group) ParticipantByName(name string) *Participant {
	for i := range g.Participants {
		if g.Participants[i].Name == name {
			return &g.Participants[i]
		}
	}
	return nil
}

// canonical is the byte string the group id is the SHA-256 of; see
// docs/key-derivation.md, "Group descriptor canonical form".
func (g *Group) canonical() ([]byte, error) {
	b := []byte("mcbn group v1")
	b = appendStr(b, g.Name)
	b = appendStr(b, g.Scheme)
	b = append(b, byte(g.Threshold), byte(len(g.Participants)))
	for _, p := range g.Participants {
		b = append(b, byte(p.Index))
		b = appendStr(b, p.Name)
		if g.Scheme == SchemeContributory {
			c, err := decodeHex32(fmt.Sprintf("participant %q commitment", p.Name), p.Commitment)
			if err != nil {
				return nil, err
			}
			b = append(b, c...)
		}
	}
	b = append(b, byte(len(g.Commitments)))
	for i, c := range g.Commitments {
		e, err := decodeHex32(fmt.Sprintf("commitments[%d]", i), c)
		if err != nil {
			return nil, err
		}
		b = append(b, e...)
	}
	// A reshared group appends the inherited key id. The commitment count
	// fixes where the commitments end, so the form stays unambiguous, and
	// every group without a key_id keeps the id it always had.
	if g.InheritedKeyID != "" {
		k, err := decodeHex32("key_id", g.InheritedKeyID)
		if err != nil {
			return nil, err
		}
		b = append(b, k...)
	}
	return b, nil
}

// appendStr appends a one-byte length and the bytes of s (len(s) <= 255).
func appendStr(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// computeID returns the hex group id of g from its canonical form.
func (g *Group) computeID() (string, error) {
	c, err := g.canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// seal fills in the id and the decoded caches of a freshly built group.
func (g *Group) seal() error {
	id, err := g.computeID()
	if err != nil {
		return err
	}
	g.ID = id
	return g.validate()
}

// validate checks every rule of the descriptor and fills the decoded caches.
func (g *Group) validate() error {
	if g.Version != GroupVersion {
		return fmt.Errorf("unsupported version %d (this mcbn reads version %d)", g.Version, GroupVersion)
	}
	if g.Type != TypeGroup {
		return fmt.Errorf("type is %q, want %q", g.Type, TypeGroup)
	}
	if err := checkName("group name", g.Name); err != nil {
		return err
	}
	n := len(g.Participants)
	if err := checkSize(g.Threshold, n); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, p := range g.Participants {
		if p.Index != i+1 {
			return fmt.Errorf("participants[%d] has index %d, want %d (indices run 1..N in order)", i, p.Index, i+1)
		}
		if err := checkName("participant name", p.Name); err != nil {
			return err
		}
		if seen[p.Name] {
			return fmt.Errorf("participant name %q appears twice", p.Name)
		}
		seen[p.Name] = true
	}
	switch g.Scheme {
	case SchemeShamir:
		if len(g.Commitments) != g.Threshold {
			return fmt.Errorf("shamir group needs %d Feldman commitments (one per coefficient), has %d", g.Threshold, len(g.Commitments))
		}
		for _, p := range g.Participants {
			if p.Commitment != "" {
				return fmt.Errorf("participant %q has a commitment, which only contributory groups use", p.Name)
			}
		}
		g.feldman = make([]group.Element, len(g.Commitments))
		for i, c := range g.Commitments {
			e, err := decodeElement(fmt.Sprintf("commitments[%d]", i), c)
			if err != nil {
				return err
			}
			g.feldman[i] = e
		}
	case SchemeContributory:
		if g.InheritedKeyID != "" {
			return errors.New("contributory group must not have a key_id (only reshared Shamir groups inherit one)")
		}
		if g.Threshold != n {
			return fmt.Errorf("contributory group needs all participants: threshold %d must equal %d", g.Threshold, n)
		}
		if len(g.Commitments) != 0 {
			return errors.New("contributory group must not have Feldman commitments")
		}
		for _, p := range g.Participants {
			if _, err := decodeHex32(fmt.Sprintf("participant %q commitment", p.Name), p.Commitment); err != nil {
				return err
			}
		}
	case "":
		return errors.New(`missing "scheme"`)
	default:
		return fmt.Errorf("unknown scheme %q (want %q or %q)", g.Scheme, SchemeShamir, SchemeContributory)
	}
	idb, err := decodeHex32("id", g.ID)
	if err != nil {
		return err
	}
	want, err := g.computeID()
	if err != nil {
		return err
	}
	if want != g.ID {
		return fmt.Errorf("id %s does not match the descriptor's contents (digest %s): the file was altered", shortID(g.ID), shortID(want))
	}
	g.idBytes = idb
	return nil
}

// checkSize enforces 2 <= T <= N <= 255.
func checkSize(t, n int) error {
	switch {
	case n > MaxParticipants:
		return fmt.Errorf("too many participants: %d (at most %d)", n, MaxParticipants)
	case n < MinThreshold:
		return fmt.Errorf("need at least %d participants, got %d", MinThreshold, n)
	case t < MinThreshold:
		return fmt.Errorf("threshold %d is below %d (a single share would reveal the secret)", t, MinThreshold)
	case t > n:
		return fmt.Errorf("threshold %d is greater than the number of participants %d", t, n)
	}
	return nil
}

// decodeElement decodes a canonical ristretto255 element from hex.
func decodeElement(field, s string) (group.Element, error) {
	b, err := decodeHex32(field, s)
	if err != nil {
		return nil, err
	}
	e := group.Ristretto255.NewElement()
	if err := e.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%s is not a valid ristretto255 element", field)
	}
	// Accept only the canonical encoding, so the id pins one byte string.
	if again, err := e.MarshalBinary(); err != nil || string(again) != string(b) {
		return nil, fmt.Errorf("%s is not a canonical ristretto255 encoding", field)
	}
	return e, nil
}

// ParseGroup parses and fully validates a group descriptor, including that
// its id matches its contents.
func ParseGroup(data []byte) (*Group, error) {
	g := new(Group)
	if err := decodeStrict(data, TypeGroup, GroupVersion, g); err != nil {
		return nil, err
	}
	if err := g.validate(); err != nil {
		return nil, err
	}
	return g, nil
}

// LoadGroup reads and parses a group descriptor file; errors name the file.
func LoadGroup(path string) (*Group, error) {
	data, err := readFile(path, false)
	if err != nil {
		return nil, err
	}
	g, err := ParseGroup(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return g, nil
}

// Marshal renders the descriptor as the JSON file format.
func (g *Group) Marshal() ([]byte, error) { return marshalFile(g) }

// WriteGroup writes the descriptor to path (mode 0644), refusing to overwrite.
func WriteGroup(path string, g *Group) error { return writePublic(path, g) }
