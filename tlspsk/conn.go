package tlspsk

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	state    ConnectionState
	suite    *cipherSuite
	exporter []byte
	tls12    *exporter12 // TLS 1.2 exporter inputs; nil without EMS

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
	c.out.Unlock()
	c.in.Unlock()
	return err
}

// --- closing ---

// Close sends close_notify (unless a Write is in progress) and closes the
// connection.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.conn.Close()
	}
	if c.hsDone.Load() && c.out.TryLock() {
		// At the TLS 1.2 record limit one more record (the alert) still
		// has a nonce of its own, so the peer gets a clean end.
		if c.out.err == nil || c.out.err == errTLS12Limit {
			c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.sendAlertLocked(alertCloseNotify)
		}
		c.out.err = net.ErrClosed
		c.out.Unlock()
	}
	return c.conn.Close()
}

// CloseWrite sends close_notify and half-closes the socket; the peer's data
// can still be read.
func (c *Conn) CloseWrite() error {
	if err := c.Handshake(); err != nil {
		return err
	}
	c.out.Lock()
	defer c.out.Unlock()
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
func (c *Conn) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if !c.hsDone.Load() {
		return nil, errors.New("tlspsk: ExportKeyingMaterial before the handshake")
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
		e := c.tls12
		return export12(c.suite.hash, e.master, e.clientRandom, e.serverRandom, label, context, length), nil
	}
	if length < 0 || length > 255*c.suite.hash.Size() {
		return nil, errors.New("tlspsk: ExportKeyingMaterial length out of range")
	}
	return exportKeyingMaterial(c.suite.hash, c.exporter, label, context, length), nil
}
