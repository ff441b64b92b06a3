package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// udpSocketBuffer is the socket buffer the proxy asks for on its UDP
// sockets (the kernel caps it at net.core.rmem_max/wmem_max): bursts from
// many peers should wait in a buffer, not be dropped.
const udpSocketBuffer = 4 << 20

// maxDatagram bounds a datagram the proxy carries.
const maxDatagram = 64 << 10

// smallDatagram is the size of the pooled buffers most datagrams are
// queued in (a 1,200-byte datagram then pins 2 KiB, not 64 KiB).
const smallDatagram = 2 << 10

var (
	datagramPool = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}
	smallPool    = sync.Pool{New: func() any { b := make([]byte, smallDatagram); return &b }}
)

// getDatagram returns a pooled buffer able to hold n bytes, of length n.
func getDatagram(n int) *[]byte {
	p := &datagramPool
	if n <= smallDatagram {
		p = &smallPool
	}
	b := p.Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

// putDatagram gives a buffer from getDatagram back.
func putDatagram(b *[]byte) {
	switch cap(*b) {
	case smallDatagram:
		smallPool.Put(b)
	case maxDatagram:
		datagramPool.Put(b)
	}
}

// countConnDrops copies a DTLS session's own drop counters (records that
// were replayed, failed authentication or did not parse) into the route's
// dropped-datagrams metric when the session ends.
func countConnDrops(m *routeMetrics, dc *tlspsk.DTLSConn) {
	d := dc.Drops()
	for _, c := range []struct {
		reason string
		n      uint64
	}{{"replay", d.Replay}, {"bad_record", d.BadRecord}, {"malformed", d.Malformed}} {
		if c.n > 0 {
			m.dropN(c.reason, c.n)
		}
	}
}

// udpIdle is a UDP session's idle timeout: the configured one or 2m.
func udpIdle(r *Route) time.Duration {
	if r.Timeouts.Idle != nil && *r.Timeouts.Idle > 0 {
		return r.Timeouts.Idle.D()
	}
	return DefaultUDPIdleTimeout
}

// relayDatagrams carries datagrams between a DTLS session (the listener
// side) and its own backend socket until either ends or the session idles,
// in batches both ways (see relayBackend and docs/udp.md).
func relayDatagrams(r *route, dc *tlspsk.DTLSConn, backend *net.UDPConn) {
	r.met.sessionsTotal.Inc()
	r.met.sessionsOpen.Inc()
	defer r.met.sessionsOpen.Dec()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	stopWatch := idleWatch(udpIdle(r.cfg), &last, func() {
		r.log.Debug("session idle: closing", "peer", dc.RemoteAddr().String())
		// The loop below ends on it, reads the backend socket's drops and
		// only then closes that socket (closing it here raced that read).
		dc.Close()
	})
	defer stopWatch()
	done := make(chan struct{})
	go func() { // backend -> tunnel
		defer close(done)
		relayBackend(r, dc, backend, &last)
	}()
	// tunnel -> backend: every datagram the listener has queued for the
	// session, opened in place, then one sendmmsg on the backend socket.
	// A full batch (udpBatchLen) costs no memory here: the datagrams are
	// views into the listener's queue buffers, and out sends only.
	msgs := make([]tlspsk.UDPMsg, udpBatchLen)
	out := tlspsk.NewUDPBatch(backend, udpBatchLen, 0, true)
	if udpOffload {
		// Runs of equal datagrams leave as one GSO message; the backend
		// needs nothing (the kernel splits the run before its socket,
		// or the device does on the wire).
		out.EnableGSO()
	}
loop:
	for {
		n, err := dc.ReadBatch(msgs)
		if err != nil {
			break
		}
		last.Store(time.Now().UnixNano())
		for sent := 0; sent < n; {
			k, err := out.Send(msgs[sent:n])
			countSent(r.met.datagramsFwd, r.met.bytesFwd, msgs[sent:sent+k])
			sent += k
			if err != nil {
				if errors.Is(err, syscall.ECONNREFUSED) {
					r.dest.record(err)
					r.met.drop("backend_unreachable")
					sent++
					continue
				}
				r.met.dropN("backend_write_failed", uint64(n-sent))
				break loop
			}
		}
		clear(msgs[:n])
	}
	// What the kernel dropped on the session's backend socket (receive
	// buffer full), read before the socket goes.
	if n, ok := socketDrops(backend); ok && n > 0 {
		r.met.dropN("socket_buffer", n)
	}
	backend.Close()
	dc.Close()
	<-done
	st := dc.OffloadStats().Add(out.OffloadStats())
	logOffloadFailure(r.log, st)
	addOffload(st)
}
