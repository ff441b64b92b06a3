//go:build linux

package tlspsk

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// offloadDgram is datagram seq of size bytes (size >= 12): the sequence
// number, a CRC-32 of the rest, and bytes derived from seq.
func offloadDgram(seq, size int) []byte {
	p := make([]byte, size)
	binary.BigEndian.PutUint64(p, uint64(seq))
	for i := 12; i < size; i++ {
		p[i] = byte(seq*7 + i)
	}
	binary.BigEndian.PutUint32(p[8:], crc32.ChecksumIEEE(p[12:]))
	return p
}

// checkDgram checks a received datagram's checksum and returns its
// sequence number.
func checkDgram(t *testing.T, p []byte) int {
	t.Helper()
	if len(p) < 12 || binary.BigEndian.Uint32(p[8:]) != crc32.ChecksumIEEE(p[12:]) {
		t.Fatalf("a datagram of %d bytes fails its checksum", len(p))
	}
	return int(binary.BigEndian.Uint64(p))
}

// recvAll reads from rb until want datagrams came and returns them
// (copied) in arrival order, with their senders.
func recvAll(t *testing.T, rb *UDPBatch, conn *net.UDPConn, want int) ([][]byte, []netip.AddrPort) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got [][]byte
	var from []netip.AddrPort
	for len(got) < want {
		n, err := rb.Recv()
		if err != nil {
			t.Fatalf("recv after %d of %d: %v", len(got), want, err)
		}
		for i := 0; i < n; i++ {
			if rb.Msgs[i].Trunc {
				t.Fatalf("datagram %d flagged truncated (%d bytes)", len(got), len(rb.Msgs[i].B))
			}
			got = append(got, append([]byte(nil), rb.Msgs[i].B...))
			from = append(from, rb.Msgs[i].Addr)
		}
	}
	return got, from
}

// offloadCases are the sends the GSO tests make: sizes of each datagram.
var offloadCases = []struct {
	name  string
	sizes []int
}{
	{"equal", repeatSizes(40, 1200)},
	{"shorter-last", append(repeatSizes(20, 1000), 333)},
	{"mixed", []int{100, 100, 100, 50, 1200, 1200, 64, 64, 64, 64, 1400, 12, 12, 500, 1452, 1452, 1453, 1453, 900}},
	{"over-64", repeatSizes(150, 600)},
	{"over-65000-bytes", repeatSizes(70, 1452)},
}

// A GSO sender delivers exactly the datagrams sent, in order and intact,
// to a GRO receiver (which gets them coalesced and splits them) and to a
// plain one (the kernel splits them), and it really sent super-datagrams.
func TestUDPGSOSend(t *testing.T) {
	for _, gro := range []bool{true, false} {
		for _, tc := range offloadCases {
			name := tc.name + "/plain"
			if gro {
				name = tc.name + "/gro"
			}
			t.Run(name, func(t *testing.T) {
				a, b := udpPairTest(t)
				a.SetReadBuffer(4 << 20)
				sb := NewUDPBatch(b, 8, 0, true)
				if !sb.EnableGSO() {
					t.Fatal("EnableGSO: false on Linux")
				}
				rb := NewUDPBatch(a, 8, UDPPlainSlot, true)
				if gro && !rb.EnableGRO() {
					t.Fatal("EnableGRO: the kernel refused UDP_GRO")
				}
				dst := a.LocalAddr().(*net.UDPAddr).AddrPort()
				ms := make([]UDPMsg, len(tc.sizes))
				for i, sz := range tc.sizes {
					ms[i] = UDPMsg{B: offloadDgram(i, sz), Addr: dst}
				}
				if n, err := sb.Send(ms); n != len(ms) || err != nil {
					t.Fatalf("send: %d of %d, %v", n, len(ms), err)
				}
				got, from := recvAll(t, rb, a, len(ms))
				for i, p := range got {
					if seq := checkDgram(t, p); seq != i || len(p) != tc.sizes[i] {
						t.Fatalf("datagram %d: seq %d, %d bytes, want %d bytes", i, seq, len(p), tc.sizes[i])
					}
					if from[i] != b.LocalAddr().(*net.UDPAddr).AddrPort() {
						t.Fatalf("datagram %d from %v", i, from[i])
					}
				}
				ss, rs := sb.OffloadStats(), rb.OffloadStats()
				t.Logf("sender %+v receiver %+v", ss, rs)
				if ss.SuperSent == 0 || ss.SegmentsSent <= ss.SuperSent {
					t.Fatalf("no super-datagram sent: %+v", ss)
				}
				if gro && rs.CoalescedReceived == 0 {
					t.Fatalf("the GRO receiver got nothing coalesced: %+v", rs)
				}
				if !gro && rs.CoalescedReceived != 0 {
					t.Fatalf("a plain receiver reports coalesced datagrams: %+v", rs)
				}
				if tc.name == "over-64" && ss.SegmentsSent > ss.SuperSent*gsoMaxSegments {
					t.Fatalf("a super-datagram of more than %d segments: %+v", gsoMaxSegments, ss)
				}
			})
		}
	}
}

// Runs are cut where the destination changes: interleaved destinations
// each get exactly their datagrams, in order.
func TestUDPGSOMixedDestinations(t *testing.T) {
	a, b := udpPairTest(t)
	c, _ := udpPairTest(t)
	a.SetReadBuffer(4 << 20)
	c.SetReadBuffer(4 << 20)
	sb := NewUDPBatch(b, 8, 0, true)
	sb.EnableGSO()
	ra, rc := NewUDPBatch(a, 8, UDPPlainSlot, true), NewUDPBatch(c, 8, UDPPlainSlot, true)
	ra.EnableGRO()
	dsts := []netip.AddrPort{a.LocalAddr().(*net.UDPAddr).AddrPort(), c.LocalAddr().(*net.UDPAddr).AddrPort()}
	var ms []UDPMsg
	var want [2][]int
	seq := 0
	for round := 0; round < 6; round++ {
		for d := range dsts {
			for k := 0; k < 3+round*d; k++ { // runs of 3..13
				ms = append(ms, UDPMsg{B: offloadDgram(seq, 800), Addr: dsts[d]})
				want[d] = append(want[d], seq)
				seq++
			}
		}
	}
	if n, err := sb.Send(ms); n != len(ms) || err != nil {
		t.Fatalf("send: %d of %d, %v", n, len(ms), err)
	}
	for d, rb := range []*UDPBatch{ra, rc} {
		conn := []*net.UDPConn{a, c}[d]
		got, _ := recvAll(t, rb, conn, len(want[d]))
		for i, p := range got {
			if s := checkDgram(t, p); s != want[d][i] {
				t.Fatalf("destination %d, datagram %d: seq %d, want %d", d, i, s, want[d][i])
			}
		}
	}
	if s := sb.OffloadStats(); s.SuperSent == 0 {
		t.Fatalf("no super-datagram sent: %+v", s)
	}
}

// When GSO sends fail (a device without checksum offload), the batch
// turns GSO off and resends those datagrams one per message: every
// datagram arrives once, in order, and later sends are plain.
func TestUDPGSOFallback(t *testing.T) {
	a, sb, rb := gsoToGRO(t)
	gsoSendFault = func() bool { return true }
	defer func() { gsoSendFault = nil }()
	dst := a.LocalAddr().(*net.UDPAddr).AddrPort()
	// A lone datagram first (sent plain, before the failing run), then
	// runs.
	sizes := append([]int{70}, repeatSizes(100, 1000)...)
	ms := make([]UDPMsg, len(sizes))
	for i, sz := range sizes {
		ms[i] = UDPMsg{B: offloadDgram(i, sz), Addr: dst}
	}
	if n, err := sb.Send(ms); n != len(ms) || err != nil {
		t.Fatalf("send: %d of %d, %v", n, len(ms), err)
	}
	got, _ := recvAll(t, rb, a, len(ms))
	for i, p := range got {
		if s := checkDgram(t, p); s != i {
			t.Fatalf("datagram %d: seq %d", i, s)
		}
	}
	// Nothing more than that: no duplicate is waiting.
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := rb.Recv(); err == nil {
		t.Fatalf("%d datagrams more than were sent", n)
	}
	s := sb.OffloadStats()
	if !s.GSOFailed || s.GSO || s.SuperSent != 0 {
		t.Fatalf("after a failed GSO send: %+v", s)
	}
}

// The kernel itself refuses GSO on a socket without UDP checksums
// (SO_NO_CHECK): the real fallback path, nothing lost or duplicated.
func TestUDPGSOFallbackKernel(t *testing.T) {
	a, b := udpPairTest(t)
	a.SetReadBuffer(4 << 20)
	rc, _ := b.SyscallConn()
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) })
	if serr != nil {
		t.Fatalf("SO_NO_CHECK: %v", serr)
	}
	sb := NewUDPBatch(b, 8, 0, true)
	sb.EnableGSO()
	rb := NewUDPBatch(a, 8, UDPPlainSlot, true)
	dst := a.LocalAddr().(*net.UDPAddr).AddrPort()
	ms := make([]UDPMsg, 50)
	for i := range ms {
		ms[i] = UDPMsg{B: offloadDgram(i, 500), Addr: dst}
	}
	if n, err := sb.Send(ms); n != len(ms) || err != nil {
		t.Fatalf("send: %d of %d, %v", n, len(ms), err)
	}
	got, _ := recvAll(t, rb, a, len(ms))
	for i, p := range got {
		if s := checkDgram(t, p); s != i {
			t.Fatalf("datagram %d: seq %d", i, s)
		}
	}
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := rb.Recv(); err == nil {
		t.Fatalf("%d datagrams more than were sent", n)
	}
	if s := sb.OffloadStats(); !s.GSOFailed || s.GSO {
		t.Fatalf("the kernel accepted GSO without checksums: %+v", s)
	}
}

// An error that is not about GSO is reported about the first datagram of
// the message, not taken for a GSO failure.
func TestUDPGSOOtherError(t *testing.T) {
	a, _ := udpPairTest(t)
	dst := a.LocalAddr().(*net.UDPAddr).AddrPort()
	a.Close() // nothing listens at dst now
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sb := NewUDPBatch(c, 8, 0, true)
	sb.EnableGSO()
	ms := make([]UDPMsg, 10)
	for i := range ms {
		ms[i] = UDPMsg{B: offloadDgram(i, 100)}
	}
	// The first send may succeed (the refusal comes back as ICMP); a
	// later one reports ECONNREFUSED.
	var serr error
	for i := 0; i < 20 && serr == nil; i++ {
		_, serr = sb.Send(ms)
		time.Sleep(5 * time.Millisecond)
	}
	if serr == nil || !errorsIs(serr, syscall.ECONNREFUSED) {
		t.Fatalf("send to a closed port: %v", serr)
	}
	if s := sb.OffloadStats(); s.GSOFailed || !s.GSO {
		t.Fatalf("ECONNREFUSED turned GSO off: %+v", s)
	}
}

// GSO sends and GRO receives allocate nothing in the steady state, and an
// idle GRO batch holds no buffers.
func TestUDPOffloadAllocs(t *testing.T) {
	a, sb, rb := gsoToGRO(t)
	dst := a.LocalAddr().(*net.UDPAddr).AddrPort()
	ms := make([]UDPMsg, 16)
	for i := range ms {
		ms[i] = UDPMsg{B: offloadDgram(i, 1200), Addr: dst}
	}
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	round := func() {
		if n, err := sb.Send(ms); n != len(ms) || err != nil {
			t.Fatalf("send: %d, %v", n, err)
		}
		for got := 0; got < len(ms); {
			n, err := rb.Recv()
			if err != nil {
				t.Fatalf("recv: %v", err)
			}
			got += n
		}
	}
	round()
	allocs := testing.AllocsPerRun(100, round)
	if allocs != 0 && !offloadRace {
		t.Fatalf("%v allocations per GSO Send + GRO Recv of 16 datagrams, want 0", allocs)
	}
	if s := rb.OffloadStats(); s.CoalescedReceived == 0 {
		t.Fatalf("nothing coalesced: %+v", s)
	}
	rb.Release()
	a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := rb.Recv(); err == nil {
		t.Fatal("Recv returned without data")
	}
	if rb.kit != nil {
		t.Fatal("an idle pooled GRO batch kept its buffers")
	}
}

// A coalesced run whose segments are longer than the batch's slot comes
// out as datagrams each cut and flagged, as without GRO.
func TestUDPGROSlotLimit(t *testing.T) {
	a, b := udpPairTest(t)
	sb := NewUDPBatch(b, 8, 0, true)
	sb.EnableGSO()
	rb := NewUDPBatch(a, 8, 1000, true)
	rb.EnableGRO()
	dst := a.LocalAddr().(*net.UDPAddr).AddrPort()
	ms := []UDPMsg{{B: offloadDgram(0, 1200), Addr: dst}, {B: offloadDgram(1, 1200), Addr: dst}, {B: offloadDgram(2, 900), Addr: dst}}
	if n, err := sb.Send(ms); n != 3 || err != nil {
		t.Fatalf("send: %d, %v", n, err)
	}
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	var flags []bool
	for len(flags) < 3 {
		n, err := rb.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			flags = append(flags, rb.Msgs[i].Trunc)
			if l := len(rb.Msgs[i].B); l > 1000 {
				t.Fatalf("a %d-byte datagram out of a 1000-byte slot", l)
			}
		}
	}
	if !flags[0] || !flags[1] || flags[2] {
		t.Fatalf("truncation flags %v, want [true true false]", flags)
	}
}

// The control message helpers agree with the kernel's constants and
// layout, and the parser finds a UDP_GRO message behind another one.
func TestGROCmsgLayout(t *testing.T) {
	if unix.UDP_SEGMENT != 103 || unix.UDP_GRO != 104 || unix.SOL_UDP != 17 {
		t.Fatalf("UDP_SEGMENT %d UDP_GRO %d SOL_UDP %d", unix.UDP_SEGMENT, unix.UDP_GRO, unix.SOL_UDP)
	}
	if segCmsgSpace != unix.CmsgSpace(2) {
		t.Fatalf("segCmsgSpace %d, CMSG_SPACE(2) %d", segCmsgSpace, unix.CmsgSpace(2))
	}
	var b [segCmsgSpace]byte
	putSegmentCmsg(b[:], 1234)
	msgs, err := unix.ParseSocketControlMessage(b[:])
	if err != nil || len(msgs) != 1 || msgs[0].Header.Level != unix.SOL_UDP || msgs[0].Header.Type != unix.UDP_SEGMENT ||
		binary.NativeEndian.Uint16(msgs[0].Data) != 1234 || uint64(msgs[0].Header.Len) != uint64(unix.CmsgLen(2)) {
		t.Fatalf("UDP_SEGMENT message parses as %+v, %v", msgs, err)
	}
	oob := append(groCmsg(unix.SOL_SOCKET, 29, 8), groCmsg(unix.SOL_UDP, unix.UDP_GRO, 1200)...)
	if got := groSegmentSize(oob); got != 1200 {
		t.Fatalf("gso_size %d, want 1200", got)
	}
}

// groCmsg is a control message of level and type carrying the int v.
func groCmsg(level, typ, v int) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafePointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], uint32(v))
	return b
}

// groSegmentSize parses what the kernel wrote (or, for the fuzzer, any
// bytes): it never reads past the buffer or panics, returns a size an
// IP datagram can have, and agrees with x/sys/unix's parser.
func FuzzGROSegmentSize(f *testing.F) {
	f.Add(groCmsg(unix.SOL_UDP, unix.UDP_GRO, 1200))
	f.Add(groCmsg(unix.SOL_UDP, unix.UDP_GRO, 0))
	f.Add(groCmsg(unix.SOL_UDP, unix.UDP_GRO, -1))
	f.Add(groCmsg(unix.SOL_UDP, unix.UDP_GRO, 1<<20))
	f.Add(append(groCmsg(unix.SOL_SOCKET, 29, 8), groCmsg(unix.SOL_UDP, unix.UDP_GRO, 64)...))
	f.Add(groCmsg(unix.SOL_UDP, unix.UDP_GRO, 1200)[:unix.CmsgLen(2)])
	f.Add(groCmsg(unix.SOL_UDP, unix.UDP_GRO, 1200)[:unix.CmsgLen(0)-1])
	var seg [segCmsgSpace]byte
	putSegmentCmsg(seg[:], 9)
	f.Add(seg[:])
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, oob []byte) {
		oob = oob[:len(oob):len(oob)] // any read past the end panics
		v := groSegmentSize(oob)
		if v < 0 || v > 0xffff {
			t.Fatalf("segment size %d", v)
		}
		if v == 0 {
			return
		}
		// What it found is a UDP_GRO message x/sys/unix also sees
		// (where that parser accepts the buffer).
		msgs, err := unix.ParseSocketControlMessage(oob)
		if err != nil {
			return
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_GRO {
				return
			}
		}
		t.Fatalf("found gso_size %d where x/sys/unix sees no UDP_GRO message: %+v", v, msgs)
	})
}

func unsafePointer(p *byte) unsafe.Pointer { return unsafe.Pointer(p) }

func errorsIs(err, target error) bool { return errors.Is(err, target) }

// BenchmarkUDPBatchOffload: bursts of 16 datagrams of 1,200 bytes
// through UDPBatch over loopback, the receiver reading them all before
// the next burst, for each combination of GSO on the sender and GRO on
// the receiver (gso/plain is the plain hops' case: a receiver that is
// not ours, the kernel splitting the run for it).
func BenchmarkUDPBatchOffload(b *testing.B) {
	for _, c := range []struct{ gso, gro bool }{{false, false}, {true, false}, {true, true}} {
		name := map[bool]string{false: "plain", true: "gso"}[c.gso] + "/" + map[bool]string{false: "plain", true: "gro"}[c.gro]
		b.Run(name, func(b *testing.B) {
			a, s := udpPairTB(b)
			a.SetReadBuffer(4 << 20)
			sb := NewUDPBatch(s, 16, 0, true)
			if c.gso {
				sb.EnableGSO()
			}
			rb := NewUDPBatch(a, 16, UDPPlainSlot, true)
			if c.gro {
				rb.EnableGRO()
			}
			dst := a.LocalAddr().(*net.UDPAddr).AddrPort()
			ms := make([]UDPMsg, 16)
			for i := range ms {
				ms[i] = UDPMsg{B: make([]byte, 1200), Addr: dst}
			}
			a.SetReadDeadline(time.Now().Add(time.Minute))
			b.SetBytes(1200 * int64(len(ms)))
			b.ReportAllocs()
			for b.Loop() {
				if n, err := sb.Send(ms); n != len(ms) || err != nil {
					b.Fatalf("send: %d, %v", n, err)
				}
				for got := 0; got < len(ms); {
					n, err := rb.Recv()
					if err != nil {
						b.Fatalf("recv: %v", err)
					}
					got += n
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ms)), "ns/dgram")
		})
	}
}

func udpPairTB(tb testing.TB) (a, b *net.UDPConn) {
	var err error
	for _, c := range []**net.UDPConn{&a, &b} {
		if *c, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { (*c).Close() })
	}
	return a, b
}

// gsoToGRO is a GSO sending batch and a GRO receiving batch (8 slots of
// UDPPlainSlot) over a loopback pair; a is the receiving socket.
func gsoToGRO(t *testing.T) (a *net.UDPConn, sb, rb *UDPBatch) {
	t.Helper()
	a, b := udpPairTest(t)
	a.SetReadBuffer(4 << 20)
	sb = NewUDPBatch(b, 8, 0, true)
	sb.EnableGSO()
	rb = NewUDPBatch(a, 8, UDPPlainSlot, true)
	rb.EnableGRO()
	return a, sb, rb
}
