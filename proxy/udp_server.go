package proxy

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/dtls/v3"
)

// udpServerRoute terminates DTLS-PSK sessions; each session gets its own
// UDP socket to the backend, so the backend sees one source port per
// client, as it would without the proxy.
type udpServerRoute struct {
	*route
	ln      net.Listener
	active  atomic.Int64 // sessions past their handshake
	pending pendingHandshakes
}

// pendingHandshakes is the FIFO of handshakes in progress on a server
// route (DTLS sessions or TLS connections), bounded by
// limits.max_pending_handshakes apart from max_sessions and max_connections,
// which count established tunnels only.
//
// Why a FIFO that drops the oldest: pion accepts a connection for the first
// datagram from an address that looks like a handshake record, before the
// cookie exchange that proves the address is real, so a spoofed sender can
// start DTLS handshakes for free; on TCP anyone can open connections and
// send nothing. Refusing new handshakes at the bound would let such junk
// lock real clients out; dropping the oldest means junk can only push junk
// out, while a real client's handshake, a few round trips long, completes
// long before a flood of this size turns over.
type pendingHandshakes struct {
	mu    sync.Mutex
	queue []net.Conn
	max   int // 0: DefaultMaxPendingHandshakes
}

// add enqueues c and returns the oldest pending handshake to drop when the
// queue was full, or nil.
func (p *pendingHandshakes) add(c net.Conn) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	limit := p.max
	if limit <= 0 {
		limit = DefaultMaxPendingHandshakes
	}
	var evict net.Conn
	if len(p.queue) >= limit {
		evict = p.queue[0]
		p.queue = slices.Delete(p.queue, 0, 1)
	}
	p.queue = append(p.queue, c)
	return evict
}

// done removes c (its handshake ended either way); it reports whether c
// was still queued, that is, not dropped to make room.
func (p *pendingHandshakes) done(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, q := range p.queue {
		if q == c {
			p.queue = slices.Delete(p.queue, i, i+1) // clears the freed slot
			return true
		}
	}
	return false
}

func (p *pendingHandshakes) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

func (u *udpServerRoute) base() *route { return u.route }
func (u *udpServerRoute) open() int64  { return u.active.Load() }

func (u *udpServerRoute) listen() error {
	laddr, err := net.ResolveUDPAddr("udp", u.cfg.listen.HostPort())
	if err != nil {
		return err
	}
	var opts []dtls.ServerOption
	for _, o := range dtlsShared(u.cfg) {
		opts = append(opts, o)
	}
	opts = append(opts, dtls.WithPSK(func(hint []byte) ([]byte, error) {
		// On a server, pion passes the identity the client offered.
		k, err := u.src.Key(string(hint))
		if errors.Is(err, ErrUnknownIdentity) {
			return nil, &unknownIdentityError{identity: string(hint)}
		}
		return k, err
	}))
	if u.cfg.DTLS.IdentityHint != "" {
		opts = append(opts, dtls.WithPSKIdentityHint([]byte(u.cfg.DTLS.IdentityHint)))
	}
	if *u.cfg.DTLS.ConnectionID {
		opts = append(opts, dtls.WithConnectionIDGenerator(dtls.RandomCIDGenerator(cidLength)))
	}
	opts = append(opts, dtls.WithListenConfig(net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, udpSocketBuffer)
		})
	}}))
	ln, err := dtls.ListenWithOptions("udp", laddr, opts...)
	if err != nil {
		return err
	}
	u.ln = ln
	u.pending.max = u.cfg.Limits.MaxPendingHandshakes
	return nil
}

func (u *udpServerRoute) addr() net.Addr {
	if u.ln == nil {
		return nil
	}
	return u.ln.Addr()
}

// stopAccepting closes the listener and the sessions: UDP has no graceful
// end to wait for.
func (u *udpServerRoute) stopAccepting() {
	if u.ln != nil {
		u.ln.Close()
	}
	u.track.closeAll()
}

func (u *udpServerRoute) serve() {
	var backoff time.Duration
	for {
		c, err := u.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || u.ctx.Err() != nil {
				return
			}
			u.log.Debug("DTLS accept failed", "err", err)
			backoff = acceptBackoff(backoff)
			continue
		}
		backoff = 0
		if !u.ready(c.RemoteAddr()) {
			c.Close()
			continue
		}
		if !u.track.add(c) {
			continue
		}
		dc := c.(*dtls.Conn)
		if old := u.pending.add(dc); old != nil {
			u.log.Debug("too many DTLS handshakes in progress: dropping the oldest", "peer", old.RemoteAddr().String(), "max_pending", u.cfg.Limits.MaxPendingHandshakes)
			u.met.handshakeFailed("evicted")
			old.Close()
		}
		go func() {
			defer u.track.done(c)
			u.handle(dc)
		}()
	}
}

func (u *udpServerRoute) handle(dc *dtls.Conn) {
	defer dc.Close()
	peer := dc.RemoteAddr().String()
	ctx, cancel := context.WithTimeout(u.ctx, u.cfg.Timeouts.Handshake.D())
	start := time.Now()
	err := dc.HandshakeContext(ctx)
	cancel()
	if !u.pending.done(dc) {
		return // dropped to make room for newer handshakes; counted there
	}
	if err != nil {
		st, ok := dc.ConnectionState()
		identity := ""
		if ok {
			identity = string(st.IdentityHint)
		}
		u.dtlsFailed(err, peer, identity, ok && identity != "", start)
		return
	}
	// Only an established session counts against max_sessions, so
	// handshakes that never complete cannot lock real clients out.
	if !u.underLimit(u.active.Add(1)-1, u.cfg.Limits.MaxSessions, "sessions") {
		u.active.Add(-1)
		return
	}
	defer u.active.Add(-1)
	st, _ := dc.ConnectionState()
	dctx, dcancel := context.WithTimeout(u.ctx, u.cfg.Timeouts.Dial.D())
	bc, err := (&net.Dialer{}).DialContext(dctx, "udp", u.cfg.connect.HostPort())
	dcancel()
	if err != nil {
		u.dest.record(err)
		u.log.Warn("backend unreachable: closing the session", "peer", peer, "connect", u.cfg.Connect, "err", err)
		u.met.dialFailures.Inc()
		return
	}
	backend := bc.(*net.UDPConn)
	backend.SetReadBuffer(udpSocketBuffer)
	u.log.Debug("session open", "peer", peer, "identity", string(st.IdentityHint), "suite", dtls.CipherSuiteName(st.CipherSuiteID))
	relayDatagrams(u.route, dc, backend)
}

// dtlsFailed logs and counts a failed DTLS handshake.
func (u *route) dtlsFailed(err error, peer, identity string, keyExchanged bool, start time.Time) {
	if u.ctx.Err() != nil {
		return
	}
	var ue *unknownIdentityError
	if errors.As(err, &ue) {
		identity = ue.identity
	}
	reason := classifyDTLS(err, keyExchanged)
	u.log.Warn("DTLS handshake failed: "+explain(reason, u.mode, shortIdentity(identity)),
		"peer", peer, "reason", reason, "identity", shortIdentity(identity), "after", since(start), "err", err)
	u.met.handshakeFailed(reason)
}

// unknownIdentityError carries the identity a DTLS peer offered from the
// PSK callback to the log line.
type unknownIdentityError struct{ identity string }

func (e *unknownIdentityError) Error() string {
	return "unknown PSK identity " + strconv.Quote(shortIdentity(e.identity))
}

func (e *unknownIdentityError) Is(t error) bool { return t == ErrUnknownIdentity }
