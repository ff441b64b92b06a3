package tprf

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/mcbn/mcbn/psk"
)

// The known-answer vector of docs/key-derivation.md ("Threshold PRF"): the
// 2-of-3 Shamir vector group of package psk (same commitments, id and
// shares), evaluated for fixed inputs. A change of any tag, encoding or
// derivation step changes these bytes.
const (
	vectorGroup = `{"version":1,"type":"mcbn-group","name":"vector","id":"2a54f878a37076ebd57a7b4989bfa091e87988996d14396332147385ba4ad083","scheme":"shamir-feldman-ristretto255","threshold":2,` +
		`"participants":[{"index":1,"name":"alice"},{"index":2,"name":"bob"},{"index":3,"name":"carol"}],` +
		`"commitments":["10e01d6b9cce2746ff98bbe8e49d489cde2189b071f49d7a6605bcd837a53257","4e76c125347e9eeaeb7283c8bb2b34fd5cbce73ae9cc35e9bc3d2d8a87548652"]}`
	vectorSecret = "b6227dc7af37e042bf26c566d43aff71ebd1af14428a1073e529255c48f4d50c"
)

var vectorShares = []string{
	"ae25ff3e4fd201976bfab0af4433ecf18c159da45771b473d4fe31632886930b",
	"a62881b6ee6c23eb17ce9cf8b42bd9712e598a346d585874c3d33e6a0818510a",
	"9e2b032e8e07453fc4a188412524c6f1cf9c77c4823ffc74b2a84b71e8a90e09",
}

type tprfVector struct {
	identity string
	epoch    uint64
	length   int
	hashed   string // H(e)
	y1       string // alice's Y_1
	psk      string
}

var tprfVectors = []tprfVector{
	{"Client_identity", 0, 32, "f89cc683a71e10cf09dc67c487786406663af129ec69184179c57e4d31c9b36f", "8856215aede5a70e7a27d961cac9c7695c96adc2bf71b67b089e160205199f5a", "641b29e0664cec9f0542f54992b437f0083cae8cd850f6926b8f1f07db7ec6b9"},
	{"Client_identity", 1, 32, "38a61cd7d2546d0ce46708ea28c1f122a29160b1afc0eaf16b905bb62161d67c", "5047b40ff78324e611c9eb579674cecf3a071f2f91d93351fd3d1ffd70a3d137", "a8ded38d68ba8c6a75010b45636c6f66593052dc12958a27d973e869d5a4dea8"},
	{"client-b", 0, 32, "4ca0992fa8b9a574b87f44cc8d47440ff56bd6f77c0956c14452e3f8f2f84638", "eed19166f905ea3abf12fc26257b64dc96405028e7c56805049f8a87c4d59d20", "59725f834623feac75cf02c2b575e88b05bb908e42a8b89195fda5f502ff7bbc"},
	{"Client_identity", 0, 48, "f89cc683a71e10cf09dc67c487786406663af129ec69184179c57e4d31c9b36f", "8856215aede5a70e7a27d961cac9c7695c96adc2bf71b67b089e160205199f5a", "8b539d5e3a11884535b8905cdb90160c13fd992a490a5752590935314103094c019603b0dbca3f13acad3d52134e9182"},
}

// vectorY0 is Y = x·H(e) for the first vector. The first PSK was checked
// from it with an independent HKDF-SHA256 (Python hmac/hashlib).
const vectorY0 = "4257e3bb4729587ed4d32a7213004a73bb482958054e18101481157d284c2c23"

// The partial of alice for the first vector with an all-zero nonce seed:
// pins the wire format and the proof transcript.
const vectorPartial = "6d63626e54505246012a54f878a37076ebd57a7b4989bfa091e87988996d14396332147385ba4ad0830000000000000000000f436c69656e745f6964656e7469747900018856215aede5a70e7a27d961cac9c7695c96adc2bf71b67b089e160205199f5af33ed50d0be4df4ec806b035d9e12c4d01a8adff30368728eda52d893684a900dcd6a2e955b19b139a920707bd7a8e6d2c63dc7a91bf361d499eb069f0b78700"

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func vectorFixture(t *testing.T) (*Group, []*psk.Share) {
	t.Helper()
	g, err := psk.ParseGroup([]byte(vectorGroup))
	if err != nil {
		t.Fatal(err)
	}
	tg, err := NewGroup(g)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*psk.Share
	for i, v := range vectorShares {
		b, _ := hex.DecodeString(v)
		p := g.Participant(i + 1)
		sh := &psk.Share{GroupID: g.ID, Index: p.Index, Participant: p.Name, Value: b}
		if err := psk.VerifyShare(g, sh); err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	return tg, shares
}

func TestKnownAnswerVectors(t *testing.T) {
	tg, shares := vectorFixture(t)
	secret, _ := hex.DecodeString(vectorSecret)
	for _, v := range tprfVectors {
		in := tg.Input(v.identity, v.epoch)
		h, err := in.Point()
		if err != nil {
			t.Fatal(err)
		}
		hb, _ := h.MarshalBinary()
		ps := evalAll(t, tg, shares, in)
		yb, _ := ps[0].Y.MarshalBinary()
		ref, err := ReferencePSK(secret, in, v.length)
		if err != nil {
			t.Fatal(err)
		}
		subsets(3, 2, func(idx []int) {
			key, bad, err := tg.CombinePSK(in, []*Partial{ps[idx[0]], ps[idx[1]]}, v.length)
			if err != nil || len(bad) != 0 {
				t.Fatal(err, bad)
			}
			if !bytes.Equal(key, ref) {
				t.Fatalf("subset %v differs from the reference", idx)
			}
		})
		check(t, "H(e)", hex.EncodeToString(hb), v.hashed)
		check(t, "Y_1", hex.EncodeToString(yb), v.y1)
		check(t, "psk", hex.EncodeToString(ref), v.psk)
	}
	y, _, err := tg.Combine(tg.Input("Client_identity", 0), evalAll(t, tg, shares[1:], tg.Input("Client_identity", 0)))
	if err != nil {
		t.Fatal(err)
	}
	yb, _ := y.MarshalBinary()
	check(t, "Y", hex.EncodeToString(yb), vectorY0)
	p, err := tg.Evaluate(shares[0], tg.Input("Client_identity", 0), zeroReader{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.MarshalBinary()
	check(t, "partial", hex.EncodeToString(b), vectorPartial)
}

func check(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// Every vector is in docs/key-derivation.md, so the document and the code
// cannot drift apart.
func TestVectorsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/key-derivation.md")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{vectorPartial, vectorY0}
	for _, v := range tprfVectors {
		want = append(want, v.hashed, v.y1, v.psk)
	}
	for _, w := range want {
		if !strings.Contains(string(doc), w) {
			t.Errorf("docs/key-derivation.md lacks %s", w)
		}
	}
}
