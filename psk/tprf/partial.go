package tprf

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cloudflare/circl/group"

	"github.com/mcbn/mcbn/psk"
)

// Partial is one participant's answer: Y_i = x_i·H(e) for the input it names,
// with a Chaum-Pedersen proof (C, S) that log_G X_i = log_H(e) Y_i. It holds
// only public values: points and the proof's scalars.
type Partial struct {
	Input
	// Index is the participant's index in the group (its share's x-coordinate).
	Index int
	Y     group.Element
	C, S  group.Scalar
}

// Refusal kinds of a partial, in the Kind of a *PartialError.
const (
	KindBadProof       = "bad_proof"       // the DLEQ proof does not verify against X_i
	KindWrongGroup     = "wrong_group"     // the partial names another group (KeyID)
	KindWrongIdentity  = "wrong_identity"  // ... another PSK identity
	KindWrongEpoch     = "wrong_epoch"     // ... another epoch (e.g. a replay of an earlier one)
	KindUnknownIndex   = "unknown_index"   // the index is not a participant of the group
	KindDuplicateIndex = "duplicate_index" // a second partial for an index already used
	KindWrongIndex     = "wrong_index"     // the partial came from another participant than its index says
	KindMalformed      = "malformed"       // missing or invalid fields
)

// PartialError is a refused partial. It names the participant (index and
// name when the group has it) and the kind of refusal; it never holds a
// secret (a partial holds none).
type PartialError struct {
	Index       int
	Participant string // "" when the index is not in the group
	Kind        string
	Msg         string
}

func (e *PartialError) Error() string {
	if e.Participant != "" {
		return fmt.Sprintf("partial of participant %d %q: %s: %s", e.Index, e.Participant, e.Kind, e.Msg)
	}
	return fmt.Sprintf("partial with index %d: %s: %s", e.Index, e.Kind, e.Msg)
}

// KindOf returns the Kind of a *PartialError in err's chain ("" if none).
func KindOf(err error) string {
	var pe *PartialError
	if errors.As(err, &pe) {
		return pe.Kind
	}
	return ""
}

func (tg *Group) partialErr(index int, kind, format string, a ...any) *PartialError {
	e := &PartialError{Index: index, Kind: kind, Msg: fmt.Sprintf(format, a...)}
	if p := tg.g.Participant(index); p != nil {
		e.Participant = p.Name
	}
	return e
}

// Evaluate computes participant sh's partial for in, with a proof. sh must
// be a share of this group that passes psk.VerifyShare (the caller checks;
// Evaluate checks the group and index). rnd nil means crypto/rand; the
// proof nonce is hedged (hashed from the share, the input point and 32
// bytes of rnd), so a broken rnd does not leak x_i.
func (tg *Group) Evaluate(sh *psk.Share, in Input, rnd io.Reader) (*Partial, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	if sh == nil {
		return nil, errors.New("no share")
	}
	if sh.GroupID != tg.g.ID {
		return nil, fmt.Errorf("share of participant %d %q belongs to another group, not %q", sh.Index, sh.Participant, tg.g.Name)
	}
	if in.KeyID != tg.g.KeyID() {
		return nil, fmt.Errorf("input names key id %.12s, group %q has %.12s", in.KeyID, tg.g.Name, tg.g.KeyID())
	}
	xi, err := scalarFromBytes(sh.Value)
	if err != nil {
		return nil, fmt.Errorf("share of participant %d %q has a malformed value", sh.Index, sh.Participant)
	}
	defer xi.SetUint64(0)
	X, err := tg.VerificationKey(sh.Index)
	if err != nil {
		return nil, err
	}
	h, err := in.Point()
	if err != nil {
		return nil, err
	}
	y := rist.NewElement().Mul(h, xi)
	// Hedged nonce: r = H(x_i || H(e) || 32 random bytes).
	var seed [32]byte
	if _, err := io.ReadFull(rnd, seed[:]); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	hb, _ := h.MarshalBinary()
	nb := make([]byte, 0, 96)
	nb = append(nb, sh.Value...)
	nb = append(nb, hb...)
	nb = append(nb, seed[:]...)
	r := rist.HashToScalar(nb, []byte(DSTNonce))
	psk.Wipe(nb)
	psk.Wipe(seed[:])
	defer r.SetUint64(0)
	a1 := rist.NewElement().MulGen(r)
	a2 := rist.NewElement().Mul(h, r)
	c, err := challenge(in, sh.Index, X, h, y, a1, a2)
	if err != nil {
		return nil, err
	}
	// s = r - c·x_i
	s := rist.NewScalar().Mul(c, xi)
	s.Sub(r, s)
	return &Partial{Input: in, Index: sh.Index, Y: y, C: c, S: s}, nil
}

// challenge is the Fiat-Shamir challenge over the whole statement and its
// context:
//
//	hash_to_scalar(DSTChallenge, Encode(e) || index (2, big-endian)
//	               || G || X_i || H(e) || Y_i || A1 || A2)
//
// each element a 32-byte canonical encoding. Binding e and the index makes
// a proof valid for exactly one (group, identity, epoch, participant).
func challenge(in Input, index int, X, h, y, a1, a2 group.Element) (group.Scalar, error) {
	msg, err := in.Encode()
	if err != nil {
		return nil, err
	}
	msg = binary.BigEndian.AppendUint16(msg, uint16(index))
	for _, e := range []group.Element{rist.Generator(), X, h, y, a1, a2} {
		b, err := e.MarshalBinary()
		if err != nil {
			return nil, err
		}
		msg = append(msg, b...)
	}
	return rist.HashToScalar(msg, []byte(DSTChallenge)), nil
}

// Verify checks that p answers want (same KeyID, identity, epoch) and that
// its proof verifies against its participant's verification key. Errors are
// *PartialError naming the participant and the kind.
func (tg *Group) Verify(want Input, p *Partial) error {
	if p == nil {
		return &PartialError{Kind: KindMalformed, Msg: "no partial"}
	}
	if tg.g.Participant(p.Index) == nil {
		return tg.partialErr(p.Index, KindUnknownIndex, "group %q has participants 1..%d", tg.g.Name, tg.g.N())
	}
	switch {
	case p.KeyID != want.KeyID:
		return tg.partialErr(p.Index, KindWrongGroup, "it is for key id %.12s, want %.12s (group %q)", p.KeyID, want.KeyID, tg.g.Name)
	case p.Identity != want.Identity:
		return tg.partialErr(p.Index, KindWrongIdentity, "it is for psk identity %q, want %q", clip(p.Identity), clip(want.Identity))
	case p.Epoch != want.Epoch:
		return tg.partialErr(p.Index, KindWrongEpoch, "it is for epoch %d, want %d", p.Epoch, want.Epoch)
	case p.Y == nil || p.C == nil || p.S == nil:
		return tg.partialErr(p.Index, KindMalformed, "missing Y or proof")
	case p.Y.IsIdentity():
		return tg.partialErr(p.Index, KindMalformed, "Y is the identity element")
	}
	X, err := tg.VerificationKey(p.Index)
	if err != nil {
		return tg.partialErr(p.Index, KindUnknownIndex, "%v", err)
	}
	h, err := want.Point()
	if err != nil {
		return tg.partialErr(p.Index, KindMalformed, "%v", err)
	}
	// A1 = s·G + c·X_i, A2 = s·H(e) + c·Y_i; the proof holds iff c is the
	// challenge over them.
	a1 := rist.NewElement().MulGen(p.S)
	a1.Add(a1, rist.NewElement().Mul(X, p.C))
	a2 := rist.NewElement().Mul(h, p.S)
	a2.Add(a2, rist.NewElement().Mul(p.Y, p.C))
	c, err := challenge(want, p.Index, X, h, p.Y, a1, a2)
	if err != nil {
		return tg.partialErr(p.Index, KindMalformed, "%v", err)
	}
	cb, _ := c.MarshalBinary()
	pb, _ := p.C.MarshalBinary()
	if subtle.ConstantTimeCompare(cb, pb) != 1 {
		return tg.partialErr(p.Index, KindBadProof, "the proof that Y is x_i·H(e) for this participant's verification key does not verify")
	}
	return nil
}

// clip bounds an untrusted string in an error.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
