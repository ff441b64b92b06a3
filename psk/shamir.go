package psk

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/math/polynomial"
	"github.com/cloudflare/circl/secretsharing"
)

// Split deals a fresh random secret as a T-of-N Shamir sharing with Feldman
// commitments: threshold shares are needed to reconstruct it. It returns the
// group descriptor and one share per participant, in participant order.
// rnd nil means crypto/rand.
//
// The polynomial is sampled here rather than by secretsharing.New because
// circl's ristretto255 ignores the reader it is given, and a caller-supplied
// reader is what makes the published test vectors reproducible.
func Split(name string, threshold int, participants []string, rnd io.Reader) (*Group, []*Share, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	g := &Group{Version: GroupVersion, Type: TypeGroup, Name: name, Scheme: SchemeShamir, Threshold: threshold}
	if err := checkName("group name", name); err != nil {
		return nil, nil, err
	}
	if err := checkSize(threshold, len(participants)); err != nil {
		return nil, nil, err
	}
	for i, p := range participants {
		g.Participants = append(g.Participants, Participant{Index: i + 1, Name: p})
	}
	coeffs := make([]group.Scalar, threshold)
	defer func() {
		for _, c := range coeffs {
			wipeScalar(c)
		}
	}()
	for i := range coeffs {
		c, err := randomScalar(rnd)
		if err != nil {
			return nil, nil, err
		}
		coeffs[i] = c
		e := group.Ristretto255.NewElement().MulGen(c)
		b, err := e.MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		g.Commitments = append(g.Commitments, fmt.Sprintf("%x", b))
	}
	if err := g.seal(); err != nil {
		return nil, nil, err
	}
	poly := polynomial.New(coeffs) // holds copies we cannot wipe
	shares := make([]*Share, len(participants))
	x := group.Ristretto255.NewScalar()
	for i, p := range g.Participants {
		y := poly.Evaluate(x.SetUint64(uint64(p.Index)))
		v, err := y.MarshalBinary()
		wipeScalar(y)
		if err != nil {
			return nil, nil, err
		}
		shares[i] = &Share{GroupID: g.ID, Index: p.Index, Participant: p.Name, Value: v}
	}
	return g, shares, nil
}

// randomScalar draws a uniform scalar by rejection sampling: read 32 bytes,
// clear the top 3 bits of the last (most significant) byte, accept if the
// little-endian value is below the group order.
func randomScalar(rnd io.Reader) (group.Scalar, error) {
	var b [32]byte
	defer Wipe(b[:])
	s := group.Ristretto255.NewScalar()
	for range 256 {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("reading randomness: %w", err)
		}
		b[31] &= 0x1f
		if s.UnmarshalBinary(b[:]) == nil {
			return s, nil
		}
	}
	return nil, errors.New("randomness source is broken (256 rejections in a row)")
}

// VerifyShare checks that s belongs to g, carries the index and name g gives
// that participant, and passes the Feldman check against g's commitments.
// Errors name the participant and never contain the share value.
func VerifyShare(g *Group, s *Share) error {
	if g.Scheme != SchemeShamir {
		return fmt.Errorf("group %q is %s, not %s: it has no shares to verify", g.Name, g.Scheme, SchemeShamir)
	}
	if s.GroupID != g.ID {
		return fmt.Errorf("share of participant %d %q belongs to another group (%s), not %q (%s)", s.Index, s.Participant, shortID(s.GroupID), g.Name, shortID(g.ID))
	}
	p := g.Participant(s.Index)
	if p == nil {
		return fmt.Errorf("share of participant %q has index %d, but group %q has %d participants", s.Participant, s.Index, g.Name, g.N())
	}
	if p.Name != s.Participant {
		return fmt.Errorf("share says participant %d is %q, group %q says %q", s.Index, s.Participant, g.Name, p.Name)
	}
	v, err := decodeScalar(s.Value)
	if err != nil {
		return fmt.Errorf("share of participant %d %q has a malformed value", s.Index, s.Participant)
	}
	defer wipeScalar(v)
	if g.feldman == nil {
		if err := g.validate(); err != nil {
			return err
		}
	}
	id := group.Ristretto255.NewScalar().SetUint64(uint64(s.Index))
	if !secretsharing.Verify(uint(g.Threshold-1), secretsharing.Share{ID: id, Value: v}, g.feldman) {
		return fmt.Errorf("share of participant %d %q fails the Feldman check: wrong or corrupted value", s.Index, s.Participant)
	}
	return nil
}

// Combine verifies every share and reconstructs the group secret (32 bytes,
// see docs/key-derivation.md). It is strict: a share of another group, a
// duplicate or a share failing verification is an error naming every such
// participant, even if enough good shares remain (see CombineValid). Fewer
// than T shares is an error. The caller must Wipe the secret.
func Combine(g *Group, shares []*Share) ([]byte, error) {
	if g.Scheme != SchemeShamir {
		return nil, fmt.Errorf("group %q is %s: combine its participants' keys with CombineKeys", g.Name, g.Scheme)
	}
	var bad []string
	seen := map[int]bool{}
	for _, s := range shares {
		if err := VerifyShare(g, s); err != nil {
			bad = append(bad, err.Error())
			continue
		}
		if seen[s.Index] {
			bad = append(bad, fmt.Sprintf("duplicate share of participant %d %q", s.Index, s.Participant))
			continue
		}
		seen[s.Index] = true
	}
	if len(bad) > 0 {
		return nil, errors.New(strings.Join(bad, "; "))
	}
	if len(shares) < g.Threshold {
		return nil, fmt.Errorf("group %q needs %d shares, got %d", g.Name, g.Threshold, len(shares))
	}
	return recoverSecret(g, shares)
}

// CombineValid is the tolerant reconstruction used by the proxy: it sets
// aside every share that does not verify (one error per share in bad, naming
// the participant), ignores exact repeats of a share already accepted, and
// reconstructs from the first T valid shares. err is non-nil only when fewer
// than T valid shares remain; bad may be non-empty on success. The caller
// must Wipe the secret.
func CombineValid(g *Group, shares []*Share) (secret []byte, bad []error, err error) {
	if g.Scheme != SchemeShamir {
		return nil, nil, fmt.Errorf("group %q is %s: combine its participants' keys with CombineKeys", g.Name, g.Scheme)
	}
	var good []*Share
	byIndex := map[int]*Share{}
	for _, s := range shares {
		if err := VerifyShare(g, s); err != nil {
			bad = append(bad, err)
			continue
		}
		if prev := byIndex[s.Index]; prev != nil {
			// Both verified, so they are equal; check anyway, in constant time.
			if subtle.ConstantTimeCompare(prev.Value, s.Value) != 1 {
				bad = append(bad, fmt.Errorf("two different shares of participant %d %q", s.Index, s.Participant))
			}
			continue
		}
		byIndex[s.Index] = s
		good = append(good, s)
	}
	if len(good) < g.Threshold {
		return nil, bad, fmt.Errorf("group %q: %d valid shares of %d needed", g.Name, len(good), g.Threshold)
	}
	secret, err = recoverSecret(g, good[:g.Threshold])
	return secret, bad, err
}

// recoverSecret interpolates f(0) from verified, distinct shares and returns
// its 32-byte canonical little-endian encoding.
func recoverSecret(g *Group, shares []*Share) ([]byte, error) {
	ss := make([]secretsharing.Share, 0, g.Threshold)
	defer func() {
		for _, s := range ss {
			wipeScalar(s.Value)
		}
	}()
	for _, s := range shares[:g.Threshold] {
		v, err := decodeScalar(s.Value)
		if err != nil {
			return nil, fmt.Errorf("share of participant %d %q has a malformed value", s.Index, s.Participant)
		}
		ss = append(ss, secretsharing.Share{ID: group.Ristretto255.NewScalar().SetUint64(uint64(s.Index)), Value: v})
	}
	f0, err := secretsharing.Recover(uint(g.Threshold-1), ss)
	if err != nil {
		return nil, fmt.Errorf("group %q: %v", g.Name, err)
	}
	defer wipeScalar(f0)
	return f0.MarshalBinary()
}
