package dkg

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	"github.com/cloudflare/circl/group"
	"github.com/mcbn/mcbn/psk"
)

// Result is what Finish produces for one participant.
type Result struct {
	Group *psk.Group // identical for every participant who used the same files and exclusions
	Share *psk.Share // this participant's share; the caller wipes it
	// Qual are the dealers whose contributions make up the group secret,
	// Excluded the ones left out by agreement; both in index order.
	Qual, Excluded []string
}

// Fault is a problem with one dealer's round 1, as seen by this participant.
type Fault struct {
	Participant string
	Reason      string
}

// AbortError is Finish's answer when some dealer's round 1 is missing or
// wrong: it names every such dealer, and says whether the others could
// complete without them (at least T dealers would remain).
type AbortError struct {
	Faults     []Fault
	Remaining  int // dealers left if every faulty one were excluded too
	Threshold  int
	CanExclude bool
	// Equivocation is set when participants saw different pub files of
	// the participants Faults names: the ceremony ids differ, so no
	// exclusion can repair it and a new ceremony must start.
	Equivocation bool
}

// Names are the faulty dealers, in index order, each once.
func (e *AbortError) Names() []string {
	var out []string
	for _, f := range e.Faults {
		if len(out) == 0 || out[len(out)-1] != f.Participant {
			out = append(out, f.Participant)
		}
	}
	return out
}

func (e *AbortError) Error() string {
	var parts []string
	for _, f := range e.Faults {
		parts = append(parts, f.Participant+": "+f.Reason)
	}
	msg := "ceremony aborted, nothing written: " + strings.Join(parts, "; ")
	if e.Equivocation {
		return msg + "; the participants do not hold the same pub files, so their ceremony ids differ and no --exclude can join them: " +
			"compare the pub file fingerprints (deal prints them) with everyone by a channel you trust, and start a new ceremony " +
			"without whoever sent different pub files to different people or made a false round 1"
	}
	if e.CanExclude {
		return msg + fmt.Sprintf("; it can complete without %s if every participant agrees to exclude them (%d dealers remain, %d needed)", strings.Join(e.Names(), ", "), e.Remaining, e.Threshold)
	}
	return msg + fmt.Sprintf("; excluding them would leave %d dealers, fewer than the threshold %d: start a new ceremony", e.Remaining, e.Threshold)
}

// good is a verified contribution: the dealer's commitments and its
// sub-share for this participant.
type good struct {
	cs []group.Element
	y  group.Scalar
}

// Finish verifies every dealer's round 1 as seen by st.Me and sums the
// contributions of all participants not in exclude into this participant's
// share and the group's commitments. exclude must be agreed by everyone (it
// changes the group); at least T dealers must remain. With any dealer
// outside exclude missing or wrong, it returns an *AbortError naming them.
func Finish(st *State, rounds []*Round1, exclude []string) (*Result, error) {
	if st.Ceremony == nil {
		return nil, fmt.Errorf("state of %s has not dealt yet: run deal first", st.Me)
	}
	excluded := make([]bool, st.N()+1)
	for _, x := range exclude {
		i := st.Index(x)
		if i == 0 {
			return nil, fmt.Errorf("cannot exclude %q: not a participant (%s)", x, strings.Join(st.Participants, ", "))
		}
		if excluded[i] {
			return nil, fmt.Errorf("%s is excluded twice", x)
		}
		excluded[i] = true
	}
	if left := st.N() - len(exclude); left < st.Threshold {
		return nil, fmt.Errorf("excluding %s leaves %d dealers, fewer than the threshold %d: start a new ceremony", strings.Join(exclude, ", "), left, st.Threshold)
	}
	me := st.Index(st.Me)
	priv := st.hpkePriv
	info := hpkeInfo(st.Params, st.Ceremony)
	got := make([]*good, st.N()+1)
	defer func() {
		for _, g := range got {
			if g != nil {
				wipeScalar(g.y)
			}
		}
	}()
	reasons := make([][]string, st.N()+1)
	// claims[i] lists the participants j whose pub file, as the sender i
	// of an otherwise sound round 1 (signed with the key we know for i)
	// saw it, differs from ours. That is i's word only: j may have sent
	// different pub files to different people, or i may be lying about
	// j's. So both are named, except that a claim about our own pub file
	// can only be false (or a copy altered on its way to i): then i alone.
	claims := make([][]int, st.N()+1)
	for _, r := range rounds {
		i := st.Index(r.Sender)
		src := r.Source
		if src == "" {
			src = "round 1 of " + r.Sender
		}
		if i == 0 {
			return nil, fmt.Errorf("%s: sender %q is not a participant of this ceremony (%s)", src, r.Sender, strings.Join(st.Participants, ", "))
		}
		if i == me || excluded[i] || got[i] != nil {
			continue // own dealing comes from the state; excluded are ignored
		}
		if js := st.equivocated(r, i); len(js) > 0 {
			claims[i] = js
			continue
		}
		g, reason := st.check(r, i, priv, info)
		if reason != "" {
			reasons[i] = append(reasons[i], src+": "+reason)
			continue
		}
		got[i] = g
	}
	ab := &AbortError{Threshold: st.Threshold}
	if f := st.equivocationFaults(claims, me); len(f) > 0 {
		ab.Faults, ab.Equivocation = f, true
		return nil, ab
	}
	remaining := st.N() - len(exclude)
	for i := 1; i <= st.N(); i++ {
		if i == me || excluded[i] || got[i] != nil {
			continue
		}
		reason := "no round 1 file received"
		if len(reasons[i]) > 0 {
			reason = strings.Join(reasons[i], "; ")
		}
		ab.Faults = append(ab.Faults, Fault{Participant: st.Participants[i-1], Reason: reason})
		remaining--
	}
	if len(ab.Faults) > 0 {
		ab.Remaining, ab.CanExclude = remaining, remaining >= st.Threshold
		return nil, ab
	}
	if !excluded[me] {
		own, err := st.ownContribution()
		if err != nil {
			return nil, err
		}
		got[me] = own
	}
	return st.combine(got, excluded)
}

// check verifies one dealer's round 1 for this participant and returns its
// contribution, or the reason it is refused.
func (st *State) check(r *Round1, i int, priv, info []byte) (*good, string) {
	pub := st.Pubs[i-1]
	if subtle.ConstantTimeCompare(r.Ceremony, st.Ceremony) != 1 {
		return nil, fmt.Sprintf("made for ceremony %s, not this one (%s)%s", short(r.Ceremony), short(st.Ceremony), st.whoseFingerprints(r))
	}
	if !r.verifySignature(pub.SignKey) {
		return nil, fmt.Sprintf("signature does not verify under %s's key: altered in transit or not written by %s (ask for the file again)", r.Sender, r.Sender)
	}
	if len(r.Commitments) != st.Threshold {
		return nil, fmt.Sprintf("has %d commitments, the threshold needs %d", len(r.Commitments), st.Threshold)
	}
	if subtle.ConstantTimeCompare(commitmentsDigest(r.Commitments), pub.CommitmentsDigest) != 1 {
		return nil, fmt.Sprintf("commitments differ from those %s committed to in its pub file (signed by %s: a dealer changing its polynomial)", r.Sender, r.Sender)
	}
	var sealed []byte
	for _, s := range r.Shares {
		if s.Recipient == st.Me {
			if sealed != nil {
				return nil, fmt.Sprintf("has two sub-shares for %s", st.Me)
			}
			sealed = s.Sealed
		}
	}
	if sealed == nil {
		return nil, fmt.Sprintf("has no sub-share for %s", st.Me)
	}
	pt, err := openShare(priv, info, hpkeAAD(st.Params, r.Sender, st.Me, pub.CommitmentsDigest), sealed)
	if err != nil {
		return nil, fmt.Sprintf("sub-share for %s does not decrypt (tampered, or sealed for another key, ceremony, sender or recipient)", st.Me)
	}
	defer psk.Wipe(pt)
	y, err := decodeScalar(pt)
	if err != nil {
		return nil, fmt.Sprintf("sub-share for %s is not a canonical scalar", st.Me)
	}
	cs := make([]group.Element, len(r.Commitments))
	for k, c := range r.Commitments {
		if cs[k], err = decodeElement(c); err != nil {
			wipeScalar(y)
			return nil, fmt.Sprintf("commitments[%d] %v", k, err)
		}
	}
	if !feldmanOK(cs, st.Index(st.Me), y) {
		wipeScalar(y)
		return nil, fmt.Sprintf("sub-share for %s fails the Feldman check against %s's commitments: a wrong sub-share", st.Me, r.Sender)
	}
	return &good{cs: cs, y: y}, ""
}

// equivocationFaults turns the claims of Finish into one fault per named
// participant, in index order.
func (st *State) equivocationFaults(claims [][]int, me int) []Fault {
	why := make([][]string, st.N()+1)
	for i, js := range claims {
		for _, j := range js {
			name := st.Participants[j-1]
			if j == me {
				why[i] = append(why[i], fmt.Sprintf("its round 1 was made with a pub file of yours (%s) that is not the one you wrote: a false round 1, or your pub file was altered on its way to %s", name, st.Participants[i-1]))
				continue
			}
			why[i] = append(why[i], fmt.Sprintf("its round 1 was made with a different pub file of %s than yours", name))
			why[j] = append(why[j], fmt.Sprintf("%s was shown a different pub file of %s than you were (%s sent different pub files, or %s's round 1 is false)", st.Participants[i-1], name, name, st.Participants[i-1]))
		}
	}
	var out []Fault
	for k := 1; k <= st.N(); k++ {
		if len(why[k]) > 0 {
			out = append(out, Fault{Participant: st.Participants[k-1], Reason: strings.Join(why[k], "; ")})
		}
	}
	return out
}

// equivocated returns the indices of the participants whose pub file, as
// r's sender saw it, differs from ours, when r is otherwise a valid round 1
// of the same parameters: signed by its sender under the key we know, with
// a ceremony id that its fingerprints explain. Otherwise it returns nil and
// check reports what is wrong with r.
func (st *State) equivocated(r *Round1, i int) []int {
	if subtle.ConstantTimeCompare(r.Ceremony, st.Ceremony) == 1 || len(r.PubFingerprints) != st.N() ||
		!bytes.Equal(ceremonyID(st.Params, r.PubFingerprints), r.Ceremony) || !r.verifySignature(st.Pubs[i-1].SignKey) {
		return nil
	}
	var out []int
	for j, p := range st.Pubs {
		if !bytes.Equal(p.Fingerprint(), r.PubFingerprints[j]) {
			out = append(out, j+1)
		}
	}
	return out
}

// whoseFingerprints says whose Pub differs between r's ceremony and ours.
func (st *State) whoseFingerprints(r *Round1) string {
	if len(r.PubFingerprints) != st.N() || !bytes.Equal(ceremonyID(st.Params, r.PubFingerprints), r.Ceremony) {
		return ": a different group, threshold or participant list"
	}
	var differ []string
	for i, p := range st.Pubs {
		if !bytes.Equal(p.Fingerprint(), r.PubFingerprints[i]) {
			differ = append(differ, p.Participant)
		}
	}
	return fmt.Sprintf(": %s used a different pub file of %s than you did (compare pub files out of band; a participant may have sent different ones to different people)", r.Sender, strings.Join(differ, ", "))
}

// ownContribution is this participant's own dealing, from the state.
func (st *State) ownContribution() (*good, error) {
	poly, err := st.polynomial()
	if err != nil {
		return nil, err
	}
	defer wipeScalars(poly)
	cs := make([]group.Element, len(poly))
	for k, c := range poly {
		cs[k] = rist.NewElement().MulGen(c)
	}
	return &good{cs: cs, y: evaluate(poly, st.Index(st.Me))}, nil
}

// combine sums the contributions into the psk group descriptor and share.
func (st *State) combine(got []*good, excluded []bool) (*Result, error) {
	res := &Result{}
	sum := rist.NewScalar()
	defer wipeScalar(sum)
	cs := make([]group.Element, st.Threshold)
	for k := range cs {
		cs[k] = rist.Identity()
	}
	for i := 1; i <= st.N(); i++ {
		name := st.Participants[i-1]
		if excluded[i] {
			res.Excluded = append(res.Excluded, name)
			continue
		}
		res.Qual = append(res.Qual, name)
		sum.Add(sum, got[i].y)
		for k := range cs {
			cs[k].Add(cs[k], got[i].cs[k])
		}
	}
	g := &psk.Group{Version: psk.GroupVersion, Type: psk.TypeGroup, Name: st.Group, Scheme: psk.SchemeShamir, Threshold: st.Threshold}
	for i, name := range st.Participants {
		g.Participants = append(g.Participants, psk.Participant{Index: i + 1, Name: name})
	}
	var raw [][]byte
	for _, c := range cs {
		b, err := c.MarshalBinary()
		if err != nil {
			return nil, err
		}
		raw = append(raw, b)
		g.Commitments = append(g.Commitments, fmt.Sprintf("%x", b))
	}
	g.ID = groupID(g, raw)
	data, err := g.Marshal()
	if err != nil {
		return nil, err
	}
	if res.Group, err = psk.ParseGroup(data); err != nil { // re-checks the id
		return nil, fmt.Errorf("building the group descriptor: %v", err)
	}
	v, err := sum.MarshalBinary()
	if err != nil {
		return nil, err
	}
	res.Share = &psk.Share{GroupID: res.Group.ID, Index: st.Index(st.Me), Participant: st.Me, Value: v}
	if err := psk.VerifyShare(res.Group, res.Share); err != nil {
		res.Share.Wipe()
		return nil, errors.New("internal error: the summed share does not verify")
	}
	return res, nil
}
