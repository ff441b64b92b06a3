package tlspsk

import (
	"errors"
	"testing"
	"time"
)

// An AES-GCM DTLS session ends at its key's confidentiality limit (TLS 1.2
// has no key update): the write past it fails with ErrDTLSKeyLimit, the
// session stays failed, and a new session to the same listener works. The
// limit is lowered on the live cipher; at the real one (2^34 blocks) a
// 1,200-byte stream reaches it after ~220 million datagrams.
func TestDTLSKeyLimitEndsSession(t *testing.T) {
	cfg := &DTLSConfig{Config: Config{Key: testKey, CipherSuites: []uint16{TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256}}}
	l := listenDTLSTest(t, cfg)
	accepted := acceptDTLS(t, l)
	c, err := DialDTLS("udp", l.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := waitAccepted(t, accepted)
	s.SetReadDeadline(time.Now().Add(dtlsTestTimeout))

	const size, room = 1200, 10
	c.out.Lock()
	c.out.k.limitBlocks = c.out.k.blocks + room*((size+15)/16+2)
	c.out.Unlock()
	buf := make([]byte, 2048)
	for i := 0; i < room; i++ {
		if _, err := c.Write(checkedDatagram(uint32(i), size)); err != nil {
			t.Fatalf("write %d, within the limit: %v", i, err)
		}
		n, err := s.Read(buf)
		if err != nil || n != size {
			t.Fatalf("read %d: %d bytes, %v", i, n, err)
		}
	}
	for i := 0; i < 2; i++ { // the failure is sticky
		if _, err := c.Write(checkedDatagram(room, size)); !errors.Is(err, ErrDTLSKeyLimit) {
			t.Fatalf("write past the limit (try %d): %v, want ErrDTLSKeyLimit", i+1, err)
		}
	}

	// A new session to the same listener works, and its reading side
	// holds the peer to the same limit.
	accepted = acceptDTLS(t, l)
	c2, err := DialDTLS("udp", l.Addr().String(), cfg)
	if err != nil {
		t.Fatalf("a new session after the limit: %v", err)
	}
	defer c2.Close()
	s2 := waitAccepted(t, accepted)
	s2.SetReadDeadline(time.Now().Add(dtlsTestTimeout))
	s2.in.Lock()
	s2.in.k.limitBlocks = s2.in.k.blocks + (size+15)/16 + 2
	s2.in.Unlock()
	for i := 0; i < 2; i++ {
		if _, err := c2.Write(checkedDatagram(uint32(i), size)); err != nil {
			t.Fatalf("new session, write %d: %v", i, err)
		}
	}
	if n, err := s2.Read(buf); err != nil || n != size {
		t.Fatalf("new session, read 0: %d bytes, %v", n, err)
	}
	if n, err := s2.Read(buf); !errors.Is(err, ErrDTLSKeyLimit) {
		t.Fatalf("read past the limit: %d bytes, %v; want ErrDTLSKeyLimit", n, err)
	}
}
