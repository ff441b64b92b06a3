package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// copyBufSize is the size of the pooled copy buffers.
const copyBufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

type closeWriter interface{ CloseWrite() error }

// pipe carries bytes both ways between a (the listener side) and b (the
// destination side), one goroutine per direction, until both directions
// end. An EOF in one direction is passed on as a half-close (CloseWrite) so
// a peer that shuts its write side still gets the whole answer; an error
// in either direction closes both. With idle > 0 both are closed after
// that long without a byte either way. It closes a and b before returning.
func pipe(a, b net.Conn, idle time.Duration, fwd, rev prometheus.Counter) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	defer idleWatch(idle, &last, func() {
		a.Close()
		b.Close()
	})()
	errc := make(chan struct{})
	go func() {
		defer close(errc)
		if copyHalf(b, a, fwd, &last) != nil {
			a.Close() // unblocks the other direction
			b.Close()
		}
	}()
	if err := copyHalf(a, b, rev, &last); err != nil {
		a.Close() // unblocks the other direction
		b.Close()
	}
	<-errc
	a.Close()
	b.Close()
}

// copyHalf copies src to dst; on EOF it half-closes dst and returns nil.
func copyHalf(dst, src net.Conn, ctr prometheus.Counter, last *atomic.Int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			ctr.Add(float64(n))
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if cw, ok := dst.(closeWriter); ok {
					if cw.CloseWrite() == nil {
						return nil
					}
				}
				dst.Close()
				return nil
			}
			return rerr
		}
	}
}
