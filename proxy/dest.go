package proxy

import (
	"sync"
	"time"
)

// destStatus remembers the last probe or connection to the destination,
// so /status can tell "backend unreachable" from "PSK not available".
type destStatus struct {
	mu    sync.Mutex
	state string // unknown, reachable, unreachable
	err   string
	at    time.Time
	gauge interface{ Set(float64) }
}

func (d *destStatus) record(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = time.Now()
	if err != nil {
		d.state, d.err = "unreachable", err.Error()
		d.gauge.Set(0)
		return
	}
	d.state, d.err = "reachable", ""
	d.gauge.Set(1)
}

// reachable records a success cheaply: most calls find nothing to change.
func (d *destStatus) reachable() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != "reachable" || time.Since(d.at) > time.Second {
		d.state, d.err, d.at = "reachable", "", time.Now()
		d.gauge.Set(1)
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
		s = "unknown"
	}
	return DestinationStatus{State: s, Error: d.err, CheckedAt: d.at}
}
