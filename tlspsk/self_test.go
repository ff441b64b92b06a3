package tlspsk

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// pair returns a connected client and server over loopback TCP.
func pair(t testing.TB, cc, sc *Config) (*Conn, *Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	c, sv := Client(raw, cc), Server(s, sc)
	t.Cleanup(func() { c.Close(); sv.Close() })
	return c, sv
}

// handshakeBoth runs both handshakes and returns their errors.
func handshakeBoth(c, s *Conn) (cerr, serr error) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); serr = s.Handshake() }()
	cerr = c.Handshake()
	if cerr != nil {
		c.Close()
	}
	wg.Wait()
	return
}

func TestSelfHandshakeMatrix(t *testing.T) {
	for _, suite := range []uint16{TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256} {
		for _, g := range []CurveID{X25519, CurveP256, X25519MLKEM768} {
			h := crypto.SHA256
			if suite == TLS_AES_256_GCM_SHA384 {
				h = crypto.SHA384
			}
			cc := &Config{Identity: "id", Key: testKey, PSKHash: h, CipherSuites: []uint16{suite}, CurvePreferences: []CurveID{g}}
			sc := &Config{Identity: "id", Key: testKey, PSKHash: h}
			c, s := pair(t, cc, sc)
			if cerr, serr := handshakeBoth(c, s); cerr != nil || serr != nil {
				t.Fatalf("%s %v: client %v server %v", CipherSuiteName(suite), g, cerr, serr)
			}
			st := c.ConnectionState()
			if st.CipherSuite != suite || st.Group != g || st.PSKIdentity != "id" || s.ConnectionState().Group != g {
				t.Fatalf("state %+v", st)
			}
			exchange(t, c, s, 100000)
		}
	}
}

// exchange sends n random bytes each way at once and compares checksums.
func exchange(t testing.TB, a, b net.Conn, n int) {
	t.Helper()
	da, db := make([]byte, n), make([]byte, n)
	rand.Read(da)
	rand.Read(db)
	var wg sync.WaitGroup
	var errs [4]error
	gotA, gotB := make([]byte, n), make([]byte, n)
	wg.Add(4)
	go func() { defer wg.Done(); _, errs[0] = a.Write(da) }()
	go func() { defer wg.Done(); _, errs[1] = b.Write(db) }()
	go func() { defer wg.Done(); _, errs[2] = io.ReadFull(b, gotB) }()
	go func() { defer wg.Done(); _, errs[3] = io.ReadFull(a, gotA) }()
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if sha256.Sum256(gotB) != sha256.Sum256(da) || !bytes.Equal(gotA, db) {
		t.Fatal("exchange: data mismatch")
	}
}
