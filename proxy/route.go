package proxy

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// route is what the TCP and UDP implementations share: config, PSK source,
// logger, metrics, destination status and the tunnels it tracks.
type route struct {
	cfg      *Route
	mode     Mode
	identity string
	src      Source
	log      *slog.Logger
	met      *routeMetrics
	dest     destStatus
	track    tracker
	ctx      context.Context // cancelled by Close: ends handshakes and dials
	// closeOnLoss: close the open tunnels when the source loses its key
	// (see closeTunnelsOnLoss).
	closeOnLoss bool
	reload      reloadStatus

	atLimit  burst // max connections/sessions reached
	notReady burst // PSK not available
}

// runner is one route's listener and tunnels.
type runner interface {
	listen() error
	serve()
	addr() net.Addr
	stopAccepting()
	base() *route
	open() int64
}

// ready reports whether the source has a key; it logs the refusals of a
// burst of new connections once, and logs again when the key is back.
func (r *route) ready(peer net.Addr) bool {
	st := r.src.Status()
	if !st.Ready {
		r.notReady.hit(func() {
			r.log.Warn("refusing new connections: PSK not available yet", "psk_state", st.State, "peer", peer.String())
		})
		r.met.refusedConn("psk_not_ready")
		return false
	}
	r.notReady.clear(func(n int64) {
		r.log.Info("PSK available again; accepting connections", "refused_while_unavailable", n)
	})
	return true
}

// underLimit checks the connection or session limit the same way.
func (r *route) underLimit(open int64, limit int, what string) bool {
	if open >= int64(limit) {
		r.atLimit.hit(func() {
			r.log.Warn("limit reached: refusing new "+what, "max_"+what, limit)
		})
		r.met.refusedConn("max_" + what)
		return false
	}
	r.atLimit.clear(func(n int64) {
		r.log.Info("below the "+what+" limit again", "refused_at_limit", n)
	})
	return true
}

// burst logs the first event of a burst and a summary when it ends.
type burst struct {
	active atomic.Bool
	count  atomic.Int64
}

func (b *burst) hit(first func()) {
	b.count.Add(1)
	if b.active.CompareAndSwap(false, true) {
		first()
	}
}

func (b *burst) clear(done func(n int64)) {
	if b.active.Load() && b.active.CompareAndSwap(true, false) {
		done(b.count.Swap(0))
	}
}

// reloadStatus is the outcome of the last SIGHUP reload of a route's source.
type reloadStatus struct {
	mu  sync.Mutex
	st  ReloadStatus
	set bool
}

// ReloadStatus is the reload part of /status: the last SIGHUP reload of
// the route's source. A failed reload keeps the previous key in use.
type ReloadStatus struct {
	State string    `json:"state"` // "ok" or "failed"
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

func (r *reloadStatus) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.set = true
	r.st = ReloadStatus{State: "ok", At: time.Now()}
	if err != nil {
		r.st.State, r.st.Error = "failed", err.Error()
	}
}

// snapshot is nil before the first reload.
func (r *reloadStatus) snapshot() *ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.set {
		return nil
	}
	st := r.st
	return &st
}
