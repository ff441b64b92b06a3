package tlspsk

import (
	"crypto/cipher"
	"crypto/subtle"
	"errors"
)

// AES-CCM (NIST SP 800-38C, RFC 3610) for the DTLS CCM suites of RFC 6655:
// a CBC-MAC over B0 (flags, nonce, message length), the encoded additional
// data and the plaintext, then CTR mode with counter blocks A_i (flags,
// nonce, i); the tag is the MAC XOR the first key-stream block S_0, cut to
// the tag length. TLS uses a 12-byte nonce (salt || explicit), so the
// length field L is 3 bytes.
//
// A ccm keeps its scratch blocks in itself so that Seal and Open do not
// allocate: unlike the standard library's AEADs it must not be used by two
// goroutines at once. Each DTLS record direction has its own, used under
// that direction's lock.

type ccm struct {
	b        cipher.Block
	tagLen   int
	nonceLen int
	mac      [16]byte // CBC-MAC state X_i
	ctr      [16]byte // counter block A_i
	ks       [16]byte // key-stream block S_i
	s0       [16]byte
	pos      int // bytes absorbed into mac since the last block encryption
}

var errCCMOpen = errors.New("tlspsk: CCM message authentication failed")

// newCCM returns CCM over a 16-byte block cipher with a tag of tagLen bytes
// (4 to 16, even) and a nonce of nonceLen bytes (7 to 13).
func newCCM(b cipher.Block, tagLen, nonceLen int) (*ccm, error) {
	if b.BlockSize() != 16 || tagLen < 4 || tagLen > 16 || tagLen%2 != 0 || nonceLen < 7 || nonceLen > 13 {
		return nil, errors.New("tlspsk: bad CCM parameters")
	}
	return &ccm{b: b, tagLen: tagLen, nonceLen: nonceLen}, nil
}

func (c *ccm) NonceSize() int { return c.nonceLen }
func (c *ccm) Overhead() int  { return c.tagLen }

// lenBytes is L, the size of the message length field.
func (c *ccm) lenBytes() int { return 15 - c.nonceLen }

func (c *ccm) maxLen() uint64 {
	if l := c.lenBytes(); l < 8 {
		return 1<<(8*uint(l)) - 1
	}
	return ^uint64(0)
}

// absorb feeds b into the CBC-MAC.
func (c *ccm) absorb(b []byte) {
	for len(b) > 0 {
		n := min(16-c.pos, len(b))
		subtle.XORBytes(c.mac[c.pos:c.pos+n], c.mac[c.pos:c.pos+n], b[:n])
		c.pos += n
		b = b[n:]
		if c.pos == 16 {
			c.b.Encrypt(c.mac[:], c.mac[:])
			c.pos = 0
		}
	}
}

// pad ends a zero-padded section of the CBC-MAC input.
func (c *ccm) pad() {
	if c.pos > 0 {
		c.b.Encrypt(c.mac[:], c.mac[:])
		c.pos = 0
	}
}

// tag computes the CBC-MAC of nonce, ad and plaintext into c.mac.
func (c *ccm) tag(nonce, plaintext, ad []byte) {
	l := c.lenBytes()
	b0 := &c.mac
	*b0 = [16]byte{}
	b0[0] = byte((c.tagLen-2)/2)<<3 | byte(l-1)
	if len(ad) > 0 {
		b0[0] |= 0x40
	}
	copy(b0[1:], nonce)
	n := uint64(len(plaintext))
	for i := 15; i >= 16-l; i-- {
		b0[i] = byte(n)
		n >>= 8
	}
	c.b.Encrypt(c.mac[:], c.mac[:])
	c.pos = 0
	if len(ad) > 0 {
		var hdr [10]byte
		var h []byte
		switch a := uint64(len(ad)); {
		case a < 0xFF00:
			hdr[0], hdr[1] = byte(a>>8), byte(a)
			h = hdr[:2]
		case a <= 0xFFFFFFFF:
			hdr[0], hdr[1] = 0xFF, 0xFE
			hdr[2], hdr[3], hdr[4], hdr[5] = byte(a>>24), byte(a>>16), byte(a>>8), byte(a)
			h = hdr[:6]
		default:
			hdr[0], hdr[1] = 0xFF, 0xFF
			for i := 0; i < 8; i++ {
				hdr[2+i] = byte(a >> (56 - 8*i))
			}
			h = hdr[:10]
		}
		c.absorbSmall(h)
		c.absorb(ad)
		c.pad()
	}
	c.absorb(plaintext)
	c.pad()
}

// absorbSmall absorbs a header of at most 10 bytes at the start of a block
// (the position is 0 after B0) without passing a stack slice through the
// Block interface.
func (c *ccm) absorbSmall(h []byte) {
	for i, v := range h {
		c.mac[c.pos+i] ^= v
	}
	c.pos += len(h)
}

// setCounter sets A_0 for nonce; A_i follows by incrementing the last L bytes.
func (c *ccm) setCounter(nonce []byte) {
	c.ctr = [16]byte{}
	c.ctr[0] = byte(c.lenBytes() - 1)
	copy(c.ctr[1:], nonce)
}

func (c *ccm) incCounter() {
	for i := 15; i > c.nonceLen; i-- {
		c.ctr[i]++
		if c.ctr[i] != 0 {
			return
		}
	}
}

// xorKeyStream encrypts or decrypts src into dst with S_1, S_2, ...
// (c.ctr holds A_0 on entry).
func (c *ccm) xorKeyStream(dst, src []byte) {
	for len(src) > 0 {
		c.incCounter()
		c.b.Encrypt(c.ks[:], c.ctr[:])
		n := min(16, len(src))
		subtle.XORBytes(dst[:n], src[:n], c.ks[:n])
		dst, src = dst[n:], src[n:]
	}
}

func (c *ccm) Seal(dst, nonce, plaintext, ad []byte) []byte {
	if len(nonce) != c.nonceLen {
		panic("tlspsk: CCM: bad nonce length")
	}
	if uint64(len(plaintext)) > c.maxLen() {
		panic("tlspsk: CCM: message too long")
	}
	// out may be plaintext itself (in place) but must not overlap it
	// otherwise, as for the standard library's AEADs.
	ret, out := growSlice(dst, len(plaintext)+c.tagLen)
	c.tag(nonce, plaintext, ad)
	c.setCounter(nonce)
	c.b.Encrypt(c.s0[:], c.ctr[:])
	// The tag goes after the ciphertext, which may overwrite plaintext in
	// place: compute it first, write it last.
	var t [16]byte
	subtle.XORBytes(t[:c.tagLen], c.mac[:c.tagLen], c.s0[:c.tagLen])
	c.xorKeyStream(out, plaintext)
	copy(out[len(plaintext):], t[:c.tagLen])
	return ret
}

func (c *ccm) Open(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if len(nonce) != c.nonceLen {
		panic("tlspsk: CCM: bad nonce length")
	}
	if len(ciphertext) < c.tagLen || uint64(len(ciphertext)-c.tagLen) > c.maxLen() {
		return nil, errCCMOpen
	}
	n := len(ciphertext) - c.tagLen
	var t [16]byte
	copy(t[:], ciphertext[n:])
	ret, out := growSlice(dst, n)
	c.setCounter(nonce)
	c.b.Encrypt(c.s0[:], c.ctr[:])
	c.xorKeyStream(out, ciphertext[:n])
	c.tag(nonce, out, ad)
	subtle.XORBytes(c.mac[:c.tagLen], c.mac[:c.tagLen], c.s0[:c.tagLen])
	if subtle.ConstantTimeCompare(c.mac[:c.tagLen], t[:c.tagLen]) != 1 {
		clear(out)
		return nil, errCCMOpen
	}
	return ret, nil
}

// growSlice extends in by n bytes, reusing its capacity, and returns the
// whole slice and the new tail.
func growSlice(in []byte, n int) (head, tail []byte) {
	total := len(in) + n
	if cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
