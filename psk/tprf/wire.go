package tprf

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/mcbn/mcbn/psk"
)

// Wire format of a partial (docs/key-derivation.md, "Partial wire format"):
//
//	"mcbnTPRF" (8) || version 0x01 (1) || KeyID (32) || epoch (8, big-endian)
//	|| len(identity) (2, big-endian) || identity || index (2, big-endian)
//	|| Y (32) || C (32) || S (32)
//
// Every element and scalar must be canonical; nothing may follow.
const (
	wireMagic   = "mcbnTPRF"
	wireVersion = 1
	// MaxPartialLen bounds an encoded partial (the identity is at most
	// 65535 bytes).
	MaxPartialLen = len(wireMagic) + 1 + 32 + 8 + 2 + 0xffff + 2 + 3*32
)

// MarshalBinary encodes p in the wire format.
func (p *Partial) MarshalBinary() ([]byte, error) {
	id, err := p.Input.check()
	if err != nil {
		return nil, err
	}
	if p.Index < 1 || p.Index > psk.MaxParticipants {
		return nil, fmt.Errorf("index %d out of range 1..%d", p.Index, psk.MaxParticipants)
	}
	if p.Y == nil || p.C == nil || p.S == nil {
		return nil, errors.New("partial without Y or proof")
	}
	b := make([]byte, 0, len(wireMagic)+1+32+8+2+len(p.Identity)+2+96)
	b = append(b, wireMagic...)
	b = append(b, wireVersion)
	b = append(b, id...)
	b = binary.BigEndian.AppendUint64(b, p.Epoch)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.Identity)))
	b = append(b, p.Identity...)
	b = binary.BigEndian.AppendUint16(b, uint16(p.Index))
	for _, m := range []interface{ MarshalBinary() ([]byte, error) }{p.Y, p.C, p.S} {
		x, err := m.MarshalBinary()
		if err != nil {
			return nil, err
		}
		b = append(b, x...)
	}
	return b, nil
}

// ParsePartial decodes one partial in the wire format, strictly: the magic
// and version, a non-empty identity, an index in 1..255, canonical
// encodings, no trailing bytes. It checks the encoding only; Group.Verify
// checks the proof.
func ParsePartial(b []byte) (*Partial, error) {
	if len(b) > MaxPartialLen {
		return nil, fmt.Errorf("partial is %d bytes, at most %d", len(b), MaxPartialLen)
	}
	r := reader{b: b}
	if string(r.next(len(wireMagic))) != wireMagic {
		return nil, errors.New("not a partial (bad magic)")
	}
	if v := r.next(1); v == nil || v[0] != wireVersion {
		return nil, errors.New("unsupported partial version")
	}
	id := r.next(32)
	ep := r.next(8)
	idl := r.next(2)
	if idl == nil {
		return nil, errors.New("partial truncated")
	}
	n := int(binary.BigEndian.Uint16(idl))
	if n == 0 {
		return nil, errors.New("partial has an empty psk identity")
	}
	ident := r.next(n)
	ix := r.next(2)
	yb, cb, sb := r.next(32), r.next(32), r.next(32)
	if sb == nil {
		return nil, errors.New("partial truncated")
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the partial", len(r.b))
	}
	p := &Partial{Input: Input{KeyID: hex.EncodeToString(id), Identity: string(ident), Epoch: binary.BigEndian.Uint64(ep)}}
	p.Index = int(binary.BigEndian.Uint16(ix))
	if p.Index < 1 || p.Index > psk.MaxParticipants {
		return nil, fmt.Errorf("partial index %d out of range 1..%d", p.Index, psk.MaxParticipants)
	}
	var err error
	if p.Y, err = elementFromBytes(yb); err != nil {
		return nil, fmt.Errorf("partial Y: %v", err)
	}
	if p.Y.IsIdentity() {
		return nil, errors.New("partial Y is the identity element")
	}
	if p.C, err = scalarFromBytes(cb); err != nil {
		return nil, fmt.Errorf("partial proof c: %v", err)
	}
	if p.S, err = scalarFromBytes(sb); err != nil {
		return nil, fmt.Errorf("partial proof s: %v", err)
	}
	return p, nil
}

// reader takes fixed-size fields off a byte string; once short, every
// later call returns nil.
type reader struct {
	b     []byte
	short bool
}

func (r *reader) next(n int) []byte {
	if r.short || len(r.b) < n {
		r.short = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}
