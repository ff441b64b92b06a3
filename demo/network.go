package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/gather"
	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// demoDigest is the image digest the dev attester vouches for and the dev
// policy accepts. In production it is the digest printed by build/image.
const demoDigest = "sha256:d6ccd81104d3611223453c1c891192f9587f8ecb13515a3b602242c7748b503f"

// network is everything the demo started, closed in reverse order.
type network struct {
	att     *attest.DevAttester
	holders map[string]*shareholder.Server
	config  map[string]string // shareholder config paths, where consent is written
	back    *backends
	sources []*gather.SharesSource
	server  *proxy.Proxy
	client  *proxy.Proxy
	// srcWeb is the client proxy's HTTP route source, read for progress.
	srcWeb *gather.SharesSource
	// kms is carol's Cloud KMS side (--kms only; carol has no daemon then).
	kms *kmsCarol
}

func startNetwork(ctx context.Context, n *narrator, dir string, k *keyFiles, o Options) (*network, error) {
	net := &network{holders: map[string]*shareholder.Server{}, config: map[string]string{}}
	var err error

	n.say("== Starting the dev attester (it stands in for Confidential Space and proves nothing about hardware)")
	net.att, err = attest.StartDevAttester(attest.DevAttesterConfig{
		Socket: filepath.Join(dir, "teeserver.sock"), ImageDigest: demoDigest, Logger: o.Log,
	})
	if err != nil {
		return net, fmt.Errorf("dev attester: %w", err)
	}
	n.say("   tokens on %s, keys at %s", net.att.Socket(), net.att.Issuer())

	policy, err := shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{ImageDigests: []string{demoDigest}, Dev: true})
	if err != nil {
		return net, err
	}
	var entries []gather.ShareholderConfig
	daemons := participants
	if o.KMS {
		if net.kms, err = startKMS(ctx, n, dir, k, net.att.Issuer(), o); err != nil {
			return net, fmt.Errorf("carol's Cloud KMS: %w", err)
		}
		daemons = []string{"alice", "bob"}
		n.say("== Starting two shareholder daemons (alice, bob); each releases its share only to an attested proxy running image %s…", demoDigest[:19])
	} else {
		n.say("== Starting three shareholders; each releases its share only to an attested proxy running image %s…", demoDigest[:19])
	}
	for _, name := range daemons {
		s, path, err := startShareholder(ctx, dir, name, k, net.att.Issuer(), policy, o)
		if err != nil {
			return net, fmt.Errorf("shareholder %s: %w", name, err)
		}
		net.holders[name], net.config[name] = s, path
		entries = append(entries, gather.ShareholderConfig{
			Name: name, URL: "https://" + s.Addr().String(), Pin: s.Pin(), Audience: audience(name),
		})
		n.say("   %s listening on %s, consent granted", name, s.Addr())
	}
	if net.kms != nil {
		entries = append(entries, net.kms.entry)
	}

	if net.back, err = startBackends(); err != nil {
		return net, err
	}
	n.say("== Starting the server app: HTTP on %s, UDP echo on %s (plain, loopback)", net.back.httpLn.Addr(), net.back.udp.LocalAddr())

	src := func() (*gather.SharesSource, error) {
		s, err := gather.NewSharesSource(gather.SharesSourceConfig{
			Group: k.groupP, Shareholders: entries,
			Attestation: gather.AttestationConfig{Provider: "dev", Socket: net.att.Socket()},
			Identity:    psk.DefaultIdentity, Refresh: o.Refresh, Timeout: stepTimeout,
		}, nil, o.Log)
		if err == nil {
			net.sources = append(net.sources, s)
		}
		return s, err
	}
	n.say("== Starting the server proxy and the client proxy; each gathers 2 of 3 shares on its own")
	serverCfg := fmt.Sprintf("mode: server\nroutes:\n"+
		"  - {name: web, listen: \"tls://127.0.0.1:0\", connect: \"tcp://%s\"}\n"+
		"  - {name: dgram, listen: \"dtls://127.0.0.1:0\", connect: \"udp://%s\"}\n",
		net.back.httpLn.Addr(), net.back.udp.LocalAddr())
	if net.server, err = startProxy(serverCfg, src, o); err != nil {
		return net, fmt.Errorf("server proxy: %w", err)
	}
	clientCfg := fmt.Sprintf("mode: client\nroutes:\n"+
		"  - {name: web, listen: \"tcp://127.0.0.1:0\", connect: \"tls://%s\"}\n"+
		"  - {name: dgram, listen: \"udp://127.0.0.1:0\", connect: \"dtls://%s\"}\n",
		net.server.Addr("web"), net.server.Addr("dgram"))
	if net.client, err = startProxy(clientCfg, src, o); err != nil {
		return net, fmt.Errorf("client proxy: %w", err)
	}
	net.srcWeb = net.sources[len(net.sources)-2]
	n.say("   server proxy: TLS-PSK on %s, DTLS-PSK on %s", net.server.Addr("web"), net.server.Addr("dgram"))
	n.say("   client proxy: HTTP on %s, UDP on %s (what the client app uses)", net.client.Addr("web"), net.client.Addr("dgram"))
	return net, nil
}

func audience(name string) string { return "mcbn-demo-" + name }

// startShareholder writes name's daemon config and starts it. Consent is a
// line of that file, as for a real participant.
func startShareholder(ctx context.Context, dir, name string, k *keyFiles, issuer, policy string, o Options) (*shareholder.Server, string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nlisten: 127.0.0.1:0\n", name)
	fmt.Fprintf(&b, "share_store: file://%s\ngroup: %s\n", k.shareP[name], k.groupP)
	fmt.Fprintf(&b, "verifier:\n  issuer: %s\n  audience: %s\n  clock_skew: 30s\n", issuer, audience(name))
	fmt.Fprintf(&b, "policy: |\n")
	for _, l := range strings.Split(strings.TrimSpace(policy), "\n") {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, "consent: %s\naudit_log: %s.audit.jsonl\n", shareholder.ConsentGranted, name)
	fmt.Fprintf(&b, "rate_limit:\n  per_second: 1000\n  burst: 1000\nreload_interval: 50ms\n")
	fmt.Fprintf(&b, "metrics:\n  listen: \"\"\n") // three daemons: no metrics ports to share
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, "", err
	}
	cfg, err := shareholder.LoadConfig(path)
	if err != nil {
		return nil, "", err
	}
	s, err := shareholder.NewServer(ctx, cfg, shareholder.ServerOptions{ConfigPath: path, Logger: o.Log.With("shareholder", name)})
	if err != nil {
		return nil, "", err
	}
	if err := s.Start(); err != nil {
		s.Close()
		return nil, "", err
	}
	return s, path, nil
}

// startProxy starts a proxy whose every route gathers its key from the
// shareholders through a source made by newSrc.
func startProxy(yaml string, newSrc func() (*gather.SharesSource, error), o Options) (*proxy.Proxy, error) {
	cfg, err := proxy.ParseConfig([]byte(yaml))
	if err != nil {
		return nil, err
	}
	srcs := map[string]proxy.Source{}
	for _, r := range cfg.Routes {
		s, err := newSrc()
		if err != nil {
			return nil, err
		}
		srcs[r.Name] = s
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: o.Log, Sources: srcs})
	if err != nil {
		return nil, err
	}
	if err := p.Start(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// ready reports whether both proxies hold the key on every route.
func (net *network) ready() bool {
	s, _ := net.server.Ready()
	c, _ := net.client.Ready()
	return s && c
}

// refused reports whether both proxies have lost the key on every route.
func (net *network) refused() bool {
	for _, p := range []*proxy.Proxy{net.server, net.client} {
		for _, r := range p.Status() {
			if r.PSK.Ready {
				return false
			}
		}
	}
	return true
}

func (net *network) info(dir string) Info {
	in := Info{
		Dir: dir, Identity: psk.DefaultIdentity,
		ServerTLS: net.server.Addr("web").String(), ServerDTLS: net.server.Addr("dgram").String(),
		ClientHTTP: net.client.Addr("web").String(), ClientUDP: net.client.Addr("dgram").String(),
		Shareholder: map[string]string{},
	}
	for name, s := range net.holders {
		in.Shareholder[name] = s.Addr().String()
	}
	return in
}

// close stops everything that was started, proxies first.
func (net *network) close(n *narrator) {
	if net == nil {
		return
	}
	for _, p := range []*proxy.Proxy{net.client, net.server} {
		if p != nil {
			p.Close()
		}
	}
	for _, s := range net.sources {
		s.Close()
	}
	if net.back != nil {
		net.back.close()
	}
	for _, s := range net.holders {
		s.Close()
	}
	net.kms.close()
	if net.att != nil {
		net.att.Close()
	}
}
