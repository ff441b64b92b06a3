package main

import (
	"fmt"
	"io"
	"net"
	"time"
)

// The conn and rtt sections: new connections per second with the time to
// first byte, and 64-byte round trips, through each pair to the Go echo
// backend.

// connStats is one run of sequential connections.
type connStats struct {
	rate     float64 // successful connections per second
	p50, p99 float64 // time to first byte, µs
}

// connRun opens connections one after another for d (at most maxN): each
// connects, writes 1 byte and reads the echo, then closes.
func connRun(addr string, d time.Duration, maxN int) (connStats, error) {
	var ttfb []time.Duration
	fails := 0
	var lastErr error
	b := []byte{0x42}
	start := time.Now()
	for i := 0; i < maxN && time.Since(start) < d; i++ {
		t0 := time.Now()
		if err := oneByte(addr, b); err != nil {
			fails++
			lastErr = err
			if fails > 20 && fails*100 > i {
				return connStats{}, fmt.Errorf("%d of %d connections failed, last: %v", fails, i+1, lastErr)
			}
			continue
		}
		ttfb = append(ttfb, time.Since(t0))
	}
	el := time.Since(start)
	if len(ttfb) == 0 {
		return connStats{}, fmt.Errorf("no connection succeeded: %v", lastErr)
	}
	if fails*100 > len(ttfb)+fails {
		return connStats{}, fmt.Errorf("%d of %d connections failed, last: %v", fails, len(ttfb)+fails, lastErr)
	}
	return connStats{rate: float64(len(ttfb)) / el.Seconds(), p50: percentile(ttfb, 0.5), p99: percentile(ttfb, 0.99)}, nil
}

func oneByte(addr string, b []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		return err
	}
	var r [1]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		return err
	}
	if r[0] != b[0] {
		return fmt.Errorf("echo returned %#x, want %#x", r[0], b[0])
	}
	return nil
}

// rttRun measures 64-byte round trips on one connection for d (at most
// maxN), after a short warm-up; it returns p50 and p99 in µs.
func rttRun(addr string, d time.Duration, maxN int) (p50, p99 float64, err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	msg := make([]byte, 64)
	got := make([]byte, 64)
	trip := func(i int) error {
		msg[0], msg[1] = byte(i), byte(i>>8)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return err
		}
		if got[0] != msg[0] || got[1] != msg[1] {
			return fmt.Errorf("echo out of order")
		}
		return nil
	}
	for i := 0; i < 200; i++ {
		if err := trip(i); err != nil {
			return 0, 0, err
		}
	}
	rtts := make([]time.Duration, 0, 1<<16)
	start := time.Now()
	for i := 0; i < maxN && time.Since(start) < d; i++ {
		t0 := time.Now()
		if err := trip(i); err != nil {
			return 0, 0, err
		}
		rtts = append(rtts, time.Since(t0))
	}
	return percentile(rtts, 0.5), percentile(rtts, 0.99), nil
}

// startEchoAndRelays starts the Go echo backend and a pair of every kind
// in front of it.
func startEchoAndRelays(e *env, kinds []string, o tcpOptions) (*tcpEcho, map[string]*relay, func(), error) {
	echo, err := startTCPEcho()
	if err != nil {
		return nil, nil, nil, err
	}
	relays := map[string]*relay{}
	cleanup := func() {
		for _, r := range relays {
			r.stop()
		}
		echo.close()
	}
	for _, k := range kinds {
		r, err := e.startTCP(k, echo.addr(), o)
		if err != nil {
			cleanup()
			return nil, nil, nil, fmt.Errorf("%s pair: %w", k, err)
		}
		relays[k] = r
		if err := oneByte(r.addr, []byte{1}); err != nil { // warm-up
			cleanup()
			return nil, nil, nil, fmt.Errorf("%s pair: first echo: %w", k, err)
		}
	}
	return echo, relays, cleanup, nil
}

// runConn is in conn.go.

func runRTT(e *env, o options, res *Results) error {
	_, relays, cleanup, err := startEchoAndRelays(e, o.kinds, tcpOptions{})
	if err != nil {
		return err
	}
	defer cleanup()
	p50, p99, added := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	errs := map[string]string{}
	for run := 0; run < o.runs; run++ {
		direct := -1.0
		for _, k := range o.kinds {
			a, b, err := rttRun(relays[k].addr, o.latDur, 200000)
			if err != nil {
				errs[k] = err.Error()
				logf("rtt %s run %d: %v", k, run+1, err)
				continue
			}
			logf("rtt %s run %d: p50 %.1f µs p99 %.1f µs", k, run+1, a, b)
			p50[k] = append(p50[k], a)
			p99[k] = append(p99[k], b)
			if k == kindDirect {
				direct = a
			} else if direct >= 0 {
				added[k] = append(added[k], a-direct)
			}
		}
	}
	for _, k := range o.kinds {
		fs := []*Figure{
			newFigure("rtt", k+": p50", "µs", p50[k]),
			newFigure("rtt", k+": p99", "µs", p99[k]),
		}
		if k != kindDirect {
			fs = append(fs, newFigure("rtt", k+": p50 added to direct", "µs", added[k]))
		}
		for _, f := range fs {
			if !f.ok() {
				f.Err = errs[k]
				if f.Err == "" {
					f.Err = "no direct run to compare with"
				}
			}
			res.add(f)
		}
	}
	res.addRatio("rtt", "ratio mcbn/stunnel: p50", kindMcbn+": p50", kindStunnel+": p50")
	res.addRatio("rtt", "ratio mcbn/stunnel: p50 added to direct", kindMcbn+": p50 added to direct", kindStunnel+": p50 added to direct")
	res.addRatio("rtt", "ratio mcbn-1cpu/stunnel: p50", kindMcbn1CPU+": p50", kindStunnel+": p50")
	return nil
}

// addRatio adds a/b when both figures exist in section.
func (r *Results) addRatio(section, name, a, b string) {
	fa, fb := r.find(section, a), r.find(section, b)
	if fa != nil && fb != nil {
		r.add(ratioFigure(section, name, fa, fb))
	}
}
