package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcbn/mcbn/tlspsk"
)

// copyBufSize is the size of the pooled copy buffers.
const copyBufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// bufsOut counts the copy buffers taken from bufPool and not yet given
// back. A tunnel that is idle should hold none (tests check this).
var bufsOut atomic.Int64

func getBuf() *[]byte {
	bufsOut.Add(1)
	return bufPool.Get().(*[]byte)
}

func putBuf(bp *[]byte) {
	bufsOut.Add(-1)
	bufPool.Put(bp)
}

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
// It reads src in a way that holds no buffer while src is quiet: a TLS
// source writes its records itself (WriteTo), a socket is read only once
// the poller says it is readable (copyReady); anything else goes through
// a pooled buffer. Each of these returns nil at the end of src.
func copyHalf(dst, src net.Conn, ctr prometheus.Counter, last *atomic.Int64) error {
	var err error
	if tc, ok := src.(*tlspsk.Conn); ok {
		// Records go to dst from tlspsk's own buffer, which it gives back
		// while the peer is quiet; nil at close_notify or EOF.
		_, err = tc.WriteTo(&countingWriter{w: dst, ctr: ctr, last: last})
	} else if done, rerr := copyReady(dst, src, ctr, last); done {
		err = rerr
	} else {
		err = copyBuffered(dst, src, ctr, last)
	}
	if err != nil {
		return err
	}
	halfClose(dst)
	return nil
}

// copyBuffered copies src to dst through a pooled buffer, which it holds
// until src ends. It returns nil at the end of src.
func copyBuffered(dst, src net.Conn, ctr prometheus.Counter, last *atomic.Int64) error {
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			m, werr := dst.Write(buf[:n])
			ctr.Add(float64(m)) // what reached dst, also on error
			if werr != nil {
				return werr
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return rerr
		}
	}
}

// halfClose passes an EOF on: CloseWrite where dst has it, else Close.
func halfClose(dst net.Conn) {
	if cw, ok := dst.(closeWriter); ok {
		if cw.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
}

// countingWriter is the destination of a WriteTo: it counts the bytes
// written and marks the tunnel active, as copyBuffered does after a Read.
type countingWriter struct {
	w    io.Writer
	ctr  prometheus.Counter
	last *atomic.Int64
}

// WriteBuffers writes v as one gathered write when the destination is a
// socket (writev), counting what was written. It is for a WriterTo that
// holds several records' plaintext at once: through a plain io.Writer,
// net.Buffers falls back to one write per piece.
func (cw *countingWriter) WriteBuffers(v *net.Buffers) (int64, error) {
	cw.last.Store(time.Now().UnixNano())
	n, err := v.WriteTo(cw.w)
	cw.ctr.Add(float64(n)) // what reached the destination, also on error
	return n, err
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cw.last.Store(time.Now().UnixNano())
	n, err := cw.w.Write(p)
	cw.ctr.Add(float64(n))
	return n, err
}
