package tlspsk

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Our DTLS client against our DTLS listener over loopback UDP.

const dtlsTestTimeout = 20 * time.Second

// listenDTLSTest starts a listener on loopback and closes it when the test ends.
func listenDTLSTest(t testing.TB, cfg *DTLSConfig) *DTLSListener {
	t.Helper()
	l, err := ListenDTLS("udp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// acceptDTLS accepts one session in the background.
func acceptDTLS(t testing.TB, l *DTLSListener) <-chan *DTLSConn {
	ch := make(chan *DTLSConn, 1)
	go func() {
		c, err := l.AcceptDTLS()
		if err != nil {
			close(ch)
			return
		}
		t.Cleanup(func() { c.Close() })
		ch <- c
	}()
	return ch
}

func waitAccepted(t testing.TB, ch <-chan *DTLSConn) *DTLSConn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("accept failed")
		}
		return c
	case <-time.After(dtlsTestTimeout):
		t.Fatal("no session accepted")
	}
	return nil
}

// checkedDatagram is a datagram that proves its own integrity: a sequence
// number, random-ish filler derived from it, and a SHA-256 prefix.
func checkedDatagram(seq uint32, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b[32:], seq)
	for i := 36; i < size; i++ {
		b[i] = byte(seq*31 + uint32(i)*7)
	}
	s := sha256.Sum256(b[32:])
	copy(b, s[:])
	return b
}

// verifyDatagram returns the sequence number of a checked datagram.
func verifyDatagram(b []byte) (uint32, error) {
	if len(b) < 36 {
		return 0, fmt.Errorf("datagram of %d bytes", len(b))
	}
	s := sha256.Sum256(b[32:])
	if !bytes.Equal(s[:], b[:32]) {
		return 0, errors.New("datagram checksum mismatch")
	}
	return binary.BigEndian.Uint32(b[32:]), nil
}

// pingPong sends n checked datagrams from a to b and back, one at a time,
// and fails on any mismatch or loss.
func pingPong(t testing.TB, a, b net.Conn, n, size int) {
	t.Helper()
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(dtlsTestTimeout)
	a.SetReadDeadline(deadline)
	b.SetReadDeadline(deadline)
	for i := 0; i < n; i++ {
		for _, dir := range [][2]net.Conn{{a, b}, {b, a}} {
			d := checkedDatagram(uint32(i), size)
			if _, err := dir[0].Write(d); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			m, err := dir[1].Read(buf)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			seq, err := verifyDatagram(buf[:m])
			if err != nil || seq != uint32(i) || m != size {
				t.Fatalf("datagram %d: seq %d, %d bytes, %v", i, seq, m, err)
			}
		}
	}
}

func TestDTLSSelfEachSuite(t *testing.T) {
	for _, id := range DTLSCipherSuites() {
		t.Run(DTLSCipherSuiteName(id), func(t *testing.T) {
			key := randomBytes(32)
			l := listenDTLSTest(t, &DTLSConfig{Config: Config{Key: key, IdentityHint: "hint", CipherSuites: DTLSCipherSuites()}})
			accepted := acceptDTLS(t, l)
			c, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key, CipherSuites: []uint16{id}}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := waitAccepted(t, accepted)
			st := c.ConnectionState()
			if st.Version != VersionDTLS12 || st.CipherSuite != id || !st.ExtendedMasterSecret || st.IdentityHint != "hint" || st.PSKIdentity != DefaultIdentity {
				t.Fatalf("client state %+v", st)
			}
			if ss := s.ConnectionState(); ss.CipherSuite != id || ss.PSKIdentity != DefaultIdentity || !ss.HandshakeComplete {
				t.Fatalf("server state %+v", ss)
			}
			pingPong(t, c, s, 50, 1200)
			pingPong(t, c, s, 3, maxPlaintext)
			e1, err1 := c.ExportKeyingMaterial("EXPORTER-test", nil, 32)
			e2, err2 := s.ExportKeyingMaterial("EXPORTER-test", nil, 32)
			if err1 != nil || err2 != nil || !bytes.Equal(e1, e2) {
				t.Fatalf("exporters differ: %v %v", err1, err2)
			}
		})
	}
}

// udpRelay forwards datagrams between one client and a server, through a
// policy that may drop, hold back (reorder) or duplicate each one.
type udpRelay struct {
	front  *net.UDPConn // the client sends here
	server *net.UDPAddr
	mu     sync.Mutex
	back   *net.UDPConn // to the server; replaced by rebind
	client *net.UDPAddr
	policy func(toServer bool, d []byte) relayAction
	held   [2][]byte
	seen   [2][][]byte // every datagram forwarded, per direction (0: to server)
	done   chan struct{}
}

type relayAction int

const (
	relayForward relayAction = iota
	relayDrop
	relayHold      // send after the next datagram in the same direction
	relayDuplicate // send twice
)

func newUDPRelay(t testing.TB, server net.Addr, policy func(toServer bool, d []byte) relayAction) *udpRelay {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &udpRelay{front: front, server: server.(*net.UDPAddr), policy: policy, done: make(chan struct{})}
	r.rebind(t)
	go r.pump(true)
	t.Cleanup(func() {
		close(r.done)
		front.Close()
		r.mu.Lock()
		r.back.Close()
		r.mu.Unlock()
	})
	return r
}

func (r *udpRelay) addr() string { return r.front.LocalAddr().String() }

// rebind moves the relay's server side to a new socket: to the server the
// client's address changes, as behind a NAT that rebinds.
func (r *udpRelay) rebind(t testing.TB) {
	back, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	old := r.back
	r.back = back
	r.mu.Unlock()
	go r.pumpBack(back)
	if old != nil {
		old.Close()
	}
}

func (r *udpRelay) pump(toServer bool) {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := r.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.client = from
		r.mu.Unlock()
		r.forward(true, append([]byte(nil), buf[:n]...))
	}
}

func (r *udpRelay) pumpBack(back *net.UDPConn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := back.Read(buf)
		if err != nil {
			return
		}
		r.forward(false, append([]byte(nil), buf[:n]...))
	}
}

func (r *udpRelay) forward(toServer bool, d []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dir := 1
	if toServer {
		dir = 0
	}
	send := func(b []byte) {
		r.seen[dir] = append(r.seen[dir], b)
		if toServer {
			r.back.WriteToUDP(b, r.server)
		} else if r.client != nil {
			r.front.WriteToUDP(b, r.client)
		}
	}
	switch r.policy(toServer, d) {
	case relayDrop:
		return
	case relayHold:
		if r.held[dir] == nil {
			r.held[dir] = d
			return
		}
	case relayDuplicate:
		send(d)
	}
	send(d)
	if h := r.held[dir]; h != nil {
		r.held[dir] = nil
		send(h)
	}
}

// A relay that drops 10% of the datagrams and reorders another 10%, both
// ways, handshakes included: handshakes complete (retransmissions, out of
// order flights and fragments, at MTU 256 with a long identity and hint),
// and every datagram that arrives is intact, once.
func TestDTLSLossAndReorder(t *testing.T) {
	identity, hint := strings.Repeat("i", 300), strings.Repeat("h", 300)
	key := randomBytes(32)
	l := listenDTLSTest(t, &DTLSConfig{Config: Config{IdentityHint: hint, GetKey: func(id string) ([]byte, error) {
		if id == identity {
			return key, nil
		}
		return nil, nil
	}}, MTU: 256, RetransmitInterval: 50 * time.Millisecond})
	rng := mrand.New(mrand.NewPCG(7, 11))
	var rmu sync.Mutex
	policy := func(bool, []byte) relayAction {
		rmu.Lock()
		defer rmu.Unlock()
		switch x := rng.IntN(10); x {
		case 0:
			return relayDrop
		case 1:
			return relayHold
		}
		return relayForward
	}
	for h := 0; h < 8; h++ {
		relay := newUDPRelay(t, l.Addr(), policy)
		accepted := acceptDTLS(t, l)
		c, err := DialDTLS("udp", relay.addr(), &DTLSConfig{Config: Config{Identity: identity, Key: key}, MTU: 256,
			RetransmitInterval: 50 * time.Millisecond})
		if err != nil {
			t.Fatalf("handshake %d: %v", h, err)
		}
		s := waitAccepted(t, accepted)
		// Fragmentation happened: some handshake record to the server
		// carries a fragment that does not start at offset 0.
		if !relaySawFragment(relay) {
			t.Fatal("no fragmented handshake message seen at MTU 256")
		}
		got := map[uint32]bool{}
		const n = 300
		go func() {
			for i := 0; i < n; i++ {
				c.Write(checkedDatagram(uint32(i), 1200))
				if i%20 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
		buf := make([]byte, 2048)
		for {
			s.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			m, err := s.Read(buf)
			if err != nil {
				break // quiet for 500ms: the rest was dropped by the relay
			}
			seq, err := verifyDatagram(buf[:m])
			if err != nil || got[seq] {
				t.Fatalf("datagram %d corrupted or duplicated: %v", seq, err)
			}
			got[seq] = true
		}
		if len(got) < n/2 {
			t.Fatalf("only %d of %d datagrams arrived", len(got), n)
		}
		c.Close()
		s.Close()
	}
}

// relaySawFragment reports whether a datagram to the server held a
// handshake fragment with a non-zero offset.
func relaySawFragment(r *udpRelay) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.seen[0] {
		for len(d) > 0 {
			h, rec, rest, ok := nextDTLSRecord(d, 0)
			if !ok {
				break
			}
			d = rest
			if h.epoch == 0 && h.typ == recordHandshake {
				if f, _, ok := nextFragment(rec[dtlsRecordHeaderLen:]); ok && f.off > 0 {
					return true
				}
			}
		}
	}
	return false
}
