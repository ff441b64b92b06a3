package tprf

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/mcbn/mcbn/psk"
)

// split deals a fresh t-of-n group and prepares it.
func split(tb testing.TB, name string, t, n int) (*Group, []*psk.Share, []byte) {
	tb.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("p%d", i+1)
	}
	g, shares, err := psk.Split(name, t, names, nil)
	if err != nil {
		tb.Fatal(err)
	}
	secret, err := psk.Combine(g, shares[:t])
	if err != nil {
		tb.Fatal(err)
	}
	tg, err := NewGroup(g)
	if err != nil {
		tb.Fatal(err)
	}
	return tg, shares, secret
}

func evalAll(tb testing.TB, tg *Group, shares []*psk.Share, in Input) []*Partial {
	tb.Helper()
	out := make([]*Partial, len(shares))
	for i, sh := range shares {
		p, err := tg.Evaluate(sh, in, nil)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = p
	}
	return out
}

// subsets calls f with every k-subset of 0..n-1.
func subsets(n, k int, f func([]int)) {
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			f(append([]int(nil), cur...))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(0, nil)
}

// Any T honest partials combine to the PSK computed directly from the
// group secret x.
func TestAnyTPartialsGiveTheReferencePSK(t *testing.T) {
	for _, tc := range []struct{ t, n int }{{2, 3}, {3, 5}, {4, 6}} {
		tg, shares, secret := split(t, "ref", tc.t, tc.n)
		in := tg.Input("Client_identity", 7)
		want, err := ReferencePSK(secret, in, 32)
		if err != nil {
			t.Fatal(err)
		}
		ps := evalAll(t, tg, shares, in)
		count := 0
		subsets(tc.n, tc.t, func(idx []int) {
			var pick []*Partial
			for _, i := range idx {
				pick = append(pick, ps[i])
			}
			key, bad, err := tg.CombinePSK(in, pick, 32)
			if err != nil || len(bad) != 0 {
				t.Fatalf("%d-of-%d subset %v: err %v bad %v", tc.t, tc.n, idx, err, bad)
			}
			if !bytes.Equal(key, want) {
				t.Fatalf("%d-of-%d subset %v: PSK differs from the reference", tc.t, tc.n, idx)
			}
			count++
		})
		if count == 0 {
			t.Fatal("no subset tried")
		}
		// Another epoch, identity or length gives another key.
		for _, other := range []Input{tg.Input("Client_identity", 8), tg.Input("other", 7)} {
			k, _, err := tg.CombinePSK(other, evalAll(t, tg, shares[:tc.t], other), 32)
			if err != nil || bytes.Equal(k, want) {
				t.Fatalf("input %v: err %v or same key as epoch 7", other, err)
			}
		}
	}
}

func wantKind(t *testing.T, err error, kind, name string) {
	t.Helper()
	var pe *PartialError
	if !errors.As(err, &pe) {
		t.Fatalf("want a %s refusal, got %v", kind, err)
	}
	if pe.Kind != kind {
		t.Fatalf("want kind %s, got %v", kind, err)
	}
	if name != "" && pe.Participant != name {
		t.Fatalf("refusal names %q, want %q: %v", pe.Participant, name, err)
	}
}

// Each way a partial can be wrong is refused and named, and the others
// still combine when T valid ones remain.
func TestRefusedPartialsAreNamed(t *testing.T) {
	tg, shares, secret := split(t, "refuse", 3, 5)
	in := tg.Input("Client_identity", 5)
	want, _ := ReferencePSK(secret, in, 32)
	good := evalAll(t, tg, shares, in)

	other, otherShares, _ := split(t, "other", 3, 5)
	fromOtherGroup, err := other.Evaluate(otherShares[1], other.Input("Client_identity", 5), nil)
	if err != nil {
		t.Fatal(err)
	}
	earlier, err := tg.Evaluate(shares[1], tg.Input("Client_identity", 4), nil) // a replay of epoch 4's answer
	if err != nil {
		t.Fatal(err)
	}
	otherIdent, err := tg.Evaluate(shares[1], tg.Input("client-b", 5), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A partial of another group relabelled with this group's key id: only
	// the proof (against this group's X_2) can catch it.
	relabelled := *fromOtherGroup
	relabelled.Input = in
	tamperedY := *good[1]
	tamperedY.Y = rist.NewElement().Add(good[1].Y, rist.Generator())
	tamperedS := *good[1]
	tamperedS.S = rist.NewScalar().Add(good[1].S, rist.NewScalar().SetUint64(1))
	// Participant 1's honest partial claiming to be participant 2's.
	wrongIndex := *good[0]
	wrongIndex.Index = 2
	unknown := *good[0]
	unknown.Index = 9

	cases := []struct {
		name string
		p    *Partial
		kind string
		who  string
	}{
		{"bad proof (Y changed)", &tamperedY, KindBadProof, "p2"},
		{"bad proof (s changed)", &tamperedS, KindBadProof, "p2"},
		{"another group", fromOtherGroup, KindWrongGroup, "p2"},
		{"another group relabelled", &relabelled, KindBadProof, "p2"},
		{"earlier epoch replayed", earlier, KindWrongEpoch, "p2"},
		{"another identity", otherIdent, KindWrongIdentity, "p2"},
		{"another participant's partial", &wrongIndex, KindBadProof, "p2"},
		{"index not in the group", &unknown, KindUnknownIndex, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantKind(t, tg.Verify(in, c.p), c.kind, c.who)
			// Mixed with T honest ones: set aside, named, key still right.
			key, bad, err := tg.CombinePSK(in, []*Partial{c.p, good[2], good[3], good[4]}, 32)
			if err != nil || len(bad) != 1 || !bytes.Equal(key, want) {
				t.Fatalf("err %v, bad %v, key right %v", err, bad, bytes.Equal(key, want))
			}
			wantKind(t, bad[0], c.kind, c.who)
			// With only T-1 honest ones: no key.
			key, _, err = tg.CombinePSK(in, []*Partial{c.p, good[2], good[3]}, 32)
			if !errors.Is(err, ErrNotEnough) || key != nil {
				t.Fatalf("T-1 honest + %s: err %v, key %v", c.name, err, key != nil)
			}
		})
	}
	t.Run("duplicate index", func(t *testing.T) {
		again, err := tg.Evaluate(shares[2], in, nil) // a fresh proof, same Y
		if err != nil {
			t.Fatal(err)
		}
		_, bad, err := tg.CombinePSK(in, []*Partial{good[2], again, good[3]}, 32)
		if !errors.Is(err, ErrNotEnough) || len(bad) != 1 {
			t.Fatalf("err %v, bad %v", err, bad)
		}
		wantKind(t, bad[0], KindDuplicateIndex, "p3")
	})
	t.Run("fewer than T", func(t *testing.T) {
		for k := 0; k < 3; k++ {
			key, bad, err := tg.CombinePSK(in, good[:k], 32)
			if !errors.Is(err, ErrNotEnough) || key != nil || len(bad) != 0 {
				t.Fatalf("%d partials: err %v key %v bad %v", k, err, key != nil, bad)
			}
		}
	})
	t.Run("nil partial", func(t *testing.T) {
		wantKind(t, tg.Verify(in, nil), KindMalformed, "")
	})
}

// Evaluate refuses a share of another group and an input of another group.
func TestEvaluateRefusesMismatch(t *testing.T) {
	tg, shares, _ := split(t, "a", 2, 3)
	other, otherShares, _ := split(t, "b", 2, 3)
	if _, err := tg.Evaluate(otherShares[0], tg.Input("x", 1), nil); err == nil {
		t.Fatal("evaluated a share of another group")
	}
	if _, err := tg.Evaluate(shares[0], other.Input("x", 1), nil); err == nil {
		t.Fatal("evaluated for another group's key id")
	}
	if _, err := tg.Evaluate(shares[0], tg.Input("", 1), nil); err == nil {
		t.Fatal("evaluated for an empty identity")
	}
}

// A contributory group has no commitments: NewGroup refuses it.
func TestNewGroupRefusesContributory(t *testing.T) {
	var members []psk.Member
	for _, n := range []string{"a", "b"} {
		k, err := psk.NewContribKey("team", n, nil)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, psk.Member{Name: n, Commitment: k.Commitment()})
	}
	g, err := psk.NewContributoryGroup("team", members)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewGroup(g); err == nil {
		t.Fatal("a contributory group was accepted")
	}
}

func TestWireRoundTrip(t *testing.T) {
	tg, shares, _ := split(t, "wire", 2, 3)
	in := tg.Input("Client_identity", 1<<40+3)
	p, err := tg.Evaluate(shares[2], in, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParsePartial(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.Verify(in, q); err != nil {
		t.Fatal(err)
	}
	b2, _ := q.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("re-encoding differs")
	}
	// Every truncation and one extra byte are refused.
	for i := range b {
		if _, err := ParsePartial(b[:i]); err == nil {
			t.Fatalf("truncated at %d accepted", i)
		}
	}
	if _, err := ParsePartial(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	// A non-canonical scalar (the group order's bytes, all 0xff) is refused.
	bad := bytes.Clone(b)
	copy(bad[len(bad)-32:], bytes.Repeat([]byte{0xff}, 32))
	if _, err := ParsePartial(bad); err == nil {
		t.Fatal("non-canonical s accepted")
	}
}

// The wire form holds only points and proof scalars: never the share.
func TestPartialDoesNotCarryTheShare(t *testing.T) {
	tg, shares, _ := split(t, "noshare", 2, 3)
	for _, sh := range shares {
		p, err := tg.Evaluate(sh, tg.Input("id", 0), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := p.MarshalBinary()
		if bytes.Contains(b, sh.Value) || bytes.Contains([]byte(hex.EncodeToString(b)), []byte(hex.EncodeToString(sh.Value))) {
			t.Fatal("the encoded partial contains the share value")
		}
	}
}
