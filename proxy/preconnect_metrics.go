package proxy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// preconnectCollector exports the pre-connected tunnels of every client
// route with preconnect, and the process's key share pool, read from their
// own counters at scrape time (one source, so the metrics cannot drift from
// what the pools did).
type preconnectCollector struct {
	mu    sync.Mutex
	pools map[*preconnectPool]string // pool -> route name

	ready, tunnels, handoffs, keyShares *prometheus.Desc
}

func newPreconnectCollector() *preconnectCollector {
	const ns = "mcbn_proxy"
	return &preconnectCollector{
		pools: map[*preconnectPool]string{},
		ready: prometheus.NewDesc(ns+"_preconnect_ready",
			"Pre-connected tunnels ready (handshake done, not yet handed to a local connection).", []string{"route"}, nil),
		tunnels: prometheus.NewDesc(ns+"_preconnect_tunnels_total",
			"Pre-connected tunnels by event: made (handshake done), failed (dial or handshake failed), retired (closed unused: too old, key changed, peer closed, shutdown).", []string{"route", "event"}, nil),
		handoffs: prometheus.NewDesc(ns+"_preconnect_handoffs_total",
			"Local connections on a route with preconnect, by how they got their tunnel: ready (a pre-connected one) or fresh (none was ready: dialled on demand).", []string{"route", "result"}, nil),
		keyShares: prometheus.NewDesc(ns+"_key_shares_total",
			"Ephemeral TLS 1.3 key pairs of the process's key share pool, by result: pooled (made ahead, used once), generated (pool empty: made during the handshake), expired (discarded unused).", []string{"result"}, nil),
	}
}

func (c *preconnectCollector) add(p *preconnectPool, route string) {
	c.mu.Lock()
	c.pools[p] = route
	c.mu.Unlock()
}

func (c *preconnectCollector) remove(p *preconnectPool) {
	c.mu.Lock()
	delete(c.pools, p)
	c.mu.Unlock()
}

func (c *preconnectCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.tunnels
	ch <- c.handoffs
	ch <- c.keyShares
}

func (c *preconnectCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	pools := make(map[*preconnectPool]string, len(c.pools))
	for p, r := range c.pools {
		pools[p] = r
	}
	c.mu.Unlock()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for p, r := range pools {
		p.mu.Lock()
		ready := len(p.idle)
		p.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(ready), r)
		counter(c.tunnels, p.made.Load(), r, "made")
		counter(c.tunnels, p.failed.Load(), r, "failed")
		counter(c.tunnels, p.retired.Load(), r, "retired")
		counter(c.handoffs, p.handed.Load(), r, "ready")
		counter(c.handoffs, p.fresh.Load(), r, "fresh")
	}
	st := processKeyShares().Stats()
	counter(c.keyShares, st.Hits, "pooled")
	counter(c.keyShares, st.Misses, "generated")
	counter(c.keyShares, st.Expired, "expired")
}
