package tlspsk

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// DTLS benchmarks. Run with:
//   go test ./tlspsk -run '^$' -bench 'DTLS' -benchmem
// BenchmarkDTLSRecord: seal and open of one record per op on established
// sessions (SealRecord and OpenRecord, the batching API), per suite, 64 and
// 1,200 bytes. BenchmarkDTLSLoopback: datagrams of 1,200 bytes from a
// client to a server over loopback UDP, ours and pion's, with a window so
// that the sender does not simply overflow the socket buffer.

// dtlsPair returns an established client and server over loopback.
func dtlsPair(tb testing.TB, suite uint16) (*DTLSConn, *DTLSConn) {
	key := randomBytes(32)
	l := listenDTLSTest(tb, &DTLSConfig{Config: Config{Key: key, CipherSuites: DTLSCipherSuites()}})
	accepted := acceptDTLS(tb, l)
	c, err := DialDTLS("udp", l.Addr().String(), &DTLSConfig{Config: Config{Key: key, CipherSuites: []uint16{suite}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, waitAccepted(tb, accepted)
}

func BenchmarkDTLSRecord(b *testing.B) {
	for _, id := range DTLSCipherSuites() {
		for _, size := range []int{64, 1200} {
			b.Run(DTLSCipherSuiteName(id)+"/"+itoa(size), func(b *testing.B) {
				c, s := dtlsPair(b, id)
				plain := make([]byte, size)
				buf := make([]byte, 0, size+64)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					rec, err := c.SealRecord(buf[:0], plain)
					if err != nil {
						b.Fatal(err)
					}
					got, err := s.OpenRecord(rec)
					if err != nil || len(got) != size {
						b.Fatalf("open: %v", err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// loopbackThroughput sends b.N datagrams of size bytes from tx to rx. The
// receiver acknowledges every 64th datagram; the sender keeps at most 512
// unacknowledged, and waits at most 20ms for an acknowledgement (a lost
// one must not stall it).
func loopbackThroughput(b *testing.B, tx, rx net.Conn, size int) {
	const window, every = 128, 32
	var received, acked atomic.Int64
	ackCh := make(chan struct{}, 1)
	go func() { // acks
		buf := make([]byte, 64)
		for {
			n, err := tx.Read(buf)
			if err != nil {
				return
			}
			if n == 8 {
				acked.Store(int64(binary.BigEndian.Uint64(buf)))
				select {
				case ackCh <- struct{}{}:
				default:
				}
			}
		}
	}()
	done := make(chan struct{})
	go func() { // receiver
		defer close(done)
		buf := make([]byte, 2048)
		var ack [8]byte
		for {
			rx.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := rx.Read(buf)
			if err != nil {
				return
			}
			if n != size {
				continue
			}
			r := received.Add(1)
			if r%every == 0 {
				binary.BigEndian.PutUint64(ack[:], uint64(r))
				rx.Write(ack[:])
			}
			if r == int64(b.N) {
				return
			}
		}
	}()
	d := make([]byte, size)
	wait := time.NewTimer(time.Hour)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for int64(i)-acked.Load() > window {
			wait.Reset(20 * time.Millisecond)
			select {
			case <-ackCh:
			case <-wait.C:
				acked.Add(every) // presume the ack lost
			}
		}
		if _, err := tx.Write(d); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start)
	if received.Load() < int64(b.N) {
		elapsed -= 300 * time.Millisecond // the receiver's last wait
	}
	b.StopTimer()
	r := received.Load()
	b.ReportMetric(float64(r)/elapsed.Seconds(), "dgrams/s")
	b.ReportMetric(float64(r)*float64(size)*8/elapsed.Seconds()/1e6, "Mbit/s")
	b.ReportMetric(100*float64(int64(b.N)-r)/float64(b.N), "loss%")
}

func BenchmarkDTLSLoopback(b *testing.B) {
	suite := TLS_PSK_WITH_AES_128_GCM_SHA256
	b.Run("tlspsk", func(b *testing.B) {
		c, s := dtlsPair(b, suite)
		b.ReportAllocs()
		loopbackThroughput(b, c, s, 1200)
		b.ReportMetric(float64(s.Drops().QueueFull), "queue_full")
	})
	b.Run("pion", func(b *testing.B) {
		key := randomBytes(32)
		ln, err := dtls.ListenWithOptions("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)},
			dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			dtls.WithCipherSuites(dtls.CipherSuiteID(suite)), dtls.WithLoggerFactory(pionQuiet))
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			c.(*dtls.Conn).HandshakeContext(context.Background())
			accepted <- c
		}()
		raddr := ln.Addr().(*net.UDPAddr)
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		c, err := dtls.ClientWithOptions(pc, raddr, dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			dtls.WithPSKIdentityHint([]byte("bench")), dtls.WithCipherSuites(dtls.CipherSuiteID(suite)), dtls.WithLoggerFactory(pionQuiet))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if err := c.HandshakeContext(context.Background()); err != nil {
			b.Fatal(err)
		}
		s := <-accepted
		defer s.Close()
		b.ReportAllocs()
		loopbackThroughput(b, c, s, 1200)
	})
}

// BenchmarkDTLSHandshake is one full handshake (ECDHE-PSK and PSK) over
// loopback, cookie exchange included.
func BenchmarkDTLSHandshake(b *testing.B) {
	for _, id := range []uint16{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, TLS_PSK_WITH_AES_128_GCM_SHA256} {
		b.Run(DTLSCipherSuiteName(id), func(b *testing.B) {
			key := randomBytes(32)
			l := listenDTLSTest(b, &DTLSConfig{Config: Config{Key: key}})
			go func() {
				for {
					s, err := l.AcceptDTLS()
					if err != nil {
						return
					}
					s.Close()
				}
			}()
			cfg := &DTLSConfig{Config: Config{Key: key, CipherSuites: []uint16{id}}}
			b.ReportAllocs()
			for b.Loop() {
				c, err := DialDTLS("udp", l.Addr().String(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
