package proxy

import (
	"encoding/binary"
	"hash/crc32"
	"net"
	"runtime"
	"testing"
	"time"
)

// Bursts of checksummed datagrams through both proxies to an echo
// backend come back intact, none twice, with UDP offload on the tunnel
// hop; on Linux the sessions' records really went as GSO super-datagrams
// and reached the client coalesced (GRO). With offload off (as
// MCBN_UDP_OFFLOAD=0 sets it) the same traffic sends none.
func TestUDPOffloadTunnel(t *testing.T) {
	for _, on := range []bool{true, false} {
		name := "off"
		if on {
			name = "on"
		}
		t.Run(name, func(t *testing.T) {
			was := udpOffload
			udpOffload = on
			defer func() { udpOffload = was }()
			testUDPOffloadTunnel(t, on)
		})
	}
}

func testUDPOffloadTunnel(t *testing.T, on bool) {
	const bursts, burst, size = 40, 32, 1000
	idle := Duration(300 * time.Millisecond)
	client, server := udpPair(t, randomKey(t), udpEcho(t).String(), func(c, s *Route) {
		c.Timeouts.Idle, s.Timeouts.Idle = &idle, &idle
	})
	super0, coal0 := offloadTotals.superSent.Load(), offloadTotals.coalescedRecv.Load()
	c, err := net.Dial("udp", client.url("dns"))
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.UDPConn).SetReadBuffer(4 << 20)
	seen := make(map[uint64]bool)
	buf := make([]byte, 2048)
	msg := make([]byte, size)
	sent := 0
	for b := 0; b < bursts; b++ {
		for i := 0; i < burst; i++ {
			seq := uint64(b*burst + i)
			binary.BigEndian.PutUint64(msg, seq)
			for j := 12; j < size; j++ {
				msg[j] = byte(seq) ^ byte(j)
			}
			binary.BigEndian.PutUint32(msg[8:], crc32.ChecksumIEEE(msg[12:]))
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for got := 0; got < burst; got++ {
			n, err := c.Read(buf)
			if err != nil {
				break // counted as lost below
			}
			p := buf[:n]
			if n != size || binary.BigEndian.Uint32(p[8:]) != crc32.ChecksumIEEE(p[12:]) {
				t.Fatalf("a corrupt datagram of %d bytes", n)
			}
			seq := binary.BigEndian.Uint64(p)
			if seen[seq] {
				t.Fatalf("datagram %d came back twice", seq)
			}
			seen[seq] = true
		}
	}
	c.Close()
	if lost := sent - len(seen); lost > sent/100 {
		t.Fatalf("%d of %d datagrams lost", lost, sent)
	}
	// The sessions end when idle and add their counters before the
	// gauges go down.
	waitFor(t, 10*time.Second, "idle sessions to end", func() bool {
		return metricValue(client.met.sessionsOpen.WithLabelValues("dns")) == 0 &&
			metricValue(server.met.sessionsOpen.WithLabelValues("dns")) == 0
	})
	super, coal := offloadTotals.superSent.Load()-super0, offloadTotals.coalescedRecv.Load()-coal0
	t.Logf("offload %v: %d super-datagrams sent, %d coalesced received, %d of %d echoed", on, super, coal, len(seen), sent)
	switch {
	case !on && super+coal != 0:
		t.Fatalf("offload off, yet %d super-datagrams sent and %d coalesced received", super, coal)
	case on && runtime.GOOS == "linux" && (super == 0 || coal == 0):
		t.Fatalf("offload on, yet %d super-datagrams sent and %d coalesced received", super, coal)
	}
}
