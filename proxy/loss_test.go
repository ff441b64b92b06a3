package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
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

// gatherOptions are the options of the "test-gather" source kind: a
// stand-in for the shares source (which lives in package shareholder and
// registers itself the same way), with the same close_tunnels_on_loss key.
type gatherOptions struct {
	Name               string `yaml:"name"`
	CloseTunnelsOnLoss bool   `yaml:"close_tunnels_on_loss"`
}

// gatherSources are the test-gather sources built from configs, by name.
var (
	gatherMu      sync.Mutex
	gatherSources = map[string]*closingSource{}
)

func init() {
	RegisterSource("test-gather", func(spec SourceSpec) (Source, error) {
		var o gatherOptions
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		src := &closingSource{fakeSource: newFakeSource(), closeOnLoss: o.CloseTunnelsOnLoss,
			rounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "test_gather_rounds_total", Help: "test"})}
		gatherMu.Lock()
		gatherSources[o.Name] = src
		gatherMu.Unlock()
		return src, nil
	})
}

func gatherSource(t *testing.T, name string) *closingSource {
	t.Helper()
	gatherMu.Lock()
	defer gatherMu.Unlock()
	s := gatherSources[name]
	if s == nil {
		t.Fatalf("no test-gather source %q was built", name)
	}
	return s
}

// startYAML starts a proxy from a YAML config, as 'mcbn proxy --config'
// would (ParseConfig, Validate in New, Start).
func startYAML(t *testing.T, text string) *testProxy {
	t.Helper()
	cfg, err := ParseConfig([]byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	logs := &syncBuffer{}
	p, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("New: %v\n%s", err, text)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	tp := &testProxy{Proxy: p, logs: logs}
	t.Cleanup(func() {
		p.Close()
		if t.Failed() {
			t.Logf("%s proxy log:\n%s", cfg.Mode, logs.String())
		}
	})
	return tp
}

// TestGatheringSourceLossClosesTunnelsByDefault: a server proxy whose routes
// gather their key from participants (a registered source kind that
// implements TunnelCloser, like shares) closes the open TCP tunnel and the
// open UDP session when the key is lost, although its config does not say
// close_tunnels_on_loss; with close_tunnels_on_loss: false both stay up.
func TestGatheringSourceLossClosesTunnelsByDefault(t *testing.T) {
	for _, optOut := range []bool{false, true} {
		t.Run(fmt.Sprintf("opt-out=%v", optOut), func(t *testing.T) {
			key := randomKey(t)
			name := fmt.Sprintf("srv-%v-%d", optOut, time.Now().UnixNano())
			extra := ""
			if optOut {
				extra = "\n        close_tunnels_on_loss: false"
			}
			server := startYAML(t, fmt.Sprintf(`mode: server
admin: 127.0.0.1:0
routes:
  - name: web
    listen: tls://127.0.0.1:0
    connect: tcp://%s
    psk:
      source: test-gather
      options:
        name: %s-web%s
  - name: dns
    listen: dtls://127.0.0.1:0
    connect: udp://%s
    psk:
      source: test-gather
      options:
        name: %s-dns%s
`, echoServer(t), name, extra, udpEcho(t), name, extra))
			web, dns := gatherSource(t, name+"-web"), gatherSource(t, name+"-dns")
			web.set(key)
			dns.set(key)
			client := startYAML(t, fmt.Sprintf(`mode: client
routes:
  - name: web
    listen: tcp://127.0.0.1:0
    connect: tls://%s
    psk: {hex: %s}
  - name: dns
    listen: udp://127.0.0.1:0
    connect: dtls://%s
    psk: {hex: %s}
`, server.url("web"), hexKey(key), server.url("dns"), hexKey(key)))

			tcp, err := net.Dial("tcp", client.url("web"))
			if err != nil {
				t.Fatal(err)
			}
			defer tcp.Close()
			buf := make([]byte, 64)
			tcp.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := tcp.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(tcp, buf[:4]); err != nil {
				t.Fatalf("TCP echo before the loss: %v", err)
			}
			udp, err := net.Dial("udp", client.url("dns"))
			if err != nil {
				t.Fatal(err)
			}
			defer udp.Close()
			echo := func(msg string) bool {
				for i := 0; i < 10; i++ {
					udp.Write([]byte(msg))
					udp.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					if n, err := udp.Read(buf); err == nil && string(buf[:n]) == msg {
						return true
					}
				}
				return false
			}
			if !echo("one") {
				t.Fatal("no UDP echo before the loss")
			}
			srvDNS := server.byName["dns"]
			if srvDNS.open() != 1 {
				t.Fatalf("%d UDP sessions on the server, want 1", srvDNS.open())
			}

			web.set(nil)
			dns.set(nil)
			waitFor(t, 3*time.Second, "psk_ready 0", func() bool {
				return metricValue(server.met.pskReady.WithLabelValues("web")) == 0 && metricValue(server.met.pskReady.WithLabelValues("dns")) == 0
			})
			if !optOut {
				tcp.SetDeadline(time.Now().Add(5 * time.Second))
				if n, err := tcp.Read(buf); err == nil || isTimeout(err) {
					t.Fatalf("the TCP tunnel is still open after the key was lost (read %d bytes, %v)", n, err)
				}
				waitFor(t, 5*time.Second, "the server's UDP session to close", func() bool { return srvDNS.open() == 0 })
				if echo("two") {
					t.Fatal("the UDP session still carries datagrams after the key was lost")
				}
				return
			}
			tcp.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := tcp.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(tcp, buf[:4]); err != nil || string(buf[:4]) != "pong" {
				t.Fatalf("with close_tunnels_on_loss: false the open tunnel broke: %q, %v", buf[:4], err)
			}
			if !echo("two") {
				t.Fatal("with close_tunnels_on_loss: false the open UDP session broke")
			}
		})
	}
}
