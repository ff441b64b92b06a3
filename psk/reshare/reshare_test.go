package reshare

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mcbn/mcbn/psk"
)

// 2-of-3 -> 3-of-5 with two new people: the secret, C_0, the KeyID and the
// PSK are unchanged; every 3 new shares reconstruct, 2 do not; T' and N'
// are the asked ones; a mix of old and new shares is refused.
func TestReshare2of3To3of5(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 3, "alice,bob,carol,dave,erin", nil)
	g, shares := c.finishAll(t, c.deals)
	if g.Threshold != 3 || g.N() != 5 || g.Scheme != psk.SchemeShamir || g.Name != "team" {
		t.Fatalf("new group %d-of-%d %s %s", g.Threshold, g.N(), g.Scheme, g.Name)
	}
	if g.ID == c.old.ID {
		t.Fatal("the new group has the old id")
	}
	if g.KeyID() != c.old.ID || g.InheritedKeyID != c.old.ID {
		t.Fatalf("KeyID %s, want the old group's %s", g.KeyID(), c.old.ID)
	}
	if g.Commitments[0] != c.old.Commitments[0] {
		t.Fatal("constant-term commitment changed: the commitments do not prove the secret unchanged")
	}
	secret := secretOf(t, c.old, c.oldList("alice", "carol"))
	oldPSK, err := psk.DerivePSK(secret, c.old.KeyID(), psk.DefaultIdentity, 0, 32)
	if err != nil {
		t.Fatal(err)
	}
	subsets(5, 3, func(idx []int) {
		s := secretOf(t, g, pick(shares, idx))
		if !bytes.Equal(s, secret) {
			t.Errorf("new shares %v give another secret", idx)
		}
		key, err := psk.DerivePSK(s, g.KeyID(), psk.DefaultIdentity, 0, 32)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(key, oldPSK) {
			t.Errorf("new shares %v derive another PSK", idx)
		}
	})
	subsets(5, 2, func(idx []int) {
		if _, err := psk.Combine(g, pick(shares, idx)); err == nil {
			t.Errorf("2 new shares %v combined in a 3-of-5 group", idx)
		}
		if bytes.Equal(interpolate(t, pick(shares, idx)), secret) {
			t.Errorf("2 new shares %v interpolate to the secret", idx)
		}
	})
	// Old shares name the old group: refused as such by the new group.
	_, err = psk.Combine(g, []*psk.Share{c.oldShares["alice"], shares[1], shares[2]})
	wantSubstr(t, err, "belongs to another group")
	// Relabelled to the new group, an old share fails the Feldman check.
	for _, n := range []string{"alice", "bob", "carol"} {
		err := psk.VerifyShare(g, relabel(c.oldShares[n], g))
		wantSubstr(t, err, "fails the Feldman check")
	}
	// And the new group's shares are refused by the old group.
	_, err = psk.Combine(c.old, []*psk.Share{c.oldShares["alice"], relabel(shares[1], c.old)})
	wantSubstr(t, err, "fails the Feldman check")
}

// Shrinking 3-of-5 -> 2-of-2 among other people, from only 3 dealers, and
// a second reshare of a reshared group: the KeyID stays the first one.
func TestReshareChainAndSubsetOfDealers(t *testing.T) {
	c := setup(t, 3, "a,b,c,d,e", 2, "x,y", []string{"e", "b", "d"})
	if fmt.Sprint(c.p.Dealers) != "[b d e]" {
		t.Fatalf("dealers %v, want old index order", c.p.Dealers)
	}
	g, shares := c.finishAll(t, c.deals)
	secret := secretOf(t, c.old, c.oldList("a", "b", "c"))
	if !bytes.Equal(secretOf(t, g, shares), secret) || g.N() != 2 || g.Threshold != 2 {
		t.Fatal("2-of-2 reshare lost the secret")
	}
	c2 := setupFrom(t, g, shares, 2, "p,q,r", nil)
	g2, shares2 := c2.finishAll(t, c2.deals)
	if g2.KeyID() != c.old.ID {
		t.Fatalf("second reshare KeyID %s, want the first group's %s", g2.KeyID(), c.old.ID)
	}
	if !bytes.Equal(secretOf(t, g2, shares2[1:]), secret) {
		t.Fatal("second reshare lost the secret")
	}
	a, _ := psk.DerivePSK(secret, c.old.KeyID(), "id", 7, 32)
	b, _ := psk.DerivePSK(secret, g2.KeyID(), "id", 7, 32)
	if !bytes.Equal(a, b) {
		t.Fatal("PSK changed across two reshares")
	}
}

// A refresh (same people, same threshold) re-randomizes every share: the
// secret stays, but a share stolen before the refresh is useless with
// shares taken after it, by verification and by plain interpolation.
func TestRefreshStolenSharesUseless(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 2, "alice,bob,carol", nil)
	if !c.p.Refresh() {
		t.Fatal("same set and threshold is not reported as a refresh")
	}
	g, shares := c.finishAll(t, c.deals)
	secret := secretOf(t, c.old, c.oldList("alice", "bob"))
	if !bytes.Equal(secretOf(t, g, shares[1:]), secret) {
		t.Fatal("refresh lost the secret")
	}
	for i, n := range []string{"alice", "bob", "carol"} {
		if bytes.Equal(shares[i].Value, c.oldShares[n].Value) {
			t.Errorf("%s's share did not change", n)
		}
	}
	// The thief holds alice's old share and bob's new one.
	stolenOld := c.oldShares["alice"]
	_, err := psk.Combine(g, []*psk.Share{relabel(stolenOld, g), shares[1]})
	wantSubstr(t, err, "participant 1 \"alice\" fails the Feldman check")
	for _, pair := range [][]*psk.Share{
		{stolenOld, shares[1]}, {stolenOld, shares[2]},
		{c.oldShares["bob"], shares[0]}, {c.oldShares["carol"], shares[1]},
	} {
		if bytes.Equal(interpolate(t, pair), secret) {
			t.Errorf("old share of %s with new share of %s reconstructs the secret", pair[0].Participant, pair[1].Participant)
		}
	}
	// Two refreshes in a row give two different groups.
	c2 := setupFrom(t, c.old, c.oldList("alice", "bob", "carol"), 2, "alice,bob,carol", nil)
	g2, _ := c2.finishAll(t, c2.deals)
	if g2.ID == g.ID {
		t.Fatal("two refreshes gave the same group")
	}
}

// Fewer than T dealers: refused by NewParams, by parsing, and by Finish
// when exclusions would leave too few.
func TestReshareFewerThanTDealers(t *testing.T) {
	g, shares, err := psk.Split("team", 3, names("a,b,c,d"), nil)
	if err != nil {
		t.Fatal(err)
	}
	k, pub, _ := NewKey("x", nil)
	_, pub2, _ := NewKey("y", nil)
	_, err = NewParams(g, []string{"a", "c"}, 2, names("x,y"), []*Pub{pub, pub2}, nil)
	wantSubstr(t, err, "2 dealer(s) (a,c)", "needs at least 3")
	_, err = NewParams(g, []string{"a", "b", "z"}, 2, names("x,y"), []*Pub{pub, pub2}, nil)
	wantSubstr(t, err, `dealer "z" is not a participant`)

	c := setupFrom(t, g, shares, 2, "x,y", []string{"a", "b", "c"})
	_, err = Finish(c.p, c.keys["x"], c.deals, []string{"b"})
	wantSubstr(t, err, "leaves 2 dealers, fewer than the old threshold 3")
	// A missing deal with no room to exclude: named, and a new ceremony is needed.
	_, err = Finish(c.p, c.keys["x"], c.deals[:2], nil)
	wantNames(t, err, "c")
	wantSubstr(t, err, "c: no deal file received", "fewer than the threshold 3")
	_ = k
}

// New threshold and size limits.
func TestReshareParamsLimits(t *testing.T) {
	g, _, _ := psk.Split("team", 2, names("a,b,c"), nil)
	_, px, _ := NewKey("x", nil)
	_, py, _ := NewKey("y", nil)
	for _, tc := range []struct {
		t    int
		ns   string
		pubs []*Pub
		want string
	}{
		{3, "x,y", []*Pub{px, py}, "new threshold 3 is greater than the number of new participants 2"},
		{1, "x,y", []*Pub{px, py}, "below 2"},
		{2, "x,y,z", []*Pub{px, py}, "no pub file of new participant z: it would receive nothing"},
		{2, "x", []*Pub{px, py}, "y is not in the new participant list"},
		{2, "x,y", []*Pub{px, {Participant: "y", HPKEKey: px.HPKEKey}}, `"x" and "y" have the same hpke_key`},
	} {
		_, err := NewParams(g, nil, tc.t, names(tc.ns), tc.pubs, nil)
		wantSubstr(t, err, tc.want)
	}
	contrib, err := psk.NewContributoryGroup("c", []psk.Member{{Name: "a", Commitment: psk.KeyCommitment("c", "a", make([]byte, 32))}, {Name: "b", Commitment: psk.KeyCommitment("c", "b", make([]byte, 32))}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewParams(contrib, nil, 2, names("x,y"), []*Pub{px, py}, nil)
	wantSubstr(t, err, "only shamir-feldman-ristretto255 groups can be reshared")
}

// Deal refuses a holder who is not a listed dealer and a share that does
// not belong to the old group.
func TestReshareDealRefusals(t *testing.T) {
	c := setup(t, 2, "a,b,c", 2, "x,y", []string{"a", "b"})
	_, err := MakeDeal(c.p, c.oldShares["c"], nil)
	wantSubstr(t, err, "c is not a dealer")
	bad := relabel(c.oldShares["b"], c.old)
	bad.Value[0] ^= 1
	_, err = MakeDeal(c.p, bad, nil)
	wantSubstr(t, err, "does not fit the old group")
}

// Files round-trip; altered params are refused; a key readable by others
// is refused.
func TestReshareFilesRoundTrip(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 3, "alice,bob,carol,dave", nil)
	pb, err := c.p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ParseParams(pb)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p2.ID(), c.p.ID()) {
		t.Fatal("params round trip changed the id")
	}
	var deals []*Deal
	for _, d := range c.deals {
		b, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		d2, err := ParseDeal(b)
		if err != nil {
			t.Fatal(err)
		}
		deals = append(deals, d2)
	}
	dir := t.TempDir()
	if err := WriteKey(dir+"/dave.key", c.keys["dave"]); err != nil {
		t.Fatal(err)
	}
	if err := WriteKey(dir+"/dave.key", c.keys["dave"]); err == nil {
		t.Fatal("WriteKey overwrote")
	}
	k, err := LoadKey(dir + "/dave.key")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Finish(p2, k, deals, nil); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(pb, []byte(`"threshold": 3`), []byte(`"threshold": 2`), 1)
	_, err = ParseParams(tampered)
	wantSubstr(t, err, "reshare_id", "the file was altered")
	// The old group embedded in the params is fully checked.
	tampered = bytes.Replace(pb, []byte(`"name": "team"`), []byte(`"name": "tean"`), 1)
	_, err = ParseParams(tampered)
	wantSubstr(t, err, "old_group: id", "the file was altered")
	if err := WritePub(dir+"/dave.pub", c.keys["dave"].Pub()); err != nil {
		t.Fatal(err)
	}
	if p, err := LoadPub(dir + "/dave.pub"); err != nil || !bytes.Equal(p.HPKEKey, c.p.Participants[3].HPKEKey) {
		t.Fatalf("pub round trip: %v", err)
	}
	_, err = LoadKey(dir + "/dave.pub")
	wantSubstr(t, err, "readable by group or others", "chmod 600")
	_, err = LoadDeal(dir + "/dave.pub")
	wantSubstr(t, err, "dave.pub: ", `type is "mcbn-reshare-pub", want "mcbn-reshare-deal"`)
}
