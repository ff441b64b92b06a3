package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

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
	// State sums up: "ok", "psk_not_ready", "destination_unreachable"
	// or "draining".
	State       string            `json:"state"`
	PSK         SourceStatus      `json:"psk"`
	Destination DestinationStatus `json:"destination"`
	Open        int64             `json:"open"` // tunnels (TCP) or sessions (UDP)
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
			Connect: b.cfg.Connect, Identity: b.identity, PSK: b.src.Status(), Destination: b.dest.snapshot(), Open: r.open()}
		switch {
		case draining:
			s.State = "draining"
		case !s.PSK.Ready:
			s.State = "psk_not_ready"
		case s.Destination.State == "unreachable":
			s.State = "destination_unreachable"
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
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: "+strings.Join(why, "; "))
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
