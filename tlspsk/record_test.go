package tlspsk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// sealInner protects inner (content, type and padding, as given) as a TLS
// 1.3 record under hc.
func sealInner(hc *halfConn, inner []byte) []byte {
	rec := make([]byte, recordHeaderLen, recordHeaderLen+len(inner)+aeadTagLen)
	rec[0], rec[1], rec[2] = recordApplicationData, 3, 3
	binary.BigEndian.PutUint16(rec[3:], uint16(len(inner)+hc.aead.Overhead()))
	rec = hc.aead.Seal(rec, hc.makeNonce13(), inner, rec[:recordHeaderLen])
	hc.seq++
	return rec
}

// Padding counts toward the 2^14 + 1 bytes a TLSInnerPlaintext may have
// (RFC 8446 5.4): a record whose content fits but whose padding takes it
// over the limit gets record_overflow; one exactly at the limit passes.
func TestPaddedRecordLimit(t *testing.T) {
	suite := suiteByID(TLS_AES_128_GCM_SHA256)
	secret := bytes.Repeat([]byte{7}, 32)
	var out, in halfConn
	if err := out.setKeys13(suite, bytes.Clone(secret)); err != nil {
		t.Fatal(err)
	}
	if err := in.setKeys13(suite, bytes.Clone(secret)); err != nil {
		t.Fatal(err)
	}
	inner := func(content, padding int) []byte {
		b := bytes.Repeat([]byte{'x'}, content)
		b = append(b, recordApplicationData)
		return append(b, make([]byte, padding)...)
	}
	// At the limit: 100 bytes of content, type, padding up to 2^14 + 1.
	typ, body, err := in.open(sealInner(&out, inner(100, maxPlaintext-100)))
	if err != nil || typ != recordApplicationData || len(body) != 100 {
		t.Fatalf("record at the limit: %v, %d bytes", err, len(body))
	}
	// One padding byte more.
	_, _, err = in.open(sealInner(&out, inner(100, maxPlaintext-99)))
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert != alertRecordOverflow {
		t.Fatalf("padded past the limit: %v, want record_overflow", err)
	}
}
