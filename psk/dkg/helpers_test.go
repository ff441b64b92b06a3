package dkg

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cloudflare/circl/secretsharing"
	"github.com/mcbn/mcbn/psk"
)

func params(t int, names ...string) Params {
	return Params{Group: "demo", Threshold: t, Participants: names}
}

// party is one simulated participant.
type party struct {
	st  *State
	pub *Pub
	r1  *Round1
}

// initAll runs Init for every participant.
func initAll(t *testing.T, p Params) []*party {
	t.Helper()
	var ps []*party
	for _, name := range p.Participants {
		st, pub, err := Init(p, name, nil)
		if err != nil {
			t.Fatalf("init %s: %v", name, err)
		}
		ps = append(ps, &party{st: st, pub: pub})
	}
	return ps
}

func pubsOf(ps []*party) []*Pub {
	var out []*Pub
	for _, p := range ps {
		out = append(out, p.pub)
	}
	return out
}

func roundsOf(ps []*party) []*Round1 {
	var out []*Round1
	for _, p := range ps {
		out = append(out, p.r1)
	}
	return out
}

// dealAll runs Deal for every participant with everyone's Pub.
func dealAll(t *testing.T, ps []*party) {
	t.Helper()
	pubs := pubsOf(ps)
	for _, p := range ps {
		r, err := Deal(p.st, pubs)
		if err != nil {
			t.Fatalf("deal %s: %v", p.st.Me, err)
		}
		p.r1 = r
	}
}

// ceremony runs init and deal for everyone.
func ceremony(t *testing.T, p Params) []*party {
	t.Helper()
	ps := initAll(t, p)
	dealAll(t, ps)
	return ps
}

// finishAll finishes for everyone with all round 1 files and checks that
// every group descriptor is byte-identical.
func finishAll(t *testing.T, ps []*party, rounds []*Round1, exclude ...string) (*psk.Group, []*psk.Share) {
	t.Helper()
	var first []byte
	var g *psk.Group
	var shares []*psk.Share
	for _, p := range ps {
		res, err := Finish(p.st, rounds, exclude)
		if err != nil {
			t.Fatalf("finish %s: %v", p.st.Me, err)
		}
		b, err := res.Group.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first, g = b, res.Group
		} else if !bytes.Equal(first, b) {
			t.Fatalf("%s has a different group.json:\n%s\nvs\n%s", p.st.Me, b, first)
		}
		shares = append(shares, res.Share)
	}
	return g, shares
}

// subsets calls f with every k-subset of 0..n-1.
func subsets(n, k int, f func([]int)) {
	var rec func(start int, idx []int)
	rec = func(start int, idx []int) {
		if len(idx) == k {
			f(append([]int(nil), idx...))
			return
		}
		for i := start; i < n; i++ {
			rec(i+1, append(idx, i))
		}
	}
	rec(0, nil)
}

func pick(shares []*psk.Share, idx []int) []*psk.Share {
	var out []*psk.Share
	for _, i := range idx {
		out = append(out, shares[i])
	}
	return out
}

// interpolate runs Lagrange interpolation at 0 over the given shares as if
// they were a sharing of degree len-1, without psk's threshold check.
func interpolate(t *testing.T, shares []*psk.Share) []byte {
	t.Helper()
	var ss []secretsharing.Share
	for _, s := range shares {
		v := group.Ristretto255.NewScalar()
		if err := v.UnmarshalBinary(s.Value); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, secretsharing.Share{ID: group.Ristretto255.NewScalar().SetUint64(uint64(s.Index)), Value: v})
	}
	f0, err := secretsharing.Recover(uint(len(ss)-1), ss)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := f0.MarshalBinary()
	return b
}

// abortNames returns the participants an *AbortError names.
func abortNames(t *testing.T, err error) []string {
	t.Helper()
	var ab *AbortError
	if !errors.As(err, &ab) {
		t.Fatalf("want an *AbortError, got %v", err)
	}
	return ab.Names()
}

func wantSubstr(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error containing %q, got nil", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// resign re-signs r with the dealer's key, as a cheating dealer would after
// altering its own message.
func resign(st *State, r *Round1) {
	r.Signature = ed25519.Sign(st.signingKey(), r.signedMessage())
}

// shareFor returns the sealed sub-share for recipient in r.
func shareFor(t *testing.T, r *Round1, recipient string) *SealedShare {
	t.Helper()
	for i := range r.Shares {
		if r.Shares[i].Recipient == recipient {
			return &r.Shares[i]
		}
	}
	t.Fatalf("round 1 of %s has no sub-share for %s", r.Sender, recipient)
	return nil
}

// copyRound1 is a deep copy, so a test can alter one recipient's view.
func copyRound1(r *Round1) *Round1 {
	c := *r
	c.Shares = nil
	for _, s := range r.Shares {
		c.Shares = append(c.Shares, SealedShare{Recipient: s.Recipient, Sealed: append([]byte(nil), s.Sealed...)})
	}
	c.Commitments = append([][]byte(nil), r.Commitments...)
	c.Signature = append([]byte(nil), r.Signature...)
	return &c
}

// combine is psk.Combine, for tests that only need the secret.
func combine(g *psk.Group, shares []*psk.Share) ([]byte, error) { return psk.Combine(g, shares) }
