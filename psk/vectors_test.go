package psk

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// The test vectors of docs/key-derivation.md. They were cross-checked with
// an independent Python implementation of the spec (hashlib/hmac, integer
// arithmetic mod the group order) except for the Feldman commitments.
const (
	shamirSeed  = "mcbn psk test vector v1"
	contribSeed = "mcbn contributory test vector v1"
)

type pskVector struct {
	identity string
	epoch    uint64
	length   int
	want     string
}

var (
	shamirCanonical = "6d63626e2067726f757020763106766563746f721b7368616d69722d66656c646d616e2d72697374726574746f32353502030105616c6963650203626f6203056361726f6c0210e01d6b9cce2746ff98bbe8e49d489cde2189b071f49d7a6605bcd837a532574e76c125347e9eeaeb7283c8bb2b34fd5cbce73ae9cc35e9bc3d2d8a87548652"
	shamirID        = "2a54f878a37076ebd57a7b4989bfa091e87988996d14396332147385ba4ad083"
	shamirCommits   = []string{
		"10e01d6b9cce2746ff98bbe8e49d489cde2189b071f49d7a6605bcd837a53257",
		"4e76c125347e9eeaeb7283c8bb2b34fd5cbce73ae9cc35e9bc3d2d8a87548652",
	}
	shamirShares = []string{
		"ae25ff3e4fd201976bfab0af4433ecf18c159da45771b473d4fe31632886930b",
		"a62881b6ee6c23eb17ce9cf8b42bd9712e598a346d585874c3d33e6a0818510a",
		"9e2b032e8e07453fc4a188412524c6f1cf9c77c4823ffc74b2a84b71e8a90e09",
	}
	shamirSecret = "b6227dc7af37e042bf26c566d43aff71ebd1af14428a1073e529255c48f4d50c"
	shamirPSKs   = []pskVector{
		{"Client_identity", 0, 32, "474e968a2c0858d74ff68e7f84e7dcf5ac7b4a6cbf4e332d782ecf5c990ab60b"},
		{"Client_identity", 1, 32, "7d4aa5c0d7323ce32040fc0b2a6f5c5026762aea69be0b5cf2ff0b2801158a28"},
		{"client-b", 0, 32, "e258ee636a974f890562703c7723a6c9c48526d572e1785f1d2bb8199e3439fa"},
		{"Client_identity", 0, 48, "e1c0282d4e2eb2b4daa89767435dffc4185334e3b9da538280ca3933030550e7e38de4b2c2b1e90902f0cb032b1ff01a"},
	}

	contribKeys = []string{
		"e00e602b73b6ed659e7b8dbca9d8028473056fbb3e70146bd7784dde26d0c0eb",
		"b4453d02bdb23536ad4b6348fe95dcc20fa9fcd44368c0eedf16eec7fc9d5166",
		"c72c4d6747f981a39327e846ce9e6a1c449b77fcbdd04e6a6db84ce0e9e45481",
	}
	contribCommits = []string{
		"5d49c9bf356f69984d373c09a14b3d78f4f5285989fa31c222718e312170a386",
		"6d889fcdf53e76ab94e943dc15cc056204a11f8814262e6f11843a81e53650a3",
		"bc6ac09ee55e490ddde806cc59b19e0ae30ddd1622d04e761fd8bad159bbf48b",
	}
	contribCanonical = "6d63626e2067726f75702076310b766563746f722d7465616d13636f6e7472696275746f72792d73686132353603030105616c6963655d49c9bf356f69984d373c09a14b3d78f4f5285989fa31c222718e312170a3860203626f626d889fcdf53e76ab94e943dc15cc056204a11f8814262e6f11843a81e53650a303056361726f6cbc6ac09ee55e490ddde806cc59b19e0ae30ddd1622d04e761fd8bad159bbf48b00"
	contribID        = "8f6797e8869e7d6eb7393a84223540b8411c7dac92ba8a07bab22876fc2b78c1"
	contribSecret    = "0fb708f7d329bad1a2dafde794db0ae79dcf22eab7f73b290407b1ef81c6e16a"
	contribPSKs      = []pskVector{
		{"Client_identity", 0, 32, "9891fb7bc4b50fff9e5d82ea5b5a9bba06a73609a9823b9c04e332ea025aab74"},
		{"Client_identity", 1, 32, "04aafd70848e40a4e9eb1f924a47da2c31953c383b6d4c896a9cb89432abe8e3"},
		{"client-b", 0, 32, "231da7f9a024149d9b2939f3511ec3bd922bc3aa00047f1c3faeb159be1e2f67"},
		{"Client_identity", 0, 48, "8b45a1832d8eaf515fc6c25bac74db467cf4a6892e62152dd1b03bd6b7a8f12685f545e5597d6e441c013ecd78e404ee"},
	}
	legacyKeys = []string{
		"2c6f63f8c0f53a565db041b91c0a95add8913fc102670589db3982228dbfed90",
		"b15244faf36e5e4b178d3891701d245f2e45e881d913b6c35c0ea0ac14224cc2",
		"3e2078d5cd04beabfa4a7a1486bc626d679184df2e0a2b9942d913d4b835516c",
	}
	legacyPSK = "6d1bbd1e6235c9d9ec8cdbdf9b32d4d08304a7f305f7c6c67775130d914f4dc4"
)

func check(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

func checkPSKs(t *testing.T, secret []byte, groupID string, vs []pskVector) {
	t.Helper()
	for _, v := range vs {
		k, err := DerivePSK(secret, groupID, v.identity, v.epoch, v.length)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "psk "+v.identity, hex.EncodeToString(k), v.want)
	}
}

func TestShamirVector(t *testing.T) {
	g, shares, err := Split("vector", 2, []string{"alice", "bob", "carol"}, newSeedReader(shamirSeed))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := g.canonical()
	check(t, "canonical", hex.EncodeToString(c), shamirCanonical)
	check(t, "id", g.ID, shamirID)
	check(t, "commitments", strings.Join(g.Commitments, ","), strings.Join(shamirCommits, ","))
	for i, s := range shares {
		check(t, "share "+s.Participant, hex.EncodeToString(s.Value), shamirShares[i])
	}
	// Every pair reconstructs the published secret.
	subsets(3, 2, func(idx []int) {
		secret, err := Combine(g, pick(shares, idx))
		if err != nil {
			t.Fatal(err)
		}
		check(t, "secret", hex.EncodeToString(secret), shamirSecret)
	})
	secret, _ := hex.DecodeString(shamirSecret)
	checkPSKs(t, secret, shamirID, shamirPSKs)
}

func TestContributoryVector(t *testing.T) {
	r := newSeedReader(contribSeed)
	var keys []*ContribKey
	var members []Member
	for i, n := range []string{"alice", "bob", "carol"} {
		k, err := NewContribKey("vector-team", n, r)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "key "+n, hex.EncodeToString(k.Key), contribKeys[i])
		check(t, "commitment "+n, k.Commitment(), contribCommits[i])
		keys = append(keys, k)
		members = append(members, Member{n, k.Commitment()})
	}
	g, err := NewContributoryGroup("vector-team", members)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := g.canonical()
	check(t, "canonical", hex.EncodeToString(c), contribCanonical)
	check(t, "id", g.ID, contribID)
	secret, err := CombineKeys(g, keys)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "secret", hex.EncodeToString(secret), contribSecret)
	checkPSKs(t, secret, contribID, contribPSKs)
}

func TestLegacyVector(t *testing.T) {
	got, err := LegacyConcat(legacyKeys...)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "legacy", got, legacyPSK)
}

// TestSpecDocHasVectors keeps docs/key-derivation.md and this file in step:
// every value above must appear verbatim in the spec.
func TestSpecDocHasVectors(t *testing.T) {
	doc, err := os.ReadFile("../docs/key-derivation.md")
	if err != nil {
		t.Fatal(err)
	}
	// Long hex strings may be wrapped in the doc; compare without whitespace.
	flat := strings.Join(strings.Fields(string(doc)), "")
	want := []string{shamirSeed, contribSeed, shamirCanonical, shamirID, shamirSecret, contribCanonical, contribID, contribSecret, legacyPSK}
	want = append(want, shamirCommits...)
	want = append(want, shamirShares...)
	want = append(want, contribKeys...)
	want = append(want, contribCommits...)
	want = append(want, legacyKeys...)
	for _, v := range append(shamirPSKs, contribPSKs...) {
		want = append(want, v.want)
	}
	for _, w := range want {
		if !strings.Contains(flat, strings.Join(strings.Fields(w), "")) {
			t.Errorf("docs/key-derivation.md lacks %q", w)
		}
	}
}
