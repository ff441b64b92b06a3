package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// udpDropAlias exposes mcbn_proxy_udp_dropped_datagrams_total a second
// time under the name issue 12 asked for, mcbn_udp_dropped_total{route,
// reason}: the same counters read at scrape time (one source, so the two
// never disagree). The old name stays for existing dashboards; docs/udp.md
// lists both.
type udpDropAlias struct {
	src  *prometheus.CounterVec
	desc *prometheus.Desc
}

func newUDPDropAlias(src *prometheus.CounterVec) *udpDropAlias {
	return &udpDropAlias{src: src, desc: prometheus.NewDesc("mcbn_udp_dropped_total",
		"UDP datagrams dropped, by reason (the same counter as mcbn_proxy_udp_dropped_datagrams_total).",
		[]string{"route", "reason"}, nil)}
}

func (a *udpDropAlias) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

func (a *udpDropAlias) Collect(ch chan<- prometheus.Metric) {
	in := make(chan prometheus.Metric, 16)
	go func() { a.src.Collect(in); close(in) }()
	for m := range in {
		var d dto.Metric
		if m.Write(&d) != nil || d.Counter == nil {
			continue
		}
		var route, reason string
		for _, l := range d.Label {
			switch l.GetName() {
			case "route":
				route = l.GetValue()
			case "reason":
				reason = l.GetValue()
			}
		}
		ch <- prometheus.MustNewConstMetric(a.desc, prometheus.CounterValue, d.Counter.GetValue(), route, reason)
	}
}

// registerUDPDropAlias adds the alias to the proxy's registry once (a
// second UDP route finds it there).
func registerUDPDropAlias(m *metrics) {
	m.reg.Register(newUDPDropAlias(m.dropped)) // AlreadyRegisteredError on later routes: fine
}
