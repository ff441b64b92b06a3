package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotReady is returned by Source.Key while the source has no key (yet):
// the route refuses new tunnels and /readyz fails until it has one.
var ErrNotReady = errors.New("PSK not available yet")

// ErrUnknownIdentity is returned by Source.Key for an identity the source
// has no key for. A server answers it with alert unknown_psk_identity.
var ErrUnknownIdentity = errors.New("unknown PSK identity")

// NotReady wraps ErrNotReady with a reason, e.g. NotReady("1/3 shares").
func NotReady(reason string) error { return fmt.Errorf("%w: %s", ErrNotReady, reason) }

// A Source supplies the PSK for one route.
type Source interface {
	// Key returns the current key for identity, or ErrNotReady with a
	// reason, or ErrUnknownIdentity. The caller must not modify the slice.
	Key(identity string) ([]byte, error)
	// Status is a human-readable state for /status, e.g. "ready" or
	// "2/3 shares (threshold 2): ...". It never contains key material.
	Status() SourceStatus
	// Changes is signalled (non-blocking send) whenever the key or the
	// readiness changes.
	Changes() <-chan struct{}
	Close() error
}

// SourceStatus is what /status and /readyz show for a source.
type SourceStatus struct {
	Ready bool   `json:"ready"`
	State string `json:"state"`
	// Since is when the source last changed key or readiness.
	Since time.Time `json:"since"`
}

// Reloader is implemented by sources that re-read their input on SIGHUP.
// A failed reload keeps the previous key and returns the error.
type Reloader interface {
	Reload() error
}

// TunnelCloser is implemented by sources that want the route's open tunnels
// closed, not only new ones refused, when the key is lost (consent withdrawn
// below the threshold). Without it, open tunnels live on until they end.
type TunnelCloser interface {
	CloseTunnelsOnLoss() bool
}

// MetricsSource is implemented by sources with metrics of their own (the
// consent source's per-shareholder results). The proxy registers the
// collector on its /metrics with a "route" label added.
type MetricsSource interface {
	Collector() prometheus.Collector
}

// SourceSpec is what a SourceFactory gets to build a source for a route.
type SourceSpec struct {
	Route    string       // route name, for logs
	Mode     Mode         // client or server
	Identity string       // the route's PSK identity
	Logger   *slog.Logger // already carries the route name
	// Decode decodes the route's psk.options into v, rejecting unknown keys.
	Decode func(v any) error
	// Epoch is the psk.epochs entry's epoch the source is built for (0
	// without epochs). A source that derives a key per epoch derives this
	// one's; a static source ignores it.
	Epoch uint64
}

// SourceFactory builds a source of a registered kind.
type SourceFactory func(spec SourceSpec) (Source, error)

var (
	factoriesMu sync.Mutex
	factories   = map[string]SourceFactory{}
)

// RegisterSource makes a source kind available to configs as
// `psk: {source: KIND, options: {...}}`. It is meant to be called from an
// init function (the consent source registers "shares" this way); it panics
// on a duplicate or reserved name.
func RegisterSource(kind string, f SourceFactory) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	switch kind {
	case "", "hex", "env", "file", "secrets":
		panic("proxy: reserved source kind " + kind)
	}
	if _, dup := factories[kind]; dup {
		panic("proxy: source kind registered twice: " + kind)
	}
	factories[kind] = f
}

func sourceFactory(kind string) (SourceFactory, bool) {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	f, ok := factories[kind]
	return f, ok
}

func sourceKinds() []string {
	factoriesMu.Lock()
	defer factoriesMu.Unlock()
	var out []string
	for k := range factories {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
