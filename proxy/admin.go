package proxy

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// RouteStatus is one route in /status.
type RouteStatus struct {
	Name      string `json:"name"`
	Mode      Mode   `json:"mode"`
	Transport string `json:"transport"`
	Listen    string `json:"listen"`
	Connect   string `json:"connect"`
	Identity  string `json:"identity"`
	// State sums up: "ok", "psk_not_ready", "destination_unreachable",
	// "handshake_failing" or "draining".
	State       string            `json:"state"`
	PSK         SourceStatus      `json:"psk"`
	Destination DestinationStatus `json:"destination"`
	Open        int64             `json:"open"` // tunnels (TCP) or sessions (UDP)
	// Reload is the last SIGHUP reload of the source (absent before one).
	Reload *ReloadStatus `json:"reload,omitempty"`
	// Epochs are the route's key epochs (absent without psk.epochs).
	Epochs *EpochsStatus `json:"epochs,omitempty"`
}

// Status reports every route.
func (p *Proxy) Status() []RouteStatus {
	p.mu.Lock()
	draining := p.drain
	p.mu.Unlock()
	out := make([]RouteStatus, 0, len(p.routes))
	for _, r := range p.routes {
		b := r.base()
		s := RouteStatus{Name: b.cfg.Name, Mode: b.mode, Transport: b.cfg.Transport, Listen: b.cfg.Listen,
			Connect: b.cfg.Connect, Identity: b.identity, PSK: b.src.Status(), Destination: b.dest.snapshot(), Open: r.open(),
			Reload: b.reload.snapshot(), Epochs: b.epochStatus()}
		switch {
		case draining:
			s.State = "draining"
		case !s.PSK.Ready:
			s.State = "psk_not_ready"
		case s.Destination.State == destUnreachable:
			s.State = "destination_unreachable"
		case s.Destination.State == destHandshakeFailed:
			s.State = "handshake_failing"
		default:
			s.State = "ok"
		}
		out = append(out, s)
	}
	return out
}

// Ready reports whether every route has its PSK, with the reasons if not.
func (p *Proxy) Ready() (bool, []string) {
	p.mu.Lock()
	draining := p.drain
	p.mu.Unlock()
	var why []string
	if draining {
		why = append(why, "draining")
	}
	for _, r := range p.routes {
		b := r.base()
		if st := b.src.Status(); !st.Ready {
			why = append(why, fmt.Sprintf("route %s: PSK not available yet: %s", b.cfg.Name, st.State))
		}
	}
	return len(why) == 0, why
}

// reloadNotes says, for each route whose last reload failed, that it
// serves with the previous key.
func (p *Proxy) reloadNotes() []string {
	var out []string
	for _, r := range p.routes {
		b := r.base()
		if st := b.reload.snapshot(); st != nil && st.State == "failed" {
			out = append(out, fmt.Sprintf("route %s: last reload failed at %s, serving with the previous key: %s",
				b.cfg.Name, st.At.UTC().Format(time.RFC3339), st.Error))
		}
	}
	return out
}

// Handler serves /healthz, /readyz, /status and /metrics. It never logs a
// request, so probes do not fill the log.
func (p *Proxy) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, why := p.Ready()
		// A failed reload does not make the route unready (it serves with
		// the previous key), but the answer says so: the operator asked for
		// a change that did not happen.
		reloads := p.reloadNotes()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: "+strings.Join(append(why, reloads...), "; "))
			return
		}
		if len(reloads) > 0 {
			fmt.Fprintln(w, "ready; "+strings.Join(reloads, "; "))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		ok, _ := p.Ready()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			Mode   Mode          `json:"mode"`
			Ready  bool          `json:"ready"`
			Routes []RouteStatus `json:"routes"`
		}{p.cfg.Mode, ok, p.Status()})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.met.reg, promhttp.HandlerOpts{}))
	return mux
}

// Bounds of the admin listener. Its requests are one-shot probes and
// scrapes; without bounds, idle connections (20,000 of them in a test)
// used up the process's descriptors, so new tunnels and share gathering
// failed.
const (
	// defaultAdminMaxConns is how many admin connections may be open.
	defaultAdminMaxConns = 64
	// defaultAdminHeaderTimeout bounds the wait for a request's headers.
	defaultAdminHeaderTimeout = 2 * time.Second
)

// newAdminServer serves h with short timeouts and no keep-alive: each
// connection carries one request and is closed after the answer.
func newAdminServer(h http.Handler, log *slog.Logger, headerTimeout time.Duration) *http.Server {
	if headerTimeout <= 0 {
		headerTimeout = defaultAdminHeaderTimeout
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, ReadTimeout: 2 * headerTimeout,
		WriteTimeout: 10 * time.Second, IdleTimeout: headerTimeout, MaxHeaderBytes: 8 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	s.ConnState = func(c net.Conn, st http.ConnState) {
		if ac, ok := c.(*adminConn); ok && st == http.StateActive {
			ac.requested.Store(true)
		}
	}
	s.SetKeepAlivesEnabled(false)
	return s
}

// adminListener bounds the open admin connections. At the bound, the
// oldest connection that has not sent a request yet is closed to admit
// the new one (an idle connection only holds a slot), so a health probe
// still gets through a crowd of idle connections; when every connection
// is busy with a request, the new one is refused.
type adminListener struct {
	net.Listener
	max   int
	mu    sync.Mutex
	conns []*adminConn // in accept order
}

func newAdminListener(ln net.Listener, max int) *adminListener {
	if max <= 0 {
		max = defaultAdminMaxConns
	}
	return &adminListener{Listener: ln, max: max}
}

func (l *adminListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ac := &adminConn{Conn: c, l: l}
		l.mu.Lock()
		var victim *adminConn
		if len(l.conns) >= l.max {
			for i, o := range l.conns {
				if !o.requested.Load() {
					victim = o
					l.conns = slices.Delete(l.conns, i, i+1)
					break
				}
			}
			if victim == nil {
				l.mu.Unlock()
				c.Close()
				continue
			}
		}
		l.conns = append(l.conns, ac)
		l.mu.Unlock()
		if victim != nil {
			victim.Conn.Close()
		}
		return ac, nil
	}
}

// open is the number of admin connections held.
func (l *adminListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

type adminConn struct {
	net.Conn
	l         *adminListener
	requested atomic.Bool
	once      sync.Once
}

func (c *adminConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if i := slices.Index(c.l.conns, c); i >= 0 {
			c.l.conns = slices.Delete(c.l.conns, i, i+1)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
