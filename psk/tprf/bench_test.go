package tprf

import (
	"fmt"
	"testing"

	"github.com/mcbn/mcbn/psk"
)

// The threshold path's costs (partial evaluation with its proof on a
// participant, verification and combination on the proxy) beside today's
// share path (verify T shares, reconstruct, DerivePSK) for T = 3, 5, 9.
func BenchmarkTPRF(b *testing.B) {
	for _, t := range []int{3, 5, 9} {
		tg, shares, _ := split(b, "bench", t, t)
		in := tg.Input("Client_identity", 1)
		partials := evalAll(b, tg, shares, in)
		b.Run(fmt.Sprintf("T=%d/evaluate+prove", t), func(b *testing.B) {
			for b.Loop() {
				if _, err := tg.Evaluate(shares[0], in, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("T=%d/verify-one", t), func(b *testing.B) {
			for b.Loop() {
				if err := tg.Verify(in, partials[0]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("T=%d/verify-all+combine+derive", t), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := tg.CombinePSK(in, partials, 32); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("T=%d/share-path:verify+reconstruct+derive", t), func(b *testing.B) {
			for b.Loop() {
				secret, _, err := psk.CombineValid(tg.PSK(), shares)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := psk.DerivePSK(secret, tg.PSK().KeyID(), "Client_identity", 1, 32); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
