package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
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
	ln     net.Listener
	active atomic.Int64
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
		if !u.ready(c.RemoteAddr()) || !u.underLimit(u.active.Load(), u.cfg.Limits.MaxSessions, "sessions") {
			c.Close()
			continue
		}
		if !u.track.add(c) {
			continue
		}
		u.active.Add(1)
		go func() {
			defer func() {
				u.active.Add(-1)
				u.track.done(c)
			}()
			u.handle(c.(*dtls.Conn))
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
	if err != nil {
		st, ok := dc.ConnectionState()
		identity := ""
		if ok {
			identity = string(st.IdentityHint)
		}
		u.dtlsFailed(err, peer, identity, ok && identity != "", start)
		return
	}
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
