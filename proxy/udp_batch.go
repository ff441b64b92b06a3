package proxy

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
	"github.com/prometheus/client_golang/prometheus"
)

// udpBatchLen is how many datagrams the proxies move per recvmmsg or
// sendmmsg (tlspsk.UDPBatch; one per call off Linux). 32 datagrams of
// 1,200 bytes are ~38 KB per system call; more does not pay on the
// loads measured (docs/udp.md).
const udpBatchLen = 32

// udpSessionBatchLen is the batch of a socket per session (a client's
// tunnel socket, a server's backend socket): such a batch's buffers come
// from a shared free list only while a batch is being handled, and
// smaller batches keep that list small (8 × 16 KiB per kit).
const udpSessionBatchLen = 8

// udpOffload turns UDP segmentation offload on for the tunnel hop (both
// ends are mcbn): GSO when a session's records go out in a batch, GRO on
// the sockets that read records (the server's listener, a client
// session's tunnel socket). MCBN_UDP_OFFLOAD=0 turns it off, for
// measuring (docs/udp.md); off Linux it does nothing.
var udpOffload = os.Getenv("MCBN_UDP_OFFLOAD") != "0"

// offloadTotals sums the offload counters of ended sessions (the
// tunnel sends of both proxies, the client's tunnel receives): the tests'
// evidence that offload happened.
var offloadTotals struct {
	superSent, segsSent, coalescedRecv, segsRecv atomic.Uint64
}

func addOffload(s tlspsk.UDPOffloadStats) {
	offloadTotals.superSent.Add(s.SuperSent)
	offloadTotals.segsSent.Add(s.SegmentsSent)
	offloadTotals.coalescedRecv.Add(s.CoalescedReceived)
	offloadTotals.segsRecv.Add(s.SegmentsReceived)
}

// gsoFailLogged: a GSO send failure is logged once per process.
var gsoFailLogged atomic.Bool

// logOffloadFailure logs, once, that the kernel refused GSO on the
// tunnel (a device without checksum offload); the batch that saw it sends
// one datagram per message from then on, losing nothing.
func logOffloadFailure(log *slog.Logger, s tlspsk.UDPOffloadStats) {
	if s.GSOFailed && gsoFailLogged.CompareAndSwap(false, true) {
		log.Warn("UDP GSO refused by the kernel or device: sending one datagram per message on the affected sockets (MCBN_UDP_OFFLOAD=0 turns offload off)")
	}
}

// tunnelWriteFailed counts the n datagrams a failed tunnel write did not
// carry. A session whose key reached its AEAD usage limit (AES-GCM or
// AES-CCM, after about 2^34 blocks: some 220 million 1,200-byte datagrams
// one way) counts them as key_limit and says so: it ends like any session
// whose tunnel failed, and the peer's next datagram starts a new one.
func (r *route) tunnelWriteFailed(err error, n int, peer string) {
	if errors.Is(err, tlspsk.ErrDTLSKeyLimit) {
		r.met.dropN("key_limit", uint64(n))
		r.log.Info("DTLS session reached its key's AEAD usage limit: ending it; the next datagram starts a new session", "peer", peer)
		return
	}
	r.met.dropN("tunnel_write_failed", uint64(n))
}

// countSent adds sent datagrams and their bytes to a direction's metrics.
func countSent(dgrams, bytes prometheus.Counter, ms []tlspsk.UDPMsg) {
	if len(ms) == 0 {
		return
	}
	var n int
	for i := range ms {
		n += len(ms[i].B)
	}
	dgrams.Add(float64(len(ms)))
	bytes.Add(float64(n))
}

// relayBackend carries a server session's backend replies into the
// tunnel: up to udpSessionBatchLen per recvmmsg on the session's own backend
// socket (pooled buffers: an idle session pins none), sealed and sent to
// the client with one sendmmsg on the listener's socket.
func relayBackend(r *route, dc *tlspsk.DTLSConn, backend *net.UDPConn, last *atomic.Int64) {
	in := tlspsk.NewUDPBatch(backend, udpSessionBatchLen, tlspsk.UDPPlainSlot, true)
	defer in.Release()
	ms := make([]tlspsk.UDPMsg, 0, udpSessionBatchLen)
	for {
		n, err := in.Recv()
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				r.dest.record(err)
				continue
			}
			dc.Close()
			return
		}
		r.dest.reachable()
		last.Store(time.Now().UnixNano())
		ms = ms[:0]
		for i := 0; i < n; i++ {
			if in.Msgs[i].Trunc {
				r.met.drop("oversize") // longer than a DTLS record carries
				continue
			}
			ms = append(ms, tlspsk.UDPMsg{B: in.Msgs[i].B})
		}
		k, err := dc.WriteBatch(ms)
		countSent(r.met.datagramsRev, r.met.bytesRev, ms[:k])
		clear(ms)
		if err != nil {
			r.tunnelWriteFailed(err, len(ms)-k, dc.RemoteAddr().String())
			dc.Close()
			return
		}
	}
}

// reverse carries the server proxy's records to a client session's local
// peer: up to udpSessionBatchLen datagrams per recvmmsg on the session's own
// tunnel socket, opened in place (tlspsk.DTLSConn.OpenRecord, which also
// answers a retransmitted handshake flight and ends the session on an
// alert), and sent on with one sendmmsg on the route's local socket.
func (u *udpClientRoute) reverse(s *udpClientSession, dc *tlspsk.DTLSConn, tunnel *net.UDPConn) {
	in := tlspsk.NewUDPBatch(tunnel, udpSessionBatchLen, tlspsk.UDPRecordSlot, true)
	defer in.Release()
	if udpOffload {
		// Only this loop reads the tunnel socket now that the handshake
		// is done, so coalesced runs reach no other reader.
		in.EnableGRO()
	}
	out := tlspsk.NewUDPBatch(u.pc, udpSessionBatchLen, 0, true)
	if udpOffload {
		out.EnableGSO() // all to s.peer: runs coalesce; the kernel splits them for it
	}
	defer func() {
		st := dc.OffloadStats().Add(out.OffloadStats())
		logOffloadFailure(u.log, st)
		addOffload(st.Add(in.OffloadStats()))
	}()
	// With GRO one Recv may return a few hundred datagrams: they go on
	// in chunks of cap(ms), so the session keeps a small slice.
	ms := make([]tlspsk.UDPMsg, 0, udpSessionBatchLen*2)
	for {
		n, err := in.Recv()
		if err != nil {
			return
		}
		s.last.Store(time.Now().UnixNano())
		ms = ms[:0]
		var end error
		for i := 0; i < n && end == nil; i++ {
			d := in.Msgs[i].B
			if in.Msgs[i].Trunc {
				u.met.drop("malformed") // no record is this long
				continue
			}
			for len(d) > 0 {
				rec, rest, ok := dc.SplitRecord(d)
				if !ok {
					dc.OpenRecord(d) // counts it malformed
					break
				}
				d = rest
				p, err := dc.OpenRecord(rec)
				if err != nil {
					end = err
					break
				}
				if p != nil {
					if len(ms) == cap(ms) {
						u.sendLocal(out, ms)
						clear(ms)
						ms = ms[:0]
					}
					ms = append(ms, tlspsk.UDPMsg{B: p, Addr: s.peer})
				}
			}
		}
		u.sendLocal(out, ms)
		clear(ms)
		if end != nil {
			return
		}
	}
}

// sendLocal sends datagrams to local peers, dropping (and counting) any
// the socket refuses.
func (u *udpClientRoute) sendLocal(out *tlspsk.UDPBatch, ms []tlspsk.UDPMsg) {
	for sent := 0; sent < len(ms); {
		k, err := out.Send(ms[sent:])
		countSent(u.met.datagramsRev, u.met.bytesRev, ms[sent:sent+k])
		sent += k
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				u.met.dropN("local_write_failed", uint64(len(ms)-sent))
				return
			}
			u.met.drop("local_write_failed")
			sent++
		}
	}
}

// socketDropSync copies the kernel's drop counter of a route's shared UDP
// socket (the client's local socket, the server's listener socket) into
// the drop metric as reason socket_buffer: datagrams lost because the
// socket's receive buffer was full, before any code of ours saw them.
// Under overload that is where most drops belong (the cheapest place),
// so they must be counted too.
type socketDropSync struct {
	pc   *net.UDPConn
	last uint64
}

func (s *socketDropSync) sync(m *routeMetrics) {
	n, ok := socketDrops(s.pc)
	if !ok || n <= s.last {
		return
	}
	m.dropN("socket_buffer", n-s.last)
	s.last = n
}
