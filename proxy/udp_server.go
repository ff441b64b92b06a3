package proxy

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// udpServerRoute terminates DTLS-PSK sessions; each session gets its own
// UDP socket to the backend, so the backend sees one source port per
// client, as it would without the proxy.
type udpServerRoute struct {
	*route
	pc       *net.UDPConn
	ln       *tlspsk.DTLSListener
	active   atomic.Int64 // sessions past their handshake
	rcvBuf   int          // socket buffers the kernel gave the listener
	sndBuf   int
	drops    listenerDrops
	stopSync chan struct{}
	stopOnce sync.Once
}

// pendingHandshakes is the FIFO of handshakes in progress on a TLS server
// route, bounded by
// limits.max_pending_handshakes apart from max_sessions and max_connections,
// which count established tunnels only.
//
// Why a FIFO that drops the oldest: on TCP anyone can open connections and
// send nothing. (DTLS routes do not need it: tlspsk's listener keeps no
// state before a ClientHello returns a valid cookie, so a spoofed sender
// cannot start a handshake, and MaxHandshakes bounds the rest.) Refusing new handshakes at the bound would let such junk
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
	pc, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return err
	}
	u.rcvBuf, u.sndBuf = sizeSocketBuffers(pc)
	registerUDPDropAlias(u.met.m)
	cfg := dtlsConfig(u.cfg)
	cfg.GetKey = func(identity string) ([]byte, error) {
		k, err := u.src.Key(identity)
		if errors.Is(err, ErrUnknownIdentity) {
			// (nil, nil) makes tlspsk answer unknown_psk_identity, so the
			// peer learns what is wrong instead of timing out.
			return nil, nil
		}
		return k, err
	}
	cfg.IdentityHint = u.cfg.DTLS.IdentityHint
	// Handshakes start only after the cookie exchange proves the client's
	// address; limits.max_pending_handshakes bounds those in progress.
	// max_sessions counts established sessions only (checked after Accept),
	// so handshakes can never lock real clients out of it.
	cfg.MaxHandshakes = u.cfg.Limits.MaxPendingHandshakes
	// QueueLength stays tlspsk's 256 datagrams per session (at most 512 KiB
	// of buffers): limits.session_queue is the client's handshake queue.
	cfg.HandshakeFailed = func(peer net.Addr, identity string, err error) {
		u.dtlsFailed(err, peer.String(), identity, time.Time{})
	}
	ln, err := tlspsk.NewDTLSListener(pc, cfg)
	if err != nil {
		pc.Close()
		return err
	}
	u.pc, u.ln = pc, ln
	u.stopSync = make(chan struct{})
	go u.syncDrops()
	return nil
}

// socketBuffers reports the listener socket's buffer sizes for the
// route-listening log line.
func (u *udpServerRoute) socketBuffers() (rcv, snd int) { return u.rcvBuf, u.sndBuf }

// syncDrops copies the listener's drop counters, and the kernel's for the
// listener socket (socket_buffer), into the drop metric every second and
// once at the end.
func (u *udpServerRoute) syncDrops() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	sock := &socketDropSync{pc: u.pc}
	for {
		select {
		case <-t.C:
			u.drops.sync(u.met, u.ln.Stats().Dropped)
			sock.sync(u.met)
		case <-u.stopSync:
			u.drops.sync(u.met, u.ln.Stats().Dropped)
			sock.sync(u.met)
			return
		}
	}
}

// listenerDrops remembers the listener's counters already exported.
type listenerDrops struct {
	mu   sync.Mutex
	last map[string]uint64
}

func (d *listenerDrops) sync(m *routeMetrics, now map[string]uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last = map[string]uint64{}
	}
	for reason, n := range now {
		if n > d.last[reason] {
			m.dropN(reason, n-d.last[reason])
			d.last[reason] = n
		}
	}
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
		u.stopOnce.Do(func() { close(u.stopSync) })
	}
	u.track.closeAll()
}

func (u *udpServerRoute) serve() {
	var backoff time.Duration
	for {
		c, err := u.ln.AcceptDTLS()
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
		go func() {
			defer u.track.done(c)
			u.handle(c)
		}()
	}
}

// testBackendSocket, when a test sets it before the proxy starts, sees each
// session's backend socket.
var testBackendSocket func(*net.UDPConn)

// handle runs one established session (the listener did the handshake).
func (u *udpServerRoute) handle(dc *tlspsk.DTLSConn) {
	defer dc.Close()
	peer := dc.RemoteAddr().String()
	// Only an established session counts against max_sessions, so
	// handshakes that never complete cannot lock real clients out.
	if !u.underLimit(u.active.Add(1)-1, u.cfg.Limits.MaxSessions, "sessions") {
		u.active.Add(-1)
		return
	}
	defer u.active.Add(-1)
	st := dc.ConnectionState()
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
	sizeSocketBuffers(backend)
	if testBackendSocket != nil {
		testBackendSocket(backend)
	}
	u.log.Debug("session open", "peer", peer, "identity", shortIdentity(st.PSKIdentity), "suite", tlspsk.DTLSCipherSuiteName(st.CipherSuite))
	defer u.epochOpened(st.PSKIdentity, dc)() // with epochs: per-epoch count and consent-loss close
	relayDatagrams(u.route, dc, backend)
}

// dtlsFailed logs and counts a failed DTLS handshake (start zero: the
// duration is unknown, as for the listener's handshakes).
func (u *route) dtlsFailed(err error, peer, identity string, start time.Time) {
	if u.ctx.Err() != nil {
		return
	}
	reason := classifyDTLS(err)
	args := []any{"peer", peer, "reason", reason, "identity", shortIdentity(identity)}
	if !start.IsZero() {
		args = append(args, "after", since(start))
	}
	u.log.Warn("DTLS handshake failed: "+explain(reason, u.mode, shortIdentity(identity)), append(args, "err", err)...)
	u.met.handshakeFailed(reason)
}
