package shareholder

import (
	"container/list"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// connGuard bounds the connections a listener holds open. At the bound, the
// oldest connection that has not yet sent a complete request header (a TLS
// handshake in progress, an idle socket, a slow header) is closed to admit
// the new one: such a connection only holds a slot, and closing it costs its
// owner one retry. So a crowd of idle connections cannot keep a real release
// out; to push one out an attacker has to open `max` new connections while
// that release waits for its token. When every held connection is busy with
// a request, the new one is closed at once (a prompt, clean refusal rather
// than a wait in the kernel's backlog).
//
// The bound is kept far below the process's descriptor limit, so accept
// itself should never fail; if it does (EMFILE/ENFILE, e.g. another part of
// the process leaks descriptors) the guard logs it as the local failure it
// is and frees a descriptor by closing the oldest waiting connection,
// instead of letting connections queue in the backlog for seconds.
type connGuard struct {
	net.Listener
	name    string // "release" or "metrics", for logs and metrics
	max     int
	log     *slog.Logger
	metrics *serverMetrics

	mu      sync.Mutex
	open    int
	waiting list.List // *guardedConn not yet past their request header, oldest first
	lastLog time.Time // last accept-failure log line (rate-limited)
}

type guardedConn struct {
	net.Conn
	g    *connGuard
	elem *list.Element // in g.waiting while no request header has arrived
	once sync.Once
}

func newConnGuard(ln net.Listener, name string, max int, log *slog.Logger, m *serverMetrics) *connGuard {
	return &connGuard{Listener: ln, name: name, max: max, log: log, metrics: m}
}

// Accept returns the next connection within the bound. It returns only
// permanent errors (a closed listener): temporary ones are handled here.
func (g *connGuard) Accept() (net.Conn, error) {
	delay := 5 * time.Millisecond
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			if !isTemporaryAccept(err) {
				return nil, err
			}
			g.acceptFailed(err)
			// Free a descriptor for the connections queued behind this one.
			g.evictOldest("accept_failed")
			time.Sleep(delay)
			delay = min(2*delay, 200*time.Millisecond)
			continue
		}
		delay = 5 * time.Millisecond
		gc := &guardedConn{Conn: c, g: g}
		g.mu.Lock()
		var victim *guardedConn
		if g.open >= g.max {
			victim = g.popOldestLocked()
			if victim == nil {
				g.mu.Unlock()
				c.Close()
				g.metrics.connsShed.WithLabelValues(g.name, "over_cap").Inc()
				continue
			}
		}
		g.open++
		gc.elem = g.waiting.PushBack(gc)
		g.mu.Unlock()
		if victim != nil {
			victim.Close()
			g.metrics.connsShed.WithLabelValues(g.name, "evicted").Inc()
		}
		g.metrics.connsOpen.WithLabelValues(g.name).Inc()
		return gc, nil
	}
}

// popOldestLocked removes and returns the oldest waiting connection.
func (g *connGuard) popOldestLocked() *guardedConn {
	e := g.waiting.Front()
	if e == nil {
		return nil
	}
	gc := g.waiting.Remove(e).(*guardedConn)
	gc.elem = nil
	return gc
}

// evictOldest closes the oldest waiting connection, if any.
func (g *connGuard) evictOldest(why string) {
	g.mu.Lock()
	victim := g.popOldestLocked()
	g.mu.Unlock()
	if victim != nil {
		victim.Close()
		g.metrics.connsShed.WithLabelValues(g.name, why).Inc()
	}
}

// acceptFailed logs an accept failure as what it is, at most once a second.
func (g *connGuard) acceptFailed(err error) {
	g.metrics.acceptErrors.WithLabelValues(g.name).Inc()
	g.mu.Lock()
	now := time.Now()
	quiet := now.Sub(g.lastLog) < time.Second
	if !quiet {
		g.lastLog = now
	}
	g.mu.Unlock()
	if quiet {
		return
	}
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		g.log.Error("accepting a connection failed: the process is out of file descriptors (a local failure, not a refusal; consent is unchanged); closing the oldest idle connection",
			"listener", g.name, "err", err)
		return
	}
	g.log.Warn("accepting a connection failed (a local failure); retrying", "listener", g.name, "err", err)
}

// requested marks a connection as carrying a request: no longer evictable.
func (g *connGuard) requested(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	gc, ok := c.(*guardedConn)
	if !ok || gc.g != g {
		return
	}
	g.mu.Lock()
	if gc.elem != nil {
		g.waiting.Remove(gc.elem)
		gc.elem = nil
	}
	g.mu.Unlock()
}

// connState is the http.Server hook that feeds requested.
func (g *connGuard) connState(c net.Conn, st http.ConnState) {
	if st == http.StateActive {
		g.requested(c)
	}
}

// held returns the number of open connections (tests).
func (g *connGuard) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

func (c *guardedConn) Close() error {
	c.once.Do(func() {
		g := c.g
		g.mu.Lock()
		if c.elem != nil {
			g.waiting.Remove(c.elem)
			c.elem = nil
		}
		g.open--
		g.mu.Unlock()
		g.metrics.connsOpen.WithLabelValues(g.name).Dec()
	})
	return c.Conn.Close()
}

// isTemporaryAccept reports whether an accept error is worth retrying.
func isTemporaryAccept(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
		return true
	}
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
