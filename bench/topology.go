package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Relay pairs: the topologies under test. Every pair forwards a listen
// address (where the load generator connects) to a backend address.

const (
	kindDirect  = "direct"
	kindSocat   = "socat"
	kindStunnel = "stunnel"
	kindMcbn    = "mcbn"
	// kindMcbnX25519 is the mcbn pair with --tls-groups X25519, the key
	// exchange stunnel (OpenSSL 3.0) negotiates; the default pair
	// negotiates X25519MLKEM768, which costs more per tunnel and buys
	// post-quantum forward secrecy. The conn section measures both.
	kindMcbnX25519 = "mcbn-x25519"
	// kindMcbn1CPU is the default mcbn pair with GOMAXPROCS=1 in each
	// proxy: what Go derives from the Kubernetes recipe's limits.cpu "1"
	// (examples/kubernetes). The plain pair runs with Go's default here,
	// one P per core of the machine.
	kindMcbn1CPU = "mcbn-1cpu"
	// kindMcbnChaCha is the default mcbn pair held to the DTLS suite
	// ECDHE-PSK-CHACHA20-POLY1305: what OpenSSL and GnuTLS peers, and a CPU
	// without AES-GCM instructions, get, where two mcbn proxies on such a
	// CPU choose ECDHE-PSK-AES128-GCM-SHA256 (docs/udp.md, "The cipher").
	// The udp section only.
	kindMcbnChaCha = "mcbn-chacha"
)

// relay is one running pair.
type relay struct {
	kind  string
	addr  string  // where the load generator connects
	procs []*proc // client side first, then server side
}

func (r *relay) stop() {
	for _, p := range r.procs {
		p.stop()
	}
}

// pids names each relay process by side, for the memory section.
func (r *relay) sides() map[string]*proc {
	m := map[string]*proc{}
	if len(r.procs) == 2 {
		m["client"], m["server"] = r.procs[0], r.procs[1]
	}
	return m
}

// tcpOptions tunes a pair for a section (limits only; never the crypto).
type tcpOptions struct {
	maxConns int    // mcbn --max-connections; 0 keeps the default
	groups   string // mcbn --tls-groups; "" keeps the default
	procs    int    // GOMAXPROCS of each mcbn proxy; 0 keeps Go's default
	suites   string // mcbn --dtls-cipher-suites; "" keeps the default
}

// startTCP starts a TCP relay pair of kind in front of backend.
func (e *env) startTCP(kind, backend string, o tcpOptions) (*relay, error) {
	switch kind {
	case kindDirect:
		return &relay{kind: kind, addr: backend}, nil
	case kindSocat:
		return e.startSocat(backend)
	case kindStunnel:
		return e.startStunnel(backend)
	case kindMcbn:
		return e.startMcbn("tcp", backend, o)
	case kindMcbnPre:
		return e.startMcbnPre(backend)
	case kindMcbnX25519:
		o.groups = "X25519"
		r, err := e.startMcbn("tcp", backend, o)
		if r != nil {
			r.kind = kindMcbnX25519
		}
		return r, err
	case kindMcbn1CPU:
		return e.startMcbnKind(kindMcbn1CPU, "tcp", backend, tcpOptions{maxConns: o.maxConns, groups: o.groups, procs: 1})
	}
	return nil, fmt.Errorf("unknown relay %q", kind)
}

// startSocat: socat client-side relay -> socat server-side relay -> backend.
func (e *env) startSocat(backend string) (*relay, error) {
	ports, err := freePorts("tcp", 2)
	if err != nil {
		return nil, err
	}
	r := &relay{kind: kindSocat, addr: loop(ports[0])}
	return r.start(loop(ports[1]),
		command{"socat server side", "socat", []string{fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", ports[1]), "TCP:" + backend}},
		command{"socat client side", "socat", []string{fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", ports[0]), "TCP:" + loop(ports[1])}})
}

// startSocatUDP: the same topology for datagrams, without crypto: socat
// client side -> socat server side -> the UDP echo backend. socat's
// UDP4-LISTEN with fork gives each peer a child process that relays
// both ways, one datagram per read and write; both sockets get the 4 MiB
// receive buffer the proxies ask for. It is a plain relay pair without
// crypto on the same cores, measured beside the DTLS pair.
func (e *env) startSocatUDP(backend string) (*relay, error) {
	ports, err := freePorts("udp", 2)
	if err != nil {
		return nil, err
	}
	listen := func(port int) string {
		return fmt.Sprintf("UDP4-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,rcvbuf=%d", port, udpSockBuf)
	}
	to := func(addr string) string { return fmt.Sprintf("UDP4:%s,rcvbuf=%d", addr, udpSockBuf) }
	srv, err := startProc("socat udp server side", "socat", "-T", "30", listen(ports[1]), to(backend))
	if err != nil {
		return nil, err
	}
	cli, err := startProc("socat udp client side", "socat", "-T", "30", listen(ports[0]), to(loop(ports[1])))
	if err != nil {
		srv.stop()
		return nil, err
	}
	r := &relay{kind: kindSocat, addr: loop(ports[0]), procs: []*proc{cli, srv}}
	for i, p := range r.procs {
		if err := waitUDPBound(ports[i], 10*time.Second, p); err != nil {
			r.stop()
			return nil, err
		}
	}
	return r, nil
}

// waitUDPBound waits until a UDP socket is bound to port on this host
// (read from /proc/net/udp: probing by binding the port could take it
// from the process that is about to), or p exits.
func waitUDPBound(port int, d time.Duration, p *proc) error {
	want := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile("/proc/net/udp")
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 1 && strings.HasSuffix(f[1]+" ", want) {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited before binding UDP port %d", p.describe(), port)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing bound UDP port %d after %v: %s", port, d, p.describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command is a process to start: a name for the logs, the binary, its
// arguments.
type command struct {
	name, bin string
	args      []string
}

// start runs the server side, then the client side, of a relay pair that
// needs no readiness check beyond its TCP listeners: srvAddr for the server
// side, r.addr for the client side.
func (r *relay) start(srvAddr string, srvCmd, cliCmd command) (*relay, error) {
	srv, err := startProc(srvCmd.name, srvCmd.bin, srvCmd.args...)
	if err != nil {
		return nil, err
	}
	cli, err := startProc(cliCmd.name, cliCmd.bin, cliCmd.args...)
	if err != nil {
		srv.stop()
		return nil, err
	}
	r.procs = []*proc{cli, srv}
	if err := waitTCP(srvAddr, 10*time.Second, srv); err != nil {
		r.stop()
		return nil, err
	}
	if err := waitTCP(r.addr, 10*time.Second, cli); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

const stunnelConf = `foreground = yes
pid =
debug = warning
[bench]
%saccept = %s
connect = %s
PSKsecrets = %s
sslVersionMin = TLSv1.3
ciphersuites = TLS_AES_128_GCM_SHA256
`

// startStunnel: stunnel client -> stunnel server -> backend, TLS 1.3 PSK.
func (e *env) startStunnel(backend string) (*relay, error) {
	ports, err := freePorts("tcp", 2)
	if err != nil {
		return nil, err
	}
	r := &relay{kind: kindStunnel, addr: loop(ports[0])}
	sconf := e.path(fmt.Sprintf("stunnel-server-%d.conf", ports[1]))
	cconf := e.path(fmt.Sprintf("stunnel-client-%d.conf", ports[0]))
	if err := os.WriteFile(sconf, []byte(fmt.Sprintf(stunnelConf, "", loop(ports[1]), backend, e.secrets)), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cconf, []byte(fmt.Sprintf(stunnelConf, "client = yes\n", r.addr, loop(ports[1]), e.secrets)), 0o600); err != nil {
		return nil, err
	}
	return r.start(loop(ports[1]), command{"stunnel server", "stunnel", []string{sconf}}, command{"stunnel client", "stunnel", []string{cconf}})
}

// startMcbn: mcbn proxy client -> mcbn proxy server -> backend. transport
// is "tcp" (TLS 1.3 PSK, TLS_AES_128_GCM_SHA256) or "udp" (DTLS 1.2 PSK,
// mcbn's default suites).
func (e *env) startMcbn(transport, backend string, o tcpOptions) (*relay, error) {
	return e.startMcbnKind(kindMcbn, transport, backend, o)
}

// startMcbnKind is startMcbn naming the relay kind.
func (e *env) startMcbnKind(kind, transport, backend string, o tcpOptions) (*relay, error) {
	// TCP listen and admin ports come from one call: two calls could hand
	// out the same free port twice (each releases its probes).
	var ports, admins []int
	if transport == "tcp" {
		all, err := freePorts("tcp", 4)
		if err != nil {
			return nil, err
		}
		ports, admins = all[:2], all[2:]
	} else {
		var err error
		if ports, err = freePorts(transport, 2); err != nil {
			return nil, err
		}
		if admins, err = freePorts("tcp", 2); err != nil {
			return nil, err
		}
	}
	listen, tunnel := "tls", "tcp"
	if transport == "udp" {
		listen, tunnel = "dtls", "udp"
	}
	common := []string{"--psk-secrets", e.secrets, "--probe-interval", "0s", "--drain-timeout", "1s"}
	if o.suites != "" {
		common = append(common, "--dtls-cipher-suites", o.suites)
	}
	if transport == "tcp" {
		common = append(common, "--tls-min-version", "1.3", "--tls-cipher-suites", "TLS_AES_128_GCM_SHA256")
		if o.maxConns > 0 {
			common = append(common, "--max-connections", strconv.Itoa(o.maxConns))
		}
		if o.groups != "" {
			common = append(common, "--tls-groups", o.groups)
		}
	}
	srvArgs := append([]string{"proxy", "server", "--listen", listen + "://" + loop(ports[1]),
		"--connect", tunnel + "://" + backend, "--admin", loop(admins[1])}, common...)
	cliArgs := append([]string{"proxy", "client", "--listen", tunnel + "://" + loop(ports[0]),
		"--connect", listen + "://" + loop(ports[1]), "--admin", loop(admins[0])}, common...)
	r := &relay{kind: kind, addr: loop(ports[0])}
	var env []string
	if o.procs > 0 {
		env = []string{"GOMAXPROCS=" + strconv.Itoa(o.procs)}
	}
	srv, err := startProcEnv("mcbn proxy server", env, e.mcbn, srvArgs...)
	if err != nil {
		return nil, err
	}
	cli, err := startProcEnv("mcbn proxy client", env, e.mcbn, cliArgs...)
	if err != nil {
		srv.stop()
		return nil, err
	}
	r.procs = []*proc{cli, srv}
	if err := waitReady(loop(admins[1]), 15*time.Second, srv); err != nil {
		r.stop()
		return nil, err
	}
	if err := waitReady(loop(admins[0]), 15*time.Second, cli); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}
