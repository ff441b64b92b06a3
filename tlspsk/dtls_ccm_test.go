package tlspsk

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	pionccm "github.com/pion/dtls/v3/pkg/crypto/ccm"
)

// The examples of NIST SP 800-38C appendix C.
func TestCCMVectors(t *testing.T) {
	key := unhex(t, "404142434445464748494a4b4c4d4e4f")
	for _, v := range []struct {
		tag                 int
		nonce, ad, pt, want string
	}{
		{4, "10111213141516", "0001020304050607", "20212223", "7162015b4dac255d"},
		{6, "1011121314151617", "000102030405060708090a0b0c0d0e0f", "202122232425262728292a2b2c2d2e2f", "d2a1f0e051ea5f62081a7792073d593d1fc64fbfaccd"},
		{8, "101112131415161718191a1b", "000102030405060708090a0b0c0d0e0f10111213", "202122232425262728292a2b2c2d2e2f3031323334353637",
			"e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951"},
	} {
		b, _ := aes.NewCipher(key)
		c, err := newCCM(b, v.tag, len(v.nonce)/2)
		if err != nil {
			t.Fatal(err)
		}
		nonce, ad, pt := unhex(t, v.nonce), unhex(t, v.ad), unhex(t, v.pt)
		got := c.Seal(nil, nonce, pt, ad)
		if hex.EncodeToString(got) != v.want {
			t.Fatalf("tag %d: got %x, want %s", v.tag, got, v.want)
		}
		back, err := c.Open(nil, nonce, got, ad)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("open: %v %x", err, back)
		}
		got[0] ^= 1
		if _, err := c.Open(nil, nonce, got, ad); err == nil {
			t.Fatal("a flipped bit opened")
		}
	}
}

// Our CCM against pion's, with the TLS nonce size and both tag sizes,
// random lengths, in place.
func TestCCMAgainstPion(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		key := make([]byte, 16+16*(i%2))
		for j := range key {
			key[j] = byte(r.Uint32())
		}
		tag := []int{8, 16}[i/2%2]
		b, _ := aes.NewCipher(key)
		ours, _ := newCCM(b, tag, 12)
		theirs, err := pionccm.NewCCM(b, tag, 12)
		if err != nil {
			t.Fatal(err)
		}
		nonce := make([]byte, 12)
		ad := make([]byte, r.IntN(40))
		pt := make([]byte, r.IntN(300))
		for _, s := range [][]byte{nonce, ad, pt} {
			for j := range s {
				s[j] = byte(r.Uint32())
			}
		}
		want := theirs.Seal(nil, nonce, pt, ad)
		buf := append(make([]byte, 0, len(pt)+tag), pt...)
		got := ours.Seal(buf[:0], nonce, buf, ad)
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: seal differs", i)
		}
		back, err := ours.Open(got[:0], nonce, got, ad)
		if err != nil || !bytes.Equal(back, pt) {
			t.Fatalf("case %d: open: %v", i, err)
		}
	}
}

func BenchmarkCCMSeal1200(b *testing.B) {
	blk, _ := aes.NewCipher(make([]byte, 16))
	c, _ := newCCM(blk, 16, 12)
	buf := make([]byte, 1200, 1300)
	nonce, ad := make([]byte, 12), make([]byte, 13)
	b.SetBytes(1200)
	b.ReportAllocs()
	for b.Loop() {
		c.Seal(buf[:0], nonce, buf, ad)
	}
}
