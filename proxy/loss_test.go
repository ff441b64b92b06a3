package proxy

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// closingSource is a fakeSource that asks for open tunnels to be closed when
// its key goes away, and has a metric of its own.
type closingSource struct {
	*fakeSource
	closeOnLoss bool
	rounds      prometheus.Counter
}

func (c *closingSource) CloseTunnelsOnLoss() bool        { return c.closeOnLoss }
func (c *closingSource) Collector() prometheus.Collector { return c.rounds }

// TestKeyLossClosesOpenTunnels: a source that asks for it gets the route's
// open tunnels closed when the key is lost; one that does not keeps them.
// Its own metrics appear on /metrics with the route label.
func TestKeyLossClosesOpenTunnels(t *testing.T) {
	for _, closeOnLoss := range []bool{true, false} {
		backend := echoServer(t)
		key := randomKey(t)
		src := &closingSource{fakeSource: newFakeSource(), closeOnLoss: closeOnLoss,
			rounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "test_source_rounds_total", Help: "test"})}
		src.set(key)
		src.rounds.Inc()
		srv := startProxy(t, ModeServer, true, map[string]Source{"web": src}, testRoute("web", "tls://127.0.0.1:0", "tcp://"+backend.String()))
		cr := testRoute("web", "tcp://127.0.0.1:0", "tls://"+srv.url("web"))
		cr.PSK.Hex = hexKey(key)
		client := startProxy(t, ModeClient, false, nil, cr)

		c, err := net.Dial("tcp", client.url("web"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 4)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo before loss: %q, %v", buf, err)
		}
		src.set(nil)
		waitFor(t, 3*time.Second, "psk_ready gauge 0", func() bool { return metricValue(srv.met.pskReady.WithLabelValues("web")) == 0 })
		if closeOnLoss {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(buf); err == nil {
				t.Fatalf("tunnel still open after the key was lost (read %d bytes)", n)
			}
			waitFor(t, 3*time.Second, "closed-tunnels log", func() bool { return strings.Contains(srv.logs.String(), "PSK lost: closed the open tunnels") })
		} else {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Read(buf); err != nil || string(buf) != "pong" {
				t.Fatalf("open tunnel broke although the source did not ask: %q, %v", buf, err)
			}
		}
		_, metrics := httpGet(t, "http://"+srv.AdminAddr().String()+"/metrics")
		if !strings.Contains(metrics, `test_source_rounds_total{route="web"} 1`) {
			t.Fatalf("source metrics missing from /metrics")
		}
	}
}
