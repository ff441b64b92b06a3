package reshare

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/dkg"
)

// cer is one resharing ceremony as a test sees it: the old group and
// shares, the new participants' keys, the params and the deals.
type cer struct {
	old       *psk.Group
	oldShares map[string]*psk.Share
	keys      map[string]*Key
	p         *Params
	deals     []*Deal
}

func names(s string) []string { return strings.Split(s, ",") }

// setup splits an oldT-of-old group, makes a key for every new
// participant and the params (dealers nil: every old holder).
func setup(t testing.TB, oldT int, old string, newT int, neu string, dealers []string) *cer {
	t.Helper()
	g, shares, err := psk.Split("team", oldT, names(old), nil)
	if err != nil {
		t.Fatal(err)
	}
	return setupFrom(t, g, shares, newT, neu, dealers)
}

func setupFrom(t testing.TB, g *psk.Group, shares []*psk.Share, newT int, neu string, dealers []string) *cer {
	t.Helper()
	c := &cer{old: g, oldShares: map[string]*psk.Share{}, keys: map[string]*Key{}}
	for _, s := range shares {
		c.oldShares[s.Participant] = s
	}
	var pubs []*Pub
	for _, n := range names(neu) {
		k, pub, err := NewKey(n, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.keys[n] = k
		pubs = append(pubs, pub)
	}
	p, err := NewParams(g, dealers, newT, names(neu), pubs, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.p = p
	for _, d := range p.Dealers {
		deal, err := MakeDeal(p, c.oldShares[d], nil)
		if err != nil {
			t.Fatal(err)
		}
		c.deals = append(c.deals, deal)
	}
	return c
}

// dealOf returns the deal of dealer name.
func (c *cer) dealOf(t *testing.T, name string) *Deal {
	t.Helper()
	for _, d := range c.deals {
		if d.Dealer == name {
			return d
		}
	}
	t.Fatalf("no deal of %s", name)
	return nil
}

// finishAll runs Finish for every new participant with the same deals and
// exclusions, checks they agree byte for byte on the group, and returns
// the group and the new shares in new index order.
func (c *cer) finishAll(t *testing.T, deals []*Deal, exclude ...string) (*psk.Group, []*psk.Share) {
	t.Helper()
	var g *psk.Group
	var gb []byte
	var shares []*psk.Share
	for _, n := range c.p.Names() {
		res, err := Finish(c.p, c.keys[n], deals, exclude)
		if err != nil {
			t.Fatalf("finish of %s: %v", n, err)
		}
		b, err := res.Group.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if gb == nil {
			g, gb = res.Group, b
		} else if !bytes.Equal(gb, b) {
			t.Fatalf("%s computed another group", n)
		}
		shares = append(shares, res.Share)
	}
	return g, shares
}

func (c *cer) oldList(ns ...string) []*psk.Share {
	var out []*psk.Share
	for _, n := range ns {
		out = append(out, c.oldShares[n])
	}
	return out
}

// abortNames checks err is a *dkg.AbortError and returns whom it names.
func abortNames(t *testing.T, err error) []string {
	t.Helper()
	var ab *dkg.AbortError
	if !errors.As(err, &ab) {
		t.Fatalf("want an *dkg.AbortError, got %v", err)
	}
	return ab.Names()
}

func wantSubstr(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func wantNames(t *testing.T, err error, want ...string) {
	t.Helper()
	if got := abortNames(t, err); !slices.Equal(got, want) {
		t.Fatalf("named %v, want %v (%v)", got, want, err)
	}
}

// secretOf is psk.Combine with a fatal check.
func secretOf(t *testing.T, g *psk.Group, shares []*psk.Share) []byte {
	t.Helper()
	s, err := psk.Combine(g, shares)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// interpolate is raw Lagrange interpolation at 0 of (index, value) pairs,
// with no verification at all: what a thief holding share values could do.
func interpolate(t *testing.T, shares []*psk.Share) []byte {
	t.Helper()
	var set []int
	for _, s := range shares {
		set = append(set, s.Index)
	}
	acc := rist.NewScalar()
	for _, s := range shares {
		y, err := dkg.DecodeScalar(s.Value)
		if err != nil {
			t.Fatal(err)
		}
		acc.Add(acc, rist.NewScalar().Mul(lagrangeAtZero(s.Index, set), y))
	}
	b, _ := acc.MarshalBinary()
	return b
}

// subsets calls f with every k-subset of 0..n-1.
func subsets(n, k int, f func([]int)) {
	idx := make([]int, 0, k)
	var rec func(start int)
	rec = func(start int) {
		if len(idx) == k {
			f(slices.Clone(idx))
			return
		}
		for i := start; i < n; i++ {
			idx = append(idx, i)
			rec(i + 1)
			idx = idx[:len(idx)-1]
		}
	}
	rec(0)
}

func pick(shares []*psk.Share, idx []int) []*psk.Share {
	out := make([]*psk.Share, len(idx))
	for i, j := range idx {
		out[i] = shares[j]
	}
	return out
}

// scalarOf decodes a share's value.
func scalarOf(t *testing.T, s *psk.Share) group.Scalar {
	t.Helper()
	y, err := dkg.DecodeScalar(s.Value)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func relabel(s *psk.Share, g *psk.Group) *psk.Share {
	c := *s
	c.GroupID = g.ID
	c.Value = slices.Clone(s.Value)
	return &c
}
