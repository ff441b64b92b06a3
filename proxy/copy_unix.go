//go:build unix

package proxy

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// copyReady copies src to dst when src is a socket (syscall.Conn). It
// waits for data in the runtime's poller without a buffer: the read
// callback takes a pooled buffer, reads without blocking, and on EAGAIN
// gives the buffer back before the goroutine parks. A tunnel whose peer
// is quiet therefore holds no copy buffer in this direction. Close and
// deadlines end the wait as they end a Read. done is false when src is not
// a socket; the caller copies another way. At the end of src it returns
// (true, nil).
func copyReady(dst, src net.Conn, ctr prometheus.Counter, last *atomic.Int64) (done bool, err error) {
	sc, ok := src.(syscall.Conn)
	if !ok {
		return false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, nil
	}
	var (
		bp   *[]byte
		n    int
		rerr error
	)
	read := func(fd uintptr) bool {
		bp = getBuf()
		for {
			n, rerr = syscall.Read(int(fd), *bp)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			putBuf(bp)
			bp = nil
			return false // wait for readability, holding nothing
		}
		return true
	}
	for {
		if err := rc.Read(read); err != nil {
			// Closed or past a deadline while waiting: the callback gave
			// its buffer back before the wait.
			return true, err
		}
		if rerr != nil {
			putBuf(bp)
			return true, os.NewSyscallError("read", rerr)
		}
		if n == 0 {
			putBuf(bp)
			return true, nil // EOF
		}
		last.Store(time.Now().UnixNano())
		m, werr := dst.Write((*bp)[:n])
		putBuf(bp)
		bp = nil
		ctr.Add(float64(m)) // what reached dst, also on error
		if werr != nil {
			return true, werr
		}
	}
}
