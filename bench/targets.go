package main

import (
	"fmt"
	"strings"
)

// The targets of issue 8, judged on this run's figures.

const (
	targetKiBPerTunnel = 40.0
	targetGatherMs     = 50.0
	// flatRatio is how much slower the largest N may gather than the
	// smallest and still count as flat (parallel gathering).
	flatRatio = 1.5
)

func (r *Results) judge() {
	r.Targets = nil
	status := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	cmp := func(goal, section, ours, theirs string, higherBetter bool, unit string) {
		a, b := r.find(section, ours), r.find(section, theirs)
		if !a.ok() || !b.ok() {
			if a != nil || b != nil {
				r.Targets = append(r.Targets, Target{Goal: goal, Result: "figure missing", Status: "n/a"})
			}
			return
		}
		ok := a.Median >= b.Median
		if !higherBetter {
			ok = a.Median <= b.Median
		}
		r.Targets = append(r.Targets, Target{Goal: goal,
			Result: fmt.Sprintf("mcbn %s vs stunnel %s %s", num(a.Median), num(b.Median), unit), Status: status(ok)})
	}
	cmp("TCP throughput, 1 stream >= stunnel", "bulk", "mcbn, 1 stream", "stunnel, 1 stream", true, "Gbit/s")
	cmp("TCP throughput, 4 streams >= stunnel", "bulk", "mcbn, 4 streams", "stunnel, 4 streams", true, "Gbit/s")
	cmp("new connections/s >= stunnel (mcbn default: X25519MLKEM768)", "conn", "mcbn: connections/s", "stunnel: connections/s", true, "conn/s")
	cmp("new connections/s >= stunnel (both X25519)", "conn", "mcbn-x25519: connections/s", "stunnel: connections/s", true, "conn/s")
	// Issue 16: ratios to stunnel (and socat) in this run.
	ratio := func(goal, section, ours, theirs string, factor float64, higherBetter bool, unit string) {
		a, b := r.find(section, ours), r.find(section, theirs)
		if !a.ok() || !b.ok() {
			if a != nil || b != nil {
				r.Targets = append(r.Targets, Target{Goal: goal, Result: "figure missing", Status: "n/a"})
			}
			return
		}
		ok := a.Median >= factor*b.Median
		if !higherBetter {
			ok = a.Median <= factor*b.Median
		}
		r.Targets = append(r.Targets, Target{Goal: goal,
			Result: fmt.Sprintf("%s vs %s %s (%s×)", num(a.Median), num(b.Median), unit, num(a.Median/b.Median)), Status: status(ok)})
	}
	par := fmt.Sprintf("%d parallel", connParallel)
	ratio("new connections/s >= 2× stunnel (X25519MLKEM768, preconnect off)", "conn", "mcbn: connections/s", "stunnel: connections/s", 2, true, "conn/s")
	ratio("preconnect on: time to first byte p50 <= socat pair", "conn", kindMcbnPre+": time to first byte p50", "socat: time to first byte p50", 1, false, "µs")
	ratio("preconnect on, paced 100/s: time to first byte p50 <= socat pair", "conn", kindMcbnPre+", paced 100/s: time to first byte p50", "socat, paced 100/s: time to first byte p50", 1, false, "µs")
	ratio("preconnect on: new connections/s >= 3× stunnel", "conn", kindMcbnPre+": connections/s", "stunnel: connections/s", 3, true, "conn/s")
	ratio("8 parallel clients: new connections/s >= 2× stunnel (preconnect off)", "conn", "mcbn, "+par+": connections/s", "stunnel, "+par+": connections/s", 2, true, "conn/s")
	ratio("8 parallel clients: new connections/s >= 2× stunnel (preconnect on)", "conn", kindMcbnPre+", "+par+": connections/s", "stunnel, "+par+": connections/s", 2, true, "conn/s")
	// The same targets with each proxy at GOMAXPROCS=1, as the Kubernetes
	// recipe's CPU limit runs it (bench/topology.go, kindMcbn1CPU).
	ratio("1 CPU per proxy: new connections/s >= 2× stunnel (X25519MLKEM768, preconnect off)", "conn", kindMcbn1CPU+": connections/s", "stunnel: connections/s", 2, true, "conn/s")
	ratio("1 CPU per proxy: 8 parallel clients: new connections/s >= 2× stunnel (preconnect off)", "conn", kindMcbn1CPU+", "+par+": connections/s", "stunnel, "+par+": connections/s", 2, true, "conn/s")
	cmp("p50 latency added to direct (64 B RTT) <= stunnel", "rtt", "mcbn: p50 added to direct", "stunnel: p50 added to direct", false, "µs")

	for _, f := range r.Figures {
		if f.Section != "memory" || f.Ratio || !strings.HasPrefix(f.Name, kindMcbn) {
			continue
		}
		if f.ok() && (strings.Contains(f.Name, "client side") || strings.Contains(f.Name, "server side")) {
			r.Targets = append(r.Targets, Target{Goal: fmt.Sprintf("<= %.0f KiB per idle tunnel (%s)", targetKiBPerTunnel, f.Name),
				Result: fmt.Sprintf("%s KiB", num(f.Median)), Status: status(f.Median <= targetKiBPerTunnel)})
		}
	}

	if g := r.find("gather", fmt.Sprintf("T=%d, N=5", gatherT)); g.ok() {
		r.Targets = append(r.Targets, Target{Goal: fmt.Sprintf("gathering T=3, N=5 < %.0f ms", targetGatherMs),
			Result: fmt.Sprintf("%s ms", num(g.Median)), Status: status(g.Median < targetGatherMs)})
	}
	// UDP (issue 12): paced at 50,000/s at least 99 % delivered; unpaced
	// 1,200 B at least half of direct and at least one OpenSSL DTLS
	// endpoint's goodput.
	for _, k := range []string{kindMcbn, kindMcbn1CPU} {
		who := ""
		if k == kindMcbn1CPU {
			who = " (1 CPU per proxy)"
		}
		for _, size := range []int{64, 1200} {
			if f := r.find("udp", fmt.Sprintf("%s, %d B, paced 50000/s: loss", k, size)); f.ok() {
				r.Targets = append(r.Targets, Target{Goal: fmt.Sprintf("UDP %d B paced 50,000/s: >= 99 %% delivered%s", size, who),
					Result: fmt.Sprintf("%s %% delivered", num(100-f.Median)), Status: status(f.Median <= 1)})
			}
		}
		if f := r.find("udp", "ratio "+k+"/direct, 1200 B, unpaced: delivered"); f.ok() {
			r.Targets = append(r.Targets, Target{Goal: "UDP 1,200 B unpaced >= 0.5× direct" + who,
				Result: fmt.Sprintf("%s×", num(f.Median)), Status: status(f.Median >= 0.5)})
		}
	}
	if a, b := r.find("udp", "mcbn, 1200 B, unpaced: goodput (echoed)"), r.find("udp", openSSLDTLSFigure); a.ok() && b.ok() {
		r.Targets = append(r.Targets, Target{Goal: "UDP 1,200 B unpaced goodput >= openssl s_server -dtls1_2",
			Result: fmt.Sprintf("mcbn %s (echoed) vs openssl %s (one way) Mbit/s", num(a.Median), num(b.Median)), Status: status(a.Median >= b.Median)})
	}
	for _, f := range r.Figures {
		if f.Section == "gather" && f.Ratio && f.ok() {
			r.Targets = append(r.Targets, Target{Goal: fmt.Sprintf("gathering flat in N (%s <= %.1f)", strings.TrimPrefix(f.Name, "ratio "), flatRatio),
				Result: fmt.Sprintf("%s×", num(f.Median)), Status: status(f.Median <= flatRatio)})
		}
	}
}
