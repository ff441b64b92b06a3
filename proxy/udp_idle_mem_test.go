package proxy

import (
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestUDPIdleSessionMemory opens 200 UDP sessions through a client and a
// server proxy (in this process), has each echo a burst of datagrams, then
// leaves them idle and measures the heap and stacks both proxies keep per
// session. The batched paths take their buffers from a shared free list
// only while a batch is handled, so an idle session must hold no batch
// buffer (16 × 16 KiB or more each): the bound, 96 KiB per session for
// both halves, is well under one such buffer per session per direction.
func TestUDPIdleSessionMemory(t *testing.T) {
	const sessions, burst = 200, 20
	raiseFileLimit(t, 8*sessions)
	client, _ := udpPair(t, randomKey(t), udpEcho(t).String(), func(c, s *Route) {
		c.Timeouts.Handshake = Duration(2 * time.Minute)
	})
	addr, err := net.ResolveUDPAddr("udp", client.url("dns"))
	if err != nil {
		t.Fatal(err)
	}
	measure := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	base := measure()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	conns := make([]*net.UDPConn, sessions)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	buf := make([]byte, 2048)
	msg := make([]byte, 1200)
	for i, c := range conns {
		binary.BigEndian.PutUint64(msg, uint64(i))
		got := 0
		deadline := time.Now().Add(30 * time.Second)
		for got == 0 && time.Now().Before(deadline) {
			for j := 0; j < burst; j++ {
				c.Write(msg)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			for got < burst {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				if n == len(msg) && binary.BigEndian.Uint64(buf) == uint64(i) {
					got++
				}
			}
		}
		if got == 0 {
			t.Fatalf("session %d: no echo", i)
		}
	}
	time.Sleep(200 * time.Millisecond)
	per := float64(measure()-base) / sessions / 1024
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	t.Logf("allocated %.1f KiB per session (%.1f objects); heap from the OS %.0f -> %.0f KiB", float64(m1.TotalAlloc-m0.TotalAlloc)/sessions/1024,
		float64(m1.Mallocs-m0.Mallocs)/sessions, float64(m0.HeapSys-m0.HeapReleased)/1024, float64(m1.HeapSys-m1.HeapReleased)/1024)
	t.Logf("UDP: %.1f KiB of heap and stacks per idle session (client and server proxy halves together, %d sessions)", per, sessions)
	if per > 96 {
		t.Fatalf("%.1f KiB per idle UDP session, want at most 96", per)
	}
}
