package dkg

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// The byte strings of docs/dkg.md section 3, rebuilt here from the JSON
// files alone (not from the package's helpers), must give the ids, the
// signature and the HPKE opening the implementation produced.
func TestDkgSpecBytes(t *testing.T) {
	p := params(2, "alice", "bob", "carol")
	ps := ceremony(t, p)
	u8 := func(b []byte, x int) []byte { return append(b, byte(x)) }
	str := func(b []byte, s string) []byte { return append(u8(b, len(s)), s...) }
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sha := func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }
	paramsBytes := str(nil, "demo")
	paramsBytes = u8(u8(paramsBytes, 2), 3)
	for i, n := range []string{"alice", "bob", "carol"} {
		paramsBytes = str(u8(paramsBytes, i+1), n)
	}

	var fps [][]byte
	for _, q := range ps {
		raw, _ := q.pub.Marshal()
		var f map[string]any
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatal(err)
		}
		b := append([]byte("mcbn dkg pub v1"), paramsBytes...)
		b = str(b, f["participant"].(string))
		b = append(b, unhex(f["hpke_key"].(string))...)
		b = append(b, unhex(f["sign_key"].(string))...)
		b = append(b, unhex(f["commitments_digest"].(string))...)
		fps = append(fps, sha(b))
	}
	id := sha(append(append([]byte("mcbn dkg ceremony v1"), paramsBytes...), bytes.Join(fps, nil)...))
	if !bytes.Equal(id, ps[0].st.Ceremony) {
		t.Fatal("ceremony id differs from the spec")
	}

	raw, _ := ps[1].r1.Marshal() // bob's round 1
	var r round1File
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	cd := append([]byte("mcbn dkg commitments v1"), 2)
	for _, c := range r.Commitments {
		cd = append(cd, unhex(c)...)
	}
	if !bytes.Equal(sha(cd), ps[1].pub.CommitmentsDigest) {
		t.Fatal("commitments digest differs from the spec")
	}
	msg := append([]byte("mcbn dkg round1 v1"), unhex(r.Ceremony)...)
	msg = u8(msg, 3)
	for _, fp := range r.PubFingerprints {
		msg = append(msg, unhex(fp)...)
	}
	msg = u8(str(msg, "bob"), 2)
	for _, c := range r.Commitments {
		msg = append(msg, unhex(c)...)
	}
	msg = u8(msg, len(r.SubShares))
	var sealedForAlice []byte
	for _, s := range r.SubShares {
		msg = append(str(msg, s.Recipient), unhex(s.Sealed)...)
		if s.Recipient == "alice" {
			sealedForAlice = unhex(s.Sealed)
		}
	}
	if !ed25519.Verify(ps[1].pub.SignKey, msg, unhex(r.Signature)) {
		t.Fatal("signature does not verify over the spec's message")
	}

	// Open alice's sub-share with the standard library and the spec's info/aad.
	info := append(append([]byte("mcbn dkg v1 sub-share"), id...), paramsBytes...)
	aad := str(u8(str([]byte{1, 2}, "bob"), 1), "alice")
	aad = append(aad, sha(cd)...)
	kemID, kdfID, aeadID := uint16(0x0020), uint16(0x0001), uint16(0x0003)
	k, _ := hpke.NewKEM(kemID)
	kd, _ := hpke.NewKDF(kdfID)
	ae, _ := hpke.NewAEAD(aeadID)
	sk, err := k.NewPrivateKey(ps[0].st.hpkePriv)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := hpke.NewRecipient(sealedForAlice[:32], sk, kd, ae, info)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := rc.Open(aad, sealedForAlice[32:])
	if err != nil {
		t.Fatalf("spec info/aad do not open the sub-share: %v", err)
	}
	poly, _ := ps[1].st.polynomial()
	want, _ := evaluate(poly, 1).MarshalBinary()
	if !bytes.Equal(pt, want) || len(sealedForAlice) != 80 {
		t.Fatal("sub-share is not f_bob(1)")
	}
}
