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
	waited          bool // Recv found the socket empty and parked
}

// recvHeaders are a kit's recvmmsg headers, pointing into its buffer,
// and for GRO its control buffers.
type recvHeaders struct {
	rh     []unix.Mmsghdr
	riov   []unix.Iovec
	rnames []unix.RawSockaddrInet6
	oob    []byte // groCmsgSpace per slot (GRO kits)
}

func (r *recvHeaders) init(k *recvKit, n, slot int, gro bool) {
	r.rh, r.riov, r.rnames = make([]unix.Mmsghdr, n), make([]unix.Iovec, n), make([]unix.RawSockaddrInet6, n)
	if gro {
		r.oob = make([]byte, n*groCmsgSpace)
	}
	for i := range r.rh {
		if slot > 0 {
			r.riov[i].Base = &k.buf[i*slot]
		}
		r.rh[i].Hdr.Iov = &r.riov[i]
		r.rh[i].Hdr.SetIovlen(1)
	}
}

// sendHeaders are sendmmsg headers for up to sendChunk messages of, in
// all, up to sendIovs datagrams (a GSO message has one iovec per
// datagram it carries, pointing at the caller's buffer: no copy).
type sendHeaders struct {
	sh     [sendChunk]unix.Mmsghdr
	siov   [sendIovs]unix.Iovec
	snames [sendChunk]unix.RawSockaddrInet6
	ctrl   [sendChunk][segCmsgSpace]byte
	segs   [sendChunk]int // datagrams in each message
}

const (
	sendChunk = 32
	sendIovs  = 2 * gsoMaxSegments
)

var sendHeaderPool = sync.Pool{New: func() any { return new(sendHeaders) }}

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

// The batch's system calls are raw: they do not tell the Go scheduler
// that a system call is under way. The sockets are non-blocking (the
// netpoller does the waiting), so each call is bounded CPU work in the
// kernel: one recvmmsg fills at most the batch's slots (16 coalesced
// 64 KiB runs at most), one sendmmsg carries at most 32 messages (the
// proxy sends at most 32 datagrams per Send).
// Announced calls (syscall.Syscall6) let sysmon take the goroutine's P
// while a call runs and start another thread for it: on a busy machine,
// thread hand-offs per batch. Measured, raw calls cut the pair's CPU per
// datagram at 10,000/s by a third or more (docs/udp.md, "Raw system
// calls"). A raw call keeps its P, so a Recv that found data without
// parking yields the P (yield): a loop that always finds data must not
// keep the other goroutines of its P waiting until the 10 ms preemption.
// Send does not yield: its callers either read first (and yield there) or
// park on a queue that Send empties, and a yield after each send cost
// more CPU per datagram at low rates.
func yield() { runtime.Gosched() }

// Recv waits for at least one datagram and reads up to Len of them
// (with GRO, each may be a coalesced run, split into Msgs entries).
func (b *UDPBatch) Recv() (int, error) {
	s := &b.sys
	if s.rc == nil || b.slot <= 0 {
		return 0, syscall.EINVAL
	}
	s.rn, s.rerrno, s.waited = 0, 0, false
	err := s.rc.Read(s.readFn)
	n, errno := s.rn, s.rerrno
	if !s.waited {
		yield()
	}
	if err != nil {
		b.Release()
		return 0, err
	}
	if errno != 0 {
		b.Release()
		return 0, os.NewSyscallError("recvmmsg", errno)
	}
	k := b.kit
	r := &k.r
	j := 0
	var coalesced, segs uint64
	for i := 0; i < n; i++ {
		l := int(r.rh[i].Len)
		cut := r.rh[i].Hdr.Flags&unix.MSG_TRUNC != 0
		d := b.slotBuf(i)
		l = min(l, len(d))
		gs := 0
		if b.gro {
			gs = groSegmentSize(r.oob[i*groCmsgSpace : i*groCmsgSpace+min(int(r.rh[i].Hdr.Controllen), groCmsgSpace)])
		}
		if gs <= 0 || gs >= l {
			j = b.putMsg(j, d[:l], cut, &r.rnames[i])
			continue
		}
		// A coalesced run: each gs bytes are one datagram the sender sent
		// (the last may be shorter). Only a cut run's last one is cut.
		coalesced++
		for off := 0; off < l; off += gs {
			e := min(off+gs, l)
			j = b.putMsg(j, d[off:e:e], cut && e == l, &r.rnames[i])
			segs++
		}
	}
	if coalesced > 0 {
		b.off.coalescedRecv.Add(coalesced)
		b.off.segsRecv.Add(segs)
	}
	k.used = max(k.used, j)
	return j, nil
}

// putMsg sets Msgs[j] to datagram d (cut: the kernel truncated it) from
// the sender in sa, growing the kit's entries if a hostile run has more
// datagrams than planned for, and returns j+1. A datagram longer than the
// batch's slot is cut to it and flagged, as the kernel does without GRO.
func (b *UDPBatch) putMsg(j int, d []byte, cut bool, sa *unix.RawSockaddrInet6) int {
	k := b.kit
	if j == len(k.msgs) {
		k.msgs = append(k.msgs, make([]UDPMsg, len(k.msgs))...)
		b.Msgs = k.msgs
	}
	m := &k.msgs[j]
	if len(d) > b.slot {
		d, cut = d[:b.slot:b.slot], true
	}
	m.B, m.Trunc, m.Addr = d, cut, decodeSockaddr(sa)
	return j + 1
}

// recvmmsg is Recv's RawConn callback.
func (s *batchSys) recvmmsg(fd uintptr) bool {
	b := s.b
	b.takeKit()
	r := &b.kit.r
	for i := range r.rh {
		r.riov[i].SetLen(b.pool.slot)
		r.rh[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.rnames[i]))
		r.rh[i].Hdr.Namelen = uint32(unsafe.Sizeof(r.rnames[i]))
		r.rh[i].Hdr.Flags = 0
		r.rh[i].Len = 0
		if r.oob != nil {
			r.rh[i].Hdr.Control = &r.oob[i*groCmsgSpace]
			r.rh[i].Hdr.SetControllen(groCmsgSpace)
		}
	}
	for {
		x, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.rh[0])), uintptr(len(r.rh)), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// Nothing waiting: an idle pooled batch holds no buffers
			// while the netpoller waits.
			s.waited = true
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
		x, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.sk.sh[0])), uintptr(s.k), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		if e != 0 {
			x = 0 // -1: none sent
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

// Send sends ms in order, as few system calls as it takes (with GSO,
// runs of one length to one destination as one message each). It
// returns how many datagrams were sent; on an error, the error is about
// ms[n] (the caller drops it and may send the rest).
func (b *UDPBatch) Send(ms []UDPMsg) (int, error) {
	s := &b.sys
	if s.rc == nil {
		return 0, syscall.EINVAL
	}
	h := sendHeaderPool.Get().(*sendHeaders)
	s.sk = h
	sent, err := b.send(h, ms)
	clear(h.siov[:]) // keep no caller buffer alive
	s.sk = nil
	sendHeaderPool.Put(h)
	return sent, err
}

func (b *UDPBatch) send(h *sendHeaders, ms []UDPMsg) (int, error) {
	s := &b.sys
	sent := 0
	for sent < len(ms) {
		gso := b.off.gso.Load()
		k, iov := 0, 0 // messages and iovecs filled
		next := sent   // the first datagram not in a message yet
		for k < sendChunk && next < len(ms) && iov < sendIovs {
			run := 1
			if gso {
				run = b.gsoRun(ms[next:], min(gsoMaxSegments, sendIovs-iov))
			}
			hd := &h.sh[k].Hdr
			hd.Iov = &h.siov[iov]
			hd.SetIovlen(run)
			for i := 0; i < run; i++ {
				m := &ms[next+i]
				if len(m.B) > 0 {
					h.siov[iov+i].Base = &m.B[0]
				} else {
					h.siov[iov+i].Base = nil
				}
				h.siov[iov+i].SetLen(len(m.B))
			}
			if run > 1 {
				hd.Control = &h.ctrl[k][0]
				hd.SetControllen(putSegmentCmsg(h.ctrl[k][:], uint16(len(ms[next].B))))
			} else {
				hd.Control = nil
				hd.SetControllen(0)
			}
			if s.connected {
				hd.Name, hd.Namelen = nil, 0
			} else {
				hd.Namelen = encodeSockaddr(&h.snames[k], s.domain, ms[next].Addr)
				hd.Name = (*byte)(unsafe.Pointer(&h.snames[k]))
			}
			h.segs[k] = run
			iov += run
			next += run
			k++
		}
		s.k, s.sn, s.serrno = k, 0, 0
		if gsoSendFault != nil && gsoSendFault() {
			// A test's stand-in for a kernel that refuses GSO: the first
			// GSO message fails with EIO, those before it go out.
			for i := range k {
				if h.segs[i] > 1 {
					s.k = i
					break
				}
			}
		}
		var err error
		if s.k > 0 {
			err = s.rc.Write(s.writeFn)
		}
		r, errno := s.sn, s.serrno
		if s.k < k && r == s.k && errno == 0 && err == nil {
			errno = unix.EIO
		}
		runtime.KeepAlive(ms)
		for i := 0; i < r; i++ {
			sent += h.segs[i]
			if h.segs[i] > 1 {
				b.off.superSent.Add(1)
				b.off.segsSent.Add(uint64(h.segs[i]))
			}
		}
		if err != nil {
			return sent, err
		}
		if errno != 0 {
			if r < k && h.segs[r] > 1 && (errno == unix.EIO || errno == unix.EINVAL || errno == unix.EOPNOTSUPP) {
				// The kernel or the device cannot segment (no checksum
				// offload, an MTU below the segment, ...): the message
				// was not sent. Off for good; its datagrams and the rest
				// go again, one per message.
				b.off.gso.Store(false)
				b.off.gsoFailed.Store(true)
				continue
			}
			return sent, os.NewSyscallError("sendmmsg", errno)
		}
	}
	return sent, nil
}

// gsoSendFault, set by tests before any Send runs, makes a GSO message
// fail with EIO, unsent, whenever it returns true.
var gsoSendFault func() bool

// gsoRun is how many of ms, from the first, go as one GSO message: the
// same destination (on an unconnected socket) and length, the last
// possibly shorter but not empty, at most limit datagrams and gsoMaxBytes
// bytes. 1 means send ms[0] alone.
func (b *UDPBatch) gsoRun(ms []UDPMsg, limit int) int {
	seg := len(ms[0].B)
	if seg == 0 || seg > gsoMaxSegment || len(ms) < 2 {
		return 1
	}
	total, run := seg, 1
	for run < len(ms) && run < limit {
		m := &ms[run]
		l := len(m.B)
		if l == 0 || l > seg || total+l > gsoMaxBytes || (!b.sys.connected && m.Addr != ms[0].Addr) {
			break
		}
		total += l
		run++
		if l < seg {
			break // a shorter datagram ends the run
		}
	}
	return run
}
