package reshare

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/cloudflare/circl/group"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/dkg"
)

// Result is what Finish produces for one new participant.
type Result struct {
	// Group is the new descriptor: identical for every new participant who
	// used the same params, deals and exclusions. It inherits the old
	// group's KeyID, and its C_0 equals the old group's.
	Group *psk.Group
	Share *psk.Share // this participant's new share; the caller wipes it
	// Dealers are the old holders whose deals were combined, Excluded the
	// listed dealers left out by agreement; both in old index order.
	Dealers, Excluded []string
}

// contribution is a verified deal: the dealer's commitments and its
// sub-share for this participant.
type contribution struct {
	cs []group.Element
	y  group.Scalar
}

// Finish verifies, as new participant k.Participant, every deal of the
// dealers listed in p and not in exclude, and combines them into its new
// share and the new group. exclude must be agreed by every new participant
// (it changes the new group's id); at least the old threshold of dealers
// must remain. With any of those dealers' deal missing or wrong it returns a
// *dkg.AbortError naming every one of them and why.
func Finish(p *Params, k *Key, deals []*Deal, exclude []string) (*Result, error) {
	me := p.Index(k.Participant)
	if me == 0 {
		return nil, fmt.Errorf("%s is not a new participant of reshare %s (%s)", k.Participant, short(p.ID()), strings.Join(p.Names(), ","))
	}
	if !k.matches(p.Participants[me-1].HPKEKey) {
		return nil, fmt.Errorf("the params list a different hpke_key for %s than this key file's: they were made with another pub file of yours (or altered); do not use them", k.Participant)
	}
	excluded := map[string]bool{}
	for _, x := range exclude {
		if !contains(p.Dealers, x) {
			return nil, fmt.Errorf("cannot exclude %q: not a dealer of this reshare (%s)", x, strings.Join(p.Dealers, ", "))
		}
		if excluded[x] {
			return nil, fmt.Errorf("%s is excluded twice", x)
		}
		excluded[x] = true
	}
	if left := len(p.Dealers) - len(exclude); left < p.Old.Threshold {
		return nil, fmt.Errorf("excluding %s leaves %d dealers, fewer than the old threshold %d: the secret cannot be reshared from them", strings.Join(exclude, ", "), left, p.Old.Threshold)
	}
	id := p.ID()
	got := map[string]*contribution{}
	defer func() {
		for _, c := range got {
			c.y.SetUint64(0)
		}
	}()
	seen := map[string]*Deal{}
	reasons := map[string][]string{}
	for _, d := range deals {
		src := d.Source
		if src == "" {
			src = "deal of " + d.Dealer
		}
		if !contains(p.Dealers, d.Dealer) {
			return nil, fmt.Errorf("%s: %q is not a dealer of this reshare (%s)", src, d.Dealer, strings.Join(p.Dealers, ", "))
		}
		if excluded[d.Dealer] {
			continue
		}
		if prev := seen[d.Dealer]; prev != nil {
			if !bytes.Equal(prev.signedMessage(p), d.signedMessage(p)) || !bytes.Equal(prev.Proof, d.Proof) {
				// Two deals of one dealer: combining either would split the
				// new participants into groups that differ.
				reasons[d.Dealer] = append(reasons[d.Dealer], fmt.Sprintf("%s and %s are two different deals of %s: it must send one deal, the same, to everyone", prev.Source, src, d.Dealer))
				if c := got[d.Dealer]; c != nil {
					c.y.SetUint64(0)
					delete(got, d.Dealer)
				}
			}
			continue
		}
		seen[d.Dealer] = d
		c, reason := check(p, d, k, me, id)
		if reason != "" {
			reasons[d.Dealer] = append(reasons[d.Dealer], src+": "+reason)
			continue
		}
		got[d.Dealer] = c
	}
	ab := &dkg.AbortError{Threshold: p.Old.Threshold}
	remaining := len(p.Dealers) - len(exclude)
	for _, name := range p.Dealers {
		if excluded[name] || (got[name] != nil && len(reasons[name]) == 0) {
			continue
		}
		reason := "no deal file received"
		if len(reasons[name]) > 0 {
			reason = strings.Join(reasons[name], "; ")
		}
		ab.Faults = append(ab.Faults, dkg.Fault{Participant: name, Reason: reason})
		remaining--
	}
	if len(ab.Faults) > 0 {
		ab.Remaining, ab.CanExclude = remaining, remaining >= p.Old.Threshold
		return nil, ab
	}
	return combine(p, k.Participant, me, got, excluded)
}

// check verifies one deal for new participant me and returns its
// contribution, or the reason it is refused.
func check(p *Params, d *Deal, k *Key, me int, id []byte) (*contribution, string) {
	if subtle.ConstantTimeCompare(d.Reshare, id) != 1 {
		return nil, fmt.Sprintf("made for reshare %s, not this one (%s): another ceremony, or other params", short(d.Reshare), short(id))
	}
	x, err := publicShare(p.Old, oldIndex(p.Old, d.Dealer))
	if err != nil {
		return nil, err.Error()
	}
	if !verifyProof(x, d.signedMessage(p), d.Proof) {
		return nil, fmt.Sprintf("proof does not verify under %s's public share: not made by the holder of %s's share, or altered in transit (ask %s for the file again)", d.Dealer, d.Dealer, d.Dealer)
	}
	if len(d.Commitments) != p.Threshold {
		return nil, fmt.Sprintf("has %d commitments, the new threshold needs %d", len(d.Commitments), p.Threshold)
	}
	cs := make([]group.Element, len(d.Commitments))
	for i, c := range d.Commitments {
		if cs[i], err = dkg.DecodeElement(c); err != nil {
			return nil, fmt.Sprintf("commitments[%d] %v", i, err)
		}
	}
	// The constant term must be the dealer's old share: D_0 == X_i, so a
	// dealer cannot deal anything but the share the old group fixed.
	if !cs[0].IsEqual(x) {
		return nil, fmt.Sprintf("constant-term commitment is not %s's public share in the old group: %s dealt a value other than its share", d.Dealer, d.Dealer)
	}
	var sealed []byte
	for _, s := range d.Shares {
		if s.Recipient == k.Participant {
			if sealed != nil {
				return nil, fmt.Sprintf("has two sub-shares for %s", k.Participant)
			}
			sealed = s.Sealed
		}
	}
	if sealed == nil {
		return nil, fmt.Sprintf("has no sub-share for %s: %s would receive nothing from %s", k.Participant, k.Participant, d.Dealer)
	}
	pt, err := dkg.OpenShare(k.priv, hpkeInfo(id), hpkeAAD(p, d.Dealer, k.Participant, commitmentsDigest(d.Commitments)), sealed)
	if err != nil {
		return nil, fmt.Sprintf("sub-share for %s does not decrypt (sealed to another key, ceremony, dealer or recipient)", k.Participant)
	}
	defer psk.Wipe(pt)
	y, err := dkg.DecodeScalar(pt)
	if err != nil {
		return nil, fmt.Sprintf("sub-share for %s is not a canonical scalar", k.Participant)
	}
	if !dkg.FeldmanOK(cs, me, y) {
		y.SetUint64(0)
		return nil, fmt.Sprintf("sub-share for %s fails the Feldman check against %s's commitments: %s sent a wrong sub-share", k.Participant, d.Dealer, d.Dealer)
	}
	return &contribution{cs: cs, y: y}, ""
}

// lagrangeAtZero is λ_i = prod_{m in set, m != i} m / (m - i) mod l.
func lagrangeAtZero(i int, set []int) group.Scalar {
	num := rist.NewScalar().SetUint64(1)
	den := rist.NewScalar().SetUint64(1)
	xi := rist.NewScalar().SetUint64(uint64(i))
	for _, m := range set {
		if m == i {
			continue
		}
		xm := rist.NewScalar().SetUint64(uint64(m))
		num.Mul(num, xm)
		den.Mul(den, rist.NewScalar().Sub(xm, xi))
	}
	return num.Mul(num, den.Inv(den))
}

// combine builds the new share Σ λ_i g_i(j) and the new commitments
// Σ λ_i D_{i,k} over the dealers used.
func combine(p *Params, name string, me int, got map[string]*contribution, excluded map[string]bool) (*Result, error) {
	res := &Result{}
	var set []int
	for _, d := range p.Dealers {
		if excluded[d] {
			res.Excluded = append(res.Excluded, d)
			continue
		}
		res.Dealers = append(res.Dealers, d)
		set = append(set, oldIndex(p.Old, d))
	}
	sum := rist.NewScalar()
	defer sum.SetUint64(0)
	cs := make([]group.Element, p.Threshold)
	for k := range cs {
		cs[k] = rist.Identity()
	}
	for n, d := range res.Dealers {
		l := lagrangeAtZero(set[n], set)
		c := got[d]
		t := rist.NewScalar().Mul(l, c.y)
		sum.Add(sum, t)
		t.SetUint64(0)
		for k := range cs {
			cs[k].Add(cs[k], rist.NewElement().Mul(c.cs[k], l))
		}
	}
	// C'_0 = Σ λ_i X_i = s·G must be the old C_0: the secret is unchanged.
	// Each D_{i,0} == X_i was checked, so this is a guard against a bug.
	c0, err := publicShare(p.Old, 0)
	if err != nil {
		return nil, err
	}
	if !cs[0].IsEqual(c0) {
		return nil, errors.New("internal error: the combined constant-term commitment differs from the old group's")
	}
	raw := make([][]byte, len(cs))
	for k, c := range cs {
		if raw[k], err = c.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	if res.Group, err = psk.NewShamirGroup(p.Old.Name, p.Threshold, p.Names(), raw, p.Old.KeyID()); err != nil {
		return nil, fmt.Errorf("building the new group descriptor: %v", err)
	}
	v, err := sum.MarshalBinary()
	if err != nil {
		return nil, err
	}
	res.Share = &psk.Share{GroupID: res.Group.ID, Index: me, Participant: name, Value: v}
	if err := psk.VerifyShare(res.Group, res.Share); err != nil {
		res.Share.Wipe()
		return nil, errors.New("internal error: the combined share does not verify")
	}
	return res, nil
}
