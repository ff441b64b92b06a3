package dkg

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// A dealer sends one recipient a wrong sub-share (correctly encrypted and
// signed): that recipient names it, the others do not notice, and with the
// dealer excluded by agreement everyone completes the same T-of-N group, in
// which the excluded dealer still holds a working share.
func TestDkgBadSubShare(t *testing.T) {
	p := params(2, "alice", "bob", "mallory")
	ps := ceremony(t, p)
	mal := ps[2]
	bad := copyRound1(mal.r1)
	wrong := rist.NewScalar().SetUint64(12345)
	wb, _ := wrong.MarshalBinary()
	c, err := sealShare(ps[1].pub.HPKEKey, hpkeInfo(p, mal.st.Ceremony), hpkeAAD(p, "mallory", "bob", mal.pub.CommitmentsDigest), wb)
	if err != nil {
		t.Fatal(err)
	}
	shareFor(t, bad, "bob").Sealed = c
	resign(mal.st, bad)

	if _, err := Finish(ps[0].st, []*Round1{ps[1].r1, bad}, nil); err != nil {
		t.Fatalf("alice's view is fine, got %v", err)
	}
	_, err = Finish(ps[1].st, []*Round1{ps[0].r1, bad}, nil)
	if names := abortNames(t, err); !slices.Equal(names, []string{"mallory"}) {
		t.Fatalf("named %v, want mallory", names)
	}
	wantSubstr(t, err, "Feldman", "can complete without mallory")

	// Everyone agrees to exclude mallory, including mallory.
	g, shares := finishAll(t, ps, []*Round1{ps[0].r1, ps[1].r1, bad}, "mallory")
	if g.N() != 3 || g.Threshold != 2 {
		t.Fatalf("group after exclusion: %d-of-%d", g.Threshold, g.N())
	}
	full, _ := finishAll(t, ps, roundsOf(ps))
	if full.ID == g.ID {
		t.Error("excluding a dealer did not change the group")
	}
	var prev []byte
	subsets(3, 2, func(idx []int) {
		s, err := combine(g, pick(shares, idx))
		if err != nil {
			t.Fatalf("combine %v: %v", idx, err)
		}
		if prev != nil && !bytes.Equal(prev, s) {
			t.Errorf("subset %v gives another secret", idx)
		}
		prev = s
	})
}

// A missing round 1 aborts naming the participant; excluding too many is
// refused and the error says a new ceremony is needed.
func TestDkgMissingAndExcludeRules(t *testing.T) {
	p := params(3, "alice", "bob", "carol", "dave")
	ps := ceremony(t, p)
	_, err := Finish(ps[0].st, []*Round1{ps[1].r1, ps[2].r1}, nil)
	if names := abortNames(t, err); !slices.Equal(names, []string{"dave"}) {
		t.Fatalf("named %v, want dave", names)
	}
	wantSubstr(t, err, "no round 1 file", "can complete without dave")

	_, err = Finish(ps[0].st, []*Round1{ps[1].r1}, nil)
	if names := abortNames(t, err); !slices.Equal(names, []string{"carol", "dave"}) {
		t.Fatalf("named %v, want carol, dave", names)
	}
	wantSubstr(t, err, "fewer than the threshold 3: start a new ceremony")

	_, err = Finish(ps[0].st, roundsOf(ps), []string{"bob", "carol"})
	wantSubstr(t, err, "leaves 2 dealers, fewer than the threshold 3")
	_, err = Finish(ps[0].st, roundsOf(ps), []string{"zed"})
	wantSubstr(t, err, `cannot exclude "zed"`)

	// Excluding dave when his file is missing completes for everyone.
	finishAll(t, ps, []*Round1{ps[0].r1, ps[1].r1, ps[2].r1}, "dave")
}

// A dealer that publishes commitments other than those its Pub committed to
// (choosing its polynomial after seeing the others') is named.
func TestDkgCommitmentsChanged(t *testing.T) {
	p := params(2, "alice", "bob", "mallory")
	ps := ceremony(t, p)
	other, _, err := Init(p, "mallory", nil)
	if err != nil {
		t.Fatal(err)
	}
	other.Ceremony, other.Pubs = ps[2].st.Ceremony, ps[2].st.Pubs
	// Mallory deals a fresh polynomial under her committed keys.
	other.hpkePriv, other.signSeed = ps[2].st.hpkePriv, ps[2].st.signSeed
	r := copyRound1(ps[2].r1)
	cs, err := other.commitments()
	if err != nil {
		t.Fatal(err)
	}
	r.Commitments = cs
	resign(ps[2].st, r)
	_, err = Finish(ps[0].st, []*Round1{ps[1].r1, r}, nil)
	if names := abortNames(t, err); !slices.Equal(names, []string{"mallory"}) {
		t.Fatalf("named %v", names)
	}
	wantSubstr(t, err, "commitments differ from those mallory committed to")
}

// Commitments that differ between recipients: mallory gives alice and bob
// different Pub files (so different commitments). Their ceremony ids differ,
// so each refuses the other's round 1, and the message names mallory's Pub.
func TestDkgEquivocation(t *testing.T) {
	p := params(2, "alice", "bob", "mallory")
	ps := initAll(t, p)
	mal2, malPub2, err := Init(p, "mallory", nil)
	if err != nil {
		t.Fatal(err)
	}
	alicePubs := []*Pub{ps[0].pub, ps[1].pub, ps[2].pub}
	bobPubs := []*Pub{ps[0].pub, ps[1].pub, malPub2}
	ra, err := Deal(ps[0].st, alicePubs)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Deal(ps[1].st, bobPubs)
	if err != nil {
		t.Fatal(err)
	}
	rm1, err := Deal(ps[2].st, alicePubs)
	if err != nil {
		t.Fatal(err)
	}
	rm2, err := Deal(mal2, bobPubs)
	if err != nil {
		t.Fatal(err)
	}
	// Alice cannot tell whether mallory sent two pub files or bob's round
	// 1 lies about mallory's: she names both, with why, and offers no
	// exclusion (the ceremony ids differ, so only a new ceremony helps).
	_, err = Finish(ps[0].st, []*Round1{rb, rm1}, nil)
	if names := abortNames(t, err); !slices.Equal(names, []string{"bob", "mallory"}) {
		t.Fatalf("alice named %v", names)
	}
	var ab *AbortError
	if !errors.As(err, &ab) || !ab.Equivocation || ab.CanExclude {
		t.Fatalf("alice: want an equivocation abort without exclusion, got %+v", ab)
	}
	wantSubstr(t, err, "bob: its round 1 was made with a different pub file of mallory",
		"mallory: bob was shown a different pub file of mallory", "start a new ceremony")
	_, err = Finish(ps[1].st, []*Round1{ra, rm2}, nil)
	if names := abortNames(t, err); !slices.Equal(names, []string{"alice", "mallory"}) {
		t.Fatalf("bob named %v", names)
	}
	wantSubstr(t, err, "alice was shown a different pub file of mallory")
	// Mallory's second view of the ceremony is refused by alice too.
	_, err = Finish(ps[0].st, []*Round1{rb, rm2}, nil)
	wantSubstr(t, err, "mallory: ", "different pub file of mallory")
}

// A dealer who deals with a false pub file of someone else cannot single
// that one out: naming mallory with bob leaves bob a word against hers.
// A false pub file of the recipient herself is mallory's fault alone.
func TestDkgFramingByFalsePubFile(t *testing.T) {
	p := params(2, "alice", "bob", "mallory")
	// frame runs a ceremony in which alice and bob deal honestly and
	// mallory deals with the false pub file of victim in place of the real
	// one, and returns what alice's finish says.
	frame := func(victim int) error {
		ps := initAll(t, p)
		_, fake, err := Init(p, p.Participants[victim], nil)
		if err != nil {
			t.Fatal(err)
		}
		honest := []*Pub{ps[0].pub, ps[1].pub, ps[2].pub}
		rb, err := Deal(ps[1].st, honest)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Deal(ps[0].st, honest); err != nil {
			t.Fatal(err)
		}
		forged := slices.Clone(honest)
		forged[victim] = fake
		rm, err := Deal(ps[2].st, forged)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Finish(ps[0].st, []*Round1{rb, rm}, nil)
		return err
	}
	if names := abortNames(t, frame(1)); !slices.Equal(names, []string{"bob", "mallory"}) {
		t.Fatalf("framing bob: alice named %v", names)
	}
	err := frame(0)
	if names := abortNames(t, err); !slices.Equal(names, []string{"mallory"}) {
		t.Fatalf("framing alice herself: alice named %v", names)
	}
	wantSubstr(t, err, "a pub file of yours (alice) that is not the one you wrote")
}

// A round 1 of another ceremony (same parameters, same people) is refused,
// also when its ceremony field is rewritten; so is a ciphertext moved to
// another recipient or into another ceremony, even re-signed by its dealer.
func TestDkgReplay(t *testing.T) {
	p := params(2, "alice", "bob", "carol")
	old := ceremony(t, p)
	ps := ceremony(t, p)

	_, err := Finish(ps[0].st, []*Round1{old[1].r1, ps[2].r1}, nil)
	wantSubstr(t, err, "bob: ", "made for ceremony")

	r := copyRound1(old[1].r1)
	r.Ceremony = ps[0].st.Ceremony
	_, err = Finish(ps[0].st, []*Round1{r, ps[2].r1}, nil)
	wantSubstr(t, err, "bob: ", "signature does not verify")

	// Bob (cheating) copies his old ceremony's sealed share into the new
	// round 1 and signs it: it does not open.
	r = copyRound1(ps[1].r1)
	shareFor(t, r, "alice").Sealed = shareFor(t, old[1].r1, "alice").Sealed
	resign(ps[1].st, r)
	_, err = Finish(ps[0].st, []*Round1{r, ps[2].r1}, nil)
	wantSubstr(t, err, "bob: ", "does not decrypt")

	// Redirect: carol's sealed share relabelled for alice.
	r = copyRound1(ps[1].r1)
	shareFor(t, r, "alice").Sealed = shareFor(t, ps[1].r1, "carol").Sealed
	resign(ps[1].st, r)
	_, err = Finish(ps[0].st, []*Round1{r, ps[2].r1}, nil)
	wantSubstr(t, err, "bob: ", "does not decrypt")

	// Nobody else can pass a round 1 off as bob's.
	r = copyRound1(ps[2].r1)
	r.Sender = "bob"
	_, err = Finish(ps[0].st, []*Round1{r, ps[2].r1}, nil)
	wantSubstr(t, err, "bob: ", "signature does not verify")
}

// The HPKE binding alone: a sealed sub-share opens only with the exact
// ceremony, parameters, round, sender, recipient and commitments.
func TestDkgHPKEBinding(t *testing.T) {
	p := params(2, "alice", "bob", "carol")
	ps := ceremony(t, p)
	bob := ps[1]
	sealed := shareFor(t, bob.r1, "alice").Sealed
	info := hpkeInfo(p, bob.st.Ceremony)
	aad := hpkeAAD(p, "bob", "alice", bob.pub.CommitmentsDigest)
	priv := ps[0].st.hpkePriv
	if _, err := openShare(priv, info, aad, sealed); err != nil {
		t.Fatalf("honest open: %v", err)
	}
	otherID := append([]byte(nil), bob.st.Ceremony...)
	otherID[0] ^= 1
	p2 := params(2, "alice", "bob", "dave")
	p3 := params(3, "alice", "bob", "carol")
	p4 := Params{Group: "other", Threshold: 2, Participants: p.Participants}
	aadRound := append([]byte(nil), aad...)
	aadRound[0] = 2
	cases := map[string][2][]byte{
		"ceremony":     {hpkeInfo(p, otherID), aad},
		"participants": {hpkeInfo(p2, bob.st.Ceremony), aad},
		"threshold":    {hpkeInfo(p3, bob.st.Ceremony), aad},
		"group":        {hpkeInfo(p4, bob.st.Ceremony), aad},
		"round":        {info, aadRound},
		"sender":       {info, hpkeAAD(p, "carol", "alice", bob.pub.CommitmentsDigest)},
		"recipient":    {info, hpkeAAD(p, "bob", "carol", bob.pub.CommitmentsDigest)},
		"commitments":  {info, hpkeAAD(p, "bob", "alice", ps[2].pub.CommitmentsDigest)},
	}
	for name, c := range cases {
		if _, err := openShare(priv, c[0], c[1], sealed); err == nil {
			t.Errorf("opened with another %s", name)
		}
	}
	for i := range sealed {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 0x40
		if _, err := openShare(priv, info, aad, bad); err == nil {
			t.Errorf("opened with byte %d flipped", i)
		}
	}
}

// A tampered ciphertext in transit breaks the signature and is named.
func TestDkgTamperedCiphertext(t *testing.T) {
	ps := ceremony(t, params(2, "alice", "bob", "carol"))
	r := copyRound1(ps[2].r1)
	shareFor(t, r, "alice").Sealed[40] ^= 1
	_, err := Finish(ps[0].st, []*Round1{ps[1].r1, r}, nil)
	if names := abortNames(t, err); !slices.Equal(names, []string{"carol"}) {
		t.Fatalf("named %v", names)
	}
	wantSubstr(t, err, "signature does not verify")
}

// Deal refuses wrong, missing, foreign or conflicting pub files, and a
// second ceremony for the same state; dealing again in the same ceremony
// keeps the commitments.
func TestDkgDealChecks(t *testing.T) {
	p := params(2, "alice", "bob", "carol")
	ps := initAll(t, p)
	pubs := pubsOf(ps)
	_, err := Deal(ps[0].st, pubs[:2])
	wantSubstr(t, err, "no pub file of carol")

	_, foreign, err := Init(params(2, "alice", "bob", "dave"), "bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign.Source = "bob.pub.json"
	_, err = Deal(ps[0].st, []*Pub{pubs[0], foreign, pubs[2]})
	wantSubstr(t, err, "bob.pub.json: participant bob started a different ceremony", "no pub file of bob")

	_, bob2, _ := Init(p, "bob", nil)
	_, err = Deal(ps[0].st, []*Pub{pubs[0], pubs[1], bob2, pubs[2]})
	wantSubstr(t, err, "second, different pub file of participant bob")

	_, alice2, _ := Init(p, "alice", nil)
	_, err = Deal(ps[0].st, []*Pub{alice2, pubs[1], pubs[2]})
	wantSubstr(t, err, "not the one this state wrote")

	r1, err := Deal(ps[0].st, pubs)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Deal(ps[0].st, pubs)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(r1.Commitments, r2.Commitments, bytes.Equal) || bytes.Equal(r1.Shares[0].Sealed, r2.Shares[0].Sealed) {
		t.Error("dealing again should keep commitments and re-encrypt")
	}
	_, err = Deal(ps[0].st, []*Pub{pubs[0], bob2, pubs[2]})
	wantSubstr(t, err, "already dealt in ceremony", "refusing to share the same polynomial twice")

	lowOrder := *pubs[1]
	lowOrder.HPKEKey = make([]byte, 32)
	b, err := lowOrder.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParsePub(b)
	wantSubstr(t, err, `hpke_key of "bob" is not a usable X25519 public key`)

	_, _, err = Init(p, "zed", nil)
	wantSubstr(t, err, `"zed" is not in the participant list`)
	_, _, err = Init(params(4, "alice", "bob", "carol"), "alice", nil)
	wantSubstr(t, err, "threshold 4 is greater")
}

// Finish needs a dealt state; a stray sender is refused naming the file.
func TestDkgFinishPreconditions(t *testing.T) {
	p := params(2, "alice", "bob", "carol")
	ps := initAll(t, p)
	_, err := Finish(ps[0].st, nil, nil)
	wantSubstr(t, err, "has not dealt yet")
	dealAll(t, ps)
	r := copyRound1(ps[1].r1)
	r.Sender, r.Source = "zed", "zed.round1.json"
	_, err = Finish(ps[0].st, []*Round1{r}, nil)
	wantSubstr(t, err, `zed.round1.json: sender "zed" is not a participant`)
	_, err = Finish(ps[0].st, roundsOf(ps), []string{"bob", "bob"})
	wantSubstr(t, err, "bob is excluded twice")
}
