package reshare

import (
	"bytes"
	"slices"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/mcbn/mcbn/psk/dkg"
)

// copyDeal returns a deep copy, so a test can alter one safely.
func copyDeal(d *Deal) *Deal {
	c := *d
	c.Commitments = slices.Clone(d.Commitments)
	c.Shares = nil
	for _, s := range d.Shares {
		c.Shares = append(c.Shares, dkg.SealedShare{Recipient: s.Recipient, Sealed: slices.Clone(s.Sealed)})
	}
	c.Proof = slices.Clone(d.Proof)
	return &c
}

// reprove signs d again as its dealer would (the dealer holds its share).
func (c *cer) reprove(t *testing.T, d *Deal) {
	t.Helper()
	if err := d.prove(c.p, scalarOf(t, c.oldShares[d.Dealer]), nil2rand()); err != nil {
		t.Fatal(err)
	}
}

func nil2rand() *zeroReader { return &zeroReader{} }

// zeroReader is enough for the hedged nonce (the share and message are
// hashed in), and keeps these tests independent of crypto/rand.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// A dealer sends bob a wrong sub-share, correctly sealed and signed: bob
// names it, alice does not notice, and with the dealer excluded by
// agreement everyone completes the same group with the same secret.
func TestReshareInconsistentSubShareNamed(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 3, "alice,bob,dave,erin", nil)
	bad := copyDeal(c.dealOf(t, "carol"))
	wrong := rist.NewScalar().SetUint64(12345)
	wb, _ := wrong.MarshalBinary()
	sealed, err := dkg.SealShare(c.p.Participants[1].HPKEKey, hpkeInfo(bad.Reshare), hpkeAAD(c.p, "carol", "bob", commitmentsDigest(bad.Commitments)), wb)
	if err != nil {
		t.Fatal(err)
	}
	bad.Shares[1].Sealed = sealed
	c.reprove(t, bad)
	deals := []*Deal{c.deals[0], c.deals[1], bad}

	if _, err := Finish(c.p, c.keys["alice"], deals, nil); err != nil {
		t.Fatalf("alice's view is fine, got %v", err)
	}
	_, err = Finish(c.p, c.keys["bob"], deals, nil)
	wantNames(t, err, "carol")
	wantSubstr(t, err, "fails the Feldman check against carol's commitments", "carol sent a wrong sub-share", "can complete without carol")

	g, shares := c.finishAll(t, deals, "carol")
	secret := secretOf(t, c.old, c.oldList("alice", "bob"))
	if !bytes.Equal(secretOf(t, g, shares[:3]), secret) {
		t.Fatal("reshare without carol lost the secret")
	}
	full, _ := c.finishAll(t, c.deals)
	if full.ID == g.ID {
		t.Fatal("excluding a dealer did not change the new group")
	}
}

// A dealer that deals a value other than its share, with a consistent
// polynomial and a valid proof, is named by every new participant.
func TestReshareWrongConstantTermNamed(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 2, "x,y,z", nil)
	s := scalarOf(t, c.oldShares["bob"])
	one := rist.NewScalar().SetUint64(1)
	b1, _ := dkg.RandomScalar(zeroReader{})
	poly := []group.Scalar{rist.NewScalar().Add(s, one), b1.Add(b1, one)}
	bad, err := sealDeal(c.p, "bob", poly)
	if err != nil {
		t.Fatal(err)
	}
	c.reprove(t, bad)
	for _, n := range []string{"x", "y", "z"} {
		_, err := Finish(c.p, c.keys[n], []*Deal{c.deals[0], bad, c.deals[2]}, nil)
		wantNames(t, err, "bob")
		wantSubstr(t, err, "constant-term commitment is not bob's public share", "bob dealt a value other than its share")
	}
}

// A deal with no sub-share for dave: dave names the dealer and himself as
// receiving nothing; a participant given no deals names every dealer.
func TestReshareMissingSubShareNamed(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 2, "alice,bob,dave", nil)
	bad := copyDeal(c.dealOf(t, "bob"))
	bad.Shares = bad.Shares[:2]
	c.reprove(t, bad)
	_, err := Finish(c.p, c.keys["dave"], []*Deal{c.deals[0], bad, c.deals[2]}, nil)
	wantNames(t, err, "bob")
	wantSubstr(t, err, "has no sub-share for dave: dave would receive nothing from bob")

	_, err = Finish(c.p, c.keys["dave"], nil, nil)
	wantNames(t, err, "alice", "bob", "carol")
	wantSubstr(t, err, "alice: no deal file received", "carol: no deal file received", "excluding them would leave 0 dealers")

	_, err = Finish(c.p, c.keys["dave"], c.deals[:2], nil)
	wantNames(t, err, "carol")
	wantSubstr(t, err, "it can complete without carol")
}

// A deal altered in transit, or made in another holder's name by someone
// without its share, fails the proof and names that dealer's deal.
func TestReshareForgedOrAlteredDeal(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 2, "x,y", nil)
	altered := copyDeal(c.dealOf(t, "carol"))
	altered.Shares[0].Sealed[40] ^= 1
	_, err := Finish(c.p, c.keys["x"], []*Deal{c.deals[0], c.deals[1], altered}, nil)
	wantNames(t, err, "carol")
	wantSubstr(t, err, "proof does not verify under carol's public share")

	// Mallory knows everything public but not carol's share: she deals
	// a polynomial of her own in carol's name with carol's public share as
	// the constant-term commitment she cannot open.
	m1, _ := dkg.RandomScalar(zeroReader{})
	forged, err := sealDeal(c.p, "carol", []group.Scalar{m1, rist.NewScalar().SetUint64(5)})
	if err != nil {
		t.Fatal(err)
	}
	x, _ := publicShare(c.old, 3)
	xb, _ := x.MarshalBinary()
	forged.Commitments[0] = xb
	if forged.Proof, err = proveDeal(m1, x, forged.signedMessage(c.p), zeroReader{}); err != nil {
		t.Fatal(err)
	}
	_, err = Finish(c.p, c.keys["x"], []*Deal{c.deals[0], c.deals[1], forged}, nil)
	wantNames(t, err, "carol")
	wantSubstr(t, err, "proof does not verify")

	// A proof moved from another deal of the same dealer does not verify.
	moved := copyDeal(c.dealOf(t, "alice"))
	other, err := MakeDeal(c.p, c.oldShares["alice"], nil)
	if err != nil {
		t.Fatal(err)
	}
	moved.Proof = other.Proof
	_, err = Finish(c.p, c.keys["x"], []*Deal{moved, c.deals[1], c.deals[2]}, nil)
	wantSubstr(t, err, "alice: ", "proof does not verify")
}

// A deal of another ceremony (same old group and people) is refused; so
// is a sealed sub-share moved to another recipient even if re-signed; two
// different deals of one dealer are named; a deal of a non-dealer is refused.
func TestReshareReplayAndEquivocation(t *testing.T) {
	a := setup(t, 2, "alice,bob,carol", 2, "x,y", nil)
	// Same old group, people and keys: another ceremony differs by its nonce only.
	var pubs []*Pub
	for _, n := range []string{"x", "y"} {
		pubs = append(pubs, a.keys[n].Pub())
	}
	p, err := NewParams(a.old, nil, 2, names("x,y"), pubs, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Finish(p, a.keys["x"], a.deals, nil)
	wantNames(t, err, "alice", "bob", "carol")
	wantSubstr(t, err, "made for reshare")

	redirected := copyDeal(a.dealOf(t, "bob"))
	redirected.Shares[0].Sealed = redirected.Shares[1].Sealed
	a.reprove(t, redirected)
	_, err = Finish(a.p, a.keys["x"], []*Deal{a.deals[0], redirected, a.deals[2]}, nil)
	wantNames(t, err, "bob")
	wantSubstr(t, err, "sub-share for x does not decrypt")

	again, err := MakeDeal(a.p, a.oldShares["bob"], nil)
	if err != nil {
		t.Fatal(err)
	}
	again.Source = "bob.deal.json (second)"
	_, err = Finish(a.p, a.keys["x"], []*Deal{a.deals[0], a.deals[1], again, a.deals[2]}, nil)
	wantNames(t, err, "bob")
	wantSubstr(t, err, "two different deals of bob")
	// The identical file twice is fine.
	if _, err := Finish(a.p, a.keys["x"], append(slices.Clone(a.deals), a.deals[1]), nil); err != nil {
		t.Fatal(err)
	}

	stray, err := MakeDeal(a.p, a.oldShares["carol"], nil)
	if err != nil {
		t.Fatal(err)
	}
	stray.Source = "carol.deal.json"
	cc := setupFrom(t, a.old, a.oldList("alice", "bob", "carol"), 2, "x,y", []string{"alice", "bob"})
	_, err = Finish(cc.p, cc.keys["x"], append(cc.deals, stray), nil)
	wantSubstr(t, err, `carol.deal.json: "carol" is not a dealer of this reshare`)
}

// A key file that is not the one the params list for its participant is
// refused before anything is opened; so is someone not in the new set.
func TestReshareKeyMismatch(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 2, "x,y", nil)
	other, _, _ := NewKey("x", nil)
	_, err := Finish(c.p, other, c.deals, nil)
	wantSubstr(t, err, "the params list a different hpke_key for x")
	stranger, _, _ := NewKey("w", nil)
	_, err = Finish(c.p, stranger, c.deals, nil)
	wantSubstr(t, err, "w is not a new participant")
	_, err = Finish(c.p, c.keys["x"], c.deals, []string{"zed"})
	wantSubstr(t, err, `cannot exclude "zed"`)
}

// The Schnorr proof alone: verifies for the honest signer, fails for any
// other message, key or altered proof.
func TestReshareProof(t *testing.T) {
	s, _ := dkg.RandomScalar(zeroReader{})
	s.Add(s, rist.NewScalar().SetUint64(99))
	x := rist.NewElement().MulGen(s)
	msg := []byte("deal")
	pr, err := proveDeal(s, x, msg, zeroReader{})
	if err != nil {
		t.Fatal(err)
	}
	if !verifyProof(x, msg, pr) {
		t.Fatal("honest proof refused")
	}
	if verifyProof(x, []byte("deaL"), pr) {
		t.Error("proof verified for another message")
	}
	if verifyProof(rist.NewElement().Add(x, rist.Generator()), msg, pr) {
		t.Error("proof verified under another key")
	}
	for i := range pr {
		bad := slices.Clone(pr)
		bad[i] ^= 1
		if verifyProof(x, msg, bad) {
			t.Errorf("proof verified with byte %d flipped", i)
		}
	}
	// A random source stuck at zeros still gives different nonces for
	// different messages (the nonce is hedged with the share and message).
	pr2, _ := proveDeal(s, x, []byte("other"), zeroReader{})
	if bytes.Equal(pr[:32], pr2[:32]) {
		t.Error("two messages signed with one nonce")
	}
}
