package tlspsk

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// firstClientHello starts a client handshake under cfg over a pipe and
// returns the ClientHello it sends.
func firstClientHello(t *testing.T, cfg *Config) *clientHello {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c2.Close()
	cl := Client(c1, cfg)
	go func() { cl.Handshake(); c1.Close() }()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	var hdr [5]byte
	if _, err := io.ReadFull(c2, hdr[:]); err != nil {
		t.Fatalf("reading the ClientHello record: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatalf("reading the ClientHello record: %v", err)
	}
	ch, err := parseClientHello(body)
	if err != nil {
		t.Fatalf("parsing our own ClientHello: %v", err)
	}
	return ch
}

// TestClientHybridSharesOneX25519: the default client offers
// X25519MLKEM768 and X25519 with one X25519 key pair (the plain share is
// the hybrid's X25519 half), with and without a key share pool, and a
// fresh key pair in every hello.
func TestClientHybridSharesOneX25519(t *testing.T) {
	pool := NewKeySharePool(2, time.Minute)
	defer pool.Close()
	var prev []byte
	for _, cfg := range []*Config{{Key: testKey}, {Key: testKey, KeyShares: pool}, {Key: testKey, KeyShares: pool}} {
		ch := firstClientHello(t, cfg)
		var hybrid, plain []byte
		for _, ks := range ch.keyShares {
			switch ks.group {
			case X25519MLKEM768:
				hybrid = ks.data
			case X25519:
				plain = ks.data
			}
		}
		if len(hybrid) != mlkemEKLen+32 || len(plain) != 32 {
			t.Fatalf("shares: hybrid %d bytes, X25519 %d bytes; want %d and 32", len(hybrid), len(plain), mlkemEKLen+32)
		}
		if !bytes.Equal(hybrid[mlkemEKLen:], plain) {
			t.Fatal("the X25519 share is not the hybrid share's X25519 half")
		}
		if bytes.Equal(plain, prev) {
			t.Fatal("two hellos carried the same X25519 share")
		}
		prev = plain
	}
}

// TestReusedX25519CompletesEitherGroup: with the shared key pair, a server
// that takes the hybrid and one that takes plain X25519 both complete
// without a HelloRetryRequest, and each side derives the same keys.
func TestReusedX25519CompletesEitherGroup(t *testing.T) {
	for _, want := range []CurveID{X25519MLKEM768, X25519} {
		c, s := pair(t, &Config{Key: testKey}, &Config{Key: testKey, CurvePreferences: []CurveID{want}})
		if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
			t.Fatalf("server on %v: client %v, server %v", want, cerr, serr)
		}
		st := c.ConnectionState()
		if st.Group != want {
			t.Fatalf("group %v, want %v", st.Group, want)
		}
		if st.HelloRetryRequest {
			t.Fatalf("server on %v needed a HelloRetryRequest", want)
		}
		exchange(t, c, s, 10000)
	}
}
