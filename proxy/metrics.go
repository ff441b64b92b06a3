package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics live in a private registry so that a process embedding several
// proxies (tests) or other packages' metrics never collide.
type metrics struct {
	reg *prometheus.Registry

	tunnelsOpen       *prometheus.GaugeVec
	tunnelsTotal      *prometheus.CounterVec
	bytes             *prometheus.CounterVec
	handshakeFailures *prometheus.CounterVec
	refused           *prometheus.CounterVec
	dialFailures      *prometheus.CounterVec
	sessionsOpen      *prometheus.GaugeVec
	sessionsTotal     *prometheus.CounterVec
	datagrams         *prometheus.CounterVec
	dropped           *prometheus.CounterVec
	pskReady          *prometheus.GaugeVec
	backendUp         *prometheus.GaugeVec
	reloads           *prometheus.CounterVec
	pre               *preconnectCollector
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), pre: newPreconnectCollector()}
	const ns = "mcbn_proxy"
	m.tunnelsOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "tunnels_open",
		Help: "TCP tunnels open now."}, []string{"route"})
	m.tunnelsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tunnels_total",
		Help: "TCP tunnels established (handshake done and destination connected)."}, []string{"route"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "bytes_total",
		Help: "Payload bytes carried; direction forward is listener to destination, reverse the other way."}, []string{"route", "direction"})
	m.handshakeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "handshake_failures_total",
		Help: "Failed TLS/DTLS handshakes by reason."}, []string{"route", "reason"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_refused_total",
		Help: "Connections or sessions refused before a handshake, by reason (max_connections, max_sessions, psk_not_ready)."}, []string{"route", "reason"})
	m.dialFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "dial_failures_total",
		Help: "Failed connections to the destination."}, []string{"route"})
	m.sessionsOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "udp_sessions_open",
		Help: "UDP sessions open now."}, []string{"route"})
	m.sessionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "udp_sessions_total",
		Help: "UDP sessions established."}, []string{"route"})
	m.datagrams = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "udp_datagrams_total",
		Help: "UDP datagrams carried, by direction."}, []string{"route", "direction"})
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "udp_dropped_datagrams_total",
		Help: "UDP datagrams dropped, by reason."}, []string{"route", "reason"})
	m.pskReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "psk_ready",
		Help: "1 when the route's PSK source has a key."}, []string{"route"})
	m.backendUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "destination_up",
		Help: "1 when the last probe or connection to the destination succeeded, 0 when it failed."}, []string{"route"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "reloads_total",
		Help: "SIGHUP reloads of PSK sources, by result."}, []string{"result"})
	m.reg.MustRegister(m.tunnelsOpen, m.tunnelsTotal, m.bytes, m.handshakeFailures, m.refused, m.dialFailures,
		m.sessionsOpen, m.sessionsTotal, m.datagrams, m.dropped, m.pskReady, m.backendUp, m.reloads, m.pre,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// routeMetrics are one route's children, resolved once.
type routeMetrics struct {
	m                           *metrics
	name                        string
	tunnelsOpen, sessionsOpen   prometheus.Gauge
	tunnelsTotal, sessionsTotal prometheus.Counter
	bytesFwd, bytesRev          prometheus.Counter
	datagramsFwd, datagramsRev  prometheus.Counter
	dialFailures                prometheus.Counter
	pskReady, backendUp         prometheus.Gauge
}

func (m *metrics) route(name string) *routeMetrics {
	return &routeMetrics{
		m: m, name: name,
		tunnelsOpen: m.tunnelsOpen.WithLabelValues(name), tunnelsTotal: m.tunnelsTotal.WithLabelValues(name),
		sessionsOpen: m.sessionsOpen.WithLabelValues(name), sessionsTotal: m.sessionsTotal.WithLabelValues(name),
		bytesFwd: m.bytes.WithLabelValues(name, "forward"), bytesRev: m.bytes.WithLabelValues(name, "reverse"),
		datagramsFwd: m.datagrams.WithLabelValues(name, "forward"), datagramsRev: m.datagrams.WithLabelValues(name, "reverse"),
		dialFailures: m.dialFailures.WithLabelValues(name),
		pskReady:     m.pskReady.WithLabelValues(name), backendUp: m.backendUp.WithLabelValues(name),
	}
}

func (r *routeMetrics) handshakeFailed(reason string) {
	r.m.handshakeFailures.WithLabelValues(r.name, reason).Inc()
}

func (r *routeMetrics) refusedConn(reason string) { r.m.refused.WithLabelValues(r.name, reason).Inc() }

func (r *routeMetrics) drop(reason string) { r.m.dropped.WithLabelValues(r.name, reason).Inc() }

// dropN counts n datagrams dropped for reason at once (the DTLS layer's
// own counters, copied in).
func (r *routeMetrics) dropN(reason string, n uint64) {
	r.m.dropped.WithLabelValues(r.name, reason).Add(float64(n))
}
