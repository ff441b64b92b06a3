package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The bulk section: iperf3 TCP throughput through each relay pair.

func runBulk(e *env, o options, res *Results) error {
	port, err := freePort("tcp")
	if err != nil {
		return err
	}
	srv, err := startProc("iperf3 server", "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return err
	}
	defer srv.stop()
	backend := loop(port)
	if err := waitTCP(backend, 10*time.Second, srv); err != nil {
		return err
	}
	relays := map[string]*relay{}
	defer func() {
		for _, r := range relays {
			r.stop()
		}
	}()
	for _, k := range o.kinds {
		r, err := e.startTCP(k, backend, tcpOptions{})
		if err != nil {
			return fmt.Errorf("%s pair: %w", k, err)
		}
		relays[k] = r
	}
	streams := []int{1, 4}
	runs := map[string][]float64{}
	errs := map[string]string{}
	key := func(k string, s int) string { return fmt.Sprintf("%s, %s", k, streamName(s)) }
	for run := 0; run < o.runs; run++ {
		for _, s := range streams {
			for _, k := range o.kinds {
				gbps, err := iperf3(relays[k].addr, o.bulkDur, s)
				if err != nil {
					errs[key(k, s)] = err.Error()
					logf("bulk %s run %d: %v", key(k, s), run+1, err)
					continue
				}
				logf("bulk %s run %d: %.2f Gbit/s", key(k, s), run+1, gbps)
				runs[key(k, s)] = append(runs[key(k, s)], gbps)
			}
		}
	}
	for _, s := range streams {
		for _, k := range o.kinds {
			f := newFigure("bulk", key(k, s), "Gbit/s", runs[key(k, s)])
			if len(f.Runs) == 0 {
				f.Err = errs[key(k, s)]
			}
			res.add(f)
		}
		for _, m := range []string{kindMcbn, kindMcbn1CPU} {
			ours := res.find("bulk", key(m, s))
			if ours == nil {
				continue
			}
			if st := res.find("bulk", key(kindStunnel, s)); st != nil {
				res.add(ratioFigure("bulk", "ratio "+m+"/stunnel, "+streamName(s), ours, st))
			}
			if d := res.find("bulk", key(kindDirect, s)); d != nil {
				res.add(ratioFigure("bulk", "ratio "+m+"/direct, "+streamName(s), ours, d))
			}
		}
	}
	return nil
}

func streamName(s int) string {
	if s == 1 {
		return "1 stream"
	}
	return fmt.Sprintf("%d streams", s)
}

// iperf3 runs one client against addr and returns the received rate in
// Gbit/s. A "server busy" answer (the previous test still closing) is
// retried once.
func iperf3(addr string, d time.Duration, streams int) (float64, error) {
	host, port, _ := strings.Cut(addr, ":")
	secs := max(1, int(d/time.Second))
	args := []string{"-c", host, "-p", port, "-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams), "-J", "--connect-timeout", "5000"}
	var lastErr error
	for try := 0; try < 2; try++ {
		if try > 0 {
			time.Sleep(time.Second)
		}
		out, err := runCmd(time.Duration(secs)*time.Second+30*time.Second, "iperf3", args...)
		var rep struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			if err == nil {
				err = jerr
			}
			lastErr = err
			continue
		}
		if rep.Error != "" {
			lastErr = errors.New("iperf3: " + rep.Error)
			continue
		}
		if rep.End.SumReceived.BitsPerSecond <= 0 {
			lastErr = errors.New("iperf3 reported no bytes received")
			continue
		}
		return rep.End.SumReceived.BitsPerSecond / 1e9, nil
	}
	return 0, lastErr
}
