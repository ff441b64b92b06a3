package tlspsk

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

func udpPairTest(t *testing.T) (a, b *net.UDPConn) {
	t.Helper()
	a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// UDPBatch moves datagrams both ways with their contents, senders and
// order intact, flags a datagram longer than its slot, and allocates
// nothing per batch in steady state.
func TestUDPBatchRoundTrip(t *testing.T) {
	a, b := udpPairTest(t)
	a.SetReadBuffer(4 << 20)
	sb := NewUDPBatch(b, 8, 64, true)
	rb := NewUDPBatch(a, 8, 64, false)
	dst := a.LocalAddr().(*net.UDPAddr).AddrPort()
	ms := make([]UDPMsg, 20)
	for i := range ms {
		p := make([]byte, 8+i)
		binary.BigEndian.PutUint64(p, uint64(i))
		ms[i] = UDPMsg{B: p, Addr: dst}
	}
	ms[19].B = make([]byte, 100) // longer than the 64-byte slot
	if n, err := sb.Send(ms); n != len(ms) || err != nil {
		t.Fatalf("send: %d, %v", n, err)
	}
	from := b.LocalAddr().(*net.UDPAddr).AddrPort()
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := 0
	for got < len(ms) {
		n, err := rb.Recv()
		if err != nil {
			t.Fatalf("recv after %d: %v", got, err)
		}
		for i := 0; i < n; i++ {
			m := rb.Msgs[i]
			if m.Addr != from {
				t.Fatalf("datagram %d from %v, want %v", got, m.Addr, from)
			}
			if got == 19 {
				if !m.Trunc {
					t.Fatalf("a 100-byte datagram in a 64-byte slot is not flagged")
				}
			} else if m.Trunc || !bytes.Equal(m.B, ms[got].B) {
				t.Fatalf("datagram %d: %x (trunc %v), want %x", got, m.B, m.Trunc, ms[got].B)
			}
			got++
		}
	}
	// Steady state: one datagram out and in per run, no allocation.
	one := ms[:1]
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := sb.Send(one); n != 1 || err != nil {
			t.Fatalf("send: %d, %v", n, err)
		}
		if n, err := rb.Recv(); n != 1 || err != nil {
			t.Fatalf("recv: %d, %v", n, err)
		}
	})
	t.Logf("UDPBatch: %v allocations per Send+Recv", allocs)
	if allocs != 0 {
		t.Fatalf("UDPBatch: %v allocations per Send+Recv, want 0", allocs)
	}
	// A deadline ends a waiting Recv; Close too.
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rb.Recv(); err == nil {
		t.Fatal("Recv returned without data before the deadline")
	}
	a.Close()
	if _, err := rb.Recv(); err == nil {
		t.Fatal("Recv on a closed socket returned no error")
	}
}

// A pooled batch holds no buffer while its socket is idle.
func TestUDPBatchPooledIdle(t *testing.T) {
	a, _ := udpPairTest(t)
	rb := NewUDPBatch(a, 4, 2048, true)
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rb.Recv(); err == nil {
		t.Fatal("Recv returned without data")
	}
	if rb.kit != nil {
		t.Fatal("an idle pooled batch kept its buffers")
	}
}

// WriteBatch and ReadBatch carry a burst whole, in order, and allocate
// nothing per datagram once warm.
func TestDTLSBatchConn(t *testing.T) {
	c, s := dtlsPair(t, TLS_PSK_WITH_AES_128_GCM_SHA256)
	const total = 200
	out := make([]UDPMsg, 10)
	in := make([]UDPMsg, 16)
	s.SetReadDeadline(time.Now().Add(dtlsTestTimeout))
	next, got := 0, 0
	for next < total {
		for i := range out {
			p := make([]byte, 1200)
			binary.BigEndian.PutUint64(p, uint64(next+i))
			out[i].B = p
		}
		if n, err := c.WriteBatch(out); n != len(out) || err != nil {
			t.Fatalf("WriteBatch: %d, %v", n, err)
		}
		next += len(out)
		for got < next {
			n, err := s.ReadBatch(in)
			if err != nil {
				t.Fatalf("ReadBatch after %d: %v", got, err)
			}
			for i := 0; i < n; i++ {
				if len(in[i].B) != 1200 || binary.BigEndian.Uint64(in[i].B) != uint64(got) {
					t.Fatalf("datagram %d: %d bytes, seq %d", got, len(in[i].B), binary.BigEndian.Uint64(in[i].B))
				}
				got++
			}
		}
	}
	// Server to client, one at a time through Read: the same records.
	if n, err := s.WriteBatch(out[:2]); n != 2 || err != nil {
		t.Fatalf("server WriteBatch: %d, %v", n, err)
	}
	rb := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(dtlsTestTimeout))
	for i := 0; i < 2; i++ {
		if n, err := c.Read(rb); err != nil || n != 1200 || !bytes.Equal(rb[:n], out[i].B) {
			t.Fatalf("client read %d: %d, %v", i, n, err)
		}
	}
	one := out[:1]
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := c.WriteBatch(one); n != 1 || err != nil {
			t.Fatalf("WriteBatch: %v", err)
		}
		if n, err := s.ReadBatch(in); n != 1 || err != nil {
			t.Fatalf("ReadBatch: %d, %v", n, err)
		}
	})
	t.Logf("DTLS WriteBatch+ReadBatch: %v allocations per datagram", allocs)
	if allocs != 0 {
		t.Fatalf("%v allocations per WriteBatch+ReadBatch of one datagram, want 0", allocs)
	}
	// Too long for a record: nothing of it is sent, the error says so.
	if n, err := c.WriteBatch([]UDPMsg{{B: make([]byte, maxPlaintext+1)}}); n != 0 || err == nil {
		t.Fatalf("WriteBatch of an oversize datagram: %d, %v", n, err)
	}
}

// The listener's batched read loop keys sessions by the decoded sender:
// sockaddr decoding round-trips IPv4 and IPv6.
func TestDTLSBatchSockaddr(t *testing.T) {
	for _, s := range []string{"127.0.0.1:4433", "[::1]:5", "[2001:db8::7]:65535", "10.1.2.3:0"} {
		ap := netip.MustParseAddrPort(s)
		for _, dom := range []int{afInet6, afInet} {
			if dom == afInet && ap.Addr().Is6() {
				continue
			}
			got, ok := sockaddrRoundTrip(dom, ap)
			if !ok {
				continue // not on this platform
			}
			if got != ap {
				t.Fatalf("%s in domain %d: %v", s, dom, got)
			}
		}
	}
}
