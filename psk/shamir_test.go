package psk

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestEveryThresholdSubsetGivesSamePSK(t *testing.T) {
	for _, c := range []struct{ t, n int }{{2, 3}, {3, 5}, {2, 2}, {4, 4}} {
		t.Run(fmt.Sprintf("%d-of-%d", c.t, c.n), func(t *testing.T) {
			var names []string
			for i := range c.n {
				names = append(names, fmt.Sprintf("p%d", i+1))
			}
			g, shares := split(t, "g", c.t, names...)
			var want []byte
			count := 0
			for k := c.t; k <= c.n; k++ {
				subsets(c.n, k, func(idx []int) {
					secret, err := Combine(g, pick(shares, idx))
					if err != nil {
						t.Fatalf("subset %v: %v", idx, err)
					}
					key, err := DerivePSK(secret, g.ID, DefaultIdentity, 0, 0)
					if err != nil {
						t.Fatal(err)
					}
					if want == nil {
						want = key
					} else if !bytes.Equal(key, want) {
						t.Fatalf("subset %v gives a different PSK", idx)
					}
					count++
				})
			}
			if count == 0 || len(want) != 32 {
				t.Fatalf("no subset combined (count %d)", count)
			}
		})
	}
}

func TestFewerThanThresholdFails(t *testing.T) {
	for _, c := range []struct{ t, n int }{{2, 3}, {3, 5}} {
		var names []string
		for i := range c.n {
			names = append(names, fmt.Sprintf("p%d", i+1))
		}
		g, shares := split(t, "g", c.t, names...)
		subsets(c.n, c.t-1, func(idx []int) {
			_, err := Combine(g, pick(shares, idx))
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("needs %d shares, got %d", c.t, c.t-1)) {
				t.Fatalf("%d-of-%d subset %v: err %v", c.t, c.n, idx, err)
			}
			_, _, err = CombineValid(g, pick(shares, idx))
			if err == nil {
				t.Fatalf("CombineValid with %d shares succeeded", c.t-1)
			}
		})
	}
}

func TestSplitRejectsBadParameters(t *testing.T) {
	many := make([]string, 256)
	for i := range many {
		many[i] = fmt.Sprintf("p%d", i)
	}
	cases := []struct {
		name      string
		threshold int
		parts     []string
		want      string
	}{
		{"g", 4, []string{"a", "b", "c"}, "threshold 4 is greater than the number of participants 3"},
		{"g", 1, []string{"a", "b", "c"}, "threshold 1 is below 2"},
		{"g", 2, many, "too many participants: 256"},
		{"g", 2, []string{"a", "a"}, `participant name "a" appears twice`},
		{"g", 2, []string{"a", "../b"}, `participant name "../b" is not a valid name`},
		{"", 2, []string{"a", "b"}, `group name "" is not a valid name`},
	}
	for _, c := range cases {
		_, _, err := Split(c.name, c.threshold, c.parts, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Split(%q, %d, %d parts): err %v, want %q", c.name, c.threshold, len(c.parts), err, c.want)
		}
	}
	// The upper bound itself is allowed.
	if _, _, err := Split("g", 2, many[:255], nil); err != nil {
		t.Errorf("255 participants: %v", err)
	}
}

func TestCombineNamesEveryBadShare(t *testing.T) {
	g, shares := split(t, "g", 2, "alice", "bob", "carol")
	bad := copyShare(shares[1])
	bad.Value[0] ^= 1
	bad2 := copyShare(shares[2])
	bad2.Value[5] ^= 0x10
	_, err := Combine(g, []*Share{shares[0], bad, bad2})
	if err == nil {
		t.Fatal("corrupted shares accepted")
	}
	for _, want := range []string{`participant 2 "bob" fails the Feldman check`, `participant 3 "carol" fails the Feldman check`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "alice") {
		t.Errorf("error %q names the good share", err)
	}
	if err := VerifyShare(g, bad); err == nil {
		t.Error("VerifyShare accepted a corrupted share")
	}
	if err := VerifyShare(g, shares[0]); err != nil {
		t.Errorf("VerifyShare rejected a good share: %v", err)
	}
}

func TestCombineRejectsDuplicatesAndOtherGroups(t *testing.T) {
	g, shares := split(t, "g", 2, "alice", "bob", "carol")
	_, err := Combine(g, []*Share{shares[0], shares[0]})
	if err == nil || !strings.Contains(err.Error(), `duplicate share of participant 1 "alice"`) {
		t.Errorf("duplicate: err %v", err)
	}
	g2, other := split(t, "g", 2, "alice", "bob", "carol")
	_, err = Combine(g, []*Share{shares[0], other[1]})
	if err == nil || !strings.Contains(err.Error(), `participant 2 "bob" belongs to another group (`+shortID(g2.ID)+`)`) {
		t.Errorf("other group: err %v", err)
	}
	// Right group id but a name that does not match the index.
	renamed := copyShare(shares[1])
	renamed.Participant = "mallory"
	if err := VerifyShare(g, renamed); err == nil || !strings.Contains(err.Error(), `group "g" says "bob"`) {
		t.Errorf("renamed: err %v", err)
	}
	outOfRange := copyShare(shares[1])
	outOfRange.Index = 9
	if err := VerifyShare(g, outOfRange); err == nil || !strings.Contains(err.Error(), "index 9") {
		t.Errorf("index out of range: err %v", err)
	}
}

func TestCombineValidSkipsBadShares(t *testing.T) {
	g, shares := split(t, "g", 3, "a", "b", "c", "d", "e")
	want, err := Combine(g, shares[:3])
	if err != nil {
		t.Fatal(err)
	}
	bad := copyShare(shares[0])
	bad.Value[3] ^= 4
	_, foreign := split(t, "h", 2, "x", "y")
	input := []*Share{bad, foreign[0], shares[1], shares[1], shares[2], shares[3], shares[4]}
	secret, badErrs, err := CombineValid(g, input)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(secret, want) {
		t.Error("CombineValid reconstructed a different secret")
	}
	if len(badErrs) != 2 || !strings.Contains(badErrs[0].Error(), `participant 1 "a"`) || !strings.Contains(badErrs[1].Error(), "another group") {
		t.Errorf("bad = %v, want the corrupted share of a and the foreign share", badErrs)
	}
	// Only two valid distinct shares left: not enough.
	_, badErrs, err = CombineValid(g, []*Share{bad, shares[1], shares[1], shares[2]})
	if err == nil || !strings.Contains(err.Error(), "2 valid shares of 3 needed") || len(badErrs) != 1 {
		t.Errorf("err %v, bad %v", err, badErrs)
	}
}

func TestCombineWrongScheme(t *testing.T) {
	k1, _ := NewContribKey("c", "a", nil)
	k2, _ := NewContribKey("c", "b", nil)
	cg, err := NewContributoryGroup("c", []Member{{"a", k1.Commitment()}, {"b", k2.Commitment()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Combine(cg, nil); err == nil {
		t.Error("Combine accepted a contributory group")
	}
	g, _ := split(t, "g", 2, "a", "b")
	if _, err := CombineKeys(g, []*ContribKey{k1, k2}); err == nil {
		t.Error("CombineKeys accepted a shamir group")
	}
}
