package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The memory section: resident memory per idle TCP tunnel. Open n tunnels
// through a pair to the echo backend (each carries one echoed byte, so it
// is established end to end), let them sit idle, and compare VmRSS of each
// relay process with its value before.

// raiseFileLimit sets the soft RLIMIT_NOFILE to the hard limit; children
// inherit it. It returns the new soft limit.
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return l.Cur
}

// vmRSS reads a process's resident set size in KiB.
func vmRSS(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) >= 1 {
				return strconv.ParseFloat(fs[0], 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// tunnelCount is how many tunnels fit: every relay process holds two
// descriptors per tunnel (and the bench process holds the client ends and
// the echo backend's ends), under one RLIMIT_NOFILE; and stunnel admits at
// most RLIMIT_NOFILE*125/256 clients (its default). Every pair gets the
// same count.
func tunnelCount(want int, limit uint64) int {
	fit := min((int(limit)-200)/2, int(limit)*125/256-15)
	return max(1, min(want, fit))
}

// openTunnels opens n tunnels to addr with a few parallel dialers; each
// sends a byte and reads the echo. It returns the open connections.
func openTunnels(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err == nil {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err = c.Write([]byte{7}); err == nil {
						var b [1]byte
						_, err = io.ReadFull(c, b[:])
					}
					c.SetDeadline(time.Time{})
				}
				if err != nil {
					if c != nil {
						c.Close()
					}
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("tunnel %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		closeAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// memKinds are the pairs whose processes hold all of a tunnel's state
// (socat forks a process per connection, so it is left out).
var memKinds = []string{kindMcbn, kindStunnel}

func runMemory(e *env, o options, res *Results) error {
	n := tunnelCount(o.tunnels, raiseFileLimit())
	if n < o.tunnels {
		logf("memory: RLIMIT_NOFILE (and stunnel's client limit under it) allow %d tunnels per relay process, not %d", n, o.tunnels)
	}
	echo, err := startTCPEcho()
	if err != nil {
		return err
	}
	defer echo.close()
	per := map[string][]float64{}
	errs := map[string]string{}
	for run := 0; run < o.runs; run++ {
		for _, k := range memKinds {
			if !o.has(k) {
				continue
			}
			m, err := memoryRun(e, k, echo.addr(), n)
			if err != nil {
				errs[k] = err.Error()
				logf("memory %s run %d: %v", k, run+1, err)
				continue
			}
			logf("memory %s run %d: client %.1f KiB, server %.1f KiB per tunnel (%d tunnels)", k, run+1, m["client"], m["server"], n)
			for side, v := range m {
				per[k+" "+side] = append(per[k+" "+side], v)
			}
		}
	}
	for _, k := range memKinds {
		if !o.has(k) {
			continue
		}
		for _, side := range []string{"client", "server", "total"} {
			f := newFigure("memory", fmt.Sprintf("%s %s side, %d idle tunnels", k, side, n), "KiB/tunnel", per[k+" "+side])
			if side == "total" {
				f.Name = fmt.Sprintf("%s both proxies, %d idle tunnels", k, n)
			}
			if !f.ok() {
				f.Err = errs[k]
			}
			res.add(f)
		}
	}
	res.addRatio("memory", "ratio mcbn/stunnel, both proxies",
		fmt.Sprintf("%s both proxies, %d idle tunnels", kindMcbn, n), fmt.Sprintf("%s both proxies, %d idle tunnels", kindStunnel, n))
	return nil
}

// memoryRun starts a fresh pair, opens n tunnels and returns KiB per tunnel
// for "client", "server" and "total".
func memoryRun(e *env, kind, backend string, n int) (map[string]float64, error) {
	r, err := e.startTCP(kind, backend, tcpOptions{maxConns: n + 100})
	if err != nil {
		return nil, err
	}
	defer r.stop()
	if err := oneByte(r.addr, []byte{1}); err != nil { // first tunnel: lazy setup out of the way
		return nil, err
	}
	time.Sleep(500 * time.Millisecond)
	sides := r.sides()
	before := map[string]float64{}
	for side, p := range sides {
		if before[side], err = vmRSS(p.pid()); err != nil {
			return nil, err
		}
	}
	conns, err := openTunnels(r.addr, n)
	if err != nil {
		for _, p := range r.procs {
			if p.exited() {
				err = fmt.Errorf("%w; %s", err, p.describe())
			}
		}
		return nil, err
	}
	defer closeAll(conns)
	time.Sleep(time.Second) // idle
	out := map[string]float64{}
	for side, p := range sides {
		after, err := vmRSS(p.pid())
		if err != nil {
			return nil, err
		}
		out[side] = (after - before[side]) / float64(n)
		out["total"] += out[side]
	}
	return out, nil
}
