package tprf

import (
	"errors"
	"fmt"

	"github.com/cloudflare/circl/group"
)

// ErrNotEnough is in the chain of Combine's error when fewer than T valid,
// distinct partials remain.
var ErrNotEnough = errors.New("not enough valid partials")

// Combine verifies every partial against want and interpolates the first T
// valid ones at 0: Y = Σ λ_i·Y_i = x·H(e). It is tolerant like
// psk.CombineValid: each refused partial is one *PartialError in bad (bad
// proof, another group, identity or epoch, an index not in the group, a
// second partial for an index already used), and err is non-nil (wrapping
// ErrNotEnough) only when fewer than T valid partials remain. bad may be
// non-empty on success.
func (tg *Group) Combine(want Input, partials []*Partial) (y group.Element, bad []error, err error) {
	t := tg.g.Threshold
	used := map[int]bool{}
	var good []*Partial
	for _, p := range partials {
		if err := tg.Verify(want, p); err != nil {
			bad = append(bad, err)
			continue
		}
		if used[p.Index] {
			// Two valid partials of one index are equal (Y_i is a function
			// of x_i and e); a second one is still named, not silently
			// counted twice.
			bad = append(bad, tg.partialErr(p.Index, KindDuplicateIndex, "a partial of this participant was already used"))
			continue
		}
		used[p.Index] = true
		good = append(good, p)
	}
	if len(good) < t {
		return nil, bad, fmt.Errorf("group %q: %d valid partials of %d needed for %s: %w", tg.g.Name, len(good), t, want, ErrNotEnough)
	}
	return interpolate(good[:t]), bad, nil
}

// interpolate returns Σ λ_i·Y_i over distinct indices, λ_i the Lagrange
// coefficient at 0: Π_{j≠i} j / (j - i).
func interpolate(ps []*Partial) group.Element {
	y := rist.Identity()
	num := rist.NewScalar()
	den := rist.NewScalar()
	xj := rist.NewScalar()
	diff := rist.NewScalar()
	for _, pi := range ps {
		xi := rist.NewScalar().SetUint64(uint64(pi.Index))
		num.SetUint64(1)
		den.SetUint64(1)
		for _, pj := range ps {
			if pj.Index == pi.Index {
				continue
			}
			xj.SetUint64(uint64(pj.Index))
			num.Mul(num, xj)
			diff.Sub(xj, xi)
			den.Mul(den, diff)
		}
		lambda := rist.NewScalar().Inv(den)
		lambda.Mul(lambda, num)
		y.Add(y, rist.NewElement().Mul(pi.Y, lambda))
	}
	return y
}

// CombinePSK combines partials and derives the PSK (see Combine and
// DerivePSK).
func (tg *Group) CombinePSK(want Input, partials []*Partial, length int) (key []byte, bad []error, err error) {
	y, bad, err := tg.Combine(want, partials)
	if err != nil {
		return nil, bad, err
	}
	key, err = DerivePSK(y, want, length)
	return key, bad, err
}
