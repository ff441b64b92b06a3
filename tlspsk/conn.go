package tlspsk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn is a TLS-PSK connection. It implements net.Conn. Read and Write may
// be called concurrently from two goroutines, and Close from any; the
// handshake runs implicitly on the first Read or Write.
type Conn struct {
	conn     net.Conn
	isClient bool
	config   *Config

	hsMu   sync.Mutex
	hsDone atomic.Bool
	hsErr  error

	in  inState
	out outState

	// Set by the handshake, read-only afterwards.
	state ConnectionState
	suite *cipherSuite

	// The exporter secrets, set by the handshake (setExporter) and wiped
	// by Close, both under exportMu, which ExportKeyingMaterial holds
	// while it uses them.
	exportMu sync.Mutex
	exporter []byte
	tls12    *exporter12 // TLS 1.2 exporter inputs; nil without EMS

	// closed is set by Close. After it, whoever releases c.in or c.out
	// last wipes that half's keys (unlockIn, unlockOut): Close itself
	// cannot wait for a Read or WriteTo that may be blocked, in the
	// socket or in its writer, while holding c.in.
	closed atomic.Bool
}

type inState struct {
	sync.Mutex
	hc halfConn
	// buf holds raw bytes from the socket: buf[off:end] not yet used. It
	// comes from a pool and goes back when drained after the handshake
	// (nil while idle).
	buf       []byte
	off, end  int
	big       bool      // the last record did not fit a small buffer: readIdle takes a big one
	input     []byte    // decrypted application data not yet returned (in buf)
	hs        []byte    // handshake bytes not yet consumed
	err       error     // sticky
	ccs       int       // dummy change_cipher_spec records seen
	empty     int       // consecutive empty records
	skipEarly int       // bytes of refused 0-RTT data the server may still skip
	tls12     bool      // TLS 1.2 negotiated: change_cipher_spec is real
	warnings  int       // TLS 1.2 warning alerts received
	next      *halfConn // TLS 1.2 read keys that the next change_cipher_spec installs

	// Waiting for data without a buffer (rawread_unix.go).
	rawChecked bool
	raw        syscall.RawConn
	rawRead    func(fd uintptr) bool
	rawN       int
	rawErr     error

	// WriteTo's gather list: plaintext of consecutive records, in buf.
	vec  [maxGather][]byte
	bufs net.Buffers
}

type outState struct {
	sync.Mutex
	hc        halfConn
	buf       []byte // pooled scratch for sealing records, nil outside Write
	pending   []byte // a buffered handshake flight (pooled, nil once sent)
	buffering bool
	err       error // sticky
	wroteCCS  bool
}

// ConnectionState describes a connection.
type ConnectionState struct {
	Version           uint16
	HandshakeComplete bool
	CipherSuite       uint16
	PSKIdentity       string
	// Group is the key exchange group, or 0 for psk_ke (no forward secrecy).
	Group CurveID
	// HelloRetryRequest is true if the server asked for another key share.
	HelloRetryRequest bool
	// ExtendedMasterSecret is true for TLS 1.2 with RFC 7627's extended
	// master secret. It is false for TLS 1.3, whose key schedule binds the
	// whole handshake anyway (the weakness EMS fixes does not exist there).
	ExtendedMasterSecret bool
	// IdentityHint is the TLS 1.2 server's PSK identity hint, if any.
	IdentityHint string
}

// exporter12 holds what the RFC 5705 exporter needs.
type exporter12 struct {
	master, clientRandom, serverRandom []byte
}

// Client returns a client-side Conn over conn.
//
// If conn implements syscall.Conn (as *net.TCPConn does), a Conn that is
// waiting for the peer after the handshake reads from the descriptor
// through RawConn.Read, holding no buffer while it waits; a wrapper whose
// Read does more than read the socket must therefore not implement
// syscall.Conn. The same holds for Server.
func Client(conn net.Conn, config *Config) *Conn {
	return &Conn{conn: conn, isClient: true, config: config}
}

// Server returns a server-side Conn over conn.
func Server(conn net.Conn, config *Config) *Conn {
	return &Conn{conn: conn, config: config}
}

const (
	// readBufSize is how much of a big pooled buffer the read side uses:
	// four full records, so one read(2) can fetch what one Write of the
	// peer sent (writeBatch records).
	readBufSize      = 4 * maxRecordLen
	handshakeBufSize = 4096
	maxGather        = 16 // records whose plaintext WriteTo sends in one writev
)

var errCloseWrite = errors.New("tlspsk: write after CloseWrite")

// Handshake runs the handshake if it has not run yet.
func (c *Conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext runs the handshake; if ctx ends first, the connection is
// closed and the handshake fails.
func (c *Conn) HandshakeContext(ctx context.Context) error {
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
	if err := c.config.check(c.isClient); err != nil {
		c.hsErr = fmt.Errorf("%w: %v", errConfig, err)
		return c.hsErr
	}
	if ctx.Done() != nil {
		stop := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			select {
			case <-ctx.Done():
				c.conn.Close()
			case <-stop:
			}
		}()
		defer func() { close(stop); <-watched }()
	}

	if c.closed.Load() {
		return errClosed
	}

	c.in.Lock()
	c.out.Lock()
	c.out.buffering = true
	var err error
	if c.isClient {
		err = c.clientHandshake()
	} else {
		err = c.serverHandshake()
	}
	if err == nil {
		err = c.flushLocked()
	}
	c.out.buffering = false
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("tlspsk: handshake interrupted: %w", ctx.Err())
		}
		var ae *AlertError
		if errors.As(err, &ae) {
			ae.Handshake = true
			if !ae.Received {
				c.out.pending = c.out.pending[:0]
				c.sendAlertLocked(ae.Alert)
			}
		}
		c.in.err, c.out.err = err, err
		c.hsErr = err
		c.in.off, c.in.end, c.in.input = 0, 0, nil
	} else {
		c.hsDone.Store(true)
	}
	// The handshake buffers go back to the pools, cleared (they held
	// handshake messages); a read buffer that holds the start of the
	// application data stays.
	c.releasePendingLocked()
	if c.in.off == c.in.end {
		clear(c.in.buf)
		c.releaseReadBuf()
	}
	c.unlockOut()
	c.unlockIn()
	return err
}

// --- closing ---

// errClosed is what Read, Write and the handshake return after Close.
var errClosed = fmt.Errorf("tlspsk: use of a closed connection: %w", net.ErrClosed)

// Close sends close_notify (unless a Write is in progress) and closes the
// connection. It wipes the traffic secrets, the exporter secret and the
// TLS 1.2 master secret and drops the AEADs (as far as Go allows: the
// AEADs' own key schedules are left to the garbage collector); a half
// that a Read, Write or WriteTo holds at that moment is wiped when the
// call returns. Close never waits for those calls.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.conn.Close()
	}
	if c.out.TryLock() {
		// At the TLS 1.2 record limit one more record (the alert) still
		// has a nonce of its own, so the peer gets a clean end.
		if c.hsDone.Load() && (c.out.err == nil || c.out.err == errTLS12Limit) {
			c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.sendAlertLocked(alertCloseNotify)
		}
		c.wipeOutLocked()
		c.out.Unlock()
	}
	err := c.conn.Close() // ends a Read blocked in the socket
	if c.in.TryLock() {
		c.wipeInLocked()
		c.in.Unlock()
	}
	c.exportMu.Lock()
	c.wipeExporterLocked()
	c.exportMu.Unlock()
	return err
}

// unlockIn releases c.in; after Close, whoever releases it last wipes the
// read keys. Close sets closed before it tries the lock, so either it gets
// the lock and wipes, or a holder sees closed after its Unlock and tries;
// a TryLock fails only while someone else holds the lock, and that one
// comes here too.
func (c *Conn) unlockIn() {
	c.in.Unlock()
	if c.closed.Load() && c.in.TryLock() {
		c.wipeInLocked()
		c.in.Unlock()
	}
}

// unlockOut is unlockIn for c.out and the write keys.
func (c *Conn) unlockOut() {
	c.out.Unlock()
	if c.closed.Load() && c.out.TryLock() {
		c.wipeOutLocked()
		c.out.Unlock()
	}
}

// wipeInLocked zeroes the read keys and the read buffer (it may hold
// decrypted data) and makes every later read fail. The caller holds c.in.
func (c *Conn) wipeInLocked() {
	in := &c.in
	in.hc.wipe()
	if in.next != nil {
		in.next.wipe()
		in.next = nil
	}
	clear(in.buf)
	c.releaseReadBuf()
	clear(in.hs)
	in.hs = nil
	in.err = errClosed
}

// wipeOutLocked zeroes the write keys and makes every later write fail.
// The caller holds c.out.
func (c *Conn) wipeOutLocked() {
	c.out.hc.wipe()
	c.releasePendingLocked()
	c.releaseWriteBufLocked()
	c.out.err = errClosed
}

// wipeExporterLocked zeroes the exporter secrets. The caller holds
// c.exportMu.
func (c *Conn) wipeExporterLocked() {
	wipe(c.exporter)
	c.exporter = nil
	if c.tls12 != nil {
		wipe(c.tls12.master)
		c.tls12 = nil
	}
}

// setExporter keeps the exporter secrets of a finished handshake: the
// TLS 1.3 exporter master secret, or the TLS 1.2 inputs (nil without the
// extended master secret). After Close they are wiped at once.
func (c *Conn) setExporter(exp []byte, e12 *exporter12) {
	c.exportMu.Lock()
	defer c.exportMu.Unlock()
	c.exporter, c.tls12 = exp, e12
	if c.closed.Load() {
		c.wipeExporterLocked()
	}
}

// CloseWrite sends close_notify and half-closes the socket; the peer's data
// can still be read.
func (c *Conn) CloseWrite() error {
	if err := c.Handshake(); err != nil {
		return err
	}
	c.out.Lock()
	defer c.unlockOut()
	if c.out.err == errCloseWrite {
		return nil
	}
	if c.out.err != nil && c.out.err != errTLS12Limit {
		return c.out.err
	}
	err := c.sendAlertLocked(alertCloseNotify)
	c.out.err = errCloseWrite
	if err != nil {
		return err
	}
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// --- the rest of net.Conn ---

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying conn.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the underlying conn.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline. A timed-out Write leaves the
// stream unusable.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.conn }

// ConnectionState returns the negotiated parameters.
func (c *Conn) ConnectionState() ConnectionState {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	s := c.state
	s.HandshakeComplete = c.hsDone.Load()
	return s
}

// ExportKeyingMaterial returns keying material per RFC 8446 7.5 (TLS 1.3)
// or RFC 5705 (TLS 1.2, where a nil context differs from an empty one).
// For TLS 1.2 it fails without the extended master secret, as RFC 7627 5.4
// advises: the master secret is then not bound to the handshake.
//
// Labels: at TLS 1.3 a label has 1 to 249 bytes (the HkdfLabel label is
// <7..255> bytes with its "tls13 " prefix, RFC 8446 7.1). At TLS 1.2 a
// label must not be, start with, or be the start of a PRF label that TLS
// itself uses ("client finished", "server finished", "master secret",
// "extended master secret", "key expansion"): RFC 5705 4 and 6 reserve
// them, and the exporter's PRF input (label || randoms || context) would
// otherwise overlap the handshake's. Labels beginning with "EXPORTER"
// (RFC 5705 4) are the safe choice at both versions.
//
// After Close it fails: Close wipes the secrets it needs.
func (c *Conn) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if !c.hsDone.Load() {
		return nil, errors.New("tlspsk: ExportKeyingMaterial before the handshake")
	}
	c.exportMu.Lock()
	defer c.exportMu.Unlock()
	if c.closed.Load() {
		return nil, errors.New("tlspsk: ExportKeyingMaterial after Close: the exporter secret is wiped")
	}
	if c.state.Version == VersionTLS12 {
		if c.tls12 == nil {
			return nil, errors.New("tlspsk: ExportKeyingMaterial on TLS 1.2 needs the extended master secret, which the peer did not offer")
		}
		if length < 0 || length > 1<<16 {
			return nil, errors.New("tlspsk: ExportKeyingMaterial length out of range")
		}
		if len(context) >= 1<<16 {
			return nil, errors.New("tlspsk: ExportKeyingMaterial context too long")
		}
		if reservedLabel12(label) {
			return nil, fmt.Errorf("tlspsk: ExportKeyingMaterial label %q is reserved at TLS 1.2 (RFC 5705): it collides with a TLS PRF label", label)
		}
		e := c.tls12
		return export12(c.suite.hash, e.master, e.clientRandom, e.serverRandom, label, context, length), nil
	}
	if length < 0 || length > 255*c.suite.hash.Size() {
		return nil, errors.New("tlspsk: ExportKeyingMaterial length out of range")
	}
	if len(label) < 1 || len(label) > maxLabel13 {
		return nil, fmt.Errorf("tlspsk: ExportKeyingMaterial label of %d bytes: TLS 1.3 allows 1 to %d (RFC 8446 7.1)", len(label), maxLabel13)
	}
	return exportKeyingMaterial(c.suite.hash, c.exporter, label, context, length), nil
}

// maxLabel13 is the longest TLS 1.3 label: HkdfLabel.label is at most 255
// bytes, "tls13 " included.
const maxLabel13 = 255 - len("tls13 ")

// prfLabels12 are the PRF labels of TLS 1.2 itself (RFC 5246 and 7627),
// reserved for the exporter by RFC 5705 6.
var prfLabels12 = []string{"client finished", "server finished", "master secret", "extended master secret", "key expansion"}

// reservedLabel12 reports whether an exporter label is, starts with, or
// is the start of a TLS 1.2 PRF label. The PRF hashes label || seed as one
// string, so a label that is a prefix or extension of a TLS label could
// line up with it given suitable randoms; refusing every such label
// leaves nothing to analyse. The empty label is the start of all of them.
func reservedLabel12(label string) bool {
	for _, l := range prfLabels12 {
		if strings.HasPrefix(l, label) || strings.HasPrefix(label, l) {
			return true
		}
	}
	return false
}
