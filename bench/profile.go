package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcbn/mcbn/proxy"
)

// --profile: the mcbn client and server proxies run inside the bench
// process (the same proxy package the binary runs), so pprof sees them:
//
//	bulk-cpu.pprof     CPU during iperf3 1-stream then 4-stream transfers
//	bulk-allocs.pprof  allocations (cumulative) after those transfers
//	idle-heap.pprof    live heap with idle tunnels open (after a GC)
//	idle-goroutines.txt goroutine profile (debug=1) with idle tunnels open
//	udp-cpu.pprof      CPU of the DTLS pair, 1,200-byte datagrams, paced then unpaced
//	gather-cpu.pprof   CPU of 30 gatherings, T=3 of N=17, all in process
//	summary.txt        bytes, allocations per MiB, heap and stack per tunnel

// inProcessPair starts an mcbn server and client proxy in this process in
// front of backend and returns the client's listen address.
func inProcessPair(e *env, backend string, maxConns int) (string, func(), error) {
	return inProcessPairOf(e, "tcp", backend, maxConns, "")
}

// inProcessPairOf starts the pair for transport "tcp" (TLS) or "udp"
// (DTLS); admin, when set, is the client proxy's admin address.
func inProcessPairOf(e *env, transport, backend string, maxConns int, admin string) (string, func(), error) {
	ports, err := freePorts(transport, 2)
	if err != nil {
		return "", nil, err
	}
	plain, tunnel := "tcp", "tls"
	if transport == "udp" {
		plain, tunnel = "udp", "dtls"
	}
	cfgText := func(mode, listen, connect string) string {
		t := fmt.Sprintf(`mode: %s
log_level: warn
probe_interval: 0s
`, mode)
		if mode == "client" && admin != "" {
			t += "admin: " + admin + "\n"
		}
		t += fmt.Sprintf(`routes:
  - name: bench
    listen: %s
    connect: %s
    psk:
      secrets: %s
`, listen, connect, e.secrets)
		if transport == "tcp" {
			t += fmt.Sprintf(`    tls:
      min_version: "1.3"
      cipher_suites: [TLS_AES_128_GCM_SHA256]
    limits:
      max_connections: %d
`, maxConns)
		}
		return t
	}
	stop, err := startInProcess(
		cfgText("server", tunnel+"://"+loop(ports[1]), plain+"://"+backend),
		cfgText("client", plain+"://"+loop(ports[0]), tunnel+"://"+loop(ports[1])))
	if err != nil {
		return "", nil, err
	}
	addr := loop(ports[0])
	if transport == "tcp" {
		if err := waitTCP(addr, 5*time.Second, nil); err != nil {
			stop()
			return "", nil, err
		}
	}
	return addr, stop, nil
}

func runProfile(e *env, o options) error {
	dir := o.profileDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	summary, err := os.Create(filepath.Join(dir, "summary.txt"))
	if err != nil {
		return err
	}
	defer summary.Close()
	out := io.MultiWriter(summary, os.Stdout)
	if slices.Contains(o.only, "conn") { // --only conn: the connection path alone
		return profileConn(e, o, dir, out)
	}
	if err := profileBulk(e, o, dir, out); err != nil {
		return err
	}
	if err := profileIdle(e, o, dir, out); err != nil {
		return err
	}
	if err := profileUDP(e, o, dir, out); err != nil {
		return err
	}
	return profileGather(o, dir, out)
}

// profileUDP profiles the DTLS pair under 1,200-byte datagrams, paced at
// the highest --paced-rates rate and then unpaced, and prints the client
// proxy's datagram counters (where drops happen).
func profileUDP(e *env, o options, dir string, out io.Writer) error {
	echo, err := startUDPEcho()
	if err != nil {
		return err
	}
	defer echo.close()
	admin, err := freePort("tcp")
	if err != nil {
		return err
	}
	addr, stop, err := inProcessPairOf(e, "udp", echo.addr(), 0, loop(admin))
	if err != nil {
		return err
	}
	defer stop()
	f, err := os.Create(filepath.Join(dir, "udp-cpu.pprof"))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	for _, rate := range []int{slices.Max(o.pacedRates), 0} {
		st, err := udpRun(addr, 1200, 2*o.udpDur, rate, 5_000_000)
		if err != nil {
			pprof.StopCPUProfile()
			return err
		}
		fmt.Fprintf(out, "udp 1200 B, rate %d (0: unpaced): offered %.0f/s delivered %.0f/s loss %.1f%%\n", rate, st.offered, st.delivered, st.loss)
	}
	pprof.StopCPUProfile()
	resp, err := http.Get("http://" + loop(admin) + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "mcbn_proxy_udp_") {
			fmt.Fprintf(out, "client proxy: %s\n", l)
		}
	}
	return nil
}

// profileGather profiles repeated gatherings from the largest group (the
// shareholders and the dev attester share the process, as in the gather
// section).
func profileGather(o options, dir string, out io.Writer) error {
	f, err := os.Create(filepath.Join(dir, "gather-cpu.pprof"))
	if err != nil {
		return err
	}
	defer f.Close()
	var res Results
	o.gatherN = o.gatherN[len(o.gatherN)-1:]
	o.gatherRuns = 30
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	err = runGather(o, &res)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	for _, g := range res.Figures {
		fmt.Fprintf(out, "gather %s: median %.1f ms over %d runs (profiled)\n", g.Name, g.Median, len(g.Runs))
	}
	return nil
}

func profileBulk(e *env, o options, dir string, out io.Writer) error {
	port, err := freePort("tcp")
	if err != nil {
		return err
	}
	srv, err := startProc("iperf3 server", "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return err
	}
	defer srv.stop()
	if err := waitTCP(loop(port), 10*time.Second, srv); err != nil {
		return err
	}
	addr, stop, err := inProcessPair(e, loop(port), 100)
	if err != nil {
		return err
	}
	defer stop()
	f, err := os.Create(filepath.Join(dir, "bulk-cpu.pprof"))
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	var bits float64
	for _, s := range []int{1, 4} {
		g, err := iperf3(addr, 2*o.bulkDur, s)
		if err != nil {
			pprof.StopCPUProfile()
			return err
		}
		bits += g * 1e9 * (2 * o.bulkDur).Seconds()
		fmt.Fprintf(out, "in-process bulk, %s: %.2f Gbit/s\n", streamName(s), g)
	}
	pprof.StopCPUProfile()
	runtime.ReadMemStats(&m1)
	mib := bits / 8 / (1 << 20)
	fmt.Fprintf(out, "bulk: %.0f MiB carried (each byte passes both proxies), %d allocations (%.1f per MiB), %.0f KiB allocated (%.1f KiB per MiB)\n",
		mib, m1.Mallocs-m0.Mallocs, float64(m1.Mallocs-m0.Mallocs)/mib,
		float64(m1.TotalAlloc-m0.TotalAlloc)/1024, float64(m1.TotalAlloc-m0.TotalAlloc)/1024/mib)
	return writeProfile("allocs", filepath.Join(dir, "bulk-allocs.pprof"), 0)
}

func profileIdle(e *env, o options, dir string, out io.Writer) error {
	n := min(o.tunnels, 2000)
	echo, err := startTCPEcho()
	if err != nil {
		return err
	}
	defer echo.close()
	addr, stop, err := inProcessPair(e, echo.addr(), n+100)
	if err != nil {
		return err
	}
	defer stop()
	if err := oneByte(addr, []byte{1}); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	g0 := runtime.NumGoroutine()
	conns, err := openTunnels(addr, n)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	time.Sleep(time.Second)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	g1 := runtime.NumGoroutine()
	per := func(a, b uint64) float64 { return (float64(b) - float64(a)) / float64(n) / 1024 }
	fmt.Fprintf(out, "idle: %d tunnels through both in-process proxies plus the echo backend (1 goroutine, 4 KiB buffer per connection)\n", n)
	fmt.Fprintf(out, "idle: goroutines per tunnel %.2f; heap in use %.1f KiB, stacks %.1f KiB per tunnel; heap objects %.0f per tunnel\n",
		float64(g1-g0)/float64(n), per(m0.HeapInuse, m1.HeapInuse), per(m0.StackInuse, m1.StackInuse),
		(float64(m1.HeapObjects)-float64(m0.HeapObjects))/float64(n))
	if err := writeProfile("heap", filepath.Join(dir, "idle-heap.pprof"), 0); err != nil {
		return err
	}
	return writeProfile("goroutine", filepath.Join(dir, "idle-goroutines.txt"), 1)
}

func writeProfile(name, path string, debug int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup(name).WriteTo(f, debug)
}

// startInProcess parses and starts one proxy per config text, in order
// (server first), and returns a func that closes them all. On an error
// the ones already started are closed.
func startInProcess(confs ...string) (stop func(), err error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var started []*proxy.Proxy
	stop = func() {
		for _, p := range started {
			p.Close()
		}
	}
	for _, c := range confs {
		cfg, err := proxy.ParseConfig([]byte(c))
		if err != nil {
			stop()
			return nil, err
		}
		p, err := proxy.New(cfg, proxy.Options{Logger: quiet})
		if err != nil {
			stop()
			return nil, err
		}
		if err := p.Start(); err != nil {
			p.Close()
			stop()
			return nil, err
		}
		started = append(started, p)
	}
	return stop, nil
}
