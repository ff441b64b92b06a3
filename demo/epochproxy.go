package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/proxy"
)

// With --rotate and --tprf the proxies are started the way `mcbn proxy
// --config FILE` starts them: from config files whose TCP route lists its
// key epochs (psk.epochs, docs/key-rotation.md). Changing the epochs is
// then what an operator does: rewrite the file and reload (SIGHUP calls
// the same Proxy.Reload). The UDP route keeps one key source: epochs are
// for TCP routes for now.

// Epochs of the two stories.
const (
	rotateFrom, rotateTo = 7, 8 // --rotate
	tprfFirst, tprfNext  = 1, 2 // --tprf
)

// startEpochProxies writes both proxies' config files and starts the
// proxies from them.
func (net *network) startEpochProxies(n *narrator) error {
	server, client := []uint64{rotateFrom}, []uint64{rotateFrom}
	what := "gathers 2 of 3 shares"
	if net.o.TPRF {
		// The server lists the next epoch from the start: it gathers it as
		// soon as the participants admit it. The client lists it only
		// later (a reload), once the server has it: a client that switched
		// first would offer an identity the server cannot answer yet.
		server, client = []uint64{tprfFirst, tprfNext}, []uint64{tprfFirst}
		what = "combines 2 of 3 partial evaluations"
	}
	n.say("== Starting the server proxy and the client proxy from config files; each %s on its own", what)
	net.serverPath = filepath.Join(net.dir, "server-proxy.yaml")
	net.clientPath = filepath.Join(net.dir, "client-proxy.yaml")
	if err := writeFileAtomic(net.serverPath, net.proxyYAML(proxy.ModeServer, server)); err != nil {
		return err
	}
	var err error
	if net.server, err = startProxyFile(proxy.ModeServer, net.serverPath, net.o); err != nil {
		return fmt.Errorf("server proxy: %w", err)
	}
	if err := writeFileAtomic(net.clientPath, net.proxyYAML(proxy.ModeClient, client)); err != nil {
		return err
	}
	if net.client, err = startProxyFile(proxy.ModeClient, net.clientPath, net.o); err != nil {
		return fmt.Errorf("client proxy: %w", err)
	}
	n.say("   the HTTP route's PSK identity carries the epoch: the server lists epochs %s, the client %s (%s, %s)",
		epochList(server), epochList(client), filepath.Base(net.serverPath), filepath.Base(net.clientPath))
	net.sayProxies(n)
	return nil
}

// proxyYAML is a proxy's config: the TCP route with the given epochs,
// the UDP route with one key source.
func (net *network) proxyYAML(mode proxy.Mode, epochs []uint64) []byte {
	mod, udpEpoch := gather.ModeShare, uint64(0)
	if net.o.TPRF {
		mod, udpEpoch = gather.ModeEvaluate, tprfFirst
	}
	webListen, webConnect := "tls://127.0.0.1:0", "tcp://"+net.back.httpLn.Addr().String()
	udpListen, udpConnect := "dtls://127.0.0.1:0", "udp://"+net.back.udp.LocalAddr().String()
	if mode == proxy.ModeClient {
		webListen, webConnect = "tcp://127.0.0.1:0", "tls://"+net.server.Addr("web").String()
		udpListen, udpConnect = "udp://127.0.0.1:0", "dtls://"+net.server.Addr("dgram").String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mode: %s\nroutes:\n", mode)
	fmt.Fprintf(&b, "  - name: web\n    listen: %q\n    connect: %q\n    psk:\n", webListen, webConnect)
	// The demo drops the old epoch itself; the rollover is the bound when
	// nobody does.
	b.WriteString("      rollover: 10m\n      epochs:\n")
	for _, ep := range epochs {
		fmt.Fprintf(&b, "        - epoch: %d\n          source: shares\n          options:\n", ep)
		net.sharesOptions(&b, "            ", mod, 0)
	}
	fmt.Fprintf(&b, "  - name: dgram\n    listen: %q\n    connect: %q\n    psk:\n", udpListen, udpConnect)
	b.WriteString("      source: shares\n      options:\n")
	net.sharesOptions(&b, "        ", mod, udpEpoch)
	return []byte(b.String())
}

// sharesOptions writes a shares source's options at indent.
func (net *network) sharesOptions(b *strings.Builder, indent, mode string, epoch uint64) {
	fmt.Fprintf(b, "%sgroup: %q\n", indent, net.keys.groupP)
	fmt.Fprintf(b, "%sattestation: {provider: %s, socket: %q}\n", indent, net.attCfg.Provider, net.attCfg.Socket)
	fmt.Fprintf(b, "%smode: %s\n%srefresh: %s\n%stimeout: %s\n", indent, mode, indent, net.o.Refresh, indent, stepTimeout)
	if epoch != 0 {
		fmt.Fprintf(b, "%sepoch: %d\n", indent, epoch)
	}
	fmt.Fprintf(b, "%sshareholders:\n", indent)
	for _, e := range net.entries {
		fmt.Fprintf(b, "%s  - {name: %s, url: %q, pin: %q, audience: %s}\n", indent, e.Name, e.URL, e.Pin, e.Audience)
	}
}

// startProxyFile starts a proxy as `mcbn proxy MODE --config path` does,
// minus flags and environment: the demo's settings are all in the file.
func startProxyFile(mode proxy.Mode, path string, o Options) (*proxy.Proxy, error) {
	cfg, err := proxy.LoadConfig(mode, proxy.LoadOptions{
		Flags:  map[string]string{"config": path},
		Getenv: func(string) (string, bool) { return "", false },
	})
	if err != nil {
		return nil, err
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: o.Log})
	if err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// setEpochs rewrites a proxy's config file with the TCP route's epochs and
// reloads it, as `kill -HUP` does for mcbn proxy.
func (net *network) setEpochs(p *proxy.Proxy, epochs ...uint64) error {
	mode, path, who := proxy.ModeServer, net.serverPath, "server"
	if p == net.client {
		mode, path, who = proxy.ModeClient, net.clientPath, "client"
	}
	if err := writeFileAtomic(path, net.proxyYAML(mode, epochs)); err != nil {
		return err
	}
	if err := p.Reload(); err != nil {
		return fmt.Errorf("reload the %s proxy with epochs %s: %w", who, epochList(epochs), err)
	}
	return nil
}

// writeFileAtomic replaces path in one step, so a reload never reads half
// a file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// webEpochs is the TCP route's epochs part of p's /status.
func webEpochs(p *proxy.Proxy) *proxy.EpochsStatus {
	for _, r := range p.Status() {
		if r.Name == "web" && r.Epochs != nil {
			return r.Epochs
		}
	}
	return &proxy.EpochsStatus{}
}

// currentEpoch is /status epochs.current of p's TCP route (ok false: none).
func currentEpoch(p *proxy.Proxy) (uint64, bool) {
	es := webEpochs(p)
	if es.Current == nil {
		return 0, false
	}
	return *es.Current, true
}

func isCurrent(p *proxy.Proxy, epoch uint64) func() bool {
	return func() bool { c, ok := currentEpoch(p); return ok && c == epoch }
}

// epochStatus is epoch's entry in p's TCP route /status (zero: absent).
func epochStatus(p *proxy.Proxy, epoch uint64) proxy.EpochStatus {
	for _, e := range webEpochs(p).Epochs {
		if e.Epoch == epoch {
			return e
		}
	}
	return proxy.EpochStatus{}
}

// epochSummary is the epochs of p's TCP route in one line, e.g.
// "7 rollover, 8 current".
func epochSummary(p *proxy.Proxy) string {
	var parts []string
	for _, e := range webEpochs(p).Epochs {
		parts = append(parts, fmt.Sprintf("%d %s (open %d, opened %d)", e.Epoch, e.Phase, e.Open, e.Opened))
	}
	return strings.Join(parts, ", ")
}

func epochList(epochs []uint64) string {
	s := make([]string, len(epochs))
	for i, e := range epochs {
		s[i] = fmt.Sprint(e)
	}
	return "[" + strings.Join(s, ", ") + "]"
}
