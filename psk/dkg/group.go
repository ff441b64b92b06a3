package dkg

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/mcbn/mcbn/psk"
)

// groupID is the psk group id of a Shamir descriptor (docs/key-derivation.md
// section 3): SHA-256("mcbn group v1" || str(name) || str(scheme) || u8(T)
// || u8(N) || for i: u8(i) || str(name_i) || u8(T) || C_0 || ... ).
// psk.ParseGroup checks it again, so a mistake here cannot go unnoticed.
func groupID(g *psk.Group, commitments [][]byte) string {
	b := appendStr([]byte("mcbn group v1"), g.Name)
	b = appendStr(b, g.Scheme)
	b = append(b, byte(g.Threshold), byte(len(g.Participants)))
	for _, p := range g.Participants {
		b = append(b, byte(p.Index))
		b = appendStr(b, p.Name)
	}
	b = append(b, byte(len(commitments)))
	for _, c := range commitments {
		b = append(b, c...)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
