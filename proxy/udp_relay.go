package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// udpSocketBuffer is the socket buffer the proxy asks for on its UDP
// sockets (the kernel caps it at net.core.rmem_max/wmem_max): bursts from
// many peers should wait in a buffer, not be dropped.
const udpSocketBuffer = 4 << 20

// maxDatagram bounds a datagram the proxy carries.
const maxDatagram = 64 << 10

var datagramPool = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// udpIdle is a UDP session's idle timeout: the configured one or 2m.
func udpIdle(r *Route) time.Duration {
	if r.Timeouts.Idle != nil && *r.Timeouts.Idle > 0 {
		return r.Timeouts.Idle.D()
	}
	return DefaultUDPIdleTimeout
}

// relayDatagrams carries datagrams between a DTLS session (the listener
// side) and its own backend socket until either ends or the session idles.
func relayDatagrams(r *route, dc net.Conn, backend *net.UDPConn) {
	r.met.sessionsTotal.Inc()
	r.met.sessionsOpen.Inc()
	defer r.met.sessionsOpen.Dec()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	stopWatch := idleWatch(udpIdle(r.cfg), &last, func() {
		r.log.Debug("session idle: closing", "peer", dc.RemoteAddr().String())
		dc.Close()
		backend.Close()
	})
	defer stopWatch()
	done := make(chan struct{})
	go func() { // backend -> tunnel
		defer close(done)
		bp := datagramPool.Get().(*[]byte)
		defer datagramPool.Put(bp)
		for {
			n, err := backend.Read(*bp)
			if err != nil {
				if errors.Is(err, syscall.ECONNREFUSED) {
					r.dest.record(err)
					continue
				}
				dc.Close()
				return
			}
			r.dest.reachable()
			last.Store(time.Now().UnixNano())
			if _, err := dc.Write((*bp)[:n]); err != nil {
				dc.Close()
				return
			}
			r.met.datagramsRev.Inc()
			r.met.bytesRev.Add(float64(n))
		}
	}()
	bp := datagramPool.Get().(*[]byte)
	defer datagramPool.Put(bp)
	for {
		n, err := dc.Read(*bp)
		if err != nil {
			break
		}
		last.Store(time.Now().UnixNano())
		if _, err := backend.Write((*bp)[:n]); err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				r.dest.record(err)
				r.met.drop("backend_unreachable")
				continue
			}
			break
		}
		r.met.datagramsFwd.Inc()
		r.met.bytesFwd.Add(float64(n))
	}
	backend.Close()
	dc.Close()
	<-done
}
