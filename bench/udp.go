package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The udp section: datagrams through the DTLS pair (or directly) to the UDP
// echo backend. A datagram is delivered when its echo comes back, counted
// once by sequence number; everything else sent is lost.

const warmSeq = ^uint64(0) // sequence number of warm-up datagrams

type udpStats struct {
	offered   float64 // datagrams sent per second
	delivered float64 // echoes received per second
	loss      float64 // percent of sent datagrams never echoed
}

// udpRun sends size-byte datagrams to addr for d (at most maxN), at rate
// per second or as fast as possible when rate is 0.
func udpRun(addr string, size int, d time.Duration, rate, maxN int) (udpStats, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return udpStats{}, err
	}
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return udpStats{}, err
	}
	defer c.Close()
	c.SetReadBuffer(udpSockBuf)
	c.SetWriteBuffer(udpSockBuf)
	size = max(size, 8)

	seen := make([]bool, maxN)
	var delivered atomic.Int64
	var lastReply atomic.Int64
	warm := make(chan struct{})
	var warmOnce sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					return
				}
				if isClosed(err) {
					return
				}
				continue // ECONNREFUSED before the relay is up
			}
			if n < 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf[:8])
			if seq == warmSeq {
				warmOnce.Do(func() { close(warm) })
				continue
			}
			if seq < uint64(maxN) && !seen[seq] {
				seen[seq] = true
				delivered.Add(1)
				lastReply.Store(time.Now().UnixNano())
			}
		}
	}()

	msg := make([]byte, size)
	// Warm-up: the first datagram of a DTLS pair starts the handshake.
	binary.BigEndian.PutUint64(msg, warmSeq)
	deadline := time.Now().Add(15 * time.Second)
	for warmed := false; !warmed; {
		c.Write(msg)
		select {
		case <-warm:
			warmed = true
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				return udpStats{}, fmt.Errorf("no echo from %s within 15s", addr)
			}
		}
	}
	time.Sleep(100 * time.Millisecond) // let late warm-up echoes arrive

	sent := 0
	start := time.Now()
	for sent < maxN {
		now := time.Now()
		if now.Sub(start) >= d {
			break
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if ahead := due.Sub(now); ahead > 200*time.Microsecond {
				time.Sleep(ahead)
			}
		}
		binary.BigEndian.PutUint64(msg, uint64(sent))
		c.Write(msg) // a failed write is a lost datagram
		sent++
	}
	sendDur := time.Since(start)
	// Drain: wait until the echoes stop coming (bounded).
	for prev, quiet := int64(-1), 0; quiet < 3; {
		time.Sleep(100 * time.Millisecond)
		if cur := delivered.Load(); cur == prev {
			quiet++
		} else {
			prev, quiet = cur, 0
		}
		if time.Since(start) > d+10*time.Second {
			break
		}
	}
	c.SetReadDeadline(time.Now())
	<-done
	got := delivered.Load()
	if sent == 0 {
		return udpStats{}, fmt.Errorf("nothing sent")
	}
	st := udpStats{offered: float64(sent) / sendDur.Seconds(), loss: 100 * (1 - float64(got)/float64(sent))}
	if got > 0 {
		span := time.Duration(lastReply.Load() - start.UnixNano())
		st.delivered = float64(got) / max(span, sendDur).Seconds()
	}
	return st, nil
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

func runUDP(e *env, o options, res *Results) error {
	echo, err := startUDPEcho()
	if err != nil {
		return err
	}
	defer echo.close()
	targets := map[string]string{kindDirect: echo.addr()}
	kinds := []string{kindDirect}
	if o.has(kindMcbn) {
		r, err := e.startMcbn("udp", echo.addr(), tcpOptions{})
		if err != nil {
			return fmt.Errorf("mcbn DTLS pair: %w", err)
		}
		defer r.stop()
		targets[kindMcbn] = r.addr
		kinds = append(kinds, kindMcbn)
	}
	type key struct {
		kind string
		size int
		rate int
	}
	var cases []key
	for _, size := range []int{64, 1200} {
		for _, rate := range append(append([]int(nil), o.pacedRates...), 0) {
			for _, k := range kinds {
				cases = append(cases, key{k, size, rate})
			}
		}
	}
	mode := func(c key) string {
		if c.rate > 0 {
			return fmt.Sprintf("paced %d/s", c.rate)
		}
		return "unpaced"
	}
	name := func(c key) string { return fmt.Sprintf("%s, %d B, %s", c.kind, c.size, mode(c)) }
	deliv, loss, offered := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}
	errs := map[key]string{}
	for run := 0; run < o.runs; run++ {
		for _, c := range cases {
			st, err := udpRun(targets[c.kind], c.size, o.udpDur, c.rate, 5_000_000)
			if err != nil {
				errs[c] = err.Error()
				logf("udp %s run %d: %v", name(c), run+1, err)
				continue
			}
			logf("udp %s run %d: offered %.0f/s delivered %.0f/s loss %.2f%%", name(c), run+1, st.offered, st.delivered, st.loss)
			deliv[c] = append(deliv[c], st.delivered)
			loss[c] = append(loss[c], st.loss)
			offered[c] = append(offered[c], st.offered)
		}
	}
	for _, c := range cases {
		fs := []*Figure{newFigure("udp", name(c)+": delivered", "dgram/s", deliv[c])}
		if c.rate == 0 {
			fs = append(fs, newFigure("udp", name(c)+": offered", "dgram/s", offered[c]))
		}
		fs = append(fs, newFigure("udp", name(c)+": loss", "%", loss[c]))
		for _, f := range fs {
			if !f.ok() {
				f.Err = errs[c]
			}
			res.add(f)
		}
		if c.kind == kindMcbn {
			d := key{kindDirect, c.size, c.rate}
			res.addRatio("udp", fmt.Sprintf("ratio mcbn/direct, %d B, %s: delivered", c.size, mode(c)),
				name(c)+": delivered", name(d)+": delivered")
		}
	}
	return nil
}
