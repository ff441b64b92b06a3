package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// UDP routes with epochs: the client proxy's DTLS sessions use the newest
// ready epoch's IDENTITY/EPOCH and key, sessions are counted per epoch on
// both proxies, and a retired epoch's identity is refused.

// dialDTLS makes one DTLS-PSK handshake with identity and key.
func dialDTLS(addr, identity string, key []byte) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	dc := tlspsk.DTLSClient(c, &tlspsk.DTLSConfig{Config: tlspsk.Config{Identity: identity, Key: key}, HandshakeTimeout: 3 * time.Second})
	defer dc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return dc.HandshakeContext(ctx)
}

// udpFlow is one local peer sending a numbered 64-byte datagram every
// 10 ms through the client proxy and checking every echo.
type udpFlow struct {
	c              *net.UDPConn
	sent, got, bad atomic.Int64
	mu             sync.Mutex
	seen           map[uint64]bool
	stop, done     chan struct{}
	readDone       chan struct{}
}

func startUDPFlow(t *testing.T, addr string) *udpFlow {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	f := &udpFlow{c: c, seen: map[uint64]bool{}, stop: make(chan struct{}), done: make(chan struct{}), readDone: make(chan struct{})}
	go func() { // echoes
		defer close(f.readDone)
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if n != 64 || !validPayload(buf[:n]) {
				f.bad.Add(1)
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			f.mu.Lock()
			if f.seen[seq] {
				f.bad.Add(1) // a duplicate
			} else {
				f.seen[seq] = true
				f.got.Add(1)
			}
			f.mu.Unlock()
		}
	}()
	go func() {
		defer close(f.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for seq := uint64(0); ; seq++ {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write(payload(seq)); err != nil {
				return
			}
			f.sent.Add(1)
		}
	}()
	t.Cleanup(func() { f.halt(); c.Close(); <-f.readDone })
	return f
}

// payload is seq followed by 56 bytes derived from it.
func payload(seq uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint64(b, seq)
	for i := 8; i < 64; i++ {
		b[i] = byte(seq*31 + uint64(i)*7)
	}
	return b
}

func validPayload(b []byte) bool {
	want := payload(binary.BigEndian.Uint64(b))
	return string(b) == string(want)
}

func (f *udpFlow) halt() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// more waits for n more echoes.
func (f *udpFlow) more(t *testing.T, n int64) {
	t.Helper()
	target := f.got.Load() + n
	waitFor(t, 30*time.Second, fmt.Sprintf("%d more echoed datagrams", n), func() bool { return f.got.Load() >= target })
}

// TestEpochUDPRotation: a UDP route rotates 7 -> 7+8 -> 8 (servers first,
// then clients) while one local peer sends a datagram every 10 ms. Nothing
// is lost or corrupted (loopback, in-process, 100 datagrams a second: no
// socket buffer fills, so any loss is a bug), the peer's session stays on
// epoch 7 throughout, new sessions use epoch 8, and once 7 is retired its
// identity is refused with unknown_psk_identity.
func TestEpochUDPRotation(t *testing.T) {
	k7, k8 := randomKey(t), randomKey(t)
	backend := udpEcho(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvYAML := func(eps ...ep) string {
		return epochYAML(ModeServer, "dtls://127.0.0.1:0", "udp://"+backend.String(), "10m", eps...)
	}
	srvCfg.set(srvYAML(hexEp(7, k7)))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliYAML := func(eps ...ep) string {
		return epochYAML(ModeClient, "udp://127.0.0.1:0", "dtls://"+srv.url("svc"), "10m", eps...)
	}
	cliCfg.set(cliYAML(hexEp(7, k7)))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	addr := cli.url("svc")

	flow := startUDPFlow(t, addr)
	flow.more(t, 20)
	waitFor(t, 5*time.Second, "the flow's session on epoch 7 at both proxies", func() bool {
		return epochOf(t, srv, 7).Open == 1 && epochOf(t, cli, 7).Open == 1
	})

	srvCfg.set(srvYAML(hexEp(7, k7), hexEp(8, k8)))
	if err := srv.Reload(); err != nil {
		t.Fatalf("server reload to 7+8: %v", err)
	}
	flow.more(t, 20)
	cliCfg.set(cliYAML(hexEp(7, k7), hexEp(8, k8)))
	if err := cli.Reload(); err != nil {
		t.Fatalf("client reload to 7+8: %v", err)
	}
	if c := current(t, cli); c != "8" {
		t.Fatalf("client current epoch %s after its reload, want 8", c)
	}
	flow.more(t, 20)

	// New sessions (new local peers) use epoch 8.
	const newPeers = 3
	for i := 0; i < newPeers; i++ {
		msg := fmt.Appendf(nil, "new peer %d", i)
		if got, err := udpExchange(addr, msg, 5*time.Second); err != nil || string(got) != string(msg) {
			t.Fatalf("new peer %d: %q, %v", i, got, err)
		}
	}
	waitFor(t, 5*time.Second, "the new sessions on epoch 8 at the server", func() bool { return epochOf(t, srv, 8).Opened == newPeers })
	if n := epochOf(t, cli, 8).Opened; n != newPeers {
		t.Fatalf("client: %d sessions opened on epoch 8, want %d", n, newPeers)
	}

	// 8 only: servers first, then clients. The flow's session keeps its key.
	srvCfg.set(srvYAML(hexEp(8, k8)))
	if err := srv.Reload(); err != nil {
		t.Fatalf("server reload to 8: %v", err)
	}
	if e7 := epochOf(t, srv, 7); e7.Phase != "retired" || e7.Open != 1 {
		t.Fatalf("server epoch 7 after the reload to 8: %+v; want retired with the flow's session open", e7)
	}
	flow.more(t, 20)
	cliCfg.set(cliYAML(hexEp(8, k8)))
	if err := cli.Reload(); err != nil {
		t.Fatalf("client reload to 8: %v", err)
	}
	flow.more(t, 20)
	if n := epochOf(t, srv, 7).Opened; n != 1 {
		t.Fatalf("server: %d sessions opened on epoch 7, want the flow's 1", n)
	}

	flow.halt()
	waitFor(t, 10*time.Second, "every datagram sent to come back", func() bool { return flow.got.Load() >= flow.sent.Load() })
	if sent, got, bad := flow.sent.Load(), flow.got.Load(), flow.bad.Load(); got != sent || bad != 0 {
		t.Fatalf("sent %d, echoed %d, corrupted or duplicated %d: want no loss", sent, got, bad)
	}
	t.Logf("%d datagrams, none lost", flow.sent.Load())

	if err := dialDTLS(srv.url("svc"), DefaultIdentity+"/7", k7); classifyDTLS(err) != reasonUnknownIdentity {
		t.Fatalf("identity /7 after retirement: %v (%s), want unknown_identity", err, classifyDTLS(err))
	}
	if err := dialDTLS(srv.url("svc"), DefaultIdentity+"/8", k8); err != nil {
		t.Fatalf("identity /8: %v", err)
	}
	assertNoSecret(t, srv.logs.String()+cli.logs.String(), k7, k8)
}

// TestEpochUDPLossClosesOnlyItsSessions: when the client's epoch 8 loses
// its consent, the client proxy closes the sessions opened on 8 (their
// peers' next datagrams start new sessions, on 7) and keeps the session
// opened on 7.
func TestEpochUDPLossClosesOnlyItsSessions(t *testing.T) {
	k7, k8 := randomKey(t), randomKey(t)
	backend := udpEcho(t)
	srvCfg, cliCfg := &memConfig{}, &memConfig{}
	srvCfg.set(epochYAML(ModeServer, "dtls://127.0.0.1:0", "udp://"+backend.String(), "", hexEp(7, k7), hexEp(8, k8)))
	srv := startEpochProxy(t, srvCfg, ModeServer)
	cliCfg.set(epochYAML(ModeClient, "udp://127.0.0.1:0", "dtls://"+srv.url("svc"), "",
		hexEp(7, k7), ep{8, "source: test-gather, options: {name: epoch-udp-cli-8}"}))
	cli := startEpochProxy(t, cliCfg, ModeClient)
	addr := cli.url("svc")

	on7 := startUDPFlow(t, addr)
	on7.more(t, 5)
	gatherSource(t, "epoch-udp-cli-8").set(k8)
	waitFor(t, 5*time.Second, "the client to switch to epoch 8", func() bool { return current(t, cli) == "8" })
	on8 := startUDPFlow(t, addr)
	on8.more(t, 5)
	waitFor(t, 5*time.Second, "one session per epoch at the client", func() bool {
		return epochOf(t, cli, 7).Open == 1 && epochOf(t, cli, 8).Open == 1
	})

	gatherSource(t, "epoch-udp-cli-8").set(nil)
	waitFor(t, 5*time.Second, "the epoch 8 session to close", func() bool { return epochOf(t, cli, 8).Open == 0 })
	// The peer that was on 8 starts a new session, on 7; the session
	// opened on 7 is the same one throughout (opened count 1 + 1).
	on8.more(t, 10)
	on7.more(t, 10)
	if e7 := epochOf(t, cli, 7); e7.Opened != 2 || e7.Open != 2 {
		t.Fatalf("epoch 7 after epoch 8 lost its key: %d sessions opened, %d open; want 2 and 2 (the first one kept, one new)", e7.Opened, e7.Open)
	}
	if n := epochOf(t, cli, 8).Opened; n != 1 {
		t.Fatalf("epoch 8 sessions opened: %d, want 1", n)
	}
}
