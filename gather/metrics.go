package gather

import (
	"github.com/prometheus/client_golang/prometheus"
)

// sourceMetrics are the shares source's: per-participant outcomes and
// readiness. Collector exposes them for the proxy's registry. The label
// keeps its name "shareholder" for every kind, so existing dashboards and
// alerts go on working.
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
			reason = o.Reason // a bounded set of codes (plainReason)
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
