package tlspsk

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// dtlsOffloadPair is dtlsPair with UDPOffload set on both sides as
// offload says; it returns the listener too.
func dtlsOffloadPair(tb testing.TB, offload bool) (*DTLSConn, *DTLSConn, *DTLSListener) {
	tb.Helper()
	key := randomBytes(32)
	suite := TLS_PSK_WITH_AES_128_GCM_SHA256
	l := listenDTLSTest(tb, &DTLSConfig{Config: Config{Key: key, CipherSuites: DTLSCipherSuites()}, UDPOffload: offload})
	accepted := acceptDTLS(tb, l)
	c, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key, CipherSuites: []uint16{suite}}, UDPOffload: offload})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, waitAccepted(tb, accepted), l
}

// A DTLS pair with UDPOffload carries bursts of records both ways with
// every datagram intact and in order (equal sizes, a shorter last one,
// mixed sizes), and on Linux the records really went as GSO
// super-datagrams and reached the listener coalesced (GRO). Once warm it
// allocates nothing per datagram.
func TestDTLSOffloadPair(t *testing.T) {
	c, s, l := dtlsOffloadPair(t, true)
	patterns := [][]int{repeatSizes(16, 1200), append(repeatSizes(9, 1000), 17), {64, 64, 64, 1200, 300, 300, 1, 1400, 1400}}
	in := make([]UDPMsg, 64)
	s.SetReadDeadline(time.Now().Add(dtlsTestTimeout))
	c.SetReadDeadline(time.Now().Add(dtlsTestTimeout))
	seq := 0
	rb := make([]byte, 2048)
	for round := 0; round < 20; round++ {
		sizes := patterns[round%len(patterns)]
		out := make([]UDPMsg, len(sizes))
		for i, sz := range sizes {
			p := make([]byte, max(sz, 8))[:sz]
			if sz >= 8 {
				binary.BigEndian.PutUint64(p, uint64(seq+i))
				for j := 8; j < sz; j++ {
					p[j] = byte(seq + i + j)
				}
			}
			out[i].B = p
		}
		if n, err := c.WriteBatch(out); n != len(out) || err != nil {
			t.Fatalf("client WriteBatch: %d, %v", n, err)
		}
		for got := 0; got < len(out); {
			n, err := s.ReadBatch(in)
			if err != nil {
				t.Fatalf("server ReadBatch after %d: %v", got, err)
			}
			for i := 0; i < n; i++ {
				if !bytes.Equal(in[i].B, out[got].B) {
					t.Fatalf("round %d datagram %d: %d bytes, want %d", round, got, len(in[i].B), len(out[got].B))
				}
				got++
			}
		}
		// The same burst back: the server's WriteBatch on the listener's
		// socket, read by the client one datagram at a time.
		if n, err := s.WriteBatch(out); n != len(out) || err != nil {
			t.Fatalf("server WriteBatch: %d, %v", n, err)
		}
		for i := range out {
			n, err := c.Read(rb)
			if err != nil || !bytes.Equal(rb[:n], out[i].B) {
				t.Fatalf("round %d: client read %d: %d bytes, %v", round, i, n, err)
			}
		}
		seq += len(out)
	}
	cs, ss, ls := c.OffloadStats(), s.OffloadStats(), l.OffloadStats()
	t.Logf("client send %+v; server send %+v; listener recv %+v", cs, ss, ls)
	if runtime.GOOS == "linux" {
		if cs.SuperSent == 0 || ss.SuperSent == 0 {
			t.Fatalf("no GSO: client %+v, server %+v", cs, ss)
		}
		if ls.CoalescedReceived == 0 {
			t.Fatalf("nothing reached the listener coalesced: %+v", ls)
		}
	}
	if d := s.Drops(); d.Malformed+d.BadRecord+d.Replay != 0 {
		t.Fatalf("drops: %+v", d)
	}
	out := make([]UDPMsg, 8)
	for i := range out {
		out[i].B = make([]byte, 1200)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := c.WriteBatch(out); n != len(out) || err != nil {
			t.Fatalf("WriteBatch: %d, %v", n, err)
		}
		for got := 0; got < len(out); {
			n, err := s.ReadBatch(in)
			if err != nil {
				t.Fatalf("ReadBatch: %v", err)
			}
			got += n
		}
	})
	if allocs != 0 && !offloadRace {
		t.Fatalf("%v allocations per offloaded WriteBatch+ReadBatch of 8, want 0", allocs)
	}
}

// BenchmarkDTLSLoopbackBatch: bursts of 16 datagrams of 1,200 bytes from
// a client to a server over loopback through WriteBatch and ReadBatch,
// with and without UDP offload. The sender keeps at most 256 datagrams
// unreceived and waits at most 20ms for the receiver (a lost datagram
// must not stall it); loss% is what never arrived.
func BenchmarkDTLSLoopbackBatch(b *testing.B) {
	for _, offload := range []bool{false, true} {
		name := "plain"
		if offload {
			name = "offload"
		}
		b.Run(name, func(b *testing.B) {
			c, s, _ := dtlsOffloadPair(b, offload)
			const burst, window = 16, 256
			out := make([]UDPMsg, burst)
			for i := range out {
				out[i].B = make([]byte, 1200)
			}
			in := make([]UDPMsg, 64)
			var received atomic.Int64
			wake := make(chan struct{}, 1)
			go func() {
				for {
					n, err := s.ReadBatch(in)
					if err != nil {
						return
					}
					received.Add(int64(n))
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}()
			t := time.NewTimer(time.Hour)
			b.SetBytes(1200)
			b.ReportAllocs()
			b.ResetTimer()
			sent, lost := 0, 0
			for sent < b.N {
				k := min(burst, b.N-sent)
				n, err := c.WriteBatch(out[:k])
				if err != nil {
					b.Fatal(err)
				}
				sent += n
				for sent-lost-int(received.Load()) > window {
					t.Reset(20 * time.Millisecond)
					select {
					case <-wake:
					case <-t.C:
						lost = sent - int(received.Load()) // given up on
					}
					t.Stop()
				}
			}
			for i := 0; i < 10 && int(received.Load()) < sent; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			b.StopTimer()
			got := received.Load()
			b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "dgrams/s")
			b.ReportMetric(100*float64(int64(sent)-got)/float64(sent), "loss%")
			b.ReportMetric(float64(c.OffloadStats().SuperSent)/float64(b.N), "super/dgram")
			c.Close()
			s.Close()
		})
	}
}

func repeatSizes(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}
