package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// --profile --only conn: the connection path of the in-process pair.
//
//	conn-cpu.pprof     CPU while connRun opens connections one after another
//	conn-allocs.pprof  allocations (cumulative) after that
//	summary.txt        the parts of the path measured alone (wall time per
//	                   connection): TCP connect+accept, a tlspsk handshake per
//	                   group, the whole pair; CPU and allocations per connection

// processCPU is this process's user+system CPU so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeConnect is the wall time of a loopback TCP connect and accept.
func timeConnect(n int) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var total time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return 0, err
		}
		total += time.Since(t0)
		c.Close()
	}
	return total / time.Duration(n), nil
}

// timeHandshake is the wall time of a client connect plus a tlspsk TLS 1.3
// handshake with both ends in this process, and the CPU it costs.
func timeHandshake(n int, groups []tlspsk.CurveID, pool *tlspsk.KeySharePool) (wall, cpu time.Duration, err error) {
	key := make([]byte, 32)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	mk := func() *tlspsk.Config {
		return &tlspsk.Config{Key: key, MinVersion: tlspsk.VersionTLS13, CurvePreferences: groups,
			CipherSuites: []uint16{0x1301}, KeyShares: pool}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				s := tlspsk.Server(c, mk())
				s.Handshake()
				s.Read(make([]byte, 1))
				s.Close()
			}()
		}
	}()
	one := func() error {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		c := tlspsk.Client(raw, mk())
		defer c.Close()
		return c.Handshake()
	}
	for i := 0; i < 20; i++ { // warm-up, and fills a pool
		if err := one(); err != nil {
			return 0, 0, err
		}
	}
	c0, t0 := processCPU(), time.Now()
	for i := 0; i < n; i++ {
		if err := one(); err != nil {
			return 0, 0, err
		}
	}
	return time.Since(t0) / time.Duration(n), (processCPU() - c0) / time.Duration(n), nil
}

func profileConn(e *env, o options, dir string, out io.Writer) error {
	fmt.Fprintf(out, "conn profile (load %s)\n", loadAvg())
	d, err := timeConnect(2000)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "conn: loopback TCP connect+accept: %.0f µs\n", us(d))
	for _, g := range []struct {
		name   string
		groups []tlspsk.CurveID
	}{{"X25519MLKEM768", nil}, {"X25519", []tlspsk.CurveID{tlspsk.X25519}}} {
		for _, pooled := range []bool{false, true} {
			var pool *tlspsk.KeySharePool
			if pooled {
				pool = tlspsk.NewKeySharePool(0, 0)
			}
			w, c, err := timeHandshake(500, g.groups, pool)
			if pool != nil {
				pool.Close()
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "conn: connect + tlspsk handshake, %s, key share pool %v: %.0f µs wall, %.0f µs CPU (both ends) (load %s)\n",
				g.name, pooled, us(w), us(c), loadAvg())
		}
	}
	echo, err := startTCPEcho()
	if err != nil {
		return err
	}
	defer echo.close()
	for _, pre := range []int{0, 2} {
		addr, stop, err := inProcessPairPre(e, echo.addr(), 1000, pre)
		if err != nil {
			return err
		}
		for i := 0; i < 50; i++ {
			if err := oneByte(addr, []byte{1}); err != nil {
				stop()
				return err
			}
		}
		name := fmt.Sprintf("conn-cpu-preconnect%d.pprof", pre)
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			stop()
			return err
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c0 := processCPU()
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			stop()
			return err
		}
		st, err := connRun(addr, 2*o.latDur, 20000)
		pprof.StopCPUProfile()
		f.Close()
		cpu := processCPU() - c0
		runtime.ReadMemStats(&m1)
		stop()
		if err != nil {
			return err
		}
		n := st.rate * (2 * o.latDur).Seconds()
		fmt.Fprintf(out, "conn: in-process pair (preconnect %d): %.0f conn/s, TTFB p50 %.0f µs p99 %.0f µs; CPU %.0f µs per connection (both proxies and the echo backend and the load generator); %.0f allocations, %.1f KiB per connection (load %s)\n",
			pre, st.rate, st.p50, st.p99, us(cpu)/n, float64(m1.Mallocs-m0.Mallocs)/n, float64(m1.TotalAlloc-m0.TotalAlloc)/1024/n, loadAvg())
	}
	return writeProfile("allocs", filepath.Join(dir, "conn-allocs.pprof"), 0)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
