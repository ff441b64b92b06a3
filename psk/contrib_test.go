package psk

import (
	"bytes"
	"strings"
	"testing"
)

func contribSetup(t *testing.T, names ...string) (*Group, []*ContribKey) {
	t.Helper()
	var keys []*ContribKey
	var members []Member
	for _, n := range names {
		k, err := NewContribKey("team", n, nil)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		members = append(members, Member{Name: n, Commitment: k.Commitment()})
	}
	g, err := NewContributoryGroup("team", members)
	if err != nil {
		t.Fatal(err)
	}
	return g, keys
}

func TestContributoryOrderIndependent(t *testing.T) {
	g, keys := contribSetup(t, "carol", "alice", "bob")
	if g.Participants[0].Name != "alice" || g.Participants[2].Name != "carol" {
		t.Fatalf("participants not ordered by name: %+v", g.Participants)
	}
	// The same members listed in another order give the same group id.
	g2, err := NewContributoryGroup("team", []Member{
		{"bob", keys[2].Commitment()}, {"carol", keys[0].Commitment()}, {"alice", keys[1].Commitment()},
	})
	if err != nil || g2.ID != g.ID {
		t.Fatalf("group id depends on member order: %v", err)
	}
	a, err := CombineKeys(g, keys)
	if err != nil {
		t.Fatal(err)
	}
	b, err := CombineKeys(g, []*ContribKey{keys[2], keys[0], keys[1]})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) || len(a) != 32 {
		t.Fatal("key order changed the secret")
	}
}

func TestContributoryBadInput(t *testing.T) {
	g, keys := contribSetup(t, "alice", "bob", "carol")
	if _, err := CombineKeys(g, keys[:2]); err == nil || !strings.Contains(err.Error(), "missing carol") {
		t.Errorf("missing key: err %v", err)
	}
	wrong := &ContribKey{Group: "team", Participant: "bob", Key: bytes.Clone(keys[1].Key)}
	wrong.Key[0] ^= 1
	_, err := CombineKeys(g, []*ContribKey{keys[0], wrong, keys[2]})
	if err == nil || !strings.Contains(err.Error(), `key of participant 2 "bob" does not match its commitment`) {
		t.Errorf("wrong key: err %v", err)
	}
	_, err = CombineKeys(g, []*ContribKey{keys[0], keys[0], keys[1], keys[2]})
	if err == nil || !strings.Contains(err.Error(), `duplicate key of participant 1 "alice"`) {
		t.Errorf("duplicate: err %v", err)
	}
	other := &ContribKey{Group: "other", Participant: "bob", Key: keys[1].Key}
	if err := VerifyKey(g, other); err == nil || !strings.Contains(err.Error(), `belongs to group "other"`) {
		t.Errorf("other group: err %v", err)
	}
	stranger, _ := NewContribKey("team", "dave", nil)
	if err := VerifyKey(g, stranger); err == nil || !strings.Contains(err.Error(), `"dave": no such participant`) {
		t.Errorf("stranger: err %v", err)
	}
	if _, err := NewContributoryGroup("team", []Member{{"a", keys[0].Commitment()}}); err == nil {
		t.Error("a one-member contributory group was accepted")
	}
}
