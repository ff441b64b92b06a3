package demo

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/mcbn/mcbn/psk"
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
	n.say("   group %s…: any 2 shares make the key, 1 alone does not; shares written 0600 in %s", g.ID[:16], dir)
	return k, nil
}
