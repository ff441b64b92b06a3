package main

import (
	"io"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// TestStats checks the arithmetic every figure goes through.
func TestStats(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3,1,2 = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median of 4,1,3,2 = %v", m)
	}
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Microsecond)
	}
	if p := percentile(d, 0.5); p != 50 {
		t.Errorf("p50 of 1..100 µs = %v", p)
	}
	if p := percentile(d, 0.99); p != 99 {
		t.Errorf("p99 of 1..100 µs = %v", p)
	}
	a := newFigure("s", "a", "x", []float64{2, 4, 6})
	b := newFigure("s", "b", "x", []float64{1, 2, 2})
	r := ratioFigure("s", "a/b", a, b)
	if r.Median != 2 || r.Min != 2 || r.Max != 3 {
		t.Errorf("ratio %+v, want median 2 (of medians), per-run range 2–3", r)
	}
	if f := ratioFigure("s", "a/none", a, &Figure{Err: "x"}); f.Err == "" {
		t.Error("a ratio with a missing input has no error")
	}
}

// TestJudge: the targets pass and miss on the right side of each bound.
func TestJudge(t *testing.T) {
	r := &Results{}
	r.add(newFigure("bulk", "mcbn, 1 stream", "Gbit/s", []float64{5}),
		newFigure("bulk", "stunnel, 1 stream", "Gbit/s", []float64{6}),
		newFigure("memory", "mcbn client side, 10 idle tunnels", "KiB/tunnel", []float64{39}),
		newFigure("memory", "mcbn server side, 10 idle tunnels", "KiB/tunnel", []float64{41}),
		newFigure("gather", "T=3, N=5", "ms", []float64{49}),
		newFigure("conn", "mcbn: connections/s", "conn/s", []float64{1900}),
		newFigure("conn", "stunnel: connections/s", "conn/s", []float64{1000}),
		newFigure("conn", "mcbn-preconnect: connections/s", "conn/s", []float64{3000}),
		newFigure("conn", "mcbn-preconnect: time to first byte p50", "µs", []float64{500}),
		newFigure("conn", "socat: time to first byte p50", "µs", []float64{600}))
	r.judge()
	want := map[string]string{
		"new connections/s >= 2× stunnel (X25519MLKEM768, preconnect off)": "MISS",
		"preconnect on: new connections/s >= 3× stunnel":                   "PASS",
		"preconnect on: time to first byte p50 <= socat pair":              "PASS",
		"TCP throughput, 1 stream >= stunnel":                              "MISS",
		"<= 40 KiB per idle tunnel (mcbn client side, 10 idle tunnels)":    "PASS",
		"<= 40 KiB per idle tunnel (mcbn server side, 10 idle tunnels)":    "MISS",
		"gathering T=3, N=5 < 50 ms":                                       "PASS",
	}
	for _, tg := range r.Targets {
		if w, ok := want[tg.Goal]; ok {
			if tg.Status != w {
				t.Errorf("%s: %s, want %s", tg.Goal, tg.Status, w)
			}
			delete(want, tg.Goal)
		}
	}
	if len(want) > 0 {
		t.Errorf("targets not judged: %v", want)
	}
}

// TestQuickBench runs the cheap sections once, briefly, against the real
// peers, so the harness cannot rot. It asserts that every figure was
// produced and is positive, never how fast anything is.
func TestQuickBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real peers; skipped under -short")
	}
	if miss := missingPeers(); len(miss) > 0 {
		if os.Getenv("MCBN_REQUIRE_INTEROP") == "1" {
			t.Fatalf("peers missing with MCBN_REQUIRE_INTEROP=1: %v", miss)
		}
		t.Skipf("peers missing: %v (apt-get install -y iperf3 stunnel4 socat)", miss)
	}
	sections := []string{"conn", "rtt", "udp", "gather", "memory"}
	var log strings.Builder
	res, err := run([]string{"--quick", "--only", strings.Join(sections, ","), "--tunnels", "200", "--paced-rates", "2000"}, io.Discard, &log)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, log.String())
	}
	seen := map[string]int{}
	for _, f := range res.Figures {
		if !f.ok() {
			t.Errorf("%s / %s: no figure: %s", f.Section, f.Name, f.Err)
			continue
		}
		seen[f.Section]++
		for _, v := range append([]float64{f.Median, f.Min, f.Max}, f.Runs...) {
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0):
				t.Errorf("%s / %s: %v", f.Section, f.Name, v)
			case strings.HasSuffix(f.Name, ": loss") || strings.Contains(f.Name, "added to direct"):
				// May be zero (no loss) or, for added latency, within noise of it.
			case v <= 0:
				t.Errorf("%s / %s: %v is not positive", f.Section, f.Name, v)
			}
		}
	}
	for _, s := range sections {
		if seen[s] == 0 {
			t.Errorf("section %s produced no figure", s)
		}
	}
	for _, name := range []string{"mcbn: connections/s", "stunnel: connections/s"} {
		if !res.find("conn", name).ok() {
			t.Errorf("conn: %q missing", name)
		}
	}
	if len(res.Targets) == 0 {
		t.Error("no target was judged")
	}
}
