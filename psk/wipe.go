package psk

import "github.com/cloudflare/circl/group"

// Wipe overwrites b with zeros. Go may have copied the bytes elsewhere
// (the garbage collector moves nothing, but appends and conversions copy), so
// this is best effort: call it on every secret slice you own once done.
func Wipe(b []byte) {
	clear(b)
}

// wipeScalar zeroes a circl scalar in place. circl keeps internal copies
// (e.g. inside polynomials) that we cannot reach; see the package doc.
func wipeScalar(s group.Scalar) {
	if s != nil {
		s.SetUint64(0)
	}
}
