package demo

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/dkg"
)

// participants of the demo group; two of three must consent.
var participants = []string{"alice", "bob", "carol"}

// keyFiles are the demo's key material on disk (public group, private shares).
type keyFiles struct {
	group  *psk.Group
	groupP string
	shareP map[string]string
}

// setupKeys plays the dealer: a 2-of-3 split whose shares go to files the
// three daemons read. In a real deployment each participant keeps its own
// share and nobody holds all three.
func setupKeys(n *narrator, dir string) (*keyFiles, error) {
	n.say("== Key setup: the demo plays the dealer for a 2-of-3 group (alice, bob, carol)")
	g, shares, err := psk.Split("demo", 2, participants, nil)
	if err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	defer wipeAll(shares)
	k, err := writeKeys(g, shares, dir)
	if err != nil {
		return nil, err
	}
	n.say("   group %s…: any 2 shares make the key, 1 alone does not; shares written 0600 in %s", g.ID[:16], dir)
	return k, nil
}

// writeKeys writes the group descriptor and one 0600 share file each, and
// checks that a single share does not reconstruct.
func writeKeys(g *psk.Group, shares []*psk.Share, dir string) (*keyFiles, error) {
	k := &keyFiles{group: g, groupP: filepath.Join(dir, "group.json"), shareP: map[string]string{}}
	if err := psk.WriteGroup(k.groupP, g); err != nil {
		return nil, err
	}
	for _, s := range shares {
		p := filepath.Join(dir, s.Participant+".share.json")
		if err := psk.WriteShare(p, s); err != nil {
			return nil, err
		}
		k.shareP[s.Participant] = p
	}
	if _, err := psk.Combine(g, shares[:1]); err == nil {
		return nil, errors.New("a single share reconstructed the secret")
	}
	return k, nil
}

// setupKeysDKG makes the same 2-of-3 group with no dealer: the three run
// the ceremony of mcbn psk dkg (init, deal, finish) in memory, and must all
// end with the same group descriptor. The demo still ends up holding all
// three shares, because it plays all three participants; the group secret
// itself is never computed.
func setupKeysDKG(n *narrator, dir string) (*keyFiles, error) {
	n.say("== Key setup: alice, bob and carol run a dealer-free ceremony (DKG) for a 2-of-3 group")
	p := dkg.Params{Group: "demo", Threshold: 2, Participants: participants}
	states := make([]*dkg.State, len(participants))
	pubs := make([]*dkg.Pub, len(participants))
	defer func() {
		for _, st := range states {
			if st != nil {
				st.Wipe()
			}
		}
	}()
	for i, me := range participants {
		st, pub, err := dkg.Init(p, me, nil)
		if err != nil {
			return nil, fmt.Errorf("dkg init %s: %w", me, err)
		}
		states[i], pubs[i] = st, pub
	}
	rounds := make([]*dkg.Round1, len(participants))
	for i, st := range states {
		r, err := dkg.Deal(st, pubs)
		if err != nil {
			return nil, fmt.Errorf("dkg deal %s: %w", st.Me, err)
		}
		rounds[i] = r
	}
	var g *psk.Group
	var shares []*psk.Share
	defer func() { wipeAll(shares) }()
	for _, st := range states {
		res, err := dkg.Finish(st, rounds, nil)
		if err != nil {
			return nil, fmt.Errorf("dkg finish %s: %w", st.Me, err)
		}
		shares = append(shares, res.Share)
		if g == nil {
			g = res.Group
		} else if g.ID != res.Group.ID {
			return nil, fmt.Errorf("dkg: %s ended with group %s, not %s", st.Me, res.Group.ID, g.ID)
		}
	}
	n.say("   each dealt a sharing of its own secret; the group secret is their sum, which nobody computed")
	k, err := writeKeys(g, shares, dir)
	if err != nil {
		return nil, err
	}
	n.say("   group %s… (the same for all three): any 2 shares make the key, 1 alone does not; shares written 0600 in %s", g.ID[:16], dir)
	return k, nil
}

// wipeAll zeroes the share values held in memory once they are on disk.
func wipeAll(shares []*psk.Share) {
	for _, s := range shares {
		s.Wipe()
	}
}
