package psk

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// resharedGroup builds a group as psk/reshare does: another group's
// commitments under new participants, inheriting g's KeyID.
func resharedGroup(t testing.TB) (*Group, *Group) {
	g, _, err := Split("team", 2, []string{"alice", "bob", "carol"}, newSeedReader(shamirSeed))
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	for _, c := range g.Commitments {
		b, _ := hex.DecodeString(c)
		raw = append(raw, b)
	}
	r, err := NewShamirGroup("team", 2, []string{"dave", "erin"}, raw, g.KeyID())
	if err != nil {
		t.Fatal(err)
	}
	return g, r
}

// key_id is part of the canonical form: set, it changes the id; it cannot
// be added, removed or changed in a file without the id check failing;
// KeyID returns it; groups without it keep their id (the vectors test).
func TestGroupInheritedKeyID(t *testing.T) {
	g, r := resharedGroup(t)
	if g.KeyID() != g.ID {
		t.Fatal("a group without key_id must have KeyID == ID")
	}
	if r.KeyID() != g.ID || r.ID == g.ID {
		t.Fatalf("reshared KeyID %s ID %s", r.KeyID(), r.ID)
	}
	if _, err := NewShamirGroup("team", 2, []string{"dave", "erin"}, nil, ""); err == nil || !strings.Contains(err.Error(), "needs 2 Feldman commitments") {
		t.Fatalf("no commitments: %v", err)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"key_id": "`+g.ID+`"`)) {
		t.Fatalf("descriptor lacks key_id:\n%s", b)
	}
	r2, err := ParseGroup(b)
	if err != nil || r2.KeyID() != g.ID {
		t.Fatalf("round trip: %v", err)
	}
	other := strings.Repeat("ab", 32)
	for name, data := range map[string][]byte{
		"changed": bytes.Replace(b, []byte(g.ID), []byte(other), 1),
		"removed": bytes.Replace(b, []byte(`,
  "key_id": "`+g.ID+`"`), nil, 1),
	} {
		if bytes.Equal(data, b) {
			t.Fatalf("%s: the test did not alter the file", name)
		}
		if _, err := ParseGroup(data); err == nil || !strings.Contains(err.Error(), "the file was altered") {
			t.Errorf("%s key_id: %v", name, err)
		}
	}
	gb, _ := g.Marshal()
	added := bytes.Replace(gb, []byte(`"commitments"`), []byte(`"key_id": "`+other+`", "commitments"`), 1)
	if _, err := ParseGroup(added); err == nil || !strings.Contains(err.Error(), "the file was altered") {
		t.Errorf("added key_id: %v", err)
	}
	bad := bytes.Replace(b, []byte(g.ID), []byte(strings.ToUpper(g.ID)), 1)
	if _, err := ParseGroup(bad); err == nil || !strings.Contains(err.Error(), "key_id must be lowercase hex") {
		t.Errorf("uppercase key_id: %v", err)
	}
}

// Contributory groups cannot carry a key_id.
func TestContributoryGroupRefusesKeyID(t *testing.T) {
	g, err := NewContributoryGroup("c", []Member{{Name: "a", Commitment: KeyCommitment("c", "a", make([]byte, 32))}, {Name: "b", Commitment: KeyCommitment("c", "b", make([]byte, 32))}})
	if err != nil {
		t.Fatal(err)
	}
	g.InheritedKeyID = strings.Repeat("ab", 32)
	if err := g.seal(); err == nil || !strings.Contains(err.Error(), "contributory group must not have a key_id") {
		t.Fatalf("contributory key_id: %v", err)
	}
}
