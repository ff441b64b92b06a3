package dkg

import (
	"slices"
	"testing"

	"github.com/cloudflare/circl/group"
)

// Why a Pub commits to the dealer's commitments (docs/dkg.md, "Bias and
// rushing"): in plain joint Feldman a dealer who sees the others'
// commitments first can, when honest participants are fewer than T (here
// 2-of-2), pick commitments that pass every honest Feldman check and make
// the group secret a value it knows. The arithmetic works; Finish refuses
// because the commitments are not the ones bob's Pub committed to.
func TestDkgRushingDealerRefused(t *testing.T) {
	p := params(2, "alice", "bob")
	ps := ceremony(t, p)
	alice, bob := ps[0], ps[1]

	x := rist.NewScalar().SetUint64(42) // the secret bob wants
	X := rist.NewElement().MulGen(x)
	hA, err := decodeElement(alice.r1.Commitments[0])
	if err != nil {
		t.Fatal(err)
	}
	c0 := rist.NewElement().Add(X, rist.NewElement().Neg(hA)) // X - H
	yA := rist.NewScalar().SetUint64(7)                       // alice's sub-share, known to bob
	c1 := rist.NewElement().Add(rist.NewElement().MulGen(yA), rist.NewElement().Neg(c0))
	c0b, _ := c0.MarshalBinary()
	c1b, _ := c1.MarshalBinary()

	// The attack passes alice's Feldman check, and the group's C_0 is X.
	if !feldmanOK([]group.Element{c0, c1}, 1, yA) {
		t.Fatal("the rushing commitments should pass the Feldman check")
	}
	if !rist.NewElement().Add(hA, c0).IsEqual(X) {
		t.Fatal("the group key should be bob's chosen X")
	}

	r := copyRound1(bob.r1)
	r.Commitments = [][]byte{c0b, c1b}
	yb, _ := yA.MarshalBinary()
	sealed, err := sealShare(alice.pub.HPKEKey, hpkeInfo(p, bob.st.Ceremony), hpkeAAD(p, "bob", "alice", bob.pub.CommitmentsDigest), yb)
	if err != nil {
		t.Fatal(err)
	}
	shareFor(t, r, "alice").Sealed = sealed
	resign(bob.st, r)
	_, err = Finish(alice.st, []*Round1{r}, nil)
	if names := abortNames(t, err); !slices.Equal(names, []string{"bob"}) {
		t.Fatalf("named %v", names)
	}
	wantSubstr(t, err, "commitments differ from those bob committed to")
}
