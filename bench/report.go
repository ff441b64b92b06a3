package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Results is everything one bench run produced.
type Results struct {
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Command   string            `json:"command"`
	Machine   map[string]string `json:"machine"`
	LoadStart string            `json:"load_start"`
	LoadEnd   string            `json:"load_end"`
	Figures   []*Figure         `json:"figures"`
	Targets   []Target          `json:"targets"`
}

// Target is one goal from issue 8 and whether this run met it.
type Target struct {
	Goal   string `json:"goal"`
	Result string `json:"result"` // the figures it was judged on
	Status string `json:"status"` // PASS, MISS, or n/a (a figure is missing)
}

func (r *Results) add(f ...*Figure) { r.Figures = append(r.Figures, f...) }

// find returns the figure of section and name, or nil.
func (r *Results) find(section, name string) *Figure {
	for _, f := range r.Figures {
		if f.Section == section && f.Name == name {
			return f
		}
	}
	return nil
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// machine describes the host and the peer versions.
func machine() map[string]string {
	m := map[string]string{
		"nproc": fmt.Sprint(runtime.NumCPU()),
		"go":    runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m["cpu"] = strings.TrimSpace(l[strings.Index(l, ":")+1:])
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	m["stunnel"] = versionLine("stunnel", "stunnel ", "-version")
	m["iperf3"] = versionLine("iperf3", "iperf ", "--version")
	m["socat"] = versionLine("socat", "socat version", "-V")
	m["openssl"] = versionLine("openssl", "OpenSSL", "version")
	return m
}

// versionLine runs name args and returns the first output line holding
// prefix.
func versionLine(name, prefix string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, prefix) {
			return strings.TrimSpace(l)
		}
	}
	return "not found"
}

// sectionTitles orders and names the sections in the table.
var sectionTitles = []struct{ key, title string }{
	{"bulk", "TCP bulk throughput (iperf3)"},
	{"conn", "New tunnelled connections, sequential, 1 client (connect + 1 B echoed)"},
	{"rtt", "64-byte request/response on one connection"},
	{"udp", "UDP datagrams through the pair to an echo backend"},
	{"gather", "Share gathering, T=3, time from source creation to PSK"},
	{"memory", "Resident memory per idle TCP tunnel"},
}

// writeTable prints the figures as one Markdown table per section, then
// the targets.
func (r *Results) writeTable(w io.Writer) {
	fmt.Fprintf(w, "load average: %s at start, %s at end; %s CPUs, %s\n", r.LoadStart, r.LoadEnd, r.Machine["nproc"], r.Machine["cpu"])
	for _, s := range sectionTitles {
		var rows []*Figure
		for _, f := range r.Figures {
			if f.Section == s.key {
				rows = append(rows, f)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n### %s\n\n", s.title)
		fmt.Fprintln(w, "| measurement | median | min – max | unit | runs |")
		fmt.Fprintln(w, "|---|---:|---:|---|---|")
		for _, f := range rows {
			if f.Err != "" {
				fmt.Fprintf(w, "| %s | — | — | %s | error: %s |\n", f.Name, f.Unit, strings.ReplaceAll(f.Err, "|", "/"))
				continue
			}
			runs := make([]string, len(f.Runs))
			for i, v := range f.Runs {
				runs[i] = num(v)
			}
			fmt.Fprintf(w, "| %s | %s | %s – %s | %s | %s |\n", f.Name, num(f.Median), num(f.Min), num(f.Max), f.Unit, strings.Join(runs, " "))
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintf(w, "\n### Targets (issue 8)\n\n| target | measured | status |\n|---|---|---|\n")
		for _, t := range r.Targets {
			fmt.Fprintf(w, "| %s | %s | %s |\n", t.Goal, t.Result, t.Status)
		}
	}
}

// num formats a figure with about three significant digits.
func num(v float64) string {
	a := v
	if a < 0 {
		a = -a
	}
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func (r *Results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
