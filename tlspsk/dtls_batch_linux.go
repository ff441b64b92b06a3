//go:build linux

package tlspsk

import (
	"encoding/binary"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSys is the Linux path: recvmmsg(2) and sendmmsg(2) through the
// socket's RawConn, so the Go netpoller still does the waiting (deadlines
// and Close work as on any net.UDPConn). The receive headers live in the
// batch's kit (recvHeaders) and the send headers come from a pool for the
// length of a Send, so an idle session holds neither; the kernel writes
// the senders' sockaddrs into the kit, and Recv decodes them without
// allocating.
type batchSys struct {
	rc        syscall.RawConn
	domain    int  // AF_INET or AF_INET6: how Send encodes destinations
	connected bool // Send gives no destination
	// The RawConn callbacks, made once (a closure per call would escape
	// to the heap), and their inputs and results.
	readFn, writeFn func(fd uintptr) bool
	b               *UDPBatch
	sk              *sendHeaders
	rn, sn, k       int
	rerrno, serrno  syscall.Errno
}

// recvHeaders are a kit's recvmmsg headers, pointing into its buffer.
type recvHeaders struct {
	rh     []unix.Mmsghdr
	riov   []unix.Iovec
	rnames []unix.RawSockaddrInet6
}

func (r *recvHeaders) init(k *recvKit, n, slot int) {
	r.rh, r.riov, r.rnames = make([]unix.Mmsghdr, n), make([]unix.Iovec, n), make([]unix.RawSockaddrInet6, n)
	for i := range r.rh {
		if slot > 0 {
			r.riov[i].Base = &k.buf[i*slot]
		}
		r.rh[i].Hdr.Iov = &r.riov[i]
		r.rh[i].Hdr.SetIovlen(1)
	}
}

// sendHeaders are sendmmsg headers for up to sendChunk datagrams.
type sendHeaders struct {
	sh     [sendChunk]unix.Mmsghdr
	siov   [sendChunk]unix.Iovec
	snames [sendChunk]unix.RawSockaddrInet6
}

const sendChunk = 32

var sendHeaderPool = sync.Pool{New: func() any {
	h := new(sendHeaders)
	for i := range h.sh {
		h.sh[i].Hdr.Iov = &h.siov[i]
		h.sh[i].Hdr.SetIovlen(1)
	}
	return h
}}

func (s *batchSys) init(b *UDPBatch) {
	s.rc, _ = b.conn.SyscallConn()
	s.domain = unix.AF_INET6
	if s.rc != nil {
		s.rc.Control(func(fd uintptr) {
			if d, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil {
				s.domain = d
			}
		})
	}
	s.connected = b.conn.RemoteAddr() != nil
	s.b = b
	s.readFn, s.writeFn = s.recvmmsg, s.sendmmsg
}

// Recv waits for at least one datagram and reads up to Len of them.
func (b *UDPBatch) Recv() (int, error) {
	s := &b.sys
	if s.rc == nil || b.slot <= 0 {
		return 0, syscall.EINVAL
	}
	s.rn, s.rerrno = 0, 0
	err := s.rc.Read(s.readFn)
	n, errno := s.rn, s.rerrno
	if err != nil {
		b.Release()
		return 0, err
	}
	if errno != 0 {
		b.Release()
		return 0, os.NewSyscallError("recvmmsg", errno)
	}
	r := &b.kit.r
	for i := 0; i < n; i++ {
		m := &b.Msgs[i]
		l := int(r.rh[i].Len)
		m.B = b.slotBuf(i)[:min(l, b.slot)]
		m.Trunc = r.rh[i].Hdr.Flags&unix.MSG_TRUNC != 0
		m.Addr = decodeSockaddr(&r.rnames[i])
	}
	return n, nil
}

// recvmmsg is Recv's RawConn callback.
func (s *batchSys) recvmmsg(fd uintptr) bool {
	b := s.b
	b.takeKit()
	r := &b.kit.r
	for i := range r.rh {
		r.riov[i].SetLen(b.slot)
		r.rh[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.rnames[i]))
		r.rh[i].Hdr.Namelen = uint32(unsafe.Sizeof(r.rnames[i]))
		r.rh[i].Hdr.Flags = 0
		r.rh[i].Len = 0
	}
	for {
		x, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.rh[0])), uintptr(len(r.rh)), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// Nothing waiting: an idle pooled batch holds no buffers
			// while the netpoller waits.
			b.Release()
			return false
		}
		s.rn, s.rerrno = int(x), e
		return true
	}
}

// sendmmsg is Send's RawConn callback: the first s.k headers of s.sk.
func (s *batchSys) sendmmsg(fd uintptr) bool {
	for {
		x, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.sk.sh[0])), uintptr(s.k), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.sn, s.serrno = int(x), e
		return true
	}
}

// decodeSockaddr reads a sockaddr_in or sockaddr_in6 the kernel wrote;
// IPv4-mapped addresses come back as IPv4. (A link-local IPv6 address
// loses its zone: naming it would allocate per datagram.)
func decodeSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&s4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), binary.BigEndian.Uint16(p[:]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), binary.BigEndian.Uint16(p[:]))
	}
	return netip.AddrPort{}
}

// encodeSockaddr writes ap for a socket of domain and returns its length.
func encodeSockaddr(sa *unix.RawSockaddrInet6, domain int, ap netip.AddrPort) uint32 {
	a := ap.Addr()
	if domain == unix.AF_INET {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*s4 = unix.RawSockaddrInet4{Family: unix.AF_INET}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], ap.Port())
		s4.Addr = a.Unmap().As4()
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	sa.Addr = a.As16() // an IPv4 address as IPv4-mapped, for a dual-stack socket
	return unix.SizeofSockaddrInet6
}

// Send sends ms in order, as few system calls as it takes. It returns
// how many were sent; on an error, the error is about ms[n] (the caller
// drops it and may send the rest).
func (b *UDPBatch) Send(ms []UDPMsg) (int, error) {
	s := &b.sys
	if s.rc == nil {
		return 0, syscall.EINVAL
	}
	h := sendHeaderPool.Get().(*sendHeaders)
	defer func() {
		clear(h.siov[:]) // keep no caller buffer alive
		for i := range h.siov {
			h.sh[i].Hdr.Iov = &h.siov[i]
			h.sh[i].Hdr.SetIovlen(1)
		}
		s.sk = nil
		sendHeaderPool.Put(h)
	}()
	s.sk = h
	sent := 0
	for sent < len(ms) {
		k := min(len(ms)-sent, sendChunk)
		for i := 0; i < k; i++ {
			m := &ms[sent+i]
			if len(m.B) > 0 {
				h.siov[i].Base = &m.B[0]
			} else {
				h.siov[i].Base = nil
			}
			h.siov[i].SetLen(len(m.B))
			if s.connected {
				h.sh[i].Hdr.Name, h.sh[i].Hdr.Namelen = nil, 0
			} else {
				h.sh[i].Hdr.Namelen = encodeSockaddr(&h.snames[i], s.domain, m.Addr)
				h.sh[i].Hdr.Name = (*byte)(unsafe.Pointer(&h.snames[i]))
			}
		}
		s.k, s.sn, s.serrno = k, 0, 0
		err := s.rc.Write(s.writeFn)
		r, errno := s.sn, s.serrno
		runtime.KeepAlive(ms)
		if err != nil {
			return sent, err
		}
		if errno != 0 {
			return sent, os.NewSyscallError("sendmmsg", errno)
		}
		sent += r
	}
	return sent, nil
}
