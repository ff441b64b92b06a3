package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/mcbn/mcbn/tlspsk"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
	got       int64   // echoes received
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

	// The sender hands the kernel up to senderBatch datagrams per sendmmsg
	// (what a high-rate UDP application does), so that on two cores it can
	// offer twice the pair's sustainable rate: one write per datagram
	// topped out near 1.5× while the proxies ran. Paced, it sends what is
	// due, so bursts stay at the ~200 µs sleep granularity.
	const senderBatch = 32
	out := tlspsk.NewUDPBatch(c, senderBatch, 0, false)
	msgs := make([]tlspsk.UDPMsg, senderBatch)
	for i := range msgs {
		msgs[i].B = make([]byte, size)
	}
	sent := 0
	start := time.Now()
	for sent < maxN {
		now := time.Now()
		if now.Sub(start) >= d {
			break
		}
		k := senderBatch
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / float64(rate) * float64(time.Second)))
			if ahead := due.Sub(now); ahead > 200*time.Microsecond {
				time.Sleep(ahead)
				now = time.Now()
			}
			k = int(float64(now.Sub(start))/float64(time.Second)*float64(rate)) - sent + 1
			k = max(1, min(k, senderBatch))
		}
		k = min(k, maxN-sent)
		for i := 0; i < k; i++ {
			binary.BigEndian.PutUint64(msgs[i].B, uint64(sent+i))
		}
		out.Send(msgs[:k]) // a datagram the kernel refused is a lost one
		sent += k
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
	st := udpStats{offered: float64(sent) / sendDur.Seconds(), loss: 100 * (1 - float64(got)/float64(sent)), got: got}
	if got > 0 {
		span := time.Duration(lastReply.Load() - start.UnixNano())
		st.delivered = float64(got) / max(span, sendDur).Seconds()
	}
	return st, nil
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// isMcbnPair: the pairs whose processes the bench can read (CPU, drop
// metrics). socat's per-peer children are not in its relay's procs, and
// their CPU reaches the parent only as they exit: no CPU figure for socat.
func isMcbnPair(kind string) bool {
	return kind == kindMcbn || kind == kindMcbn1CPU || kind == kindMcbnChaCha
}

func runUDP(e *env, o options, res *Results) error {
	echo, err := startUDPEcho()
	if err != nil {
		return err
	}
	defer echo.close()
	targets := map[string]string{kindDirect: echo.addr()}
	kinds := []string{kindDirect}
	pairs := map[string]*relay{}
	if o.has(kindSocat) {
		r, err := e.startSocatUDP(echo.addr())
		if err != nil {
			return fmt.Errorf("socat UDP relay pair: %w", err)
		}
		defer r.stop()
		pairs[kindSocat] = r
		targets[kindSocat] = r.addr
		kinds = append(kinds, kindSocat)
	}
	for _, k := range []string{kindMcbn, kindMcbn1CPU, kindMcbnChaCha} {
		if !o.has(k) {
			continue
		}
		opt := tcpOptions{}
		switch k {
		case kindMcbn1CPU:
			opt.procs = 1
		case kindMcbnChaCha:
			opt.suites = "ECDHE-PSK-CHACHA20-POLY1305"
		}
		r, err := e.startMcbnKind(k, "udp", echo.addr(), opt)
		if err != nil {
			return fmt.Errorf("%s DTLS pair: %w", k, err)
		}
		defer r.stop()
		pairs[k] = r
		targets[k] = r.addr
		kinds = append(kinds, k)
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
	deliv, loss, offered, goodput, cpu := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}, map[key][]float64{}, map[key][]float64{}
	selfCPUPer := map[key][]float64{} // the bench process: sender, receiver, echo
	errs := map[key]string{}
	for run := 0; run < o.runs; run++ {
		for _, c := range cases {
			var cpu0 time.Duration
			pair := pairs[c.kind]
			// The drops are scraped outside the CPU readings, so that
			// serving /metrics is not counted as datagram work.
			var drops0 map[string]float64
			if isMcbnPair(c.kind) {
				drops0 = pairDrops(pair)
				cpu0 = procsCPU(pair.procs)
			}
			self0 := selfCPU()
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
			if c.rate == 0 {
				goodput[c] = append(goodput[c], st.delivered*float64(c.size)*8/1e6)
			}
			if d := selfCPU() - self0; d > 0 && st.got > 0 {
				selfCPUPer[c] = append(selfCPUPer[c], float64(d.Microseconds())/float64(st.got))
			}
			if isMcbnPair(c.kind) && st.got > 0 {
				if d := procsCPU(pair.procs) - cpu0; d > 0 {
					cpu[c] = append(cpu[c], float64(d.Microseconds())/float64(st.got))
				}
			}
			if drops0 != nil {
				if n, parts := dropDelta(drops0, pairDrops(pair)); n > 0 {
					logf("udp %s run %d: drops counted by the proxies: %s", name(c), run+1, parts)
				}
			}
		}
	}
	for _, c := range cases {
		fs := []*Figure{newFigure("udp", name(c)+": delivered", "dgram/s", deliv[c])}
		if c.rate == 0 {
			fs = append(fs, newFigure("udp", name(c)+": offered", "dgram/s", offered[c]),
				newFigure("udp", name(c)+": goodput (echoed)", "Mbit/s", goodput[c]))
		}
		fs = append(fs, newFigure("udp", name(c)+": loss", "%", loss[c]),
			newFigure("udp", name(c)+": CPU of the bench process (sender, receiver, echo) per echoed datagram", "µs", selfCPUPer[c]))
		if isMcbnPair(c.kind) {
			fs = append(fs, newFigure("udp", name(c)+": CPU of both proxies per echoed datagram", "µs", cpu[c]))
		}
		for _, f := range fs {
			if !f.ok() {
				f.Err = errs[c]
			}
			res.add(f)
		}
		if pairs[c.kind] != nil {
			d := key{kindDirect, c.size, c.rate}
			res.addRatio("udp", fmt.Sprintf("ratio %s/direct, %d B, %s: delivered", c.kind, c.size, mode(c)),
				name(c)+": delivered", name(d)+": delivered")
		}
	}
	if pair := pairs[kindMcbn]; pair != nil {
		runUDPOverload(o, res, pair)
		// A fresh pair: the cases above left sessions open (each run is a
		// new local socket), and with them 1,000 more would pass the
		// client route's max_sessions (1,024).
		if fresh, err := e.startMcbn("udp", echo.addr(), tcpOptions{}); err != nil {
			f := newFigure("udp", "mcbn, 1,000 concurrent UDP sessions through one client proxy: sessions echoing (of 1000)", "sessions", nil)
			f.Err = err.Error()
			res.add(f)
		} else {
			runUDPSessions(res, fresh, 1000)
			fresh.stop()
		}
		runOpenSSLDTLS(e, o, res)
	}
	return nil
}

// openSSLDTLSFigure is the one-way goodput into openssl s_server.
const openSSLDTLSFigure = "openssl s_server -dtls1_2 -psk fed by the mcbn client proxy, 1200 B, unpaced: goodput (one way)"

// runOpenSSLDTLS measures a single OpenSSL DTLS endpoint: 1,200-byte
// datagrams, unpaced, into the mcbn client proxy and on to
// `openssl s_server -dtls1_2 -nocert -psk` (PSK-AES128-GCM-SHA256), whose
// stdout (the plaintext it receives) is counted. It is one way, where the
// pair's figures are echoed (both ways through both proxies).
func runOpenSSLDTLS(e *env, o options, res *Results) {
	var runs []float64
	var lastErr string
	for run := 0; run < o.runs; run++ {
		mbit, err := openSSLDTLSRun(e, o.udpDur)
		if err != nil {
			lastErr = err.Error()
			logf("udp openssl s_server run %d: %v", run+1, err)
			continue
		}
		logf("udp openssl s_server run %d: %.0f Mbit/s", run+1, mbit)
		runs = append(runs, mbit)
	}
	f := newFigure("udp", openSSLDTLSFigure, "Mbit/s", runs)
	if !f.ok() {
		f.Err = lastErr
	}
	res.add(f)
}

// countWriter counts what a process writes.
type countWriter struct{ n atomic.Int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

func openSSLDTLSRun(e *env, d time.Duration) (float64, error) {
	if _, err := exec.LookPath("openssl"); err != nil {
		return 0, errors.New("openssl not found")
	}
	secret, err := os.ReadFile(e.secrets)
	if err != nil {
		return 0, err
	}
	_, keyHex, _ := strings.Cut(strings.TrimSpace(string(secret)), ":")
	ports, err := freePorts("udp", 2)
	if err != nil {
		return 0, err
	}
	admins, err := freePorts("tcp", 1)
	if err != nil {
		return 0, err
	}
	out := &countWriter{}
	srv := exec.Command("openssl", "s_server", "-dtls1_2", "-nocert", "-psk", keyHex, "-quiet",
		"-cipher", "PSK-AES128-GCM-SHA256", "-accept", strconv.Itoa(ports[1]))
	srv.Stdout, srv.Stderr = out, io.Discard
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := srv.StdinPipe() // s_server ends at EOF on stdin
	if err != nil {
		return 0, err
	}
	defer stdin.Close()
	if err := srv.Start(); err != nil {
		return 0, fmt.Errorf("start openssl s_server: %w", err)
	}
	defer func() { syscall.Kill(-srv.Process.Pid, syscall.SIGKILL); srv.Wait() }()
	cli, err := startProc("mcbn proxy client (to openssl)", e.mcbn, "proxy", "client",
		"--listen", "udp://"+loop(ports[0]), "--connect", "dtls://"+loop(ports[1]), "--admin", loop(admins[0]),
		"--psk-secrets", e.secrets, "--probe-interval", "0s", "--drain-timeout", "1s",
		"--dtls-cipher-suites", "PSK-AES128-GCM-SHA256")
	if err != nil {
		return 0, err
	}
	defer cli.stop()
	if err := waitReady(loop(admins[0]), 15*time.Second, cli); err != nil {
		return 0, err
	}
	c, err := net.Dial("udp", loop(ports[0]))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	msg := make([]byte, 1200)
	// Warm-up: the first datagram starts the handshake; wait for bytes.
	deadline := time.Now().Add(15 * time.Second)
	for out.n.Load() == 0 {
		c.Write(msg)
		time.Sleep(100 * time.Millisecond)
		if time.Now().After(deadline) {
			return 0, errors.New("nothing reached openssl s_server within 15s")
		}
	}
	time.Sleep(200 * time.Millisecond)
	before := out.n.Load()
	start := time.Now()
	for time.Since(start) < d {
		for i := 0; i < 64; i++ {
			c.Write(msg)
		}
	}
	sendDur := time.Since(start)
	// Let the queues drain (bounded), then count.
	for prev, quiet := int64(-1), 0; quiet < 3 && time.Since(start) < d+5*time.Second; {
		time.Sleep(100 * time.Millisecond)
		if cur := out.n.Load(); cur == prev {
			quiet++
		} else {
			prev, quiet = cur, 0
		}
	}
	got := out.n.Load() - before
	return float64(got) * 8 / 1e6 / sendDur.Seconds(), nil
}

// procsCPU is the user and system CPU time the processes used so far
// (from /proc; zero where it is not available).
func procsCPU(ps []*proc) time.Duration {
	var total time.Duration
	for _, p := range ps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
		if err != nil {
			continue
		}
		// Fields after the command name (which may hold spaces): utime is
		// the 14th field, stime the 15th, in clock ticks (100 per second).
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * 10 * time.Millisecond
	}
	return total
}
