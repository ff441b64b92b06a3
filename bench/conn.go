package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The conn section (issue 16): new connections per second, one client after
// another and 8 clients in parallel (a new connection per request), the
// time to first byte, and the CPU both relay processes spend per
// connection, for every pair, mcbn with preconnect off and on.

// kindMcbnPre is the default mcbn pair with preconnect: the client proxy
// keeps benchPreconnect tunnels ready, the server proxy dials its backend
// on a tunnel's first record.
const (
	kindMcbnPre     = "mcbn-preconnect"
	benchPreconnect = 8
	connParallel    = 8
)

// connRunParallel opens connections from n clients at once for d (at most
// maxN in all), each as connRun does; the TTFB percentiles are over all.
func connRunParallel(addr string, n int, d time.Duration, maxN int) (connStats, error) {
	var mu sync.Mutex
	var ttfb []time.Duration
	fails := 0
	var lastErr error
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := []byte{byte(g)}
			for i := 0; i < maxN/n && time.Since(start) < d; i++ {
				t0 := time.Now()
				err := oneByte(addr, b)
				el := time.Since(t0)
				mu.Lock()
				if err != nil {
					fails++
					lastErr = err
				} else {
					ttfb = append(ttfb, el)
				}
				stop := fails > 20 && fails*100 > len(ttfb)+fails
				mu.Unlock()
				if stop {
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if len(ttfb) == 0 {
		return connStats{}, fmt.Errorf("no connection succeeded: %v", lastErr)
	}
	if fails*100 > len(ttfb)+fails {
		return connStats{}, fmt.Errorf("%d of %d connections failed, last: %v", fails, len(ttfb)+fails, lastErr)
	}
	return connStats{rate: float64(len(ttfb)) / el.Seconds(), p50: percentile(ttfb, 0.5), p99: percentile(ttfb, 0.99)}, nil
}

// connRunPaced opens one connection every interval for d, as connRun does,
// and returns the TTFB percentiles: the latency of a connection that
// arrives when the relay is idle (health checks, clients without a pool).
func connRunPaced(addr string, interval, d time.Duration) (connStats, error) {
	var ttfb []time.Duration
	fails := 0
	var lastErr error
	b := []byte{0x42}
	start := time.Now()
	next := start
	for time.Since(start) < d {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		t0 := time.Now()
		if err := oneByte(addr, b); err != nil {
			fails++
			lastErr = err
			continue
		}
		ttfb = append(ttfb, time.Since(t0))
	}
	if len(ttfb) == 0 || fails*100 > len(ttfb)+fails {
		return connStats{}, fmt.Errorf("%d of %d connections failed, last: %v", fails, len(ttfb)+fails, lastErr)
	}
	return connStats{rate: float64(len(ttfb)) / time.Since(start).Seconds(), p50: percentile(ttfb, 0.5), p99: percentile(ttfb, 0.99)}, nil
}

// connPacedInterval is the pacing of connRunPaced: 100 connections/s.
const connPacedInterval = 10 * time.Millisecond

// procCPUAll is a process's CPU time so far with that of its children
// that ended (socat forks one per connection), from /proc.
func procCPUAll(p *proc) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseInt(f[k], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

const mcbnPreConf = `mode: %s
probe_interval: 0s
drain_timeout: 1s
log_level: warn
admin: %s
routes:
  - name: bench
    listen: %s
    connect: %s
    preconnect: %d
    psk:
      secrets: %s
    tls:
      min_version: "1.3"
      cipher_suites: [TLS_AES_128_GCM_SHA256]
`

// startMcbnPre: the mcbn pair with preconnect, from config files.
func (e *env) startMcbnPre(backend string) (*relay, error) {
	ports, err := freePorts("tcp", 4)
	if err != nil {
		return nil, err
	}
	sconf, cconf := e.path(fmt.Sprintf("mcbn-server-%d.yaml", ports[1])), e.path(fmt.Sprintf("mcbn-client-%d.yaml", ports[0]))
	if err := os.WriteFile(sconf, []byte(fmt.Sprintf(mcbnPreConf, "server", loop(ports[3]), "tls://"+loop(ports[1]), "tcp://"+backend, 1, e.secrets)), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cconf, []byte(fmt.Sprintf(mcbnPreConf, "client", loop(ports[2]), "tcp://"+loop(ports[0]), "tls://"+loop(ports[1]), benchPreconnect, e.secrets)), 0o600); err != nil {
		return nil, err
	}
	r := &relay{kind: kindMcbnPre, addr: loop(ports[0])}
	srv, err := startProc("mcbn proxy server (preconnect)", e.mcbn, "proxy", "server", "--config", sconf)
	if err != nil {
		return nil, err
	}
	cli, err := startProc("mcbn proxy client (preconnect)", e.mcbn, "proxy", "client", "--config", cconf)
	if err != nil {
		srv.stop()
		return nil, err
	}
	r.procs = []*proc{cli, srv}
	if err := waitReady(loop(ports[3]), 15*time.Second, srv); err != nil {
		r.stop()
		return nil, err
	}
	if err := waitReady(loop(ports[2]), 15*time.Second, cli); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

func runConn(e *env, o options, res *Results) error {
	if slices.Contains(o.kinds, kindMcbn) {
		o.kinds = append(slices.Clone(o.kinds), kindMcbnX25519, kindMcbnPre)
	}
	_, relays, cleanup, err := startEchoAndRelays(e, o.kinds, tcpOptions{})
	if err != nil {
		return err
	}
	defer cleanup()
	type series struct{ rate, p50, p99, prate, pp50, cpuCli, cpuSrv, idle50 []float64 }
	got := map[string]*series{}
	errs := map[string]string{}
	for _, k := range o.kinds {
		got[k] = &series{}
	}
	for run := 0; run < o.runs; run++ {
		for _, k := range o.kinds {
			s, r := got[k], relays[k]
			st, err := connRun(r.addr, o.latDur, 20000) // bounded: ephemeral ports
			if err != nil {
				errs[k] = err.Error()
				logf("conn %s run %d: %v", k, run+1, err)
				continue
			}
			var c0 []time.Duration
			for _, p := range r.procs {
				c0 = append(c0, procCPUAll(p))
			}
			pst, err := connRunParallel(r.addr, connParallel, o.latDur, 20000)
			if err != nil {
				errs[k] = err.Error()
				logf("conn %s run %d, %d parallel: %v", k, run+1, connParallel, err)
				continue
			}
			n := pst.rate * o.latDur.Seconds()
			cpu := make([]float64, 2)
			for i, p := range r.procs {
				cpu[i] = us(procCPUAll(p)-c0[i]) / n
			}
			ist, err := connRunPaced(r.addr, connPacedInterval, o.latDur)
			if err != nil {
				errs[k] = err.Error()
				logf("conn %s run %d, paced: %v", k, run+1, err)
				continue
			}
			logf("conn %s run %d: %.0f conn/s, TTFB p50 %.0f µs p99 %.0f µs; %d parallel: %.0f conn/s, TTFB p50 %.0f µs, CPU per connection client %.0f µs server %.0f µs; paced 100/s: TTFB p50 %.0f µs (load %s)",
				k, run+1, st.rate, st.p50, st.p99, connParallel, pst.rate, pst.p50, cpu[0], cpu[1], ist.p50, loadAvg())
			s.idle50 = append(s.idle50, ist.p50)
			s.rate, s.p50, s.p99 = append(s.rate, st.rate), append(s.p50, st.p50), append(s.p99, st.p99)
			s.prate, s.pp50 = append(s.prate, pst.rate), append(s.pp50, pst.p50)
			if len(r.procs) == 2 {
				s.cpuCli, s.cpuSrv = append(s.cpuCli, cpu[0]), append(s.cpuSrv, cpu[1])
			}
		}
	}
	par := fmt.Sprintf("%d parallel", connParallel)
	for _, k := range o.kinds {
		s := got[k]
		fs := []*Figure{
			newFigure("conn", k+": connections/s", "conn/s", s.rate),
			newFigure("conn", k+": time to first byte p50", "µs", s.p50),
			newFigure("conn", k+": time to first byte p99", "µs", s.p99),
			newFigure("conn", k+", "+par+": connections/s", "conn/s", s.prate),
			newFigure("conn", k+", "+par+": time to first byte p50", "µs", s.pp50),
			newFigure("conn", k+", paced 100/s: time to first byte p50", "µs", s.idle50),
		}
		if k != kindDirect {
			fs = append(fs, newFigure("conn", k+", "+par+": CPU per connection, client side", "µs", s.cpuCli),
				newFigure("conn", k+", "+par+": CPU per connection, server side", "µs", s.cpuSrv))
		}
		for _, f := range fs {
			if !f.ok() {
				f.Err = errs[k]
				if f.Err == "" {
					f.Err = "not measured"
				}
			}
			res.add(f)
		}
	}
	for _, k := range []string{kindMcbn, kindMcbnX25519, kindMcbnPre, kindMcbn1CPU} {
		res.addRatio("conn", "ratio "+k+"/stunnel: connections/s", k+": connections/s", kindStunnel+": connections/s")
		res.addRatio("conn", "ratio "+k+"/stunnel: time to first byte p50", k+": time to first byte p50", kindStunnel+": time to first byte p50")
		res.addRatio("conn", "ratio "+k+"/stunnel, "+par+": connections/s", k+", "+par+": connections/s", kindStunnel+", "+par+": connections/s")
	}
	res.addRatio("conn", "ratio "+kindMcbnPre+"/socat, paced 100/s: time to first byte p50", kindMcbnPre+", paced 100/s: time to first byte p50", kindSocat+", paced 100/s: time to first byte p50")
	res.addRatio("conn", "ratio "+kindMcbnPre+"/socat: time to first byte p50", kindMcbnPre+": time to first byte p50", kindSocat+": time to first byte p50")
	return nil
}

// inProcessPairPre is inProcessPair with preconnect on both routes when
// pre > 0 (the profile of the connection path).
func inProcessPairPre(e *env, backend string, maxConns, pre int) (string, func(), error) {
	ports, err := freePorts("tcp", 2)
	if err != nil {
		return "", nil, err
	}
	spre := min(pre, 1)
	confs := []string{
		fmt.Sprintf(mcbnPreConf, "server", "", "tls://"+loop(ports[1]), "tcp://"+backend, spre, e.secrets),
		fmt.Sprintf(mcbnPreConf, "client", "", "tcp://"+loop(ports[0]), "tls://"+loop(ports[1]), pre, e.secrets),
	}
	for i, c := range confs {
		confs[i] = strings.Replace(c, "admin: \n", "", 1) + fmt.Sprintf("    limits:\n      max_connections: %d\n", maxConns)
	}
	stop, err := startInProcess(confs...)
	if err != nil {
		return "", nil, err
	}
	addr := loop(ports[0])
	if err := waitTCP(addr, 5*time.Second, nil); err != nil {
		stop()
		return "", nil, err
	}
	return addr, stop, nil
}
