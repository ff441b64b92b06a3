//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// sizeSocketBuffers asks for udpSocketBuffer bytes of receive and send
// buffer on pc and returns what the kernel gave (Linux reports twice the
// usable size and caps the request at net.core.rmem_max/wmem_max), so the
// route-listening log line can show an operator a capped buffer.
func sizeSocketBuffers(pc *net.UDPConn) (rcv, snd int) {
	pc.SetReadBuffer(udpSocketBuffer)
	pc.SetWriteBuffer(udpSocketBuffer)
	raw, err := pc.SyscallConn()
	if err != nil {
		return 0, 0
	}
	raw.Control(func(fd uintptr) {
		rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		snd, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	return rcv, snd
}
