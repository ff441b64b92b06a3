package tlspsk

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// UDPBatch moves many datagrams per system call on one UDP socket:
// recvmmsg and sendmmsg on Linux, one datagram per call elsewhere. It is
// the DTLS listener's and client's socket path and the proxies' plain UDP
// sides use it too.
//
// Recv fills Msgs with datagrams read into the batch's own buffers, which
// stay valid until the next Recv or Release. With pooled buffers (see
// NewUDPBatch) the buffers are taken from a pool only when a datagram is
// waiting and Release gives them back, so a socket that is idle pins no
// buffer: what 1,000 idle sessions cost is their headers, not their
// slots. Nothing is allocated per datagram: addresses are returned as
// netip.AddrPort, decoded from the kernel's sockaddr in place.
//
// Recv and Send may run at the same time (in two goroutines); each must
// not run concurrently with itself.
type UDPBatch struct {
	conn   *net.UDPConn
	slot   int // the longest datagram Recv returns uncut
	pooled bool
	pool   *kitList
	n      int      // receive slots
	gro    bool     // the kernel coalesces received datagrams (EnableGRO)
	kit    *recvKit // buffers and receive headers, while held
	// Msgs[:n] are the datagrams the last Recv returned.
	Msgs []UDPMsg
	sys  batchSys
	off  offloadState
}

// offloadState is a batch's segmentation offload state (EnableGSO,
// EnableGRO) and counters, read by other goroutines through
// OffloadStats.
type offloadState struct {
	gso, gsoFailed          atomic.Bool
	superSent, segsSent     atomic.Uint64
	coalescedRecv, segsRecv atomic.Uint64
	groOn                   atomic.Bool
}

// UDPOffloadStats reports a batch's UDP segmentation offload: whether it
// is on, whether a GSO send failed (the batch then sends one datagram
// per message for good; the caller may log that once), and how many
// super-datagrams it sent (carrying SegmentsSent datagrams) and
// coalesced datagrams it received (carrying SegmentsReceived).
type UDPOffloadStats struct {
	GSO, GRO, GSOFailed                 bool
	SuperSent, SegmentsSent             uint64
	CoalescedReceived, SegmentsReceived uint64
}

// OffloadStats returns the batch's offload state and counters.
func (b *UDPBatch) OffloadStats() UDPOffloadStats {
	return UDPOffloadStats{
		GSO:               b.off.gso.Load(),
		GRO:               b.off.groOn.Load(),
		GSOFailed:         b.off.gsoFailed.Load(),
		SuperSent:         b.off.superSent.Load(),
		SegmentsSent:      b.off.segsSent.Load(),
		CoalescedReceived: b.off.coalescedRecv.Load(),
		SegmentsReceived:  b.off.segsRecv.Load(),
	}
}

// Add sums two batches' counters (a session's sends and receives).
func (s UDPOffloadStats) Add(o UDPOffloadStats) UDPOffloadStats {
	return UDPOffloadStats{
		GSO: s.GSO || o.GSO, GRO: s.GRO || o.GRO, GSOFailed: s.GSOFailed || o.GSOFailed,
		SuperSent: s.SuperSent + o.SuperSent, SegmentsSent: s.SegmentsSent + o.SegmentsSent,
		CoalescedReceived: s.CoalescedReceived + o.CoalescedReceived, SegmentsReceived: s.SegmentsReceived + o.SegmentsReceived,
	}
}

// recvKit is what a Recv needs besides the socket: n slots of buffer,
// the datagrams' descriptors and the platform's receive headers, which
// point into the buffer once, when the kit is made. A pooled batch holds
// a kit only while it handles datagrams.
type recvKit struct {
	buf  []byte
	msgs []UDPMsg
	used int // msgs[:used] may hold datagrams (Release clears them)
	r    recvHeaders
}

// UDPMsg is one datagram of a batch.
type UDPMsg struct {
	B    []byte         // Recv: the datagram; Send: what to send
	Addr netip.AddrPort // Recv: the sender (unmapped); Send: the destination (ignored on a connected socket)
	// Trunc reports (Recv) that the datagram was longer than the slot and
	// was cut: the caller drops it as oversize.
	Trunc bool
}

// Batch slot sizes: a plain datagram a DTLS record can carry whole, and a
// whole record (the largest datagram the DTLS side receives).
const (
	UDPPlainSlot  = maxPlaintext + 1
	UDPRecordSlot = dgramBig
)

// kitList keeps the spare receive kits of one shape (n slots of one
// size): a plain free list, not a sync.Pool, because a sync.Pool drops its
// kits at every GC and a fresh kit's buffer is zeroed (all its pages made
// resident) when it is allocated again; a kit kept here is touched only
// where datagrams were written. It keeps at most kitListMax spares.
type kitList struct {
	mu      sync.Mutex
	n, slot int
	gro     bool // kits with control buffers and room for split datagrams
	free    []*recvKit
}

const kitListMax = 16

type kitShape struct {
	n, slot int
	gro     bool
}

var kitLists sync.Map // kitShape -> *kitList

func kitPool(n, slot int, gro bool) *kitList {
	k := kitShape{n, slot, gro}
	if p, ok := kitLists.Load(k); ok {
		return p.(*kitList)
	}
	p, _ := kitLists.LoadOrStore(k, &kitList{n: n, slot: slot, gro: gro})
	return p.(*kitList)
}

func (l *kitList) get() *recvKit {
	l.mu.Lock()
	if n := len(l.free); n > 0 {
		k := l.free[n-1]
		l.free[n-1] = nil
		l.free = l.free[:n-1]
		l.mu.Unlock()
		return k
	}
	l.mu.Unlock()
	m := l.n
	if l.gro {
		// Room for every slot's coalesced datagram split into the most
		// segments a sender's GSO makes (more grows the kit once).
		m = l.n * gsoMaxSegments
	}
	k := &recvKit{buf: make([]byte, l.n*l.slot), msgs: make([]UDPMsg, m)}
	k.r.init(k, l.n, l.slot, l.gro)
	return k
}

func (l *kitList) put(k *recvKit) {
	l.mu.Lock()
	if len(l.free) < kitListMax {
		l.free = append(l.free, k)
	}
	l.mu.Unlock()
}

// NewUDPBatch returns a batch of up to n datagrams of up to slot bytes
// each on conn. pooled: the n*slot bytes of buffers (and the receive
// headers) come from a shared free list while a batch is being read and go
// back on Release (for sockets of which many may sit idle); otherwise the
// batch keeps its own. A batch that only sends has no buffers.
func NewUDPBatch(conn *net.UDPConn, n, slot int, pooled bool) *UDPBatch {
	n = max(n, 1)
	b := &UDPBatch{conn: conn, slot: slot, pooled: pooled, n: n, pool: kitPool(n, slot, false)}
	b.sys.init(b)
	return b
}

// Len is the most datagrams one Recv reads from the socket, and the
// sendmmsg batch WriteBatch uses. With GRO a read datagram may be a
// coalesced run of up to 64 or so, each its own entry of Msgs, so a Recv
// may return more than Len.
func (b *UDPBatch) Len() int { return b.n }

// takeKit makes sure the batch has its buffers.
func (b *UDPBatch) takeKit() {
	if b.kit == nil {
		b.kit = b.pool.get()
		b.Msgs = b.kit.msgs
	}
}

// Release gives a pooled batch's buffers back; the datagrams of the last
// Recv are no longer valid. It does nothing to an unpooled batch.
func (b *UDPBatch) Release() {
	if !b.pooled || b.kit == nil {
		return
	}
	clear(b.kit.msgs[:b.kit.used])
	b.kit.used = 0
	b.pool.put(b.kit)
	b.kit, b.Msgs = nil, nil
}

// slotBuf is the i-th slot of the kit's buffer.
func (b *UDPBatch) slotBuf(i int) []byte {
	s := b.pool.slot
	return b.kit.buf[i*s : (i+1)*s : (i+1)*s]
}

// UDP segmentation offload limits. A GSO super-datagram carries at most
// gsoMaxSegments datagrams (the kernel's UDP_MAX_SEGMENTS before 6.11)
// and gsoMaxBytes in all (under the 64 KiB an IP packet can say). Only
// datagrams up to gsoMaxSegment bytes are coalesced: the kernel refuses
// (EINVAL) a segment that does not fit the device's MTU, and 1,452 bytes
// fit a 1,500-byte Ethernet MTU over IPv6 and IPv4 alike; larger ones go
// one per message, as the kernel would fragment them anyway.
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 65000
	gsoMaxSegment  = 1452
	// groSlots × groSlot is a pooled GRO batch's buffer (one socket per
	// session): fewer, bigger slots, each able to take a coalesced run
	// whole (a slot smaller than what the kernel coalesced would cut
	// it). 4 × 64 KiB, held only while datagrams are handled, is 1.6
	// times the 8 × 20 KiB of a plain record batch.
	groSlots = 4
	groSlot  = 64 << 10
)

// EnableGSO makes Send coalesce runs of consecutive datagrams of one
// length to one destination (the last may be shorter) into one message
// the kernel segments (UDP_SEGMENT, Linux 4.18+): one trip through the
// stack for up to 64 datagrams. It reports whether the platform has it.
// If a GSO send fails (a device without checksum offload), the batch
// turns it off for good, resends those datagrams one by one, and
// OffloadStats says GSOFailed.
func (b *UDPBatch) EnableGSO() bool {
	if !gsoSupported {
		return false
	}
	b.off.gso.Store(true)
	return true
}
