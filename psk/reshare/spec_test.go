package reshare

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/mcbn/mcbn/psk/dkg"
)

// The byte formats of docs/key-lifecycle.md, section 6, recomputed here
// from the text rather than from the code's helpers.
func TestReshareSpecBytes(t *testing.T) {
	c := setup(t, 2, "alice,bob,carol", 3, "alice,dave,erin", []string{"carol", "alice"})
	p := c.p
	// reshare id
	oldID, _ := hex.DecodeString(p.Old.ID)
	b := append([]byte("mcbn reshare params v1"), oldID...)
	b = append(b, 2, 1, 5)
	b = append(b, "alice"...)
	b = append(b, 3, 5)
	b = append(b, "carol"...)
	b = append(b, 3, 3)
	for j, n := range []string{"alice", "dave", "erin"} {
		b = append(b, byte(j+1), byte(len(n)))
		b = append(b, n...)
		b = append(b, c.keys[n].pub...)
	}
	b = append(b, p.Nonce...)
	want := sha256.Sum256(b)
	if !bytes.Equal(p.ID(), want[:]) {
		t.Fatal("reshare id differs from the documented formula")
	}
	var f map[string]any
	pb, _ := p.Marshal()
	if err := json.Unmarshal(pb, &f); err != nil || f["reshare_id"] != hex.EncodeToString(want[:]) || f["type"] != TypeParams {
		t.Fatalf("params file: %v %v", err, f["reshare_id"])
	}
	// The sealed sub-share of carol for dave opens with the documented
	// info and aad, and its value passes the Feldman check.
	d := c.dealOf(t, "carol")
	h := sha256.New()
	h.Write([]byte("mcbn reshare commitments v1"))
	h.Write([]byte{3})
	for _, cm := range d.Commitments {
		h.Write(cm)
	}
	aad := append([]byte{3, 5}, "carol"...)
	aad = append(append(aad, 2, 4), "dave"...)
	aad = h.Sum(aad)
	info := append([]byte("mcbn reshare v1 sub-share"), want[:]...)
	if len(d.Shares[1].Sealed) != 80 || d.Shares[1].Recipient != "dave" {
		t.Fatal("sub-share for dave is not the second, 80 bytes")
	}
	pt, err := dkg.OpenShare(c.keys["dave"].priv, info, aad, d.Shares[1].Sealed)
	if err != nil {
		t.Fatalf("documented info/aad do not open the sub-share: %v", err)
	}
	y, err := dkg.DecodeScalar(pt)
	if err != nil {
		t.Fatal(err)
	}
	var els []group.Element
	for _, cm := range d.Commitments {
		e, err := dkg.DecodeElement(cm)
		if err != nil {
			t.Fatal(err)
		}
		els = append(els, e)
	}
	if !dkg.FeldmanOK(els, 2, y) {
		t.Fatal("opened sub-share fails the Feldman check")
	}
	// The proof signs the documented message under X_3.
	msg := append([]byte("mcbn reshare deal v1"), want[:]...)
	msg = append(append(msg, 3, 5), "carol"...)
	msg = append(msg, 3)
	for _, cm := range d.Commitments {
		msg = append(msg, cm...)
	}
	msg = append(msg, 3)
	for j, s := range d.Shares {
		msg = append(append(msg, byte(j+1), byte(len(s.Recipient))), s.Recipient...)
		msg = append(msg, s.Sealed...)
	}
	x, _ := publicShare(p.Old, 3)
	if !verifyProof(x, msg, d.Proof) {
		t.Fatal("proof does not verify over the documented message")
	}
}
