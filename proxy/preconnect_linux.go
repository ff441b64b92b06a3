package proxy

import (
	"net"
	"syscall"
)

// peerSpoke reports whether the peer of an idle connection has sent
// anything or closed it: a non-blocking MSG_PEEK that leaves the bytes in
// place. A pre-connected tunnel hears nothing before it is used, so any
// byte (an alert, a close_notify) or EOF means it is no longer usable.
func peerSpoke(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	spoke := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
		case rerr != nil, n >= 0:
			spoke = true // data, EOF (n == 0) or an error
		}
		return true
	})
	return spoke || err != nil
}
