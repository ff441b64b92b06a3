//go:build linux

package tlspsk

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

const gsoSupported = true

// Control messages are built and parsed by hand, on the bytes, so that
// neither allocates and a hostile or truncated buffer cannot make the
// parser read past its end. Linux's layout: a cmsghdr (length as a
// size_t, level, type as ints), the data, padding to the alignment of a
// size_t.
const (
	cmsgAlign  = int(unsafe.Sizeof(uintptr(0)))
	cmsgHdrLen = unix.SizeofCmsghdr
	cmsgLenLen = cmsgHdrLen - 8 // the size_t cmsg_len
	// segCmsgSpace is CMSG_SPACE(sizeof(uint16)): a UDP_SEGMENT message.
	segCmsgSpace = (cmsgHdrLen + 2 + cmsgAlign - 1) &^ (cmsgAlign - 1)
	// groCmsgSpace is a receive slot's control buffer: a UDP_GRO message
	// (an int) with room to spare.
	groCmsgSpace = 2 * ((cmsgHdrLen + 4 + cmsgAlign - 1) &^ (cmsgAlign - 1))
)

func cmsgAlignUp(n int) int { return (n + cmsgAlign - 1) &^ (cmsgAlign - 1) }

// putSegmentCmsg writes a UDP_SEGMENT control message of segment size
// seg into b (at least segCmsgSpace bytes) and returns its length.
func putSegmentCmsg(b []byte, seg uint16) int {
	b = b[:segCmsgSpace]
	clear(b)
	putCmsgLen(b, cmsgHdrLen+2)
	binary.NativeEndian.PutUint32(b[cmsgLenLen:], uint32(unix.SOL_UDP))
	binary.NativeEndian.PutUint32(b[cmsgLenLen+4:], uint32(unix.UDP_SEGMENT))
	binary.NativeEndian.PutUint16(b[cmsgHdrLen:], seg)
	return segCmsgSpace
}

func putCmsgLen(b []byte, n int) {
	if cmsgLenLen == 8 {
		binary.NativeEndian.PutUint64(b, uint64(n))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(n))
	}
}

func cmsgLen(b []byte) uint64 {
	if cmsgLenLen == 8 {
		return binary.NativeEndian.Uint64(b)
	}
	return uint64(binary.NativeEndian.Uint32(b))
}

// groSegmentSize finds the UDP_GRO control message in oob (what
// recvmsg wrote) and returns the segment size it carries: the length of
// each datagram the kernel coalesced into the one received (the last
// may be shorter). 0 means none (a plain datagram). A message whose
// length runs past oob, or is shorter than its header, ends the parse.
func groSegmentSize(oob []byte) int {
	for len(oob) >= cmsgHdrLen {
		l := cmsgLen(oob)
		if l < uint64(cmsgHdrLen) || l > uint64(len(oob)) {
			return 0
		}
		level := int32(binary.NativeEndian.Uint32(oob[cmsgLenLen:]))
		typ := int32(binary.NativeEndian.Uint32(oob[cmsgLenLen+4:]))
		data := oob[cmsgHdrLen:l]
		if level == unix.SOL_UDP && typ == unix.UDP_GRO {
			// The kernel writes an int; accept a u16 too.
			var v int
			switch {
			case len(data) >= 4:
				v = int(int32(binary.NativeEndian.Uint32(data)))
			case len(data) >= 2:
				v = int(binary.NativeEndian.Uint16(data))
			}
			if v < 0 || v > 0xffff {
				return 0
			}
			return v
		}
		next := cmsgAlignUp(int(l))
		if next >= len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}

// EnableGRO asks the kernel to coalesce datagrams arriving on the
// socket (UDP_GRO, Linux 5.0+) and makes Recv split them again: callers
// still see one Msgs entry per datagram, with its sender. It reports
// whether the kernel accepted. Call it before the first Recv, and only
// on a socket that nothing else reads (another reader would get
// coalesced datagrams). The batch then reads into fewer, bigger slots
// (up to 4 of 64 KiB; 16 for an unpooled batch, a listener's), from
// the pooled kit as before.
func (b *UDPBatch) EnableGRO() bool {
	s := &b.sys
	if s.rc == nil || b.slot <= 0 {
		return false
	}
	var serr error
	if err := s.rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		return false
	}
	b.Release()
	b.kit, b.Msgs = nil, nil
	b.gro = true
	if b.pooled {
		b.n = min(b.n, groSlots)
	} else {
		// A batch of its own (a listener's, one per socket): more slots,
		// so that datagrams that did not coalesce still come many per
		// call.
		b.n = min(b.n, 4*groSlots)
	}
	b.pool = kitPool(b.n, max(groSlot, b.slot), true)
	b.off.groOn.Store(true)
	return true
}
