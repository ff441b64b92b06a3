package proxy

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// tcpRoute is TCP over TLS-PSK: a client proxy accepts plain TCP and dials
// tls://, a server proxy accepts TLS-PSK and dials the plain backend.
type tcpRoute struct {
	*route
	ln     net.Listener
	tmpl   *tlspsk.Config
	active atomic.Int64 // client: connections accepted; server: tunnels past their handshake
	// pending are a server's handshakes in progress, bounded apart from
	// max_connections so that connections that never finish a handshake
	// cannot lock real clients out (see pendingHandshakes).
	pending pendingHandshakes
	pre     *preconnectPool // a client route's ready tunnels (preconnect: N), or nil
}

func newTCPRoute(r *route) (*tcpRoute, error) {
	tmpl, err := tlsSettings(r.cfg)
	if err != nil {
		return nil, err
	}
	tmpl.KeyShares = processKeyShares() // ephemeral key pairs made ahead, each used once
	t := &tcpRoute{route: r, tmpl: tmpl}
	t.pre = newPreconnectPool(t)
	return t, nil
}

func (t *tcpRoute) base() *route { return t.route }
func (t *tcpRoute) open() int64  { return t.active.Load() }

func (t *tcpRoute) listen() error {
	ln, err := net.Listen("tcp", t.cfg.listen.HostPort())
	if err != nil {
		return err
	}
	t.ln = ln
	t.pending.max = t.cfg.Limits.MaxPendingHandshakes
	return nil
}

func (t *tcpRoute) addr() net.Addr {
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

func (t *tcpRoute) stopAccepting() {
	if t.ln != nil {
		t.ln.Close()
	}
	t.pre.close()
}

func (t *tcpRoute) serve() {
	if t.pre != nil {
		go t.pre.run()
	}
	var backoff time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("accept failed", "err", err)
			backoff = acceptBackoff(backoff)
			continue
		}
		backoff = 0
		if !t.ready(c.RemoteAddr()) || !t.underLimit(t.active.Load(), t.cfg.Limits.MaxConnections, "connections") {
			c.Close()
			continue
		}
		if !t.track.add(c) {
			continue
		}
		if t.mode == ModeServer {
			// Before its handshake a connection is only pending: it is
			// counted in the pending FIFO, not against max_connections
			// (checked again once the handshake is done).
			if old := t.pending.add(c); old != nil {
				t.log.Debug("too many TLS handshakes in progress: dropping the oldest", "peer", old.RemoteAddr().String(),
					"max_pending", t.cfg.Limits.MaxPendingHandshakes)
				t.met.handshakeFailed("evicted")
				old.Close()
			}
			go func() {
				defer t.track.done(c)
				if a, b := t.establish(c); a != nil {
					defer t.active.Add(-1) // counted by handleServer
					t.tunnel(a, b)
				}
			}()
			continue
		}
		t.active.Add(1)
		go func() {
			defer func() {
				t.active.Add(-1)
				t.track.done(c)
			}()
			if a, b := t.establish(c); a != nil {
				t.tunnel(a, b)
			}
		}()
	}
}

// establish runs the handshake and the dial for the connection c on a
// goroutine of their own and returns the two ends of the tunnel (nil when
// it failed, c then closed). The handshake needs a deep stack, which a
// goroutine keeps until a GC shrinks it; ending that goroutine before the
// tunnel starts leaves the goroutine that copies for the tunnel's lifetime
// with a small one.
func (t *tcpRoute) establish(c net.Conn) (a, b net.Conn) {
	type ends struct{ a, b net.Conn }
	ch := make(chan ends, 1)
	go func() {
		var e ends
		if t.mode == ModeServer {
			e.a, e.b = t.handleServer(c)
		} else {
			e.a, e.b = t.handleClient(c)
		}
		ch <- e
	}()
	e := <-ch
	return e.a, e.b
}

// countingConn counts bytes read, to tell a port probe (connect, then
// close without a byte) from a failed handshake.
type countingConn struct {
	net.Conn
	n atomic.Int64
	// firstByte: a read deadline for the first byte is set; the first
	// read that returns data clears it.
	firstByte bool
}

// CloseWrite passes the half-close through to the TCP socket.
func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn exposes the socket, so that tlspsk can wait for the next
// record in the poller without holding a read buffer. Bytes read that way
// are not counted; the count is only for the handshake, and the handshake
// reads through Read.
func (c *countingConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("proxy: the connection has no descriptor")
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.n.Add(int64(n)) == int64(n) && n > 0 && c.firstByte {
		c.firstByte = false
		c.Conn.SetReadDeadline(time.Time{})
	}
	return n, err
}

// handleServer makes a tunnel's ends on a server proxy: the TLS handshake
// on raw, then the backend connection.
func (t *tcpRoute) handleServer(raw net.Conn) (a, b net.Conn) {
	peer := raw.RemoteAddr().String()
	// A peer that sends nothing holds a pending slot and a descriptor:
	// close it after timeouts.first_byte instead of the whole handshake
	// timeout.
	cc := &countingConn{Conn: raw, firstByte: true}
	raw.SetReadDeadline(time.Now().Add(t.cfg.Timeouts.FirstByte.D()))
	cfg := t.tmpl.Clone()
	var offered atomic.Value
	cfg.GetKey = func(id string) ([]byte, error) {
		offered.Store(id)
		k, err := t.src.Key(id)
		if errors.Is(err, ErrUnknownIdentity) {
			return nil, nil
		}
		return k, err
	}
	tc := tlspsk.Server(cc, cfg)
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeouts.Handshake.D())
	start := time.Now()
	err := tc.HandshakeContext(ctx)
	cancel()
	if !t.pending.done(raw) {
		tc.Close() // dropped to make room for newer handshakes; counted there
		return nil, nil
	}
	if err != nil {
		id, _ := offered.Load().(string)
		t.handshakeFailed(err, peer, id, cc.n.Load() == 0, start)
		tc.Close()
		return nil, nil
	}
	// Only a tunnel past its handshake counts against max_connections.
	if !t.underLimit(t.active.Add(1)-1, t.cfg.Limits.MaxConnections, "connections") {
		t.active.Add(-1)
		tc.Close()
		return nil, nil
	}
	// A route whose clients pre-connect dials when the tunnel is used: at
	// its first application record (the client proxy sends an empty one).
	if t.cfg.Preconnect > 0 && !t.awaitFirstRecord(tc) {
		t.active.Add(-1)
		tc.Close()
		return nil, nil
	}
	st := tc.ConnectionState()
	dctx, dcancel := context.WithTimeout(t.ctx, t.cfg.Timeouts.Dial.D())
	backend, err := (&net.Dialer{}).DialContext(dctx, "tcp", t.cfg.connect.HostPort())
	dcancel()
	t.dest.record(err)
	if err != nil {
		t.active.Add(-1)
		t.log.Warn("backend unreachable: closing the tunnel", "peer", peer, "connect", t.cfg.Connect, "err", err)
		t.met.dialFailures.Inc()
		tc.Close()
		return nil, nil
	}
	t.log.Debug("tunnel open", "peer", peer, "identity", st.PSKIdentity, "version", tlsVersionName(st.Version),
		"suite", tlspsk.CipherSuiteName(st.CipherSuite), "group", st.Group.String())
	return tc, backend
}

// dialServer connects to the server proxy and runs the client handshake
// with identity and key, each step under its timeout. A nil conn means the
// connect failed; a conn with an error, that the handshake did (the caller
// closes it).
func (t *tcpRoute) dialServer(identity string, key []byte) (*tlspsk.Conn, error) {
	cfg := t.tmpl.Clone()
	cfg.Identity, cfg.Key = identity, key
	dctx, dcancel := context.WithTimeout(t.ctx, t.cfg.Timeouts.Dial.D())
	raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", t.cfg.connect.HostPort())
	dcancel()
	if err != nil {
		return nil, err
	}
	tc := tlspsk.Client(raw, cfg)
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeouts.Handshake.D())
	defer cancel()
	return tc, tc.HandshakeContext(ctx)
}

// handleClient makes a tunnel's ends on a client proxy: a connection to
// the server proxy and the TLS handshake on it.
func (t *tcpRoute) handleClient(local net.Conn) (a, b net.Conn) {
	peer := local.RemoteAddr().String()
	if tc := t.pre.take(); tc != nil {
		if nudge(tc) == nil {
			return local, tc
		}
		tc.Close() // dial a fresh one
	}
	// With epochs, a handshake the server refuses with unknown_psk_identity
	// on our newest epoch is retried once on an older epoch we hold
	// (epochRefused; docs/key-rotation.md). Nothing has been read from
	// local yet, so the retry is a fresh dial with nothing to replay.
	var tc *tlspsk.Conn
	for attempt := 0; ; attempt++ {
		identity, key, err := t.clientKey() // with epochs: the newest ready epoch's
		if err != nil {
			t.log.Warn("refusing connection: no PSK for our identity", "peer", peer, "identity", identity, "err", err)
			local.Close()
			return nil, nil
		}
		start := time.Now()
		tc, err = t.dialServer(identity, key)
		if tc == nil {
			t.dest.record(err) // a connect that works says nothing yet: the handshake does
			t.log.Warn("server proxy unreachable: closing the connection", "peer", peer, "connect", t.cfg.Connect, "err", err)
			t.met.dialFailures.Inc()
			local.Close()
			return nil, nil
		}
		if err == nil {
			t.epochAccepted(identity)
			break
		}
		tc.Close()
		if attempt == 0 && t.epochRefused(identity, tlspsk.FailureReason(err)) {
			t.log.Debug("server refused our newest epoch: retrying on an older one", "peer", peer, "identity", shortIdentity(identity))
			continue
		}
		reason := t.handshakeFailed(err, t.cfg.Connect, identity, false, start)
		if t.ctx.Err() == nil {
			t.dest.handshake(reason, "TLS handshake with the server proxy failed: "+reason+": "+explain(reason, t.mode, shortIdentity(identity)))
		}
		local.Close()
		return nil, nil
	}
	t.dest.handshake("", "")
	st := tc.ConnectionState()
	t.log.Debug("tunnel open", "peer", peer, "version", tlsVersionName(st.Version), "suite", tlspsk.CipherSuiteName(st.CipherSuite),
		"group", st.Group.String())
	if t.pre != nil { // preconnect: the server route dials on the first record
		if err := nudge(tc); err != nil {
			tc.Close()
			local.Close()
			return nil, nil
		}
	}
	return local, tc
}

// tunnel carries a (listener side) and b (destination side) to the end.
func (t *tcpRoute) tunnel(a, b net.Conn) {
	if !t.track.add(b) {
		a.Close()
		return
	}
	defer t.track.done(b)
	defer t.epochTunnel(a, b)() // per-epoch count and consent-loss close
	t.met.tunnelsTotal.Inc()
	t.met.tunnelsOpen.Inc()
	defer t.met.tunnelsOpen.Dec()
	pipe(a, b, t.cfg.IdleTimeout(), t.met.bytesFwd, t.met.bytesRev)
}

// handshakeFailed logs and counts a failed handshake. A connection that
// closed without sending a byte is a port probe: debug only, not counted.
func (t *tcpRoute) handshakeFailed(err error, peer, identity string, silent bool, start time.Time) (reason string) {
	reason = tlspsk.FailureReason(err)
	if errors.Is(err, ErrNotReady) {
		reason = reasonNotReady
	}
	if silent && reason == reasonPeerClosed {
		t.log.Debug("connection closed before a handshake (port probe?)", "peer", peer)
		return reason
	}
	if silent && reason == reasonTimeout && t.mode == ModeServer {
		// Debug only: a flood of silent connections must not flood the log.
		t.log.Debug("no handshake byte in time: closing the connection", "peer", peer, "after", since(start))
		t.met.handshakeFailed(reasonSilent)
		return reasonSilent
	}
	if t.ctx.Err() != nil {
		return reason // shutting down
	}
	// Log first, then count: a test (or an operator) that sees the count
	// finds the log line.
	t.log.Warn("handshake failed: "+explain(reason, t.mode, shortIdentity(identity)),
		"peer", peer, "reason", reason, "identity", shortIdentity(identity), "after", since(start), "err", err)
	t.met.handshakeFailed(reason)
	return reason
}
