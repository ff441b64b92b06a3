package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcbn/mcbn/tlspsk"
)

// Pre-connected tunnels (route option preconnect: N).
//
// A client route with preconnect: N keeps up to N tunnels to the server
// proxy dialled and handshaken, and hands one to each new local connection
// (the handshake is then off that connection's path); one background
// goroutine replaces what was taken. A ready tunnel that waited longer than
// preconnectIdle, was made with a key the source no longer gives (rotation,
// a new epoch) or whose peer already spoke or closed is closed, never
// handed out; losing the key closes them all.
//
// A client route with preconnect sends a zero-length application data
// record (RFC 8446 5.1 allows it) on every tunnel it hands a local
// connection, pre-connected or dialled because none was ready, so that a
// server proxy that waits for the first record before dialling its backend
// (a server route with preconnect > 0) dials at once, and protocols where
// the server speaks first (SMTP, MySQL) work. A server route with
// preconnect: 0 dials its backend right after the handshake, as before;
// the empty record is then skipped like any other. A client route without
// preconnect sends no empty record: its tunnels are as before.

// Bounds; variables so that tests can shorten them.
var (
	// preconnectIdle is how long a ready tunnel waits on the client before
	// it is closed and replaced. It is below preconnectServerWait so that
	// the client, not the server, ends an unused tunnel.
	preconnectIdle = 30 * time.Second
	// preconnectServerWait bounds how long a server route with preconnect
	// waits for a tunnel's first record before closing it.
	preconnectServerWait = 90 * time.Second
	// preconnectSweep is how often the client checks its ready tunnels
	// (age, key, peer) besides checking each one when it is handed out.
	preconnectSweep = time.Second
)

// maxPreconnect bounds preconnect: N.
const maxPreconnect = 64

// readyTunnel is a handshaken tunnel waiting for a local connection.
type readyTunnel struct {
	tc       *tlspsk.Conn
	identity string
	keySum   [32]byte // SHA-256 of the key it was made with, to spot a change
	born     time.Time
}

type preconnectPool struct {
	t    *tcpRoute
	n    int
	mu   sync.Mutex
	idle []*readyTunnel // oldest first
	shut bool
	wake chan struct{}
	done chan struct{}
	// inflight are the tunnels being made; waiting, the takers waiting for
	// one of them; changed is closed (and replaced) when one is done.
	inflight, waiting int
	changed           chan struct{}
	failures          int       // dials failed in a row
	next              time.Time // no dial before this, after failures

	// counts, for tests and the metrics (preconnect_metrics.go): tunnels
	// handed out, made, retired unused and failed to make, and local
	// connections that found none ready.
	handed, made, retired, failed, fresh atomic.Int64
}

func newPreconnectPool(t *tcpRoute) *preconnectPool {
	if t.mode != ModeClient || t.cfg.Preconnect <= 0 {
		return nil
	}
	p := &preconnectPool{t: t, n: t.cfg.Preconnect, wake: make(chan struct{}, 1), done: make(chan struct{}),
		changed: make(chan struct{})}
	if t.met != nil {
		t.met.m.pre.add(p, t.met.name)
	}
	return p
}

func keySum(key []byte) [32]byte { return sha256.Sum256(key) }

// take hands out a ready tunnel made with the route's current key, or nil
// (the caller dials one as without preconnect). When none is ready but one
// is being made and no other taker waits for it, it waits for that one:
// it is further along than a new dial would be.
func (p *preconnectPool) take() *tlspsk.Conn {
	if p == nil {
		return nil
	}
	defer p.kick()
	id, key, err := p.t.clientKey()
	if err != nil {
		p.retireAll()
		return nil
	}
	sum := keySum(key)
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		if len(p.idle) == 0 {
			if p.shut || p.inflight <= p.waiting {
				p.mu.Unlock()
				p.fresh.Add(1)
				return nil
			}
			p.waiting++
			ch := p.changed
			p.mu.Unlock()
			if timeout == nil {
				timeout = time.After(p.t.cfg.Timeouts.Handshake.D())
			}
			var expired bool
			select {
			case <-ch:
			case <-timeout:
				expired = true
			case <-p.t.ctx.Done():
				expired = true
			}
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
			if expired {
				p.fresh.Add(1)
				return nil
			}
			continue
		}
		rt := p.idle[0]
		p.idle[0] = nil
		p.idle = p.idle[1:]
		p.mu.Unlock()
		if !p.usable(rt, id, sum, time.Now()) {
			p.retire(rt)
			continue
		}
		p.handed.Add(1)
		return rt.tc
	}
}

// usable: young enough, same identity and key, and the server has not
// spoken (a pre-connected tunnel hears nothing before it is used: a byte
// there is an alert or a close).
func (p *preconnectPool) usable(rt *readyTunnel, id string, sum [32]byte, now time.Time) bool {
	return now.Sub(rt.born) < preconnectIdle && rt.identity == id &&
		subtle.ConstantTimeCompare(rt.keySum[:], sum[:]) == 1 && !peerSpoke(rt.tc.NetConn())
}

func (p *preconnectPool) retire(rt *readyTunnel) {
	p.retired.Add(1)
	rt.tc.Close()
}

func (p *preconnectPool) retireAll() {
	p.mu.Lock()
	all := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, rt := range all {
		p.retire(rt)
	}
}

func (p *preconnectPool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// close stops the refill and closes the ready tunnels.
func (p *preconnectPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if !p.shut {
		p.shut = true
		close(p.done)
	}
	p.mu.Unlock()
	p.retireAll()
	if p.t.met != nil {
		p.t.met.m.pre.remove(p)
	}
}

// sweep checks every ready tunnel; it closes them all when the source has
// no key.
func (p *preconnectPool) sweep() {
	id, key, err := p.t.clientKey()
	if err != nil {
		p.retireAll()
		return
	}
	sum, now := keySum(key), time.Now()
	p.mu.Lock()
	keep := p.idle[:0]
	var gone []*readyTunnel
	for _, rt := range p.idle {
		if p.usable(rt, id, sum, now) {
			keep = append(keep, rt)
		} else {
			gone = append(gone, rt)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	p.mu.Unlock()
	for _, rt := range gone {
		p.retire(rt)
	}
}

// maxInflight bounds the tunnels made at once.
const maxInflight = 2

// run is the refill goroutine: it starts up to maxInflight dials at a time
// while the pool is short. After a failed dial or handshake it waits (100 ms
// doubling up to 5 s) before it tries again.
func (p *preconnectPool) run() {
	tick := time.NewTicker(preconnectSweep)
	defer tick.Stop()
	for {
		p.sweep()
		for p.startDial() {
		}
		select {
		case <-p.done:
			return
		case <-p.t.ctx.Done():
			p.close()
			return
		case <-p.wake:
		case <-tick.C:
		}
	}
}

// startDial starts making one tunnel if the pool wants one: below N
// counting those being made, not shut, not backing off, and the source has
// a key.
func (p *preconnectPool) startDial() bool {
	if p.t.ctx.Err() != nil || !p.t.src.Status().Ready {
		return false
	}
	p.mu.Lock()
	if p.shut || len(p.idle)+p.inflight >= p.n || p.inflight >= maxInflight || time.Now().Before(p.next) {
		p.mu.Unlock()
		return false
	}
	p.inflight++
	p.mu.Unlock()
	go func() {
		rt, err := p.dial()
		p.mu.Lock()
		p.inflight--
		switch {
		case err != nil:
			p.failed.Add(1)
			p.failures++
			p.next = time.Now().Add(min(100*time.Millisecond<<min(p.failures-1, 6), 5*time.Second))
		case p.shut:
			rt.tc.Close()
		default:
			p.failures = 0
			p.idle = append(p.idle, rt)
			p.made.Add(1)
		}
		close(p.changed) // wake the takers waiting for this one
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if err != nil && p.t.ctx.Err() == nil {
			p.t.log.Debug("pre-connecting a tunnel failed", "connect", p.t.cfg.Connect, "err", err)
		}
		p.kick()
	}()
	return true
}

// dial connects to the server proxy and runs the handshake.
func (p *preconnectPool) dial() (*readyTunnel, error) {
	t := p.t
	id, key, err := t.clientKey()
	if err != nil {
		return nil, err
	}
	tc, err := t.dialServer(id, key)
	if tc == nil {
		return nil, err
	}
	if err != nil {
		tc.Close()
		// With epochs, the next dial falls back to an older epoch while
		// the server refuses the newest (no retry here: the pool refills).
		t.epochRefused(id, tlspsk.FailureReason(err))
		return nil, err
	}
	t.epochAccepted(id)
	return &readyTunnel{tc: tc, identity: id, keySum: keySum(key), born: time.Now()}, nil
}

// nudge tells the server proxy that the tunnel is in use: a zero-length
// application data record (see the top of this file).
func nudge(tc *tlspsk.Conn) error { return tc.WriteEmptyRecord() }

// awaitFirstRecord is the server side of a route with preconnect: it waits
// (at most preconnectServerWait, or the route's idle timeout when shorter)
// for the tunnel's first application record before the backend is dialled.
// It reports false when the tunnel ended or waited too long.
func (t *tcpRoute) awaitFirstRecord(tc *tlspsk.Conn) bool {
	wait := preconnectServerWait
	if idle := t.cfg.IdleTimeout(); idle > 0 && idle < wait {
		wait = idle
	}
	tc.SetReadDeadline(time.Now().Add(wait))
	err := tc.WaitRecord()
	tc.SetReadDeadline(time.Time{})
	return err == nil
}

// processKeyShares is the one key share pool of the process: TLS 1.3
// handshakes of every TCP route take pre-generated ephemeral key pairs
// from it (tlspsk.KeySharePool; each pair is used once).
var processKeyShares = sync.OnceValue(func() *tlspsk.KeySharePool { return tlspsk.NewKeySharePool(0, 0) })
