package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// options are the parsed flags.
type options struct {
	runs       int
	quick      bool
	only       []string
	jsonPath   string
	profileDir string
	kinds      []string // relay kinds for the TCP sections, direct first
	bulkDur    time.Duration
	latDur     time.Duration
	udpDur     time.Duration
	pacedRates []int
	tunnels    int
	gatherN    []int
	gatherRuns int
}

func (o options) has(kind string) bool { return slices.Contains(o.kinds, kind) }

// section is one part of the table; it needs the named peers.
type section struct {
	name  string
	peers []string
	run   func(e *env, o options, r *Results) error
}

// sections in the order they run.
var sections = []section{
	{"bulk", []string{"iperf3"}, runBulk},
	{"conn", nil, runConn},
	{"rtt", nil, runRTT},
	{"udp", nil, runUDP},
	{"gather", nil, func(_ *env, o options, r *Results) error { return runGather(o, r) }},
	{"memory", nil, runMemory},
}

var logOut struct {
	sync.Mutex
	w io.Writer
}

// logf reports progress on stderr.
func logf(format string, a ...any) {
	logOut.Lock()
	defer logOut.Unlock()
	if logOut.w != nil {
		fmt.Fprintf(logOut.w, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{}
	fs.IntVar(&o.runs, "runs", 3, "runs per figure (the median and min–max are reported)")
	fs.BoolVar(&o.quick, "quick", false, "one short run of everything: a smoke check, not a measurement")
	only := fs.String("only", "", "comma-separated sections to run: bulk, conn, rtt, udp, gather, memory")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.profileDir, "profile", "", "instead of the table: run the mcbn proxies in process and write pprof profiles to this directory")
	peers := fs.String("peers", "direct,socat,stunnel,mcbn,mcbn-1cpu,mcbn-chacha", "relay pairs to compare (mcbn-1cpu: the mcbn pair at GOMAXPROCS=1, as the Kubernetes recipe's CPU limit runs it; mcbn-chacha, udp only: the pair held to ECDHE-PSK-CHACHA20-POLY1305)")
	paced := fs.String("paced-rates", "10000,50000", "offered rates of the paced UDP runs, datagrams per second")
	fs.IntVar(&o.tunnels, "tunnels", 10000, "idle tunnels to open in the memory section (capped by RLIMIT_NOFILE)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.runs < 1 {
		return o, errors.New("--runs must be at least 1")
	}
	for _, s := range strings.Split(*only, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !slices.ContainsFunc(sections, func(x section) bool { return x.name == s }) {
			return o, fmt.Errorf("--only: unknown section %q", s)
		}
		o.only = append(o.only, s)
	}
	for _, k := range strings.Split(*peers, ",") {
		switch k = strings.TrimSpace(k); k {
		case kindDirect, kindSocat, kindStunnel, kindMcbn, kindMcbn1CPU, kindMcbnChaCha:
			o.kinds = append(o.kinds, k)
		case "":
		default:
			return o, fmt.Errorf("--peers: unknown pair %q", k)
		}
	}
	for _, v := range strings.Split(*paced, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("--paced-rates: %q is not a positive rate", v)
		}
		o.pacedRates = append(o.pacedRates, n)
	}
	o.bulkDur, o.latDur, o.udpDur = 5*time.Second, 3*time.Second, 3*time.Second
	o.gatherN, o.gatherRuns = []int{3, 5, 9, 17}, 3*o.runs
	if o.quick {
		o.runs, o.gatherRuns = 1, 3
		o.bulkDur, o.latDur, o.udpDur = time.Second, 500*time.Millisecond, 500*time.Millisecond
		o.tunnels = min(o.tunnels, 1000)
	}
	return o, nil
}

// run is the whole bench; main and the test call it.
func run(args []string, stdout, stderr io.Writer) (*Results, error) {
	logOut.Lock()
	logOut.w = stderr
	logOut.Unlock()
	o, err := parseOptions(args, stderr)
	if err != nil {
		return nil, err
	}
	// Peers that are missing drop out of the comparison, named in the log.
	if miss := missingPeers(); len(miss) > 0 {
		logf("missing peers: %s (apt-get install -y iperf3 stunnel4 socat)", strings.Join(miss, ", "))
		o.kinds = slices.DeleteFunc(o.kinds, func(k string) bool { return slices.Contains(miss, k) })
	}
	raiseFileLimit()
	e, err := newEnv(o.quick)
	if err != nil {
		return nil, err
	}
	defer e.close()
	defer stopAll()
	if o.profileDir != "" {
		return nil, runProfile(e, o)
	}
	res := &Results{Started: time.Now(), Command: "go run ./bench " + strings.Join(args, " "), Machine: machine(), LoadStart: loadAvg()}
	var failed []string
	for _, s := range sections {
		if len(o.only) > 0 && !slices.Contains(o.only, s.name) {
			continue
		}
		if miss := missingOf(s.peers); len(miss) > 0 {
			logf("section %s skipped: %s not installed", s.name, strings.Join(miss, ", "))
			failed = append(failed, s.name+": missing "+strings.Join(miss, ", "))
			continue
		}
		logf("section %s (load %s)", s.name, loadAvg())
		so := o
		if s.name != "udp" { // a DTLS suite means nothing to the TCP sections
			so.kinds = slices.DeleteFunc(slices.Clone(o.kinds), func(k string) bool { return k == kindMcbnChaCha })
		}
		if err := s.run(e, so, res); err != nil {
			logf("section %s failed: %v", s.name, err)
			failed = append(failed, s.name+": "+err.Error())
			res.add(&Figure{Section: s.name, Name: "section", Err: err.Error()})
		}
		stopAll()
	}
	res.Finished, res.LoadEnd = time.Now(), loadAvg()
	res.judge()
	res.writeTable(stdout)
	if o.jsonPath != "" {
		if err := res.writeJSON(o.jsonPath); err != nil {
			return res, err
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("sections with errors: %s", strings.Join(failed, "; "))
	}
	return res, nil
}

func missingOf(peers []string) []string {
	var miss []string
	all := missingPeers()
	for _, p := range peers {
		if slices.Contains(all, p) {
			miss = append(miss, p)
		}
	}
	return miss
}

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "bench: %v: stopping every peer\n", s)
		stopAll()
		removeScratch()
		os.Exit(130)
	}()
	if _, err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		stopAll()
		os.Exit(1)
	}
}
