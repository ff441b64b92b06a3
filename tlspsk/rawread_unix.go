//go:build unix

package tlspsk

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// testHookIdleWait, if set, is called as a Conn starts waiting with no
// buffer (c.in held), for tests.
var testHookIdleWait atomic.Pointer[func(*Conn)]

// Waiting for the peer without a buffer. A Conn whose read buffer is
// drained gives it back to the pool; if the underlying connection exposes
// its descriptor (syscall.Conn, as *net.TCPConn and *net.UnixConn do), the
// wait for the next record goes through RawConn.Read, whose callback takes
// a buffer only when read(2) has bytes for it and puts it back on EAGAIN.
// The goroutine then parks in the netpoller holding nothing; deadlines,
// Close from another goroutine and errors come out of RawConn.Read as
// they come out of Read.
//
// So a wrapper around a socket that does more in Read than read the
// descriptor (buffered bytes, a PROXY header, ...) must not implement
// syscall.Conn; one that only counts may, but its count then misses the
// bytes read this way (none during the handshake, which always reads
// through Read).

// rawInit looks up the underlying RawConn once. The caller holds c.in.
func (c *Conn) rawInit() {
	in := &c.in
	in.rawChecked = true
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil || rc == nil {
		return
	}
	in.raw = rc
	in.rawRead = c.rawReadFunc // one method value per Conn, not one per wait
}

// rawReadFunc is the RawConn.Read callback: one non-blocking read(2)
// into a pooled buffer, which it keeps only if bytes (or an error other
// than EAGAIN) came.
func (c *Conn) rawReadFunc(fd uintptr) bool {
	in := &c.in
	size := smallBufSize
	if in.big {
		size = readBufSize
	}
	buf := getBuf(size)[:size]
	var n int
	var err error
	for {
		n, err = syscall.Read(int(fd), buf)
		if err != syscall.EINTR {
			break
		}
	}
	if err == syscall.EAGAIN {
		putBuf(buf)
		return false
	}
	if n < 0 {
		n = 0
	}
	in.rawN, in.rawErr = n, err
	in.buf = buf
	return true
}

// readIdle waits for bytes with no buffer held and reads them into a fresh
// c.in.buf. ok is false when c.conn has no descriptor to wait on; the
// caller then reads as usual. The caller holds c.in; c.in.buf is nil.
func (c *Conn) readIdle() (ok bool, err error) {
	in := &c.in
	if !in.rawChecked {
		c.rawInit()
	}
	if in.raw == nil {
		return false, nil
	}
	in.rawN, in.rawErr = 0, nil
	if h := testHookIdleWait.Load(); h != nil {
		(*h)(c)
	}
	if err := in.raw.Read(in.rawRead); err != nil {
		// Deadline, closed connection: say it as Read says it.
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "raw-read" {
			err = c.readError(oe.Err)
		}
		return true, err
	}
	in.off, in.end = 0, in.rawN
	switch {
	case in.rawErr != nil:
		err = c.readError(os.NewSyscallError("read", in.rawErr))
	case in.rawN == 0:
		err = io.EOF
	}
	if in.end == 0 {
		c.releaseReadBuf()
	}
	return true, err
}

// readError wraps err as (*net.TCPConn).Read would.
func (c *Conn) readError(err error) error {
	la, ra := c.conn.LocalAddr(), c.conn.RemoteAddr()
	op := &net.OpError{Op: "read", Source: la, Addr: ra, Err: err}
	if la != nil {
		op.Net = la.Network()
	}
	return op
}
