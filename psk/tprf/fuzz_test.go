package tprf

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/mcbn/mcbn/psk"
)

// FuzzParsePartial: the parser never panics, and whatever it accepts
// re-encodes to the same bytes (one encoding per partial) and verifies or
// is refused with a named kind, never anything else.
func FuzzParsePartial(f *testing.F) {
	seed, _ := hex.DecodeString(vectorPartial)
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Add(append(bytes.Clone(seed), 0))
	f.Add([]byte("mcbnTPRF\x01"))
	f.Add([]byte{})
	bad := bytes.Clone(seed)
	bad[len(bad)-1] ^= 0x80
	f.Add(bad)
	g, err := psk.ParseGroup([]byte(vectorGroup))
	if err != nil {
		f.Fatal(err)
	}
	tg, err := NewGroup(g)
	if err != nil {
		f.Fatal(err)
	}
	in := tg.Input("Client_identity", 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePartial(b)
		if err != nil {
			if p != nil {
				t.Fatal("partial and error")
			}
			return
		}
		again, err := p.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted partial does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("accepted a non-canonical encoding")
		}
		if err := tg.Verify(in, p); err != nil && KindOf(err) == "" {
			t.Fatalf("refusal without a kind: %v", err)
		}
	})
}
