package tlspsk

import (
	"net"
	"net/netip"
	"sync"
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
	slot   int
	pooled bool
	pool   *kitList
	n      int
	kit    *recvKit // buffers and receive headers, while held
	// Msgs[:n] are the datagrams the last Recv returned.
	Msgs []UDPMsg
	sys  batchSys
}

// recvKit is what a Recv needs besides the socket: n slots of buffer,
// the datagrams' descriptors and the platform's receive headers, which
// point into the buffer once, when the kit is made. A pooled batch holds
// a kit only while it handles datagrams.
type recvKit struct {
	buf  []byte
	msgs []UDPMsg
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
	free    []*recvKit
}

const kitListMax = 16

type kitShape struct{ n, slot int }

var kitLists sync.Map // kitShape -> *kitList

func kitPool(n, slot int) *kitList {
	k := kitShape{n, slot}
	if p, ok := kitLists.Load(k); ok {
		return p.(*kitList)
	}
	p, _ := kitLists.LoadOrStore(k, &kitList{n: n, slot: slot})
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
	k := &recvKit{buf: make([]byte, l.n*l.slot), msgs: make([]UDPMsg, l.n)}
	k.r.init(k, l.n, l.slot)
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
	b := &UDPBatch{conn: conn, slot: slot, pooled: pooled, n: n, pool: kitPool(n, slot)}
	b.sys.init(b)
	return b
}

// Len is the most datagrams one Recv returns.
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
	clear(b.kit.msgs)
	b.pool.put(b.kit)
	b.kit, b.Msgs = nil, nil
}

// slotBuf is the i-th slot of the kit's buffer.
func (b *UDPBatch) slotBuf(i int) []byte {
	return b.kit.buf[i*b.slot : (i+1)*b.slot : (i+1)*b.slot]
}
