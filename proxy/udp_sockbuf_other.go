//go:build !unix

package proxy

import "net"

// sizeSocketBuffers asks for udpSocketBuffer bytes of receive and send
// buffer on pc; without getsockopt it reports what was asked for.
func sizeSocketBuffers(pc *net.UDPConn) (rcv, snd int) {
	pc.SetReadBuffer(udpSocketBuffer)
	pc.SetWriteBuffer(udpSocketBuffer)
	return udpSocketBuffer, udpSocketBuffer
}
