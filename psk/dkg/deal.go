package dkg

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/mcbn/mcbn/psk"
)

// Deal is round 1. It checks that pubs hold exactly one Pub per participant,
// all for the state's parameters and including this participant's own
// unchanged; fixes the ceremony id (recorded in st, which the caller saves
// before sending the result); and returns the signed Round1 with a sealed
// sub-share f(j) for every other participant j.
//
// Dealing again in the same ceremony is allowed (same commitments, fresh
// encryption), dealing in another ceremony is refused: the same polynomial
// must never be shared to two sets of keys.
func Deal(st *State, pubs []*Pub) (*Round1, error) {
	byIndex := make([]*Pub, st.N()+1)
	var bad []string
	for _, p := range pubs {
		src := p.Source
		if src == "" {
			src = "pub of " + p.Participant
		}
		if !p.Params.Equal(st.Params) {
			bad = append(bad, fmt.Sprintf("%s: participant %s started a different ceremony (%s; yours is %s)", src, p.Participant, p.Params, st.Params))
			continue
		}
		i := st.Index(p.Participant)
		if prev := byIndex[i]; prev != nil {
			if !bytes.Equal(prev.Fingerprint(), p.Fingerprint()) {
				bad = append(bad, fmt.Sprintf("%s: a second, different pub file of participant %s (also %s): ask %s which is theirs", src, p.Participant, prev.Source, p.Participant))
			}
			continue
		}
		byIndex[i] = p
	}
	own, err := st.Pub()
	if err != nil {
		return nil, err
	}
	me := st.Index(st.Me)
	if p := byIndex[me]; p != nil && !bytes.Equal(p.Fingerprint(), own.Fingerprint()) {
		bad = append(bad, fmt.Sprintf("%s: this pub file of %s is not the one this state wrote (keys or commitments differ)", p.Source, st.Me))
	}
	var missing []string
	for i, name := range st.Participants {
		if byIndex[i+1] == nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		bad = append(bad, "no pub file of "+strings.Join(missing, ", "))
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "; "))
	}
	fps := make([][]byte, st.N())
	for i := range fps {
		fps[i] = byIndex[i+1].Fingerprint()
	}
	id := ceremonyID(st.Params, fps)
	if st.Ceremony != nil && !bytes.Equal(st.Ceremony, id) {
		return nil, fmt.Errorf("this state already dealt in ceremony %s; these pub files make ceremony %s: refusing to share the same polynomial twice (run init again for a new ceremony)", short(st.Ceremony), short(id))
	}
	st.Ceremony, st.Pubs = id, byIndex[1:]

	poly, err := st.polynomial()
	if err != nil {
		return nil, err
	}
	defer wipeScalars(poly)
	cs, err := commit(poly)
	if err != nil {
		return nil, err
	}
	r := &Round1{Ceremony: id, PubFingerprints: fps, Sender: st.Me, Commitments: cs}
	info := hpkeInfo(st.Params, id)
	for j, name := range st.Participants {
		if j+1 == me {
			continue
		}
		y := evaluate(poly, j+1)
		yb, err := y.MarshalBinary()
		wipeScalar(y)
		if err != nil {
			return nil, err
		}
		sealed, err := sealShare(byIndex[j+1].HPKEKey, info, hpkeAAD(st.Params, st.Me, name, own.CommitmentsDigest), yb)
		psk.Wipe(yb)
		if err != nil {
			return nil, fmt.Errorf("sealing the sub-share for %s: %v", name, err)
		}
		r.Shares = append(r.Shares, SealedShare{Recipient: name, Sealed: sealed})
	}
	key := st.signingKey()
	defer psk.Wipe(key)
	r.Signature = ed25519.Sign(key, r.signedMessage())
	return r, nil
}
