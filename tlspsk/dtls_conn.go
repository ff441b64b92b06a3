package tlspsk

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DTLSConn is one DTLS 1.2 session: a net.Conn whose Read and Write move
// whole datagrams, each carried by one record. A client DTLSConn owns its
// socket; a server DTLSConn, returned by DTLSListener.Accept with its
// handshake done, shares the listener's socket and gets its datagrams
// from the listener's read loop through a bounded queue.
//
// Read and Write may be called concurrently, and Close from any
// goroutine. On a server DTLSConn, Read must be called for the session to
// work: it also answers a client that retransmits its last flight.
//
// For batched socket I/O a caller can protect and check records itself,
// on its own buffers: SealRecord and OpenRecord, which do not allocate.
type DTLSConn struct {
	cfg      *DTLSConfig
	isClient bool

	// Transport. A client reads from nc (a connected socket) or from pc,
	// keeping only datagrams from its server; a server conn gets its
	// datagrams from the listener through queue and writes to the
	// listener's socket.
	nc    net.Conn
	pc    net.PacketConn
	udp   *net.UDPConn // pc, when it is a *net.UDPConn (allocation-free calls)
	peer  atomic.Pointer[dtlsPeer]
	l     *DTLSListener
	key   sessionKey
	queue chan dgram
	// queued is the bytes of buffers waiting in queue: a bound on the
	// memory a flood of datagrams spoofing the peer's address can pin.
	queued atomic.Int64

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error // why the conn was closed by someone else (replaced, listener closed)

	hsMu   sync.Mutex
	hsDone atomic.Bool
	hsErr  error
	state  ConnectionState // set by the handshake, read-only after

	in struct {
		sync.Mutex
		k      *dtlsCipher // epoch 1 read keys
		window replayWindow
		buf    []byte    // pooled buffer holding the datagram being read
		pend   []byte    // its records not yet processed
		from   *dtlsPeer // where the datagram being read came from (server conns)
		early  [][]byte  // application data that arrived before the handshake ended
		err    error     // sticky
		forged uint64    // records that failed authentication
		held   [][]byte  // pooled buffers the last ReadBatch returned plaintext in
	}
	out struct {
		sync.Mutex
		epoch uint16    // the epoch of our application data and alerts
		seq   [2]uint64 // next sequence number per epoch
		k     *dtlsCipher
		buf   []byte
		err   error     // sticky
		batch *UDPBatch // WriteBatch's headers (made on first use)
		msgs  []UDPMsg  // WriteBatch's sealed records
	}

	// Server: our Finished, kept to answer a client that retransmits its
	// last flight because ours was lost, until the client shows it has it
	// (its first application data). The listener's read loop answers (a
	// session may wait in Accept's backlog, unread), so finalMu guards it,
	// not in, which a blocked Read holds.
	finalMu   sync.Mutex
	final     []byte
	lastFinal time.Time

	clientRandom [32]byte    // server: recognises a retransmitted ClientHello
	ourCID       []byte      // the CID the peer puts in its records (we issued it)
	cidOn        atomic.Bool // ourCID is set (the listener's loop reads this)
	identity     string      // server: the identity the client offered

	// Deadlines: a server conn's read deadline (its socket is shared); a
	// client's are its socket's, and userRead is restored after the
	// handshake, which sets its own.
	readDL   dtlsDeadline
	dlMu     sync.Mutex
	userRead time.Time
	inHS     bool

	drops connDrops

	exportMu sync.Mutex
	exporter *exporter12
	ems      bool
}

// dtlsPeer is where a conn sends: the address a server conn's client uses
// (it may change with a CID), or a client's server.
type dtlsPeer struct {
	ap   netip.AddrPort // valid for UDP addresses
	addr net.Addr
}

// dgram is a datagram queued from the listener to a server conn.
type dgram struct {
	b    []byte // pooled (getDgram)
	from *dtlsPeer
}

// connDrops counts what a conn dropped; a server conn also adds to its
// listener's counters.
type connDrops struct {
	replay, badRecord, queueFull, malformed atomic.Uint64
}

// Datagram buffers come from two pools: most datagrams fit the small
// size; the big one holds a full record (2^14 bytes of plaintext, the
// largest a DTLS record carries, plus header, CID and AEAD overhead).
const (
	dgramSmall = 2048
	dgramBig   = 20 << 10
)

var (
	dgramSmallPool = sync.Pool{New: func() any { return new([dgramSmall]byte) }}
	dgramBigPool   = sync.Pool{New: func() any { return new([dgramBig]byte) }}
)

func getDgram(n int) []byte {
	if n <= dgramSmall {
		return dgramSmallPool.Get().(*[dgramSmall]byte)[:n]
	}
	return dgramBigPool.Get().(*[dgramBig]byte)[:n]
}

// putDgram returns a buffer from getDgram. What goes back is ciphertext
// or, after Read opened it in place, application plaintext that the next
// user overwrites before reading; handshake buffers are cleared first.
func putDgram(b []byte) {
	switch cap(b) {
	case dgramSmall:
		dgramSmallPool.Put((*[dgramSmall]byte)(b[:dgramSmall]))
	case dgramBig:
		dgramBigPool.Put((*[dgramBig]byte)(b[:dgramBig]))
	}
}

var errDTLSClosed = fmt.Errorf("tlspsk: use of a closed DTLS connection: %w", net.ErrClosed)

// DTLSClient returns a client DTLSConn over conn, normally a connected UDP
// socket (net.Dial("udp", ...)); each Read of conn must return one
// datagram. The DTLSConn owns conn: Close closes it. The handshake runs on
// the first Read or Write, or Handshake.
func DTLSClient(conn net.Conn, config *DTLSConfig) *DTLSConn {
	c := newDTLSConn(config, true)
	c.nc = conn
	c.peer.Store(newPeer(conn.RemoteAddr()))
	return c
}

// DTLSClientPacketConn returns a client DTLSConn over an unconnected
// socket, talking to raddr and ignoring datagrams from anyone else. The
// DTLSConn owns pc: Close closes it.
func DTLSClientPacketConn(pc net.PacketConn, raddr net.Addr, config *DTLSConfig) *DTLSConn {
	c := newDTLSConn(config, true)
	c.pc = pc
	c.udp, _ = pc.(*net.UDPConn)
	c.peer.Store(newPeer(raddr))
	return c
}

// DialDTLS connects to addr ("udp", "udp4" or "udp6") and runs the handshake.
func DialDTLS(network, addr string, config *DTLSConfig) (*DTLSConn, error) {
	return DialDTLSContext(context.Background(), network, addr, config)
}

// DialDTLSContext connects to addr and runs the handshake within ctx.
func DialDTLSContext(ctx context.Context, network, addr string, config *DTLSConfig) (*DTLSConn, error) {
	if err := config.checkDTLS(true); err != nil {
		return nil, err
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := DTLSClient(raw, config)
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func newDTLSConn(cfg *DTLSConfig, isClient bool) *DTLSConn {
	c := &DTLSConn{cfg: cfg, isClient: isClient, done: make(chan struct{})}
	c.readDL.init()
	return c
}

func newPeer(a net.Addr) *dtlsPeer {
	p := &dtlsPeer{addr: a}
	if ua, ok := a.(*net.UDPAddr); ok {
		p.ap = ua.AddrPort()
	}
	return p
}

// --- the datagram transport ---

// errRecvTimer is recv's answer when until passed: a handshake timer.
var errRecvTimer = errors.New("tlspsk: DTLS retransmission timer")

// recv returns the next datagram from the peer in a pooled buffer (the
// caller gives it back with putDgram). A non-zero until is a handshake
// timer: recv then returns errRecvTimer at that time.
func (c *DTLSConn) recv(until time.Time) ([]byte, *dtlsPeer, error) {
	if c.l != nil {
		return c.recvQueued(until)
	}
	if !until.IsZero() {
		c.setSocketReadDeadline(until)
	}
	for {
		b := getDgram(dgramBig)
		var n int
		var err error
		switch {
		case c.nc != nil:
			n, err = c.nc.Read(b)
		case c.udp != nil:
			var ap netip.AddrPort
			n, ap, err = c.udp.ReadFromUDPAddrPort(b)
			if err == nil && ap != c.peer.Load().ap && unmap(ap) != unmap(c.peer.Load().ap) {
				putDgram(b)
				continue
			}
		default:
			var a net.Addr
			n, a, err = c.pc.ReadFrom(b)
			if err == nil && a.String() != c.peer.Load().addr.String() {
				putDgram(b)
				continue
			}
		}
		if err != nil {
			putDgram(b)
			var ne net.Error
			if !until.IsZero() && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(until) {
				return nil, nil, errRecvTimer
			}
			return nil, nil, err
		}
		return b[:n], nil, nil
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (c *DTLSConn) setSocketReadDeadline(t time.Time) {
	if c.nc != nil {
		c.nc.SetReadDeadline(t)
	} else {
		c.pc.SetReadDeadline(t)
	}
}

func (c *DTLSConn) recvQueued(until time.Time) ([]byte, *dtlsPeer, error) {
	var timer <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timer = t.C
	}
	for {
		dl, expired := c.readDL.wait()
		if expired && until.IsZero() {
			return nil, nil, os.ErrDeadlineExceeded
		}
		select {
		case d := <-c.queue:
			c.queued.Add(-int64(cap(d.b)))
			return d.b, d.from, nil
		case <-c.done:
			return nil, nil, c.closedErr()
		case <-timer:
			return nil, nil, errRecvTimer
		case <-dl:
			if until.IsZero() {
				continue // the deadline passed or changed: look again
			}
			// A handshake ignores the read deadline; wait for the timer.
			select {
			case d := <-c.queue:
				c.queued.Add(-int64(cap(d.b)))
				return d.b, d.from, nil
			case <-c.done:
				return nil, nil, c.closedErr()
			case <-timer:
				return nil, nil, errRecvTimer
			}
		}
	}
}

func (c *DTLSConn) closedErr() error {
	if c.closeErr != nil {
		return c.closeErr
	}
	return errDTLSClosed
}

// send writes one datagram to the peer.
func (c *DTLSConn) send(b []byte) error {
	if c.nc != nil {
		_, err := c.nc.Write(b)
		return err
	}
	p := c.peer.Load()
	pc, udp := c.pc, c.udp
	if c.l != nil {
		pc, udp = c.l.pc, c.l.udp
	}
	var err error
	if udp != nil && p.ap.IsValid() {
		_, err = udp.WriteToUDPAddrPort(b, p.ap)
	} else {
		_, err = pc.WriteTo(b, p.addr)
	}
	return err
}

// --- sealing ---

// sealOutLocked appends a record of typ in epoch to dst, with the next
// sequence number of that epoch. The caller holds c.out.
func (c *DTLSConn) sealOutLocked(dst []byte, epoch uint16, typ uint8, payload []byte) ([]byte, error) {
	seq := c.out.seq[epoch]
	if seq > dtlsMaxSeq {
		return dst, errors.New("tlspsk: DTLS sequence numbers exhausted; a new session is needed")
	}
	c.out.seq[epoch]++
	es := uint64(epoch)<<48 | seq
	if epoch == 0 {
		return sealPlainDTLS(dst, typ, VersionDTLS12, es, payload), nil
	}
	return c.out.k.seal(dst, typ, es, payload)
}

// SealRecord appends to dst one application-data record carrying
// plaintext, protected for the peer, and returns the extended slice; the
// caller sends it to the peer (RemoteAddr) as one datagram. With enough
// capacity in dst it does not allocate; plaintext may be dst's spare
// capacity at offset len(dst)+SealOffset() (sealing in place).
func (c *DTLSConn) SealRecord(dst, plaintext []byte) ([]byte, error) {
	if !c.hsDone.Load() {
		return dst, errors.New("tlspsk: SealRecord before the DTLS handshake completed")
	}
	if len(plaintext) > maxPlaintext {
		return dst, errDTLSTooLong
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return dst, c.out.err
	}
	rec, err := c.sealOutLocked(dst, 1, recordApplicationData, plaintext)
	if err != nil {
		c.out.err = err
	}
	return rec, err
}

// SealOffset is where the plaintext starts in a sealed record: the header
// (with the peer's CID, if any) and the explicit nonce.
func (c *DTLSConn) SealOffset() int {
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.k == nil {
		return dtlsRecordHeaderLen
	}
	n := dtlsRecordHeaderLen + len(c.out.k.cid)
	if c.out.k.explicit {
		n += 8
	}
	return n
}

// SealOverhead is how many bytes a record adds to its plaintext.
func (c *DTLSConn) SealOverhead() int {
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.k == nil {
		return dtlsRecordHeaderLen
	}
	return dtlsRecordHeaderLen + c.out.k.overhead()
}

var errDTLSTooLong = errors.New("tlspsk: datagram longer than a DTLS record carries (16384 bytes)")

// Write sends b as one datagram (one record). It never splits b: b longer
// than 16384 bytes is an error.
func (c *DTLSConn) Write(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(b) > maxPlaintext {
		return 0, errDTLSTooLong
	}
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return 0, c.out.err
	}
	if need := len(b) + dtlsRecordHeaderLen + c.out.k.overhead(); cap(c.out.buf) < need {
		c.out.buf = make([]byte, 0, max(need, dgramSmall))
	}
	rec, err := c.sealOutLocked(c.out.buf[:0], 1, recordApplicationData, b)
	if err != nil {
		c.out.err = err
		return 0, err
	}
	if err := c.send(rec); err != nil {
		if c.closed.Load() {
			return 0, errDTLSClosed
		}
		return 0, err
	}
	return len(b), nil
}

// sendAlertLocked sends an alert in our current epoch (fatal, except
// close_notify). The caller holds c.out.
func (c *DTLSConn) sendAlertLocked(a Alert) error {
	level := uint8(2)
	if a == alertCloseNotify {
		level = 1
	}
	if c.out.epoch == 1 && c.out.k == nil {
		return nil
	}
	var buf [64]byte
	rec, err := c.sealOutLocked(buf[:0], c.out.epoch, recordAlert, []byte{level, byte(a)})
	if err != nil {
		return err
	}
	return c.send(rec)
}

// --- reading ---

// Read reads the next datagram into b. If b is too short, the rest of the
// datagram is lost and Read returns io.ErrShortBuffer with what fit. It is
// ReadBatch of one datagram, copied out before the lock is released (the
// next Read may recycle the buffer the plaintext is in).
func (c *DTLSConn) Read(b []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.in.Lock()
	defer c.in.Unlock()
	var m [1]UDPMsg
	if _, err := c.readBatchLocked(m[:]); err != nil {
		return 0, err
	}
	return copyOut(b, m[0].B)
}

func copyOut(b, d []byte) (int, error) {
	n := copy(b, d)
	if n < len(d) {
		return n, io.ErrShortBuffer
	}
	return n, nil
}

// OpenRecord checks and decrypts, in place, one record (header included)
// received from the peer, for callers that read datagrams themselves
// (rec must be exactly one record: see SplitRecord). It returns the
// plaintext of application data; nil, nil for a record it consumed
// (a retransmitted handshake flight, which it answers, or a warning
// alert) or dropped and counted (replayed, failing authentication,
// malformed); and an error when the session is over (io.EOF for
// close_notify, *AlertError for a fatal alert). It does not allocate.
func (c *DTLSConn) OpenRecord(rec []byte) ([]byte, error) {
	if !c.hsDone.Load() {
		return nil, errors.New("tlspsk: OpenRecord before the DTLS handshake completed")
	}
	c.in.Lock()
	defer c.in.Unlock()
	if c.in.err != nil {
		return nil, c.in.err
	}
	c.in.from = nil
	h, r, rest, ok := nextDTLSRecord(rec, len(c.ourCID))
	if !ok || len(rest) != 0 {
		c.countDrop(&c.drops.malformed, dropMalformed)
		return nil, nil
	}
	plain, err := c.openLocked(h, r)
	if err != nil {
		c.in.err = err
	}
	return plain, err
}

// SplitRecord splits the first record off a datagram; ok is false if the
// datagram does not start with a whole record.
func (c *DTLSConn) SplitRecord(d []byte) (rec, rest []byte, ok bool) {
	_, rec, rest, ok = nextDTLSRecord(d, len(c.ourCID))
	return
}

// openLocked handles one record after the handshake. The caller holds c.in.
func (c *DTLSConn) openLocked(h dtlsHeader, rec []byte) ([]byte, error) {
	switch h.epoch {
	case 1:
	case 0:
		// Unprotected: only a retransmitted handshake flight (or its
		// change_cipher_spec) means anything now; alerts in epoch 0 are
		// unauthenticated and ignored.
		if h.typ == recordHandshake || h.typ == recordChangeCipherSpec {
			c.resendFinal()
		}
		return nil, nil
	default:
		c.countDrop(&c.drops.malformed, dropMalformed)
		return nil, nil
	}
	typ, plain, err := c.openEpoch1Locked(h, rec)
	if err != nil {
		if err == ErrDTLSKeyLimit || err == errDTLSForgeries {
			return nil, err
		}
		return nil, nil
	}
	switch typ {
	case recordApplicationData:
		if c.l != nil {
			c.finalMu.Lock()
			c.final = nil // the client has our Finished
			c.finalMu.Unlock()
		}
		return plain, nil
	case recordAlert:
		level, desc, ok := parseAlert(plain)
		if !ok {
			return nil, nil
		}
		if desc == alertCloseNotify {
			return nil, io.EOF
		}
		if level == 2 {
			return nil, &AlertError{Alert: desc, Received: true}
		}
		return nil, nil
	case recordHandshake, recordChangeCipherSpec:
		c.resendFinal()
	}
	return nil, nil
}

var errDTLSForgeries = errors.New("tlspsk: too many DTLS records failed authentication under this key (RFC 9147 integrity limit)")

// openEpoch1Locked checks the replay window, authenticates and decrypts
// an epoch-1 record and marks it received. Errors are counted drops
// (errDTLSBadRecord, errDTLSReplay) or the end of the key
// (ErrDTLSKeyLimit, errDTLSForgeries).
func (c *DTLSConn) openEpoch1Locked(h dtlsHeader, rec []byte) (uint8, []byte, error) {
	k := c.in.k
	if k == nil {
		return 0, nil, errDTLSBadRecord
	}
	if (h.typ == recordCID) != (c.ourCID != nil) {
		c.countDrop(&c.drops.malformed, dropMalformed)
		return 0, nil, errDTLSBadRecord
	}
	if !c.in.window.check(h.seq) {
		c.countDrop(&c.drops.replay, dropReplay)
		return 0, nil, errDTLSReplay
	}
	typ, plain, err := k.open(rec, h.hdrLen)
	if err != nil {
		if err == ErrDTLSKeyLimit {
			return 0, nil, err
		}
		c.countDrop(&c.drops.badRecord, dropBadRecord)
		c.in.forged++
		if c.in.forged > k.forgeryLimit() {
			return 0, nil, errDTLSForgeries
		}
		return 0, nil, err
	}
	newest := !c.in.window.any || h.seq > c.in.window.top
	c.in.window.mark(h.seq)
	// RFC 9146 6: a peer's address may change only with a record that
	// authenticates and is the newest seen (a replayed or delayed record
	// from elsewhere cannot move the session).
	if newest && c.ourCID != nil && c.in.from != nil && c.l != nil {
		c.l.migrate(c, c.in.from)
	}
	return typ, plain, nil
}

var errDTLSReplay = errors.New("tlspsk: replayed DTLS record")

// resendFinal answers a client that retransmits its last flight (our
// Finished was lost) with our last flight again, at most every 50ms. It
// reports whether the conn still had a final flight to send.
func (c *DTLSConn) resendFinal() bool {
	c.finalMu.Lock()
	defer c.finalMu.Unlock()
	if c.final == nil {
		return false
	}
	if time.Since(c.lastFinal) < 50*time.Millisecond {
		return true
	}
	c.lastFinal = time.Now()
	c.out.Lock()
	defer c.out.Unlock()
	if c.out.err != nil {
		return true
	}
	var buf [128]byte
	d, err := c.sealOutLocked(buf[:0], 0, recordChangeCipherSpec, []byte{1})
	if err == nil {
		d, err = c.sealOutLocked(d, 1, recordHandshake, c.final)
	}
	if err == nil {
		c.send(d)
	}
	return true
}

// drop reasons, as the labels the proxy exports.
const (
	dropQueueFull      = "queue_full"
	dropNoSession      = "no_session"
	dropMalformed      = "malformed"
	dropBadRecord      = "bad_record"
	dropReplay         = "replay"
	dropHandshakeLimit = "handshake_limit"
	dropSessionLimit   = "session_limit"
	dropAcceptBacklog  = "accept_backlog"
	dropOversize       = "oversize"
)

func (c *DTLSConn) countDrop(n *atomic.Uint64, reason string) {
	n.Add(1)
	if c.l != nil {
		c.l.drops.add(reason)
	}
}

// DTLSConnDrops are the datagrams or records a conn dropped, by reason.
type DTLSConnDrops struct {
	Replay    uint64 // replayed records (RFC 6347 4.1.2.6)
	BadRecord uint64 // records that failed authentication
	QueueFull uint64 // server: datagrams lost because the session's queue was full
	Malformed uint64 // records or datagrams that did not parse
}

// Drops returns the conn's drop counters.
func (c *DTLSConn) Drops() DTLSConnDrops {
	return DTLSConnDrops{Replay: c.drops.replay.Load(), BadRecord: c.drops.badRecord.Load(),
		QueueFull: c.drops.queueFull.Load(), Malformed: c.drops.malformed.Load()}
}

// --- handshake entry ---

// Handshake runs the handshake if it has not run yet.
func (c *DTLSConn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext runs the client handshake within ctx and the
// configured HandshakeTimeout; if ctx ends first, the conn is closed. A
// server conn from Accept has completed its handshake.
func (c *DTLSConn) HandshakeContext(ctx context.Context) error {
	if c.hsDone.Load() {
		return nil
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsErr != nil {
		return c.hsErr
	}
	if c.hsDone.Load() {
		return nil
	}
	if c.closed.Load() {
		return errDTLSClosed
	}
	if err := c.cfg.checkDTLS(c.isClient); err != nil {
		c.hsErr = fmt.Errorf("%w: %v", errConfig, err)
		return c.hsErr
	}
	c.hsErr = c.runHandshake(ctx)
	return c.hsErr
}

func (c *DTLSConn) runHandshake(ctx context.Context) error {
	start := time.Now()
	hs := &dtlsHandshake{c: c, deadline: start.Add(c.cfg.handshakeTimeout()), timeout: c.cfg.handshakeTimeout()}
	if d, ok := ctx.Deadline(); ok && d.Before(hs.deadline) {
		hs.deadline, hs.timeout = d, d.Sub(start)
	}
	if c.isClient {
		c.dlMu.Lock()
		c.inHS = true
		c.dlMu.Unlock()
		if ctx.Done() != nil {
			stop := make(chan struct{})
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				select {
				case <-ctx.Done():
					c.Close()
				case <-stop:
				}
			}()
			defer func() { close(stop); <-watched }()
		}
	}
	c.in.Lock()
	c.out.Lock()
	var err error
	if c.isClient {
		err = c.clientHandshake(hs)
	} else {
		err = c.serverHandshake(hs)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("tlspsk: DTLS handshake interrupted: %w", ctx.Err())
		} else if c.closed.Load() && !errors.As(err, new(*AlertError)) {
			err = c.closedErr()
		}
		var ae *AlertError
		if errors.As(err, &ae) {
			ae.Handshake = true
			if !ae.Received {
				c.sendAlertLocked(ae.Alert)
			}
		}
		c.in.err, c.out.err = err, err
	} else {
		c.hsDone.Store(true)
	}
	hs.release()
	c.out.Unlock()
	c.in.Unlock()
	if c.isClient {
		c.dlMu.Lock()
		c.inHS = false
		if c.nc != nil || c.pc != nil {
			c.setSocketReadDeadline(c.userRead)
		}
		c.dlMu.Unlock()
	}
	return err
}

// --- closing ---

// Close sends close_notify (after a completed handshake) and ends the
// session; a client closes its socket. It wipes the keys.
func (c *DTLSConn) Close() error {
	return c.closeWith(nil)
}

func (c *DTLSConn) closeWith(reason error) error {
	var err error
	c.closeOnce.Do(func() {
		c.closeErr = reason
		if c.hsDone.Load() && reason == nil {
			c.out.Lock()
			if c.out.err == nil {
				c.sendAlertLocked(alertCloseNotify)
			}
			c.out.Unlock()
		}
		c.closed.Store(true)
		close(c.done)
		if c.l != nil {
			c.l.remove(c)
		} else if c.nc != nil {
			err = c.nc.Close()
		} else {
			err = c.pc.Close()
		}
		// Read and the handshake wake up (done, or the closed socket)
		// and release c.in; then the keys go.
		c.in.Lock()
		if c.in.k != nil {
			c.in.k.wipe()
		}
		if c.in.buf != nil {
			putDgram(c.in.buf)
			c.in.buf, c.in.pend = nil, nil
		}
		c.in.early = nil
		c.in.err = c.closedErr()
		c.in.Unlock()
		c.out.Lock()
		if c.out.k != nil {
			c.out.k.wipe()
		}
		c.out.err = c.closedErr()
		c.out.Unlock()
		c.exportMu.Lock()
		if c.exporter != nil {
			wipe(c.exporter.master)
			c.exporter = nil
		}
		c.exportMu.Unlock()
		if c.queue != nil {
			for {
				select {
				case d := <-c.queue:
					putDgram(d.b)
					continue
				default:
				}
				break
			}
		}
	})
	return err
}

// --- the rest of net.Conn ---

// LocalAddr returns the local address.
func (c *DTLSConn) LocalAddr() net.Addr {
	switch {
	case c.nc != nil:
		return c.nc.LocalAddr()
	case c.l != nil:
		return c.l.pc.LocalAddr()
	}
	return c.pc.LocalAddr()
}

// RemoteAddr returns the peer's address (for a server conn with a
// connection ID, the latest one it sent from).
func (c *DTLSConn) RemoteAddr() net.Addr { return c.peer.Load().addr }

// SetDeadline sets the read and write deadlines.
func (c *DTLSConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. During a client's handshake it
// takes effect when the handshake ends (the handshake has its own timers).
func (c *DTLSConn) SetReadDeadline(t time.Time) error {
	if c.l != nil {
		c.readDL.set(t)
		return nil
	}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.userRead = t
	if c.inHS {
		return nil
	}
	c.setSocketReadDeadline(t)
	return nil
}

// SetWriteDeadline sets the write deadline of a client's socket. A server
// conn shares the listener's socket and has none: UDP writes do not wait
// for the peer.
func (c *DTLSConn) SetWriteDeadline(t time.Time) error {
	switch {
	case c.l != nil:
		return nil
	case c.nc != nil:
		return c.nc.SetWriteDeadline(t)
	}
	return c.pc.SetWriteDeadline(t)
}

// ConnectionState returns the negotiated parameters; Version is
// VersionDTLS12.
func (c *DTLSConn) ConnectionState() ConnectionState {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	s := c.state
	s.HandshakeComplete = c.hsDone.Load()
	return s
}

// ConnectionID returns the connection ID the peer puts in its records (we
// issued it; nil without one).
func (c *DTLSConn) ConnectionID() []byte { return c.ourCID }

// ExportKeyingMaterial is the RFC 5705 exporter (see
// Conn.ExportKeyingMaterial); it needs the extended master secret.
func (c *DTLSConn) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if !c.hsDone.Load() {
		return nil, errors.New("tlspsk: ExportKeyingMaterial before the handshake")
	}
	c.exportMu.Lock()
	defer c.exportMu.Unlock()
	if c.closed.Load() {
		return nil, errors.New("tlspsk: ExportKeyingMaterial after Close: the exporter secret is wiped")
	}
	if c.exporter == nil {
		return nil, errors.New("tlspsk: ExportKeyingMaterial needs the extended master secret, which the peer did not offer")
	}
	if length < 0 || length > 1<<16 || len(context) >= 1<<16 {
		return nil, errors.New("tlspsk: ExportKeyingMaterial length out of range")
	}
	if reservedLabel12(label) {
		return nil, fmt.Errorf("tlspsk: ExportKeyingMaterial label %q is reserved (RFC 5705): it collides with a TLS PRF label", label)
	}
	e := c.exporter
	return export12(dtlsSuiteByID(c.state.CipherSuite).hash, e.master, e.clientRandom, e.serverRandom, label, context, length), nil
}

// logKey writes the NSS key log line of a DTLS 1.2 session.
func (c *DTLSConn) logKey(clientRandom, master []byte) {
	w := c.cfg.KeyLogWriter
	if w == nil {
		return
	}
	line := []byte("CLIENT_RANDOM ")
	line = hex.AppendEncode(line, clientRandom)
	line = append(line, ' ')
	line = hex.AppendEncode(line, master)
	line = append(line, '\n')
	keyLogMu.Lock()
	w.Write(line)
	keyLogMu.Unlock()
	wipe(line)
}

// --- deadlines for server conns ---

// dtlsDeadline is a read deadline without a socket: wait returns a
// channel that is closed once the deadline passes, and whether it has. A
// waiter woken up looks again (the deadline may have moved). Setting a
// deadline reuses the timer and the channel: nothing is allocated unless
// the previous deadline had passed.
type dtlsDeadline struct {
	mu     sync.Mutex
	at     time.Time
	timer  *time.Timer
	ch     chan struct{}
	closed bool
}

func (d *dtlsDeadline) init() { d.ch = make(chan struct{}) }

func (d *dtlsDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = t
	if d.closed {
		d.ch, d.closed = make(chan struct{}), false
	}
	if t.IsZero() {
		if d.timer != nil {
			d.timer.Stop()
		}
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		if d.timer != nil {
			d.timer.Stop()
		}
		close(d.ch)
		d.closed = true
		return
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(dur, d.fire)
	} else {
		d.timer.Reset(dur)
	}
}

// fire closes the channel if the deadline has passed (a timer that fires
// late for a deadline since moved does nothing).
func (d *dtlsDeadline) fire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed && !d.at.IsZero() && !time.Now().Before(d.at) {
		close(d.ch)
		d.closed = true
	}
}

func (d *dtlsDeadline) wait() (<-chan struct{}, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch, !d.at.IsZero() && !time.Now().Before(d.at)
}
