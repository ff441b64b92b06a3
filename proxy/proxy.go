package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// Options are the parts of a Proxy that do not come from the config.
type Options struct {
	// Logger receives the proxy's logs; nil means slog.Default().
	Logger *slog.Logger
	// Sources overrides the source of a route, by route name (tests, or a
	// program embedding the proxy). The route's psk block is then ignored.
	Sources map[string]Source
}

// Proxy runs the routes of one config and its admin endpoints.
type Proxy struct {
	cfg     *Config
	log     *slog.Logger
	met     *metrics
	routes  []runner
	byName  map[string]runner
	ctx     context.Context
	cancel  context.CancelFunc
	admin   *http.Server
	adminLn net.Listener
	wg      sync.WaitGroup // accept loops, probes, source watchers
	mu      sync.Mutex
	closed  bool
	drain   bool

	// Admin connection bounds (tests lower them); 0 means the default.
	adminMaxConns      int
	adminHeaderTimeout time.Duration
}

// New builds the routes and their PSK sources without opening any socket.
// A config or source error (bad file, unreadable PSK) is returned here.
func New(cfg *Config, o Options) (*Proxy, error) {
	for i := range cfg.Routes {
		_, cfg.Routes[i].external = o.Sources[cfg.Routes[i].Name]
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{cfg: cfg, log: log, met: newMetrics(), byName: map[string]runner{}, ctx: ctx, cancel: cancel}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		rlog := log.With("route", rc.Name)
		src, id := o.Sources[rc.Name], rc.Identity
		if src == nil {
			var err error
			if src, id, err = buildSource(rc, cfg.Mode, rlog); err != nil {
				p.closeSources()
				cancel()
				return nil, fmt.Errorf("routes[%d] (%s): %w", i, rc.Name, err)
			}
		} else if id == "" {
			id = DefaultIdentity
		}
		if ms, ok := src.(MetricsSource); ok {
			reg := prometheus.WrapRegistererWith(prometheus.Labels{"route": rc.Name}, p.met.reg)
			if err := reg.Register(ms.Collector()); err != nil {
				src.Close()
				p.closeSources()
				cancel()
				return nil, fmt.Errorf("routes[%d] (%s): psk source metrics: %w", i, rc.Name, err)
			}
		}
		r := &route{cfg: rc, mode: cfg.Mode, identity: id, src: src, log: rlog, met: p.met.route(rc.Name), ctx: ctx,
			closeOnLoss: closeTunnelsOnLoss(rc, src)}
		r.dest.gauge = r.met.backendUp
		var run runner
		switch {
		case rc.Transport == "tcp":
			t, err := newTCPRoute(r)
			if err != nil {
				src.Close()
				p.closeSources()
				cancel()
				return nil, fmt.Errorf("routes[%d] (%s): tls: %w", i, rc.Name, err)
			}
			run = t
		case cfg.Mode == ModeServer:
			run = &udpServerRoute{route: r}
		default:
			run = &udpClientRoute{route: r}
		}
		p.routes = append(p.routes, run)
		p.byName[rc.Name] = run
	}
	return p, nil
}

// closeTunnelsOnLoss decides whether a route closes its open tunnels (TCP
// tunnels and UDP sessions) when its source loses the key, not only refuses
// new ones.
//
// A source that gathers its key from participants (it implements
// TunnelCloser, as the shares source does) closes them unless its options
// say close_tunnels_on_loss: false. Revocation must reach the traffic: with
// open tunnels left up, a long-lived connection would outlive the consent it
// was opened under for as long as the client keeps it open. The opt-out is
// the trade-off of not cutting work in flight when a participant withdraws.
// A source injected through Options.Sources has no options here, so its own
// answer is used.
func closeTunnelsOnLoss(rc *Route, src Source) bool {
	tc, ok := src.(TunnelCloser)
	if !ok {
		return false
	}
	if rc.external || hasOption(&rc.PSK.Options, "close_tunnels_on_loss") {
		return tc.CloseTunnelsOnLoss()
	}
	return true
}

// hasOption reports whether the psk.options mapping n sets key.
func hasOption(n *yaml.Node, key string) bool {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// Start opens every listener (all or none) and the admin endpoint, then
// serves in the background.
func (p *Proxy) Start() error {
	for i, r := range p.routes {
		if err := r.listen(); err != nil {
			for _, o := range p.routes[:i] {
				o.stopAccepting()
			}
			return fmt.Errorf("routes[%d] (%s): listen %s: %w", i, r.base().cfg.Name, r.base().cfg.Listen, err)
		}
	}
	if a := p.cfg.adminAddr(); a != "" {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, r := range p.routes {
				r.stopAccepting()
			}
			return fmt.Errorf("admin: listen %s: %w", a, err)
		}
		p.adminLn = newAdminListener(ln, p.adminMaxConns)
		p.admin = newAdminServer(p.Handler(), p.log, p.adminHeaderTimeout)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.admin.Serve(p.adminLn)
		}()
		p.log.Info("admin endpoints listening", "addr", ln.Addr().String())
		if host, _, _ := net.SplitHostPort(a); isWildcard(host) {
			p.log.Warn("the admin listener binds every interface: /status and /metrics are open to whoever reaches this host (give a host, e.g. 127.0.0.1:9090)", "admin", p.cfg.Admin)
		}
	}
	for _, r := range p.routes {
		b := r.base()
		p.watchSource(b)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			r.serve()
		}()
		if b.cfg.Transport == "tcp" && p.cfg.ProbeInterval > 0 {
			p.probe(b)
		}
		if isWildcard(b.cfg.listen.Host) {
			b.log.Warn("the route's listener binds every interface (empty host, 0.0.0.0 or ::)", "listen", b.cfg.Listen)
		}
		st := b.src.Status()
		attrs := []any{"mode", string(b.mode), "listen", b.cfg.Listen, "addr", r.addr().String(),
			"connect", b.cfg.Connect, "identity", b.identity, "psk_ready", st.Ready, "psk_state", st.State}
		if sb, ok := r.(interface{ socketBuffers() (int, int) }); ok {
			// UDP: the buffers the kernel gave (capped by rmem_max/wmem_max).
			rcv, snd := sb.socketBuffers()
			attrs = append(attrs, "socket_rcvbuf", rcv, "socket_sndbuf", snd)
		}
		b.log.Info("route listening", attrs...)
	}
	return nil
}

// watchSource keeps the psk_ready gauge current and logs changes.
func (p *Proxy) watchSource(r *route) {
	set := func() SourceStatus {
		st := r.src.Status()
		if st.Ready {
			r.met.pskReady.Set(1)
		} else {
			r.met.pskReady.Set(0)
		}
		return st
	}
	set()
	select { // the state at start is logged by Start
	case <-r.src.Changes():
	default:
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.ctx.Done():
				return
			case <-r.src.Changes():
				st := set()
				r.log.Info("PSK source changed", "psk_ready", st.Ready, "psk_state", st.State)
				if !st.Ready && r.closeOnLoss {
					if n := r.track.closeOpen(); n > 0 {
						r.log.Warn("PSK lost: closed the open tunnels", "closed", n, "psk_state", st.State)
					}
				}
			}
		}
	}()
}

// probe test-dials a TCP route's destination on a timer so /status can say
// "backend unreachable" before any tunnel tries. Probes are never logged.
func (p *Proxy) probe(r *route) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.cfg.ProbeInterval.D())
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(p.ctx, r.cfg.Timeouts.Dial.D())
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", r.cfg.connect.HostPort())
			cancel()
			if p.ctx.Err() != nil {
				if c != nil {
					c.Close()
				}
				return
			}
			if c != nil {
				c.Close()
			}
			if err == nil && r.mode == ModeClient {
				r.dest.portOpen() // only a handshake says the server proxy is there
			} else {
				r.dest.record(err)
			}
			select {
			case <-p.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Addr is the bound address of the named route (useful with port 0).
func (p *Proxy) Addr(route string) net.Addr {
	if r, ok := p.byName[route]; ok {
		return r.addr()
	}
	return nil
}

// AdminAddr is the bound admin address, or nil.
func (p *Proxy) AdminAddr() net.Addr {
	if p.adminLn == nil {
		return nil
	}
	return p.adminLn.Addr()
}

// Reload re-reads every source that can (SIGHUP). Open tunnels are not
// touched; new tunnels use the new keys. A failed reload keeps the old key.
//
// A route with psk.epochs takes its epochs from the re-read config file
// instead (epochs.go): new epochs are added, dropped ones retired; a config
// that fails to load or apply keeps the route's epochs as they were.
func (p *Proxy) Reload() error {
	next, cfgErr := p.reloadEpochConfig()
	var errs []error
	for _, r := range p.routes {
		b := r.base()
		var err error
		if es := b.epochs(); es != nil && (next != nil || cfgErr != nil) {
			err = es.reloadFrom(next, cfgErr)
		} else if wantsSpec(b) && (next != nil || cfgErr != nil) {
			err = p.reloadSpec(b, next, cfgErr) // source_reload.go
		} else {
			rl, ok := b.src.(Reloader)
			if !ok {
				continue
			}
			err = rl.Reload()
		}
		b.reload.record(err)
		if err != nil {
			p.met.reloads.WithLabelValues("error").Inc()
			b.log.Error("PSK reload failed; keeping the previous key", "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", b.cfg.Name, err))
			continue
		}
		p.met.reloads.WithLabelValues("ok").Inc()
		b.log.Info("PSK source reloaded", "psk_state", b.src.Status().State)
	}
	return errors.Join(errs...)
}

// Shutdown stops accepting, lets open TCP tunnels finish until ctx ends
// (the drain), then closes whatever is left. UDP sessions close at once.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.drain = true
	p.mu.Unlock()
	for _, r := range p.routes {
		r.stopAccepting()
	}
	open := int64(0)
	for _, r := range p.routes {
		open += r.open()
	}
	if open > 0 {
		p.log.Info("draining: waiting for open tunnels", "open", open)
	}
	drained := true
	for _, r := range p.routes {
		if !r.base().track.wait(ctx) {
			drained = false
			break
		}
	}
	if !drained {
		p.log.Warn("drain timeout: closing the remaining tunnels")
	}
	return p.Close()
}

// Close ends everything now: listeners, tunnels, admin, sources.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	for _, r := range p.routes {
		r.stopAccepting()
		r.base().track.closeAll()
	}
	if p.admin != nil {
		p.admin.Close()
	}
	for _, r := range p.routes {
		r.base().track.wait(context.Background())
	}
	p.wg.Wait()
	p.closeSources()
	return nil
}

func (p *Proxy) closeSources() {
	for _, r := range p.routes {
		r.base().src.Close()
	}
}
