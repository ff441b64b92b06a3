package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// udpClientRoute gives each local UDP peer (address and port) its own
// DTLS session to the server proxy, so replies find their way back and one
// peer's session never carries another's datagrams.
type udpClientRoute struct {
	*route
	pc       *net.UDPConn
	rcvBuf   int // socket buffers the kernel gave the local socket
	sndBuf   int
	mu       sync.Mutex
	sessions map[netip.AddrPort]*udpClientSession
	active   atomic.Int64
}

type udpClientSession struct {
	peer   netip.AddrPort
	queue  chan *[]byte // pooled buffers (smallPool or datagramPool), cut to the datagram
	done   chan struct{}
	failed atomic.Bool // handshake failed: drop until the hold-down ends
	once   sync.Once
	conn   atomic.Pointer[tlspsk.DTLSConn]
	// live is the session once its handshake is done: serve then seals
	// and sends each datagram itself, with no hand-off to another
	// goroutine (the queue is for the handshake only).
	live atomic.Pointer[tlspsk.DTLSConn]
	last atomic.Int64 // unix nanoseconds of the last datagram either way
	// tunnel is the session's own socket to the server proxy; sockDrops,
	// the datagrams the kernel dropped on it (receive buffer full), read
	// once as the session closes, before the socket goes.
	tunnel    atomic.Pointer[net.UDPConn]
	sockDrops atomic.Uint64
}

func (s *udpClientSession) Close() error {
	s.once.Do(func() {
		if t := s.tunnel.Load(); t != nil {
			if n, ok := socketDrops(t); ok {
				s.sockDrops.Store(n)
			}
		}
		close(s.done)
	})
	if c := s.conn.Load(); c != nil {
		c.Close()
	}
	return nil
}

func (u *udpClientRoute) base() *route { return u.route }
func (u *udpClientRoute) open() int64  { return u.active.Load() }

func (u *udpClientRoute) listen() error {
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
	u.pc = pc
	u.sessions = map[netip.AddrPort]*udpClientSession{}
	return nil
}

// socketBuffers reports the local socket's buffer sizes for the
// route-listening log line.
func (u *udpClientRoute) socketBuffers() (rcv, snd int) { return u.rcvBuf, u.sndBuf }

func (u *udpClientRoute) addr() net.Addr {
	if u.pc == nil {
		return nil
	}
	return u.pc.LocalAddr()
}

func (u *udpClientRoute) stopAccepting() {
	if u.pc != nil {
		u.pc.Close()
	}
	u.track.closeAll()
}

// serve reads every local peer's datagrams from the route's one socket,
// up to udpBatchLen per recvmmsg, and sends each established session's
// share of a batch as one sendmmsg of sealed records on its tunnel socket
// (batch.go). It allocates nothing per datagram and starts no goroutine
// per datagram: only a session still in its handshake gets a copy of the
// datagram (a pooled buffer) on its bounded queue.
func (u *udpClientRoute) serve() {
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the local socket's kernel drops, every second
		sock := &socketDropSync{pc: u.pc}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sock.sync(u.met)
			case <-stop:
				sock.sync(u.met)
				return
			}
		}
	}()
	b := tlspsk.NewUDPBatch(u.pc, udpBatchLen, tlspsk.UDPPlainSlot, false)
	owner := make([]*udpClientSession, b.Len())
	touched := make([]*udpClientSession, 0, b.Len())
	out := make([]tlspsk.UDPMsg, 0, b.Len())
	for {
		n, err := b.Recv()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED from an earlier reply to a gone peer
		}
		for i := 0; i < n; i++ {
			owner[i] = nil
			m := &b.Msgs[i]
			if m.Trunc {
				u.met.drop("oversize") // longer than a DTLS record carries
				continue
			}
			s := u.session(m.Addr)
			if s == nil {
				continue
			}
			if s.failed.Load() {
				u.met.drop("handshake_failed")
				continue
			}
			if s.live.Load() != nil {
				if !slices.Contains(touched, s) {
					touched = append(touched, s)
				}
				owner[i] = s
				continue
			}
			d := getDatagram(len(m.B))
			copy(*d, m.B)
			select {
			case s.queue <- d:
			default:
				putDatagram(d)
				u.met.drop("queue_full")
			}
		}
		for j, s := range touched {
			out = out[:0]
			for i := 0; i < n; i++ {
				if owner[i] == s {
					out = append(out, tlspsk.UDPMsg{B: b.Msgs[i].B})
				}
			}
			u.forward(s, out)
			touched[j] = nil
		}
		touched = touched[:0]
		clear(out[:cap(out)])
		clear(owner)
	}
}

// forward seals and sends an established session's datagrams; a failed
// tunnel write ends the session and counts what it did not carry.
func (u *udpClientRoute) forward(s *udpClientSession, ms []tlspsk.UDPMsg) {
	dc := s.live.Load()
	s.last.Store(time.Now().UnixNano())
	k, err := dc.WriteBatch(ms)
	var bytes int
	for _, m := range ms[:k] {
		bytes += len(m.B)
	}
	u.met.datagramsFwd.Add(float64(k))
	u.met.bytesFwd.Add(float64(bytes))
	if err != nil {
		u.tunnelWriteFailed(err, len(ms)-k, s.peer.String())
		s.Close()
	}
}

// session finds or starts the session of peer; nil means the datagram is
// dropped (counted and logged once per burst).
func (u *udpClientRoute) session(peer netip.AddrPort) *udpClientSession {
	u.mu.Lock()
	s := u.sessions[peer]
	u.mu.Unlock()
	if s != nil {
		return s
	}
	addr := net.UDPAddrFromAddrPort(peer)
	if !u.ready(addr) {
		u.met.drop("psk_not_ready")
		return nil
	}
	if !u.underLimit(u.active.Load(), u.cfg.Limits.MaxSessions, "sessions") {
		u.met.drop("max_sessions")
		return nil
	}
	s = &udpClientSession{peer: peer, queue: make(chan *[]byte, max(u.cfg.Limits.SessionQueue, 1)), done: make(chan struct{})}
	if !u.track.add(s) {
		return nil
	}
	u.mu.Lock()
	u.sessions[peer] = s
	u.mu.Unlock()
	u.active.Add(1)
	go func() {
		defer func() {
			u.mu.Lock()
			delete(u.sessions, peer)
			u.mu.Unlock()
			u.active.Add(-1)
			u.track.done(s)
		}()
		u.run(s)
	}()
	return s
}

func (u *udpClientRoute) run(s *udpClientSession) {
	defer s.Close()
	start := time.Now()
	// With epochs, the session uses the newest ready epoch's IDENTITY/EPOCH
	// and key (clientKey), and a handshake the server refuses with
	// unknown_psk_identity on it is retried once on an older epoch we hold
	// (epochRefused). The local peer's datagrams wait in s.queue meanwhile:
	// nothing has gone upstream yet.
	var dc *tlspsk.DTLSConn
	var c net.Conn
	var identity string
	for attempt := 0; ; attempt++ {
		var key []byte
		var err error
		identity, key, err = u.clientKey()
		if err != nil {
			u.holdDown(s, identity, err, start)
			return
		}
		dctx, dcancel := context.WithTimeout(u.ctx, u.cfg.Timeouts.Dial.D())
		c, err = (&net.Dialer{}).DialContext(dctx, "udp", u.cfg.connect.HostPort())
		dcancel()
		if err != nil {
			u.dest.record(err)
			u.met.dialFailures.Inc()
			u.log.Warn("server proxy address unusable: dropping the session", "peer", s.peer.String(), "connect", u.cfg.Connect, "err", err)
			u.holdDown(s, identity, nil, start)
			return
		}
		if uc, ok := c.(*net.UDPConn); ok {
			// As large as the shared sockets': with GSO the server proxy's
			// records arrive in runs of up to 64, which overflow the
			// default buffer (~208 KiB) in a few runs.
			sizeSocketBuffers(uc)
			s.tunnel.Store(uc)
		}
		cfg := dtlsConfig(u.cfg)
		cfg.Identity, cfg.Key = identity, key
		dc = tlspsk.DTLSClient(c, cfg)
		s.conn.Store(dc)
		select {
		case <-s.done: // closed while setting up
			dc.Close()
			return
		default:
		}
		// timeouts.handshake is the config's HandshakeTimeout: tlspsk's own
		// timeout error names the last socket error (connection refused),
		// which a context deadline would hide.
		err = dc.HandshakeContext(u.ctx)
		if err == nil {
			u.epochAccepted(identity)
			break
		}
		dc.Close()
		reason := classifyDTLS(err)
		if attempt == 0 && u.epochRefused(identity, reason) {
			u.log.Debug("server refused our newest epoch: retrying the session on an older one", "peer", s.peer.String(), "identity", shortIdentity(identity))
			continue
		}
		if u.ctx.Err() == nil {
			u.dest.handshake(reason, "DTLS handshake with the server proxy failed: "+reason+": "+explain(reason, u.mode, shortIdentity(identity)))
		}
		u.holdDown(s, identity, err, start)
		return
	}
	// Losing the epoch's consent closes the session, like a TCP tunnel.
	defer u.epochOpened(identity, s)()
	u.dest.handshake("", "")
	uc, _ := c.(*net.UDPConn)
	u.relay(s, dc, uc)
}

// holdDown logs a failed session start and keeps dropping the peer's
// datagrams for one handshake timeout, so a peer that keeps sending does
// not start a handshake per datagram.
func (u *udpClientRoute) holdDown(s *udpClientSession, identity string, err error, start time.Time) {
	s.failed.Store(true)
	if err != nil {
		u.dtlsFailed(err, u.cfg.Connect, identity, start)
	}
	select {
	case <-time.After(u.cfg.Timeouts.Handshake.D()):
	case <-s.done:
	}
}

func (u *udpClientRoute) relay(s *udpClientSession, dc *tlspsk.DTLSConn, tunnel *net.UDPConn) {
	u.met.sessionsTotal.Inc()
	u.met.sessionsOpen.Inc()
	defer u.met.sessionsOpen.Dec()
	defer countConnDrops(u.met, dc)
	defer func() {
		if n := s.sockDrops.Load(); n > 0 {
			u.met.dropN("socket_buffer", n)
		}
	}()
	s.last.Store(time.Now().UnixNano())
	stopWatch := idleWatch(udpIdle(u.cfg), &s.last, func() {
		u.log.Debug("session idle: closing", "peer", s.peer.String())
		s.Close()
	})
	defer stopWatch()
	// From here serve writes new datagrams itself; what was queued during
	// the handshake is sent below (a datagram or two may overtake them,
	// which UDP allows).
	s.live.Store(dc)
	readDone := make(chan struct{})
	go func() { // server proxy -> local peer
		defer close(readDone)
		defer s.Close()
		if tunnel != nil {
			u.reverse(s, dc, tunnel)
			return
		}
		bp := datagramPool.Get().(*[]byte)
		defer datagramPool.Put(bp)
		for {
			n, err := dc.Read(*bp)
			if err != nil {
				return
			}
			s.last.Store(time.Now().UnixNano())
			if _, err := u.pc.WriteToUDPAddrPort((*bp)[:n], s.peer); err != nil {
				u.met.drop("local_write_failed")
				continue
			}
			u.met.datagramsRev.Inc()
			u.met.bytesRev.Add(float64(n))
		}
	}()
	for {
		select {
		case d := <-s.queue:
			s.last.Store(time.Now().UnixNano())
			n := len(*d)
			_, err := dc.Write(*d)
			putDatagram(d)
			if err != nil {
				u.tunnelWriteFailed(err, 1, s.peer.String())
				s.Close()
				continue
			}
			u.met.datagramsFwd.Inc()
			u.met.bytesFwd.Add(float64(n))
		case <-s.done:
			dc.Close()
			<-readDone
			for { // give the queued buffers back
				select {
				case d := <-s.queue:
					putDatagram(d)
					continue
				default:
				}
				return
			}
		}
	}
}
