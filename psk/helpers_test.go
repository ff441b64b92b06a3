package psk

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

// seedReader is the deterministic byte stream the test vectors are drawn
// from: SHA-256(seed || uint32be(0)) || SHA-256(seed || uint32be(1)) || ...
// (docs/key-derivation.md, "Test vectors"). Never use it for real keys.
type seedReader struct {
	seed []byte
	ctr  uint32
	buf  []byte
}

func newSeedReader(seed string) *seedReader { return &seedReader{seed: []byte(seed)} }

func (r *seedReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.buf) == 0 {
			h := sha256.New()
			h.Write(r.seed)
			h.Write(binary.BigEndian.AppendUint32(nil, r.ctr))
			r.ctr++
			r.buf = h.Sum(nil)
		}
		c := copy(p[n:], r.buf)
		r.buf = r.buf[c:]
		n += c
	}
	return n, nil
}

// split is Split with a fatal error check.
func split(t *testing.T, name string, threshold int, parts ...string) (*Group, []*Share) {
	t.Helper()
	g, shares, err := Split(name, threshold, parts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g, shares
}

// subsets calls f with every k-subset of 0..n-1.
func subsets(n, k int, f func([]int)) {
	idx := make([]int, 0, k)
	var rec func(start int)
	rec = func(start int) {
		if len(idx) == k {
			f(append([]int(nil), idx...))
			return
		}
		for i := start; i < n; i++ {
			idx = append(idx, i)
			rec(i + 1)
			idx = idx[:len(idx)-1]
		}
	}
	rec(0)
}

func pick(shares []*Share, idx []int) []*Share {
	out := make([]*Share, len(idx))
	for i, j := range idx {
		out[i] = shares[j]
	}
	return out
}

// copyShare returns a deep copy, so tests can corrupt one safely.
func copyShare(s *Share) *Share {
	c := *s
	c.Value = append([]byte(nil), s.Value...)
	return &c
}
