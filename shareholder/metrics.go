package shareholder

import (
	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics live in a private registry: only what the daemon exports,
// never a share, a token or a subject.
type serverMetrics struct {
	reg      *prometheus.Registry
	releases prometheus.Counter
	refusals *prometheus.CounterVec
	consent  prometheus.Gauge
	reloads  *prometheus.CounterVec
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
			Help: "1 while consent is granted, 0 while revoked.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcbn_shareholder_reloads_total",
			Help: "Configuration reloads, by result.",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.releases, m.refusals, m.consent, m.reloads)
	return m
}

func (m *serverMetrics) setConsent(c string) {
	if c == ConsentGranted {
		m.consent.Set(1)
	} else {
		m.consent.Set(0)
	}
}

// sourceMetrics are the shares source's: per-shareholder outcomes and
// readiness. Collector exposes them for the proxy's registry.
type sourceMetrics struct {
	results *prometheus.CounterVec
	ready   prometheus.Gauge
}

func newSourceMetrics() *sourceMetrics {
	return &sourceMetrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mcbn_shares_results_total",
			Help: "Share requests by shareholder and outcome (ok, refused, invalid, unreachable, not needed).",
		}, []string{"shareholder", "state", "reason"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mcbn_shares_ready",
			Help: "1 while the gathered PSK is available.",
		}),
	}
}

func (m *sourceMetrics) observe(p Progress) {
	for _, o := range p.Outcomes {
		reason := ""
		if o.State == StateRefused {
			reason = o.Reason // a bounded set of codes
		}
		m.results.WithLabelValues(o.Name, o.State, reason).Inc()
	}
}

func (m *sourceMetrics) setReady(ok bool) {
	if ok {
		m.ready.Set(1)
	} else {
		m.ready.Set(0)
	}
}

// Describe implements prometheus.Collector.
func (m *sourceMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.results.Describe(ch)
	m.ready.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *sourceMetrics) Collect(ch chan<- prometheus.Metric) {
	m.results.Collect(ch)
	m.ready.Collect(ch)
}
