package dkg

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/mcbn/mcbn/psk"
)

// A full ceremony: identical descriptors, every T-subset of shares gives the
// same secret (and PSK), T-1 shares do not, and the secret is the sum of the
// dealers' secrets although no party computed it.
func TestDkgCeremonies(t *testing.T) {
	for _, p := range []Params{
		params(2, "alice", "bob", "carol"),
		params(3, "alice", "bob", "carol", "dave", "erin"),
	} {
		t.Run(fmt.Sprintf("%d-of-%d", p.Threshold, p.N()), func(t *testing.T) {
			ps := ceremony(t, p)
			g, shares := finishAll(t, ps, roundsOf(ps))
			if g.Threshold != p.Threshold || g.N() != p.N() || g.Scheme != psk.SchemeShamir || g.Name != "demo" {
				t.Fatalf("group: %+v", g)
			}
			// The secret is sum_j a_{j,0}: computed here from the test's
			// view of every state, which no real participant has.
			want := rist.NewScalar()
			for _, q := range ps {
				poly, err := q.st.polynomial()
				if err != nil {
					t.Fatal(err)
				}
				want.Add(want, poly[0])
			}
			wantB, _ := want.MarshalBinary()
			var psk0 []byte
			subsets(p.N(), p.Threshold, func(idx []int) {
				secret, err := psk.Combine(g, pick(shares, idx))
				if err != nil {
					t.Fatalf("combine %v: %v", idx, err)
				}
				if !bytes.Equal(secret, wantB) {
					t.Errorf("subset %v gives another secret", idx)
				}
				key, err := psk.DerivePSK(secret, g.ID, psk.DefaultIdentity, 0, 32)
				if err != nil {
					t.Fatal(err)
				}
				if psk0 == nil {
					psk0 = key
				} else if !bytes.Equal(psk0, key) {
					t.Errorf("subset %v gives another PSK", idx)
				}
			})
			subsets(p.N(), p.Threshold-1, func(idx []int) {
				if _, err := psk.Combine(g, pick(shares, idx)); err == nil {
					t.Errorf("combine accepted %d shares", len(idx))
				}
				// T-1 shares interpolated as a lower-degree sharing miss the
				// secret: the joint polynomial really has degree T-1.
				if len(idx) >= 2 && bytes.Equal(interpolate(t, pick(shares, idx)), wantB) {
					t.Errorf("T-1 shares %v reveal the secret", idx)
				}
			})
		})
	}
}

// Two ceremonies with the same parameters give unrelated groups.
func TestDkgFreshCeremonies(t *testing.T) {
	p := params(2, "alice", "bob", "carol")
	a := ceremony(t, p)
	b := ceremony(t, p)
	if bytes.Equal(a[0].st.Ceremony, b[0].st.Ceremony) {
		t.Fatal("two ceremonies share an id")
	}
	ga, _ := finishAll(t, a, roundsOf(a))
	gb, _ := finishAll(t, b, roundsOf(b))
	if ga.ID == gb.ID {
		t.Fatal("two ceremonies gave the same group")
	}
}

// Files round-trip, the state keeps its ceremony, and Finish from a reloaded
// state works; a state readable by others is refused.
func TestDkgFilesRoundTrip(t *testing.T) {
	p := params(2, "alice", "bob", "carol")
	ps := ceremony(t, p)
	dir := t.TempDir()
	path := dir + "/alice.dkg.json"
	if err := WriteState(path, ps[0].st); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(path, ps[0].st); err == nil {
		t.Error("WriteState overwrote an existing file")
	}
	st, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.Ceremony, ps[0].st.Ceremony) || len(st.Pubs) != 3 {
		t.Fatal("reloaded state lost its ceremony")
	}
	var rounds []*Round1
	for _, q := range ps {
		b, err := q.r1.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseRound1(b)
		if err != nil {
			t.Fatal(err)
		}
		rounds = append(rounds, r)
	}
	if _, err := Finish(st, rounds, nil); err != nil {
		t.Fatal(err)
	}
	pb, _ := ps[1].pub.Marshal()
	pub, err := ParsePub(pb)
	if err != nil || !bytes.Equal(pub.Fingerprint(), ps[1].pub.Fingerprint()) {
		t.Fatalf("pub round trip: %v", err)
	}
	if err := SaveState(path, st); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = LoadState(path)
	wantSubstr(t, err, "readable by group or others", "chmod 600")
}

// A state whose recorded pubs were altered is refused.
func TestDkgStateTamper(t *testing.T) {
	ps := ceremony(t, params(2, "alice", "bob", "carol"))
	ps[0].st.Pubs[1].SignKey = ps[0].st.Pubs[2].SignKey
	b, err := ps[0].st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseState(b)
	wantSubstr(t, err, "the state was altered")
}
