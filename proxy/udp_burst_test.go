package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// udpSink is a UDP backend that checks and counts datagrams: each carries
// a sequence number and ends in the CRC-32 of the rest.
type udpSink struct {
	pc             *net.UDPConn
	mu             sync.Mutex
	seen           map[uint64]bool
	good, bad, dup atomic.Int64
}

func startUDPSink(t *testing.T) *udpSink {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pc.SetReadBuffer(udpSocketBuffer)
	s := &udpSink{pc: pc, seen: map[uint64]bool{}}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			d := buf[:n]
			if n < 12 || crc32.ChecksumIEEE(d[:n-4]) != binary.BigEndian.Uint32(d[n-4:]) {
				s.bad.Add(1)
				continue
			}
			seq := binary.BigEndian.Uint64(d)
			s.mu.Lock()
			if s.seen[seq] {
				s.dup.Add(1)
			} else {
				s.seen[seq] = true
				s.good.Add(1)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// droppedTotal sums a proxy's mcbn_proxy_udp_dropped_datagrams_total and
// returns it by reason too.
//
// The two names are read at different moments of one scrape, so they agree
// only while no drop is being counted: a disagreement is read again (the
// counting stops) and fails only if it lasts.
func droppedTotal(t *testing.T, p *testProxy) (float64, map[string]float64) {
	t.Helper()
	for try := 0; ; try++ {
		sum, alias, by := droppedOnce(t, p)
		if alias == sum {
			return sum, by
		}
		if try == 100 {
			t.Errorf("mcbn_udp_dropped_total %v != mcbn_proxy_udp_dropped_datagrams_total %v", alias, sum)
			return sum, by
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func droppedOnce(t *testing.T, p *testProxy) (sum, alias float64, by map[string]float64) {
	t.Helper()
	mfs, err := p.met.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	by = map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "mcbn_udp_dropped_total" {
			for _, m := range mf.GetMetric() {
				alias += m.GetCounter().GetValue()
			}
		}
		if mf.GetName() != "mcbn_proxy_udp_dropped_datagrams_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					by[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum, alias, by
}

// kernelUDPDrops sums the receive drops the kernel counted
// (/proc/net/udp{,6}) on this process's UDP sockets: datagrams lost
// because a socket buffer was full, outside any code of ours.
func kernelUDPDrops(t *testing.T) (int64, bool) {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	for _, fd := range fds {
		l, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var total int64
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local rem st tx:rx tr:when retr uid timeout inode ref ptr drops
			if len(fs) < 13 || !inodes[fs[9]] {
				continue
			}
			n, _ := strconv.ParseInt(fs[12], 10, 64)
			total += n
		}
		fh.Close()
	}
	return total, true
}

// TestUDPBurstAccounted sends a burst of 5,000 datagrams of 1,200 bytes
// (checksummed, sequence-numbered) as fast as one socket can, through a
// real client and server proxy pair, to a sink, and checks that every
// datagram is either delivered intact or counted: by the proxies' drop
// metric, or by the kernel as a full socket buffer on one of this
// process's sockets. No corruption, no duplicate, and no loss inside our
// code that nobody counted.
func TestUDPBurstAccounted(t *testing.T) {
	if _, ok := kernelUDPDrops(t); !ok {
		t.Skip("no /proc: the kernel's drops cannot be counted here")
	}
	const total, size = 5000, 1200
	sink := startUDPSink(t)
	client, server := udpPair(t, randomKey(t), sink.pc.LocalAddr().String(), nil)
	c, err := net.Dial("udp", client.url("dns"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.UDPConn).SetWriteBuffer(udpSocketBuffer)
	mk := func(seq uint64, rng *rand.ChaCha8) []byte {
		d := make([]byte, size)
		binary.BigEndian.PutUint64(d, seq)
		rng.Read(d[8 : size-4])
		binary.BigEndian.PutUint32(d[size-4:], crc32.ChecksumIEEE(d[:size-4]))
		return d
	}
	rng := rand.NewChaCha8([32]byte{1})
	// Warm up: the first datagram starts the handshake; wait for it.
	warm := mk(1<<40, rng)
	waitFor(t, 10*time.Second, "first datagram through the pair", func() bool {
		c.Write(warm)
		time.Sleep(20 * time.Millisecond)
		return sink.good.Load() > 0
	})
	time.Sleep(100 * time.Millisecond)
	k0, _ := kernelUDPDrops(t)
	dc0, rc0 := droppedTotal(t, client)
	ds0, rs0 := droppedTotal(t, server)
	sb0 := rc0["socket_buffer"] + rs0["socket_buffer"]
	good0 := sink.good.Load()
	msgs := make([][]byte, total)
	for i := range msgs {
		msgs[i] = mk(uint64(i), rng)
	}
	sent := 0
	start := time.Now()
	for _, d := range msgs {
		if _, err := c.Write(d); err == nil {
			sent++
		}
	}
	sendTime := time.Since(start)
	var delivered, dropped, kernel int64
	var byReason string
	settled := func() bool {
		k, _ := kernelUDPDrops(t)
		dc, rc := droppedTotal(t, client)
		ds, rs := droppedTotal(t, server)
		delivered, kernel = sink.good.Load()-good0, k-k0
		// socket_buffer drops are the kernel's, also in kernel: count once.
		dropped = int64(dc-dc0+ds-ds0) - int64(rc["socket_buffer"]+rs["socket_buffer"]-sb0)
		byReason = fmt.Sprintf("client %v server %v", rc, rs)
		return delivered+dropped+kernel >= int64(sent)
	}
	// The server proxy copies its listener's counters into the metric
	// every second: wait (bounded) for everything to be accounted.
	deadline := time.Now().Add(15 * time.Second)
	for !settled() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1200 * time.Millisecond) // and for anything counted twice to show
	settled()
	t.Logf("burst: %d sent in %v (%.0f/s); %d delivered, %d dropped by the proxies (%s), %d dropped by the kernel (full socket buffers)",
		sent, sendTime.Round(time.Millisecond), float64(sent)/sendTime.Seconds(), delivered, dropped, byReason, kernel)
	if b, d := sink.bad.Load(), sink.dup.Load(); b != 0 || d != 0 {
		t.Fatalf("%d corrupted and %d duplicated datagrams", b, d)
	}
	if sent != total {
		t.Fatalf("only %d of %d writes succeeded", sent, total)
	}
	if delivered+dropped+kernel != int64(sent) {
		t.Fatalf("delivered %d + counted drops %d + kernel drops %d = %d, want %d sent: a loss nobody counted (or a drop counted twice)",
			delivered, dropped, kernel, delivered+dropped+kernel, sent)
	}
}

// socketDrops reads the kernel's drop counter of a socket: a socket with a
// small buffer that is sent 200 datagrams and never read reports drops,
// as many as /proc/net/udp shows for this process.
func TestUDPSocketDrops(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	n0, ok := socketDrops(pc)
	if !ok {
		t.Skip("this platform does not report socket drops")
	}
	k0, _ := kernelUDPDrops(t)
	pc.SetReadBuffer(1) // the kernel's minimum
	c, err := net.DialUDP("udp", nil, pc.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 1200)
	for i := 0; i < 200; i++ {
		c.Write(msg)
	}
	n1, _ := socketDrops(pc)
	k1, _ := kernelUDPDrops(t)
	if n1-n0 == 0 || int64(n1-n0) != k1-k0 {
		t.Fatalf("socketDrops counted %d, /proc/net/udp %d", n1-n0, k1-k0)
	}
}

// A datagram longer than a DTLS record carries (16 KiB) is dropped and
// counted as oversize, and the session goes on carrying the next ones (the
// unbatched path ended the whole session with tunnel_write_failed).
func TestUDPOversizeDatagramCounted(t *testing.T) {
	client, _ := udpPair(t, randomKey(t), udpEcho(t).String(), nil)
	c, err := net.Dial("udp", client.url("dns"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	small := []byte("hello through the pair")
	buf := make([]byte, 70000)
	echo := func(what string) {
		t.Helper()
		waitFor(t, 10*time.Second, what, func() bool {
			c.Write(small)
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, err := c.Read(buf)
			return err == nil && string(buf[:n]) == string(small)
		})
	}
	echo("first echo")
	sessions := metricValue(client.met.sessionsTotal.WithLabelValues("dns"))
	if _, err := c.Write(make([]byte, 20000)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "oversize drop counted", func() bool {
		_, by := droppedTotal(t, client)
		return by["oversize"] == 1
	})
	echo("echo after the oversize datagram")
	if _, by := droppedTotal(t, client); by["tunnel_write_failed"] != 0 {
		t.Fatalf("the oversize datagram failed the tunnel write: %v", by)
	}
	if now := metricValue(client.met.sessionsTotal.WithLabelValues("dns")); now != sessions {
		t.Fatalf("sessions %v -> %v: the oversize datagram ended the session", sessions, now)
	}
}
