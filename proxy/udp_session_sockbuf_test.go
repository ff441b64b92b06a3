package proxy

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestUDPSessionSocketDrops: a client session's own tunnel socket gets the
// same buffer as the route's shared socket (the default ~208 KiB overflowed
// under GSO runs of replies and lost datagrams nobody counted), and what the
// kernel drops on it is counted as socket_buffer when the session ends.
func TestUDPSessionSocketDrops(t *testing.T) {
	client, _ := udpPair(t, randomKey(t), udpEcho(t).String(), nil)
	c := dialEchoing(t, client.url("dns"))
	u := client.routes[0].(*udpClientRoute)
	u.mu.Lock()
	var s *udpClientSession
	for _, x := range u.sessions {
		s = x
	}
	u.mu.Unlock()
	if s == nil {
		t.Fatal("no client session")
	}
	tunnel := s.tunnel.Load()
	if tunnel == nil {
		t.Fatal("the session has no tunnel socket recorded")
	}
	raw, _ := tunnel.SyscallConn()
	var rcv int
	raw.Control(func(fd uintptr) { rcv, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF) })
	if rcv != u.rcvBuf {
		t.Fatalf("tunnel socket receive buffer %d, the route's shared socket has %d", rcv, u.rcvBuf)
	}
	if _, ok := socketDrops(tunnel); !ok {
		t.Skip("this platform does not report socket drops")
	}
	// The echoes come back to the tunnel socket in GSO runs.
	seen := burstUntilDrops(t, c, tunnel, "tunnel")
	s.Close() // the path an idle timeout or an error takes
	waitFor(t, 10*time.Second, "socket_buffer drops counted", func() bool {
		return gathered(t, client)["mcbn_proxy_udp_dropped_datagrams_total"]["reason=socket_buffer,route=dns"] >= float64(seen)
	})
}

// TestUDPServerIdleSessionBackendDrops: what the kernel dropped on a server
// session's backend socket is counted as socket_buffer when the session
// ends by idling. (The idle path used to close that socket itself, racing
// the read of its drops; the read usually won, while the DTLS close ran, so
// this test passed before the fix too: it guards the behaviour, the fix
// makes it certain.)
func TestUDPServerIdleSessionBackendDrops(t *testing.T) {
	sockets := make(chan *net.UDPConn, 4)
	testBackendSocket = func(c *net.UDPConn) { sockets <- c }
	t.Cleanup(func() { testBackendSocket = nil })
	idle := Duration(time.Second)
	client, server := udpPair(t, randomKey(t), udpEcho(t).String(), func(_, s *Route) {
		s.Timeouts.Idle = &idle // the client's stays long: the server's idle path ends the session
	})
	c := dialEchoing(t, client.url("dns"))
	var backend *net.UDPConn
	select {
	case backend = <-sockets:
	case <-time.After(10 * time.Second):
		t.Fatal("no backend socket seen")
	}
	if _, ok := socketDrops(backend); !ok {
		t.Skip("this platform does not report socket drops")
	}
	seen := burstUntilDrops(t, c, backend, "backend")
	// Nothing more is sent: the session idles out on the server.
	waitFor(t, 15*time.Second, "the idle session's backend drops counted", func() bool {
		return gathered(t, server)["mcbn_proxy_udp_dropped_datagrams_total"]["reason=socket_buffer,route=dns"] >= float64(seen)
	})
}

// dialEchoing dials the client route at addr and returns once a datagram
// comes back through the pair (the session is up).
func dialEchoing(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		c.Write([]byte("hello"))
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "hello" {
			c.SetReadDeadline(time.Time{})
			return c
		}
	}
	t.Fatal("no echo through the pair")
	return nil
}

// burstUntilDrops makes the kernel drop datagrams on sock (the session's
// socket named by what): it shrinks sock's receive buffer to the minimum
// and sends bursts of echoed datagrams through c until sock reports drops.
func burstUntilDrops(t *testing.T, c net.Conn, sock *net.UDPConn, what string) uint64 {
	t.Helper()
	sock.SetReadBuffer(1)
	msg := make([]byte, 1200)
	for burst := 0; burst < 20; burst++ {
		for i := 0; i < 500; i++ {
			c.Write(msg)
		}
		time.Sleep(50 * time.Millisecond) // the echoes arrive; drops are what the kernel counted by then
		if seen, _ := socketDrops(sock); seen > 0 {
			return seen
		}
	}
	t.Fatalf("no drop on a minimum-size %s socket after 10,000 datagrams: the test proves nothing", what)
	return 0
}
