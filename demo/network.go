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
	att     *attest.DevAttester // nil with --tee mock-tsm
	mock    *attest.MockTSM     // --tee mock-tsm only
	holders map[string]*shareholder.Server
	config  map[string]string // shareholder config paths, where consent is written
	back    *backends
	sources []*gather.SharesSource
	server  *proxy.Proxy
	client  *proxy.Proxy
	// srcWeb is the client proxy's HTTP route source, read for progress
	// (nil when the proxies build their sources from config files: then
	// state reads the client's UDP route).
	srcWeb *gather.SharesSource
	// kms is carol's Cloud KMS side (--kms only; carol has no daemon then).
	kms *kmsCarol

	dir     string
	keys    *keyFiles
	o       Options
	attCfg  gather.AttestationConfig
	entries []gather.ShareholderConfig
	// The proxies' config files (--rotate, --tprf): rewritten and
	// reloaded to change the TCP route's epochs.
	serverPath, clientPath string
}

func startNetwork(ctx context.Context, n *narrator, dir string, k *keyFiles, o Options) (*network, error) {
	net := &network{holders: map[string]*shareholder.Server{}, config: map[string]string{}, dir: dir, keys: k, o: o}
	var err error

	var v verifierYAML
	var policy string
	if o.TEE == TEEMockTSM {
		if v, policy, err = net.startMockTSM(n); err != nil {
			return net, err
		}
	} else {
		n.say("== Starting the dev attester (it stands in for Confidential Space and proves nothing about hardware)")
		net.att, err = attest.StartDevAttester(attest.DevAttesterConfig{
			Socket: filepath.Join(dir, "teeserver.sock"), ImageDigest: demoDigest, Logger: o.Log,
		})
		if err != nil {
			return net, fmt.Errorf("dev attester: %w", err)
		}
		n.say("   tokens on %s, keys at %s", net.att.Socket(), net.att.Issuer())
		net.attCfg = gather.AttestationConfig{Provider: attest.KindDev, Socket: net.att.Socket()}
		v = verifierYAML{issuer: net.att.Issuer()}
		policy, err = shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{ImageDigests: []string{demoDigest}, Dev: true})
		if err != nil {
			return net, err
		}
	}
	extra := ""
	if o.TPRF {
		extra = tprfHolderYAML(tprfFirst)
	}
	daemons := participants
	if o.KMS {
		if net.kms, err = startKMS(ctx, n, dir, k, net.att.Issuer(), o); err != nil {
			return net, fmt.Errorf("carol's Cloud KMS: %w", err)
		}
		daemons = []string{"alice", "bob"}
		n.say("== Starting two shareholder daemons (alice, bob); each releases its share only to an attested proxy running image %s…", demoDigest[:19])
	} else {
		what := "releases its share"
		if o.TPRF {
			what = "answers"
		}
		n.say("== Starting three shareholders; each %s only to %s", what, net.whoAttested())
	}
	if o.TPRF {
		n.say("   each is evaluate-only: it never releases its share, it answers x_i·H(epoch) with a proof, for epochs %d..%d only", tprfFirst, tprfFirst)
	}
	for _, name := range daemons {
		s, path, err := startShareholder(ctx, dir, name, k, v, policy, extra, o)
		if err != nil {
			return net, fmt.Errorf("shareholder %s: %w", name, err)
		}
		net.holders[name], net.config[name] = s, path
		net.entries = append(net.entries, gather.ShareholderConfig{
			Name: name, URL: "https://" + s.Addr().String(), Pin: s.Pin(), Audience: audience(name),
		})
		n.say("   %s listening on %s, consent granted", name, s.Addr())
	}
	if net.kms != nil {
		net.entries = append(net.entries, net.kms.entry)
	}

	if net.back, err = startBackends(); err != nil {
		return net, err
	}
	n.say("== Starting the server app: HTTP on %s, UDP echo on %s (plain, loopback)", net.back.httpLn.Addr(), net.back.udp.LocalAddr())

	if o.epochs() {
		return net, net.startEpochProxies(n)
	}
	src := func() (*gather.SharesSource, error) {
		s, err := gather.NewSharesSource(gather.SharesSourceConfig{
			Group: k.groupP, Shareholders: net.entries, Attestation: net.attCfg,
			Identity: psk.DefaultIdentity, Refresh: o.Refresh, Timeout: stepTimeout,
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
	net.sayProxies(n)
	return net, nil
}

func (net *network) sayProxies(n *narrator) {
	n.say("   server proxy: TLS-PSK on %s, DTLS-PSK on %s", net.server.Addr("web"), net.server.Addr("dgram"))
	n.say("   client proxy: HTTP on %s, UDP on %s (what the client app uses)", net.client.Addr("web"), net.client.Addr("dgram"))
}

// whoAttested says whom the shareholders release to, for the narration.
func (net *network) whoAttested() string {
	if net.mock != nil {
		return "a proxy whose own TEE evidence (mock-tsm) shows measurement " + demoMeasurement[:16] + "…"
	}
	return "an attested proxy running image " + demoDigest[:19] + "…"
}

// state is the client proxy's view of the participants (e.g. "bob
// refused"): its HTTP route's source, or its UDP route's when the
// proxies built their sources from config files.
func (net *network) state() string {
	if net.srcWeb != nil {
		return net.srcWeb.Status().State
	}
	for _, r := range net.client.Status() {
		if r.Name == "dgram" {
			return r.PSK.State
		}
	}
	return ""
}

func audience(name string) string { return "mcbn-demo-" + name }

// verifierYAML is what a daemon's verifier block says besides its
// audience: the token issuer, and (mock-tsm) the raw evidence it accepts.
type verifierYAML struct {
	issuer   string
	mockRoot string // --tee mock-tsm: the mock root certificate
}

// startShareholder writes name's daemon config and starts it. Consent is a
// line of that file, as for a real participant. extra is appended to the
// config (--tprf: the release mode and epoch window).
func startShareholder(ctx context.Context, dir, name string, k *keyFiles, v verifierYAML, policy, extra string, o Options) (*shareholder.Server, string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nlisten: 127.0.0.1:0\n", name)
	fmt.Fprintf(&b, "share_store: file://%s\ngroup: %s\n", k.shareP[name], k.groupP)
	fmt.Fprintf(&b, "verifier:\n  issuer: %s\n  audience: %s\n  clock_skew: 30s\n", v.issuer, audience(name))
	if v.mockRoot != "" {
		fmt.Fprintf(&b, "  tee:\n    accept: [%s]\n    mock_root: %s\n", attest.KindMockTSM, v.mockRoot)
	}
	fmt.Fprintf(&b, "policy: |\n")
	for _, l := range strings.Split(strings.TrimSpace(policy), "\n") {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, "consent: %s\naudit_log: %s.audit.jsonl\n", shareholder.ConsentGranted, name)
	fmt.Fprintf(&b, "rate_limit:\n  per_second: 1000\n  burst: 1000\nreload_interval: 50ms\n")
	fmt.Fprintf(&b, "metrics:\n  listen: \"\"\n") // three daemons: no metrics ports to share
	b.WriteString(extra)
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
		Shareholder: map[string]string{}, TPRF: net.o.TPRF,
	}
	if net.o.Rotate {
		in.Epoch = rotateTo
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
