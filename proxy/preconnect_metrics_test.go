package proxy

import (
	"io"
	"net"
	"testing"
	"time"
)

// gathered returns a proxy's metric values by name and labels (name=value,
// sorted by name, joined with ","), e.g.
// m["mcbn_proxy_preconnect_tunnels_total"]["event=made,route=c"].
func gathered(t *testing.T, p *testProxy) map[string]map[string]float64 {
	t.Helper()
	mfs, err := p.met.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		vals := map[string]float64{}
		for _, m := range mf.GetMetric() {
			key := ""
			for i, l := range m.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				vals[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				vals[key] = m.GetGauge().GetValue()
			}
		}
		out[mf.GetName()] = vals
	}
	return out
}

// TestPreconnectMetrics: the preconnect metrics count what the pool did:
// every local connection is one handoff, ready or fresh; tunnels made and
// ready match the pool; the key share pool reports pooled key pairs.
func TestPreconnectMetrics(t *testing.T) {
	backend := echoServer(t)
	cli, pool, _, _ := prePair(t, backend, 1, 2)
	waitFor(t, 10*time.Second, "2 tunnels ready", func() bool { return pool.ready() == 2 })
	const conns = 5
	for i := 0; i < conns; i++ {
		c, err := net.DialTimeout("tcp", cli.url("c"), 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil || b[0] != byte(i) {
			t.Fatalf("connection %d: echo %v, %v", i, b, err)
		}
		c.Close()
	}
	madeBefore := pool.made.Load()
	m := gathered(t, cli)
	madeAfter := pool.made.Load() // the refill goes on while we scrape
	ho := m["mcbn_proxy_preconnect_handoffs_total"]
	if ho["result=ready,route=c"]+ho["result=fresh,route=c"] != conns {
		t.Fatalf("handoffs %v: ready + fresh should be the %d local connections", ho, conns)
	}
	if ho["result=ready,route=c"] != float64(pool.handed.Load()) || ho["result=ready,route=c"] < 1 {
		t.Fatalf("handoffs ready %v, pool handed %d", ho["result=ready,route=c"], pool.handed.Load())
	}
	tun := m["mcbn_proxy_preconnect_tunnels_total"]
	if made := tun["event=made,route=c"]; made < 2 || made < float64(madeBefore) || made > float64(madeAfter) || tun["event=failed,route=c"] != 0 {
		t.Fatalf("tunnels %v, pool made %d before the scrape and %d after", tun, madeBefore, madeAfter)
	}
	if r := m["mcbn_proxy_preconnect_ready"]["route=c"]; r < 0 || r > 2 {
		t.Fatalf("ready gauge %v outside 0..2", r)
	}
	if ks := m["mcbn_proxy_key_shares_total"]; ks["result=pooled"]+ks["result=generated"] < 1 {
		t.Fatalf("key shares %v: the handshakes took no key pair", ks)
	}
	// A closed route's pool is no longer reported.
	cli.Close()
	if _, ok := gathered(t, cli)["mcbn_proxy_preconnect_ready"]; ok {
		t.Fatal("a closed proxy still reports its preconnect pool")
	}
}
