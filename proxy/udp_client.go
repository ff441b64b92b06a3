package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
)

// udpClientRoute gives each local UDP peer (address and port) its own
// DTLS session to the server proxy, so replies find their way back and one
// peer's session never carries another's datagrams.
type udpClientRoute struct {
	*route
	pc       *net.UDPConn
	mu       sync.Mutex
	sessions map[netip.AddrPort]*udpClientSession
	active   atomic.Int64
}

type udpClientSession struct {
	peer   netip.AddrPort
	queue  chan []byte
	done   chan struct{}
	failed atomic.Bool // handshake failed: drop until the hold-down ends
	once   sync.Once
	conn   atomic.Pointer[dtls.Conn]
}

func (s *udpClientSession) Close() error {
	s.once.Do(func() { close(s.done) })
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
	pc.SetReadBuffer(udpSocketBuffer)
	pc.SetWriteBuffer(udpSocketBuffer)
	u.pc = pc
	u.sessions = map[netip.AddrPort]*udpClientSession{}
	return nil
}

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

func (u *udpClientRoute) serve() {
	buf := make([]byte, maxDatagram)
	for {
		n, peer, err := u.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED from an earlier reply to a gone peer
		}
		s := u.session(peer)
		if s == nil {
			continue
		}
		if s.failed.Load() {
			u.met.drop("handshake_failed")
			continue
		}
		d := make([]byte, n)
		copy(d, buf[:n])
		select {
		case s.queue <- d:
		default:
			u.met.drop("queue_full")
		}
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
	s = &udpClientSession{peer: peer, queue: make(chan []byte, max(u.cfg.Limits.SessionQueue, 1)), done: make(chan struct{})}
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
	key, err := u.src.Key(u.identity)
	if err != nil {
		u.holdDown(s, err, start, false)
		return
	}
	dctx, dcancel := context.WithTimeout(u.ctx, u.cfg.Timeouts.Dial.D())
	c, err := (&net.Dialer{}).DialContext(dctx, "udp", u.cfg.connect.HostPort())
	dcancel()
	if err != nil {
		u.dest.record(err)
		u.met.dialFailures.Inc()
		u.log.Warn("server proxy address unusable: dropping the session", "peer", s.peer.String(), "connect", u.cfg.Connect, "err", err)
		u.holdDown(s, nil, start, false)
		return
	}
	opts := []dtls.ClientOption{}
	for _, o := range dtlsShared(u.cfg) {
		opts = append(opts, o)
	}
	opts = append(opts,
		dtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		dtls.WithPSKIdentityHint([]byte(u.identity)),
	)
	if *u.cfg.DTLS.ConnectionID {
		// Send the CIDs the server gives us; we need none ourselves.
		opts = append(opts, dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()))
	}
	dc, err := dtls.ClientWithOptions(dtlsnet.PacketConnFromConn(c), c.RemoteAddr(), opts...)
	if err != nil {
		c.Close()
		u.log.Error("DTLS client setup failed", "err", err)
		return
	}
	s.conn.Store(dc)
	select {
	case <-s.done: // closed while setting up
		dc.Close()
		return
	default:
	}
	ctx, cancel := context.WithTimeout(u.ctx, u.cfg.Timeouts.Handshake.D())
	err = dc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		_, answered := dc.ConnectionState() // the server picked a suite
		dc.Close()
		if u.ctx.Err() == nil {
			reason := classifyDTLS(err, answered)
			u.dest.handshake(reason, "DTLS handshake with the server proxy failed: "+reason+": "+explain(reason, u.mode, shortIdentity(u.identity)))
		}
		u.holdDown(s, err, start, answered)
		return
	}
	u.dest.handshake("", "")
	u.relay(s, dc)
}

// holdDown logs a failed session start and keeps dropping the peer's
// datagrams for one handshake timeout, so a peer that keeps sending does
// not start a handshake per datagram.
func (u *udpClientRoute) holdDown(s *udpClientSession, err error, start time.Time, answered bool) {
	s.failed.Store(true)
	if err != nil {
		u.dtlsFailed(err, u.cfg.Connect, u.identity, answered, start)
	}
	select {
	case <-time.After(u.cfg.Timeouts.Handshake.D()):
	case <-s.done:
	}
}

func (u *udpClientRoute) relay(s *udpClientSession, dc *dtls.Conn) {
	u.met.sessionsTotal.Inc()
	u.met.sessionsOpen.Inc()
	defer u.met.sessionsOpen.Dec()
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	stopWatch := idleWatch(udpIdle(u.cfg), &last, func() {
		u.log.Debug("session idle: closing", "peer", s.peer.String())
		s.Close()
	})
	defer stopWatch()
	readDone := make(chan struct{})
	go func() { // server proxy -> local peer
		defer close(readDone)
		defer s.Close()
		bp := datagramPool.Get().(*[]byte)
		defer datagramPool.Put(bp)
		for {
			n, err := dc.Read(*bp)
			if err != nil {
				return
			}
			last.Store(time.Now().UnixNano())
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
			last.Store(time.Now().UnixNano())
			if _, err := dc.Write(d); err != nil {
				u.met.drop("tunnel_write_failed")
				s.Close()
				continue
			}
			u.met.datagramsFwd.Inc()
			u.met.bytesFwd.Add(float64(len(d)))
		case <-s.done:
			dc.Close()
			<-readDone
			return
		}
	}
}
