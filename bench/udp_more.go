package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// More of the udp section (issue 12): 2× overload, 1,000 concurrent
// sessions, and the CPU the bench process itself spends (sender, receiver
// and echo), which is all the work the direct path has.

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procAdmin is the --admin address a relay process was started with.
func procAdmin(p *proc) string {
	args := p.cmd.Args
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--admin" {
			return args[i+1]
		}
	}
	return ""
}

// scrapeUDPDrops sums a proxy's mcbn_udp_dropped_total by reason (or,
// from a proxy older than that name, mcbn_proxy_udp_dropped_datagrams_total).
func scrapeUDPDrops(admin string) (map[string]float64, error) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, old := map[string]float64{}, map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		to := out
		switch {
		case strings.HasPrefix(l, "mcbn_udp_dropped_total{"):
		case strings.HasPrefix(l, "mcbn_proxy_udp_dropped_datagrams_total{"):
			to = old
		default:
			continue
		}
		i := strings.Index(l, `reason="`)
		j := strings.LastIndexByte(l, ' ')
		if i < 0 || j < 0 {
			continue
		}
		reason := l[i+8:]
		reason = reason[:strings.IndexByte(reason, '"')]
		v, _ := strconv.ParseFloat(l[j+1:], 64)
		to[reason] += v
	}
	if len(out) == 0 {
		out = old
	}
	return out, sc.Err()
}

// pairDrops is the drops counted by both proxies of the pair, by
// "side/reason".
func pairDrops(pair *relay) map[string]float64 {
	out := map[string]float64{}
	for i, p := range pair.procs {
		side := "client"
		if i > 0 {
			side = "server"
		}
		d, err := scrapeUDPDrops(procAdmin(p))
		if err != nil {
			continue
		}
		for r, v := range d {
			out[side+"/"+r] += v
		}
	}
	return out
}

func dropDelta(before, after map[string]float64) (float64, string) {
	var total float64
	var parts []string
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			total += d
			parts = append(parts, fmt.Sprintf("%s %.0f", k, d))
		}
	}
	return total, strings.Join(parts, ", ")
}

// findSustainable searches the highest paced rate of 1,200-byte datagrams
// the pair carries with at most 2 % loss: runs of d, doubling from
// 2,500/s until a run loses more (halving instead if the first does), then
// three bisections. The delivered rate of the best run is the sustainable
// rate. (On a shared machine a short run can lose a few datagrams to a
// scheduling stall at any rate; 2 % keeps the search from stopping at such
// noise.)
func findSustainable(addr string, d time.Duration) (float64, error) {
	probe := func(rate int) (udpStats, error) {
		return udpRun(addr, 1200, d, rate, 5_000_000)
	}
	var best udpStats
	lo, hi := 0, 0
	for rate := 2500; rate <= 400_000; rate *= 2 {
		st, err := probe(rate)
		if err != nil {
			return 0, err
		}
		if st.loss > 2 {
			hi = rate
			break
		}
		lo, best = rate, st
	}
	for rate := hi / 2; lo == 0 && rate >= 300; rate /= 2 {
		st, err := probe(rate)
		if err != nil {
			return 0, err
		}
		if st.loss > 2 {
			hi = rate
		} else {
			lo, best = rate, st
		}
	}
	for i := 0; i < 3 && lo > 0 && hi > 0 && hi-lo > lo/20; i++ {
		mid := (lo + hi) / 2
		st, err := probe(mid)
		if err != nil {
			return 0, err
		}
		if st.loss > 2 {
			hi = mid
		} else {
			lo, best = mid, st
		}
	}
	logf("udp sustainable rate (1200 B, <= 2 %% loss): %d/s offered, %.0f/s delivered", lo, best.delivered)
	return best.delivered, nil
}

// runUDPOverload finds the pair's sustainable rate (findSustainable), then
// offers 1,200-byte datagrams paced at twice it and reports what is
// delivered as a fraction of the sustainable rate, and how many drops the
// proxies counted.
func runUDPOverload(o options, res *Results, pair *relay) {
	const name = "mcbn, 1200 B, paced at 2× the sustainable rate"
	var frac, counted, offered, sust []float64
	var lastErr, reasons string
	for run := 0; run < o.runs; run++ {
		sustainable, err := findSustainable(pair.addr, min(2*time.Second, o.udpDur))
		if err != nil || sustainable <= 0 {
			if err != nil {
				lastErr = err.Error()
			}
			continue
		}
		rate := int(2 * sustainable)
		before := pairDrops(pair)
		st, err := udpRun(pair.addr, 1200, o.udpDur, rate, 5_000_000)
		if err != nil {
			lastErr = err.Error()
			continue
		}
		time.Sleep(1200 * time.Millisecond) // the server proxy syncs its listener's counters every second
		d, why := dropDelta(before, pairDrops(pair))
		reasons = why
		logf("udp overload run %d: offered %.0f/s (2× %.0f) delivered %.0f/s = %.2f× sustainable; drops counted %.0f (%s)",
			run+1, st.offered, sustainable, st.delivered, st.delivered/sustainable, d, why)
		sust = append(sust, sustainable)
		frac = append(frac, st.delivered/sustainable)
		counted = append(counted, d)
		offered = append(offered, st.offered)
	}
	fs := []*Figure{
		newFigure("udp", "mcbn, 1200 B: sustainable rate (highest paced rate with <= 2 % loss, delivered)", "dgram/s", sust),
		newFigure("udp", name+": offered", "dgram/s", offered),
	}
	if slices.ContainsFunc(counted, func(v float64) bool { return v > 0 }) {
		fs = append(fs, newFigure("udp", name+": delivered / sustainable", "×", frac),
			newFigure("udp", name+": drops counted by the proxies (last run: "+reasons+")", "dgram", counted))
	} else {
		fs = append(fs, newFigure("udp", name+": delivered / sustainable (no drops counted)", "×", frac))
	}
	for _, f := range fs {
		if !f.ok() {
			f.Err = lastErr
		}
		res.add(f)
	}
}

// rssKiB is a process's resident memory.
func rssKiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				return v
			}
		}
	}
	return 0
}

// runUDPSessions opens n UDP sockets to the client proxy (n sessions and
// n DTLS handshakes), has each send a datagram until its echo comes back
// (at most 5 tries, a second apart), then reports how many echoed, and
// the resident memory the two proxies grew by per session while the
// sessions sit idle.
func runUDPSessions(res *Results, pair *relay, n int) {
	const name = "mcbn, 1,000 concurrent UDP sessions through one client proxy"
	rss := func() float64 {
		var t float64
		for _, p := range pair.procs {
			t += rssKiB(p.pid())
		}
		return t
	}
	time.Sleep(500 * time.Millisecond)
	rss0 := rss()
	conns := make([]*net.UDPConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	raddr, err := net.ResolveUDPAddr("udp", pair.addr)
	if err != nil {
		f := newFigure("udp", name+": sessions echoing", "sessions", nil)
		f.Err = err.Error()
		res.add(f)
		return
	}
	for i := 0; i < n; i++ {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	echoed := make([]bool, len(conns))
	got := 0
	buf := make([]byte, 64)
	start := time.Now()
	for try := 0; try < 5 && got < len(conns); try++ {
		msg := make([]byte, 16)
		for i, c := range conns {
			if !echoed[i] {
				binary.BigEndian.PutUint64(msg, uint64(i))
				c.Write(msg)
			}
		}
		deadline := time.Now().Add(time.Second)
		for i, c := range conns {
			if echoed[i] {
				continue
			}
			c.SetReadDeadline(deadline)
			for {
				m, err := c.Read(buf)
				if err != nil {
					break
				}
				if m >= 8 && binary.BigEndian.Uint64(buf) == uint64(i) {
					echoed[i] = true
					got++
					break
				}
			}
		}
	}
	took := time.Since(start)
	time.Sleep(time.Second) // idle
	rss1 := rss()
	logf("udp sessions: %d of %d echoed within %v; proxies' RSS %.0f -> %.0f KiB", got, n, took.Round(time.Millisecond), rss0, rss1)
	res.add(newFigure("udp", fmt.Sprintf("%s: sessions echoing (of %d)", name, n), "sessions", []float64{float64(got)}))
	res.add(newFigure("udp", name+": time until all echoed (or gave up)", "s", []float64{took.Seconds()}))
	if got > 0 && rss1 > rss0 {
		res.add(newFigure("udp", name+": resident memory of both proxies per idle session", "KiB", []float64{(rss1 - rss0) / float64(got)}))
	}
}
