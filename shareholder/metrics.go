package shareholder

import (
	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics live in a private registry served only on the metrics
// listener (loopback by default), never on the release port: they name the
// check a refused token failed and the consent state, which the release
// port's answers deliberately keep to themselves. Never a share, a token or
// a subject.
type serverMetrics struct {
	reg             *prometheus.Registry
	releases        prometheus.Counter
	refusals        *prometheus.CounterVec
	consent         prometheus.Gauge
	configValid     prometheus.Gauge
	reloads         *prometheus.CounterVec
	connsOpen       *prometheus.GaugeVec
	connsShed       *prometheus.CounterVec
	acceptErrors    *prometheus.CounterVec
	auditSuppressed *prometheus.CounterVec
}

func newServerMetrics() *serverMetrics {
	m := &serverMetrics{
		reg: prometheus.NewRegistry(),
		releases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcbn_shareholder_releases_total",
			Help: "Shares released to attested proxies.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcbn_shareholder_refusals_total",
			Help: "Release requests refused, by public reason and detailed check.",
		}, []string{"reason", "check"}),
		consent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcbn_shareholder_consent_granted",
			Help: "1 while releases may happen (consent granted and the config loads), 0 otherwise.",
		}),
		configValid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcbn_shareholder_config_valid",
			Help: "1 while the config file loads, 0 while it does not (every release is refused).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcbn_shareholder_reloads_total",
			Help: "Configuration reloads, by result.",
		}, []string{"result"}),
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mcbn_shareholder_connections_open",
			Help: "Connections held open, by listener.",
		}, []string{"listener"}),
		connsShed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcbn_shareholder_connections_shed_total",
			Help: "Connections closed by the connection cap: evicted (idle, to admit a new one), over_cap (all busy), accept_failed (to free a descriptor).",
		}, []string{"listener", "why"}),
		acceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcbn_shareholder_accept_errors_total",
			Help: "Failed accepts (e.g. out of file descriptors): local failures.",
		}, []string{"listener"}),
		auditSuppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcbn_shareholder_audit_refusals_summarized_total",
			Help: "Refusals counted in an audit summary line instead of a line of their own, by reason.",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(m.releases, m.refusals, m.consent, m.configValid, m.reloads, m.connsOpen, m.connsShed, m.acceptErrors, m.auditSuppressed)
	return m
}

// setState exports whether releases may happen under st.
func (m *serverMetrics) setState(st *serverState) {
	if st.releasing() {
		m.consent.Set(1)
	} else {
		m.consent.Set(0)
	}
	if st.refusing == "" {
		m.configValid.Set(1)
	} else {
		m.configValid.Set(0)
	}
}
