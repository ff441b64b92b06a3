package proxy

import (
	"sync"
	"time"
)

// Destination states in /status.
const (
	destUnknown         = "unknown"
	destReachable       = "reachable"        // the last tunnel (client: its handshake) or probe of a plain backend worked
	destUnreachable     = "unreachable"      // connect failed, or the handshake got no answer in time
	destHandshakeFailed = "handshake_failed" // the peer answered but the handshake failed (key, identity, parameters)
	destPortOpen        = "port_open"        // client: a TCP connect worked; no handshake has said more yet
)

// destStatus remembers the last probe or connection to the destination,
// so /status can tell "backend unreachable" from "PSK not available".
//
// For a client proxy the destination is the server proxy, and only a
// handshake says it is there: a middlebox can accept TCP connections and
// never forward a byte, so a TCP connect that works only says the port is
// open, and it never overrides what the last handshake said.
type destStatus struct {
	mu            sync.Mutex
	state         string
	err           string
	at            time.Time
	fromHandshake bool
	gauge         interface{ Set(float64) }
}

// record is the outcome of a connect (TCP dial of a backend or of the
// server proxy, or a probe's): a failure is always believed.
func (d *destStatus) record(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = time.Now()
	d.fromHandshake = false
	if err != nil {
		d.set(destUnreachable, err.Error())
		return
	}
	d.set(destReachable, "")
}

// portOpen records a client's TCP probe that connected: it says the port
// is open, unless a handshake already said more.
func (d *destStatus) portOpen() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fromHandshake {
		return
	}
	d.at = time.Now()
	d.state, d.err = destPortOpen, "" // the destination_up gauge is left as it was
}

// handshake records the outcome of a tunnel handshake with the destination.
// reason is the failure reason (diagnose.go), msg what to tell the operator.
func (d *destStatus) handshake(reason, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = time.Now()
	d.fromHandshake = true
	switch reason {
	case "":
		d.set(destReachable, "")
	case reasonTimeout, reasonPeerClosed, reasonUnreachable:
		d.set(destUnreachable, msg)
	default:
		d.set(destHandshakeFailed, msg)
	}
}

func (d *destStatus) set(state, err string) {
	d.state, d.err = state, err
	if state == destReachable {
		d.gauge.Set(1)
	} else {
		d.gauge.Set(0)
	}
}

// reachable records a success cheaply: most calls find nothing to change.
func (d *destStatus) reachable() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != destReachable || time.Since(d.at) > time.Second {
		d.at = time.Now()
		d.set(destReachable, "")
	}
}

// DestinationStatus is the destination part of /status.
type DestinationStatus struct {
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

func (d *destStatus) snapshot() DestinationStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.state
	if s == "" {
		s = destUnknown
	}
	return DestinationStatus{State: s, Error: d.err, CheckedAt: d.at}
}
