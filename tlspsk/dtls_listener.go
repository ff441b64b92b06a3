package tlspsk

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DTLSListener serves DTLS 1.2 PSK sessions on one packet socket. One
// goroutine reads the socket and routes each datagram, by the sender's
// address (or the connection ID it carries), to its session's bounded
// queue; nothing is allocated and no goroutine is started per datagram.
//
// A ClientHello from an address without a session is answered statelessly
// (RFC 6347 4.2.1): with a HelloVerifyRequest whose cookie is an HMAC, under
// a secret that rotates, of the client's address and ClientHello fields.
// Only a ClientHello that returns a valid cookie (proving the sender
// receives at its address) creates a session, and with it a goroutine for
// its handshake, within MaxHandshakes. A flood of spoofed ClientHellos
// therefore costs one HMAC and one small reply each and leaves nothing
// behind. Accept returns sessions whose handshake has completed.
type DTLSListener struct {
	cfg *DTLSConfig
	pc  net.PacketConn
	udp *net.UDPConn

	mu         sync.RWMutex
	sessions   map[sessionKey]*DTLSConn
	cids       map[string]*DTLSConn
	handshakes int

	accept    chan *DTLSConn
	done      chan struct{}
	closeOnce sync.Once
	loopDone  chan struct{}
	loopErr   error

	cookies cookieJar // the read loop's only
	hvr     []byte    // the read loop's HelloVerifyRequest buffer
	// overflowed: a session's queue overflowed during this batch (the
	// read loop's only): the loop then pauses briefly (see loopBatch).
	overflowed bool

	drops    listenerDrops
	hvrSent  atomic.Uint64
	badCooky atomic.Uint64
	accepted atomic.Uint64
	failed   atomic.Uint64
	replaced atomic.Uint64

	recvBatch atomic.Pointer[UDPBatch] // the read loop's (OffloadStats)
}

// sessionKey is a session's peer: its UDP address, or for other packet
// sockets the address's string.
type sessionKey struct {
	ap netip.AddrPort
	s  string
}

type listenerDrops struct {
	queueFull, noSession, malformed, badRecord, replay, handshakeLimit, sessionLimit, acceptBacklog, oversize atomic.Uint64
}

func (d *listenerDrops) add(reason string) {
	switch reason {
	case dropQueueFull:
		d.queueFull.Add(1)
	case dropNoSession:
		d.noSession.Add(1)
	case dropMalformed:
		d.malformed.Add(1)
	case dropBadRecord:
		d.badRecord.Add(1)
	case dropReplay:
		d.replay.Add(1)
	case dropHandshakeLimit:
		d.handshakeLimit.Add(1)
	case dropSessionLimit:
		d.sessionLimit.Add(1)
	case dropAcceptBacklog:
		d.acceptBacklog.Add(1)
	case dropOversize:
		d.oversize.Add(1)
	}
}

// ListenDTLS listens on a UDP address for DTLS sessions.
func ListenDTLS(network, addr string, config *DTLSConfig) (*DTLSListener, error) {
	if err := config.checkDTLS(false); err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, err
	}
	l, err := NewDTLSListener(pc, config)
	if err != nil {
		pc.Close()
	}
	return l, err
}

// NewDTLSListener serves DTLS sessions on pc, which it owns from now on:
// Close closes it. pc should be a *net.UDPConn (the allocation-free path);
// another net.PacketConn works, keyed by its addresses' strings.
func NewDTLSListener(pc net.PacketConn, config *DTLSConfig) (*DTLSListener, error) {
	if err := config.checkDTLS(false); err != nil {
		return nil, err
	}
	l := &DTLSListener{
		cfg:      config,
		pc:       pc,
		sessions: map[sessionKey]*DTLSConn{},
		cids:     map[string]*DTLSConn{},
		accept:   make(chan *DTLSConn, config.acceptBacklog()),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	l.udp, _ = pc.(*net.UDPConn)
	if err := l.cookies.init(config); err != nil {
		return nil, err
	}
	go l.loop()
	return l, nil
}

// Accept returns the next session whose handshake has completed.
func (l *DTLSListener) Accept() (net.Conn, error) { return l.AcceptDTLS() }

// AcceptDTLS is Accept returning the *DTLSConn.
func (l *DTLSListener) AcceptDTLS() (*DTLSConn, error) {
	select {
	case c := <-l.accept:
		return c, nil
	case <-l.done:
	}
	select {
	case c := <-l.accept:
		return c, nil
	default:
	}
	if l.loopErr != nil {
		return nil, fmt.Errorf("tlspsk: DTLS listener stopped: %w", l.loopErr)
	}
	return nil, fmt.Errorf("tlspsk: DTLS listener closed: %w", net.ErrClosed)
}

// Addr returns the socket's address.
func (l *DTLSListener) Addr() net.Addr { return l.pc.LocalAddr() }

// Close closes the socket and every session, accepted or not.
func (l *DTLSListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.pc.Close()
		<-l.loopDone
		l.mu.Lock()
		all := make([]*DTLSConn, 0, len(l.sessions))
		for _, c := range l.sessions {
			all = append(all, c)
		}
		l.mu.Unlock()
		for _, c := range all {
			c.closeWith(errListenerClosed)
		}
		for {
			select {
			case c := <-l.accept:
				c.closeWith(errListenerClosed)
				continue
			default:
			}
			break
		}
	})
	return err
}

var (
	errListenerClosed = fmt.Errorf("tlspsk: DTLS listener closed: %w", net.ErrClosed)
	errReplaced       = fmt.Errorf("tlspsk: DTLS session replaced by a new handshake from the same peer: %w", net.ErrClosed)
)

// loop reads the socket until it is closed.
func (l *DTLSListener) loop() {
	defer close(l.loopDone)
	if l.udp != nil {
		l.loopBatch()
		return
	}
	buf := make([]byte, 64<<10)
	for {
		var n int
		var key sessionKey
		var addr net.Addr
		var err error
		if l.udp != nil {
			n, key.ap, err = l.udp.ReadFromUDPAddrPort(buf)
		} else {
			n, addr, err = l.pc.ReadFrom(buf)
			if err == nil {
				if ua, ok := addr.(*net.UDPAddr); ok {
					key.ap = ua.AddrPort()
				} else {
					key.s = addr.String()
				}
			}
		}
		if err != nil {
			if l.readFailed(err) {
				return
			}
			continue
		}
		l.handle(buf[:n], key, addr)
	}
}

// readFailed handles an error reading the socket: it reports true when
// the loop must end (the listener is closed, or the error is neither a
// timeout nor transient: the listener then closes with it).
func (l *DTLSListener) readFailed(err error) bool {
	select {
	case <-l.done:
		return true
	default:
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || isTransientUDPError(err) {
		return false
	}
	l.loopErr = err
	go l.Close()
	return true
}

// loopBatch is loop on a *net.UDPConn: up to dtlsBatchLen datagrams per
// recvmmsg into the batch's own buffers (handle copies what it keeps).
func (l *DTLSListener) loopBatch() {
	b := NewUDPBatch(l.udp, dtlsBatchLen, UDPRecordSlot, false)
	if l.cfg.UDPOffload {
		b.EnableGRO() // where the kernel refuses, plain recvmmsg
	}
	l.recvBatch.Store(b)
	for {
		n, err := b.Recv()
		if err != nil {
			if l.readFailed(err) {
				return
			}
			continue
		}
		for i := 0; i < n; i++ {
			m := &b.Msgs[i]
			if m.Trunc {
				l.drops.oversize.Add(1)
				continue
			}
			if !m.Addr.IsValid() {
				l.drops.malformed.Add(1)
				continue
			}
			l.handle(m.B, sessionKey{ap: m.Addr}, nil)
		}
		if l.overflowed {
			// A session is not keeping up: reading on at full speed would
			// only copy datagrams to drop them, taking the CPU the
			// session needs. Pausing lets the socket buffer hold (or the
			// kernel drop, at no cost to us) what comes meanwhile. The
			// pause is short and bounded, so a flood aimed at one
			// session's queue slows the loop to at most one batch per
			// pause, and never blocks it.
			l.overflowed = false
			time.Sleep(overflowPause)
		}
	}
}

// overflowPause is how long the listener's read loop pauses after a batch
// in which a session's queue overflowed.
const overflowPause = 200 * time.Microsecond

// handle routes one datagram.
func (l *DTLSListener) handle(d []byte, key sessionKey, addr net.Addr) {
	if len(d) < dtlsRecordHeaderLen {
		l.drops.malformed.Add(1)
		return
	}
	if len(d) > dgramBig {
		l.drops.oversize.Add(1)
		return
	}
	key.ap = unmap(key.ap)
	if d[0] == recordCID {
		n := l.cfg.ConnectionIDLength
		if n == 0 || len(d) < dtlsRecordHeaderLen+n {
			l.drops.malformed.Add(1)
			return
		}
		l.mu.RLock()
		c := l.cids[string(d[11:11+n])]
		l.mu.RUnlock()
		if c == nil {
			l.drops.noSession.Add(1)
			return
		}
		l.enqueue(c, d, key, addr)
		return
	}
	l.mu.RLock()
	c := l.sessions[key]
	l.mu.RUnlock()
	// A ClientHello: epoch 0, a handshake record whose first fragment is a
	// client_hello.
	if d[0] == recordHandshake && d[3] == 0 && d[4] == 0 && len(d) > dtlsRecordHeaderLen+dtlsHandshakeHeaderLen &&
		d[dtlsRecordHeaderLen] == typeClientHello {
		l.hello(d, key, addr, c)
		return
	}
	if c == nil {
		l.drops.noSession.Add(1)
		return
	}
	// A client retransmitting its last flight (epoch 0 ClientKeyExchange
	// and change_cipher_spec first) to an established session lost our
	// Finished: answer here, since the session may wait in Accept's
	// backlog with nobody reading it.
	if (d[0] == recordHandshake || d[0] == recordChangeCipherSpec) && d[3] == 0 && d[4] == 0 && c.hsDone.Load() && c.resendFinal() {
		return
	}
	l.enqueue(c, d, key, addr)
}

// enqueue copies d into a pooled buffer on c's queue, or drops it.
func (l *DTLSListener) enqueue(c *DTLSConn, d []byte, key sessionKey, addr net.Addr) {
	if c.closed.Load() {
		l.drops.noSession.Add(1)
		return
	}
	b := getDgram(len(d))
	if c.queued.Add(int64(cap(b))) > int64(l.cfg.queueLength())*dgramSmall {
		// The byte bound: a flood of big datagrams pins at most as much as
		// QueueLength small ones.
		c.queued.Add(-int64(cap(b)))
		putDgram(b)
		c.countDrop(&c.drops.queueFull, dropQueueFull)
		l.overflowed = true
		return
	}
	copy(b, d)
	var from *dtlsPeer
	if c.cidOn.Load() {
		from = c.peerFor(key, addr)
	}
	select {
	case c.queue <- dgram{b: b, from: from}:
	default:
		c.queued.Add(-int64(cap(b)))
		putDgram(b)
		c.countDrop(&c.drops.queueFull, dropQueueFull)
		l.overflowed = true
	}
}

// peerFor returns the conn's current peer if key is it, or a new one (a
// CID session's datagram from another address; rare).
func (c *DTLSConn) peerFor(key sessionKey, addr net.Addr) *dtlsPeer {
	p := c.peer.Load()
	if key.ap.IsValid() && unmap(p.ap) == key.ap || !key.ap.IsValid() && addr != nil && p.addr.String() == key.s {
		return p
	}
	if key.ap.IsValid() {
		return &dtlsPeer{ap: key.ap, addr: net.UDPAddrFromAddrPort(key.ap)}
	}
	return &dtlsPeer{addr: addr}
}

// hello handles a ClientHello: a retransmission for the session of its
// random, a HelloVerifyRequest without a valid cookie, or a new session.
func (l *DTLSListener) hello(d []byte, key sessionKey, addr net.Addr, c *DTLSConn) {
	h, rec, _, ok := nextDTLSRecord(d, 0)
	if !ok {
		l.drops.malformed.Add(1)
		return
	}
	f, _, ok := nextFragment(rec[dtlsRecordHeaderLen:])
	if !ok || f.off != 0 || len(f.data) != f.length {
		// A fragmented ClientHello would need state to reassemble: we
		// keep none before the cookie (clients send it whole in practice).
		l.drops.malformed.Add(1)
		return
	}
	hf, ok := peekDTLSClientHello(f.data)
	if !ok {
		l.drops.malformed.Add(1)
		return
	}
	if c != nil && bytes.Equal(c.clientRandom[:], hf.random) {
		l.enqueue(c, d, key, addr) // the session's own hello again
		return
	}
	now := l.cfg.now()
	l.cookies.rotate(now, l.cfg)
	if !l.cookies.valid(hf, key) {
		if len(hf.cookie) > 0 {
			l.badCooky.Add(1)
		}
		l.sendHelloVerify(hf, key, addr, h.seq, f.seq)
		return
	}
	l.mu.Lock()
	if l.handshakes >= l.cfg.maxHandshakes() {
		l.mu.Unlock()
		l.drops.handshakeLimit.Add(1)
		return
	}
	old := l.sessions[key]
	if m := l.cfg.MaxSessions; m > 0 && len(l.sessions) >= m && old == nil {
		l.mu.Unlock()
		l.drops.sessionLimit.Add(1)
		return
	}
	nc := newDTLSConn(l.cfg, false)
	nc.l, nc.key = l, key
	nc.queue = make(chan dgram, l.cfg.queueLength())
	if key.ap.IsValid() {
		nc.peer.Store(&dtlsPeer{ap: key.ap, addr: net.UDPAddrFromAddrPort(key.ap)})
	} else {
		nc.peer.Store(&dtlsPeer{addr: addr})
	}
	copy(nc.clientRandom[:], hf.random)
	l.sessions[key] = nc
	l.handshakes++
	l.mu.Unlock()
	if old != nil {
		// RFC 6347 4.2.8: a new handshake from the address of a session,
		// with a valid cookie (the client is there): the old session ends.
		l.replaced.Add(1)
		old.closeWith(errReplaced)
	}
	l.enqueue(nc, d, key, addr)
	go nc.serveHandshake()
}

// serveHandshake runs a server conn's handshake and hands it to Accept.
func (c *DTLSConn) serveHandshake() {
	l := c.l
	err := c.HandshakeContext(context.Background())
	l.mu.Lock()
	l.handshakes--
	l.mu.Unlock()
	if err != nil {
		l.failed.Add(1)
		closing := false
		select {
		case <-l.done:
			closing = true
		default:
		}
		if cb := c.cfg.HandshakeFailed; cb != nil && !closing && !errors.Is(err, errReplaced) {
			cb(c.RemoteAddr(), c.identity, err)
		}
		c.closeWith(err)
		return
	}
	select {
	case l.accept <- c:
		l.accepted.Add(1)
	case <-l.done:
		c.closeWith(errListenerClosed)
	default:
		l.drops.acceptBacklog.Add(1)
		c.Close()
	}
}

// remove drops c from the tables (c is closing).
func (l *DTLSListener) remove(c *DTLSConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions[c.key] == c {
		delete(l.sessions, c.key)
	}
	if c.ourCID != nil && l.cids[string(c.ourCID)] == c {
		delete(l.cids, string(c.ourCID))
	}
}

// issueCID gives c a random connection ID that no other session has.
func (l *DTLSListener) issueCID(c *DTLSConn) error {
	cid := make([]byte, l.cfg.ConnectionIDLength)
	for i := 0; i < 8; i++ {
		if _, err := io.ReadFull(l.cfg.rand(), cid); err != nil {
			return err
		}
		l.mu.Lock()
		if l.cids[string(cid)] == nil && !c.closed.Load() {
			l.cids[string(cid)] = c
			c.ourCID = cid
			c.cidOn.Store(true)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
	}
	return alertf(alertInternalError, "no free connection ID")
}

// migrate moves a CID session to the address of its newest authenticated
// record (RFC 9146 6).
func (l *DTLSListener) migrate(c *DTLSConn, p *dtlsPeer) {
	old := c.peer.Load()
	if p == old {
		return
	}
	key := sessionKey{ap: unmap(p.ap)}
	if !p.ap.IsValid() {
		key.s = p.addr.String()
	}
	c.peer.Store(p)
	l.mu.Lock()
	if l.sessions[c.key] == c {
		delete(l.sessions, c.key)
	}
	if l.sessions[key] == nil {
		l.sessions[key] = c
	}
	c.key = key
	l.mu.Unlock()
}

// sendHelloVerify answers a ClientHello without a valid cookie. The
// reply (60 bytes) is smaller than any ClientHello, so it amplifies
// nothing; it reuses the hello's record sequence number and message_seq
// (RFC 6347 4.2.1).
func (l *DTLSListener) sendHelloVerify(hf helloFields, key sessionKey, addr net.Addr, recSeq uint64, msgSeq uint16) {
	cookie := l.cookies.compute(l.cookies.cur, hf, key)
	body := appendHelloVerifyRequest(l.cookies.body[:0], cookie)
	l.cookies.body = body
	b := l.hvr[:0]
	b = append(b, make([]byte, dtlsRecordHeaderLen+dtlsHandshakeHeaderLen)...)
	putDTLSHeader(b, recordHandshake, versionDTLS10, recSeq, nil, dtlsHandshakeHeaderLen+len(body))
	putFragmentHeader(b[dtlsRecordHeaderLen:], typeHelloVerifyRequest, len(body), msgSeq, 0, len(body))
	b = append(b, body...)
	l.hvr = b
	if l.udp != nil && key.ap.IsValid() {
		l.udp.WriteToUDPAddrPort(b, key.ap)
	} else if addr != nil {
		l.pc.WriteTo(b, addr)
	}
	l.hvrSent.Add(1)
}

// DTLSStats are a listener's counters since it started.
type DTLSStats struct {
	Sessions            int    // sessions now (handshaking or established)
	Handshakes          int    // handshakes in progress
	HelloVerifyRequests uint64 // cookie challenges sent
	BadCookies          uint64 // ClientHellos with a cookie that did not verify (challenged again)
	Accepted            uint64 // sessions handed to Accept
	HandshakeFailures   uint64
	Replaced            uint64 // sessions ended by a new handshake from their peer
	// Dropped counts datagrams or records dropped, by reason:
	// queue_full (a session's queue was full), no_session (not a
	// ClientHello, from an address without a session), malformed,
	// bad_record (failed authentication), replay, handshake_limit
	// (MaxHandshakes reached), session_limit (MaxSessions reached),
	// accept_backlog (an established session found Accept's queue full),
	// oversize (a datagram longer than a record can be).
	Dropped map[string]uint64
}

// Stats returns the listener's counters.
func (l *DTLSListener) Stats() DTLSStats {
	l.mu.RLock()
	s := DTLSStats{Sessions: len(l.sessions), Handshakes: l.handshakes}
	l.mu.RUnlock()
	s.HelloVerifyRequests, s.BadCookies = l.hvrSent.Load(), l.badCooky.Load()
	s.Accepted, s.HandshakeFailures, s.Replaced = l.accepted.Load(), l.failed.Load(), l.replaced.Load()
	d := &l.drops
	s.Dropped = map[string]uint64{
		dropQueueFull: d.queueFull.Load(), dropNoSession: d.noSession.Load(), dropMalformed: d.malformed.Load(),
		dropBadRecord: d.badRecord.Load(), dropReplay: d.replay.Load(), dropHandshakeLimit: d.handshakeLimit.Load(),
		dropSessionLimit: d.sessionLimit.Load(), dropAcceptBacklog: d.acceptBacklog.Load(), dropOversize: d.oversize.Load(),
	}
	return s
}

// cookieJar makes and checks the stateless cookies: HMAC-SHA256 under a
// random secret that rotates every CookieRotation (the previous one is
// still accepted, so a cookie lives one to two periods) of the client's
// address and the ClientHello fields the retransmitted hello must repeat
// (version, random, session ID, suites, compression methods). The
// extensions are left out: a client may legitimately change nothing, and
// the cookie only proves the client receives at its address. It is used
// by the read loop only and does not allocate.
type cookieJar struct {
	cur, prev hash.Hash
	rotated   time.Time
	in        []byte
	out       [sha256.Size]byte
	body      []byte
	rand      io.Reader
}

const cookieLen = sha256.Size

func (j *cookieJar) init(cfg *DTLSConfig) error {
	j.rand = cfg.rand()
	j.rotated = cfg.now()
	var err error
	if j.cur, err = j.newMAC(); err != nil {
		return err
	}
	j.prev, err = j.newMAC()
	return err
}

func (j *cookieJar) newMAC() (hash.Hash, error) {
	var secret [32]byte
	if _, err := io.ReadFull(j.rand, secret[:]); err != nil {
		return nil, fmt.Errorf("tlspsk: DTLS cookie secret: %w", err)
	}
	m := hmac.New(sha256.New, secret[:])
	wipe(secret[:])
	return m, nil
}

// rotate replaces the secret when its period is over.
func (j *cookieJar) rotate(now time.Time, cfg *DTLSConfig) {
	if now.Sub(j.rotated) < cfg.cookieRotation() {
		return
	}
	m, err := j.newMAC()
	if err != nil {
		return // keep the current secret; the next hello tries again
	}
	j.prev, j.cur, j.rotated = j.cur, m, now
}

func (j *cookieJar) compute(mac hash.Hash, hf helloFields, key sessionKey) []byte {
	in := j.in[:0]
	if key.ap.IsValid() {
		a := key.ap.Addr().As16()
		in = append(in, a[:]...)
		in = binary.BigEndian.AppendUint16(in, key.ap.Port())
	} else {
		in = append(in, key.s...)
	}
	in = binary.BigEndian.AppendUint16(in, hf.version)
	in = append(in, hf.random...)
	in = append(in, byte(len(hf.sessionID)))
	in = append(in, hf.sessionID...)
	in = binary.BigEndian.AppendUint16(in, uint16(len(hf.suites)))
	in = append(in, hf.suites...)
	in = append(in, byte(len(hf.compression)))
	in = append(in, hf.compression...)
	j.in = in
	mac.Reset()
	mac.Write(in)
	return mac.Sum(j.out[:0])
}

// valid reports whether the hello carries a cookie we made for its sender.
func (j *cookieJar) valid(hf helloFields, key sessionKey) bool {
	if len(hf.cookie) != cookieLen {
		return false
	}
	if subtle.ConstantTimeCompare(j.compute(j.cur, hf, key), hf.cookie) == 1 {
		return true
	}
	return subtle.ConstantTimeCompare(j.compute(j.prev, hf, key), hf.cookie) == 1
}

// isTransientUDPError reports errors a UDP socket returns for an earlier
// datagram (an ICMP error), not for the socket itself.
func isTransientUDPError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EMSGSIZE)
}
