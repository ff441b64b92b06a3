package proxy

// Key rotation by epochs (docs/key-rotation.md). A route's psk block may
// list epochs instead of one key source:
//
//	psk:
//	  epochs:
//	    - {epoch: 7, file: /keys/7.psk}
//	    - {epoch: 8, source: shares, options: {...}}
//	  rollover: 10m
//
// Each entry is a key source of its own, built for its epoch
// (SourceSpec.Epoch). On the wire the PSK identity is IDENTITY/EPOCH, e.g.
// Client_identity/8, so a server proxy knows which epoch's key a client
// uses without trying keys. A server accepts every epoch whose key is
// ready and that is not retired; a client opens new tunnels on the newest
// ready epoch. An epoch is retired `rollover` after a newer one became
// ready, or when a reload drops it from the config: it is then refused
// with unknown_psk_identity and its source is released, so a proxy holds
// the current epoch's key and, during a rollover, the next one's. Open
// tunnels keep the key they were opened with until they close.

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcbn/mcbn/tlspsk"
)

// DefaultRollover is how long an epoch is still accepted after a newer
// one became ready, when psk.rollover is not set.
const DefaultRollover = 10 * time.Minute

// EpochConfig is one entry of psk.epochs: an epoch and its own key source
// (hex, env, file, secrets, or source with options).
type EpochConfig struct {
	Epoch     *uint64 `yaml:"epoch"`
	PSKConfig `yaml:",inline"`
}

// validateEpochs checks a psk block with epochs. Errors name the field,
// e.g. routes[0] (web): psk.epochs[1].epoch: ...
func validateEpochs(i int, r *Route) error {
	p := &r.PSK
	if len(p.Epochs) == 0 {
		return fieldError(i, r, "psk.rollover", "only used with psk.epochs")
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"psk.hex", p.Hex != ""}, {"psk.env", p.Env != ""}, {"psk.file", p.File != ""}, {"psk.secrets", p.Secrets != ""},
		{"psk.source", p.Source != ""}, {"psk.options", p.Options.Kind != 0}, {"psk.odd_hex_as_text", p.OddHexAsText},
	} {
		if f.set {
			return fieldError(i, r, f.name, "not used with psk.epochs: give each epoch its own key source in psk.epochs[N]")
		}
	}
	if p.Rollover < 0 {
		return fieldError(i, r, "psk.rollover", "must be positive (default %s)", DefaultRollover)
	}
	for j := range p.Epochs {
		e := &p.Epochs[j]
		at := fmt.Sprintf("psk.epochs[%d]", j)
		if e.Epoch == nil {
			return fieldError(i, r, at+".epoch", "missing (a whole number, e.g. 7)")
		}
		if j > 0 {
			prev := *p.Epochs[j-1].Epoch
			if *e.Epoch == prev {
				return fieldError(i, r, at+".epoch", "%d is listed twice (psk.epochs[%d] too)", *e.Epoch, j-1)
			}
			if *e.Epoch < prev {
				return fieldError(i, r, at+".epoch", "%d is below psk.epochs[%d].epoch %d: list epochs oldest first, strictly increasing", *e.Epoch, j-1, prev)
			}
		}
		if len(e.Epochs) > 0 || e.Rollover != 0 {
			return fieldError(i, r, at, "an epoch has one key source: epochs and rollover belong to the psk block")
		}
		if err := validateKeySource(i, r, &e.PSKConfig, at); err != nil {
			return err
		}
	}
	return nil
}

func rolloverOf(p *PSKConfig) time.Duration {
	if p.Rollover <= 0 {
		return DefaultRollover
	}
	return p.Rollover.D()
}

// epochIdentity is the PSK identity of an epoch on the wire.
func epochIdentity(identity string, epoch uint64) string {
	return identity + "/" + strconv.FormatUint(epoch, 10)
}

// parseEpochIdentity splits IDENTITY/EPOCH at the last '/'. The epoch must
// be written canonically (decimal, no sign, no leading zero), so that each
// epoch has exactly one identity on the wire.
func parseEpochIdentity(s string) (identity string, epoch uint64, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return "", 0, false
	}
	num := s[i+1:]
	if num == "" || len(num) > 20 || (len(num) > 1 && num[0] == '0') {
		return "", 0, false
	}
	for _, c := range []byte(num) {
		if c < '0' || c > '9' {
			return "", 0, false
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return "", 0, false
	}
	return s[:i], n, true
}

// epochEntry is one epoch of a route.
type epochEntry struct {
	epoch    uint64
	identity string // what the entry's source answers for (without /epoch)
	cfg      PSKConfig
	// src is nil once the epoch is retired and released.
	src         Source
	closeOnLoss bool
	stop        chan struct{} // ends the entry's change forwarder
	inConfig    bool          // false once a reload dropped it
	wasReady    bool
	readyAt     time.Time // when first seen ready
	retireAt    time.Time // when it will be retired (a newer epoch is ready)
	retiredAt   time.Time
	why         string                 // why it was retired
	conns       map[io.Closer]struct{} // tunnels (TCP) and sessions (UDP) open on this epoch
	// Client fallback (see refusedByServer): until refusedUntil the
	// client opens new tunnels on an older epoch; refused marks an
	// episode, logged once, that ends with a handshake the server accepts.
	refusedUntil time.Time
	refused      bool
	refusedN     uint64
}

func (e *epochEntry) retired() bool { return !e.retiredAt.IsZero() }

// epochSet is the Source of a route with psk.epochs.
type epochSet struct {
	route    string
	mode     Mode
	cfg      Route // the route's config as built (for new entries on reload)
	identity string
	log      *slog.Logger

	mu         sync.RWMutex
	rollover   time.Duration
	entries    []*epochEntry     // ascending epoch
	openedN    map[uint64]uint64 // tunnels opened per epoch (kept after the epoch goes)
	retiredSet map[uint64]bool   // epochs retired in this process: never accepted again
	nextRetire time.Time
	summary    string
	since      time.Time
	closed     bool

	changes chan struct{}
	kick    chan struct{}
	quit    chan struct{}
	wg      sync.WaitGroup

	curDesc, readyDesc, openedDesc *prometheus.Desc
}

// buildEpochSet builds every epoch's source of r (all or none) and starts
// watching them.
func buildEpochSet(r *Route, mode Mode, log *slog.Logger) (Source, string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &epochSet{route: r.Name, mode: mode, cfg: *r, identity: r.EffectiveIdentity(), log: log,
		rollover: rolloverOf(&r.PSK), openedN: map[uint64]uint64{}, retiredSet: map[uint64]bool{},
		since: time.Now(), changes: make(chan struct{}, 1), kick: make(chan struct{}, 1), quit: make(chan struct{}),
		curDesc: prometheus.NewDesc("mcbn_proxy_epoch_current",
			"The epoch new tunnels use: a client's choice, a server's newest accepted epoch (absent when none is ready).", nil, nil),
		readyDesc: prometheus.NewDesc("mcbn_proxy_epoch_ready",
			"1 when the epoch's key is ready and the epoch is not retired.", []string{"epoch"}, nil),
		openedDesc: prometheus.NewDesc("mcbn_proxy_epoch_tunnels_total",
			"TCP tunnels and UDP sessions opened, by the epoch whose key they use.", []string{"epoch"}, nil),
	}
	entries, err := s.buildEntries(r, nil)
	if err != nil {
		return nil, "", err
	}
	s.entries = entries
	for _, e := range entries {
		s.forward(e)
	}
	s.wg.Add(1)
	go s.run()
	s.update()
	return s, s.identity, nil
}

// buildEntries builds the entries of r's epochs that keep does not hold
// already; on an error it closes what it built.
func (s *epochSet) buildEntries(r *Route, keep map[uint64]*epochEntry) ([]*epochEntry, error) {
	var out, built []*epochEntry
	fail := func(err error) ([]*epochEntry, error) {
		for _, e := range built {
			e.src.Close()
		}
		return nil, err
	}
	for j := range r.PSK.Epochs {
		ec := &r.PSK.Epochs[j]
		if ec.Epoch == nil {
			return fail(fmt.Errorf("psk.epochs[%d].epoch: missing", j))
		}
		ep := *ec.Epoch
		if old := keep[ep]; old != nil {
			if !sameKeySource(&old.cfg, &ec.PSKConfig) {
				return fail(fmt.Errorf("psk.epochs[%d]: epoch %d's key source changed; an epoch's key does not change: give the new key a new epoch", j, ep))
			}
			out = append(out, old)
			continue
		}
		if s.retiredSet[ep] {
			// A retired epoch's key was meant to be gone: bringing it back
			// by a reload would undo a rotation without a restart.
			return fail(fmt.Errorf("psk.epochs[%d]: epoch %d was retired and is not accepted again: give the key a new epoch", j, ep))
		}
		rc := *r
		rc.PSK = ec.PSKConfig
		rc.PSK.Epochs, rc.PSK.Rollover = nil, 0
		src, id, err := buildKeySource(&rc, s.mode, s.log.With("epoch", ep), ep)
		if err != nil {
			return fail(fmt.Errorf("psk.epochs[%d] (epoch %d): %w", j, ep, err))
		}
		e := &epochEntry{epoch: ep, identity: id, cfg: ec.PSKConfig, src: src, inConfig: true,
			closeOnLoss: epochCloseOnLoss(&ec.PSKConfig, src), stop: make(chan struct{}), conns: map[io.Closer]struct{}{}}
		built = append(built, e)
		out = append(out, e)
	}
	return out, nil
}

// epochCloseOnLoss is closeTunnelsOnLoss for one epoch's source: a source
// that gathers consent closes the epoch's open tunnels when it loses the
// key, unless its options say close_tunnels_on_loss: false.
func epochCloseOnLoss(p *PSKConfig, src Source) bool {
	tc, ok := src.(TunnelCloser)
	if !ok {
		return false
	}
	if hasOption(&p.Options, "close_tunnels_on_loss") {
		return tc.CloseTunnelsOnLoss()
	}
	return true
}

// sameKeySource reports whether two entries name the same key source.
// The hex key is compared in constant time.
func sameKeySource(a, b *PSKConfig) bool {
	if subtle.ConstantTimeCompare([]byte(a.Hex), []byte(b.Hex)) != 1 {
		return false
	}
	if a.Env != b.Env || a.File != b.File || a.Secrets != b.Secrets || a.Source != b.Source || a.OddHexAsText != b.OddHexAsText {
		return false
	}
	if a.Options.Kind == 0 || b.Options.Kind == 0 {
		return a.Options.Kind == b.Options.Kind
	}
	// Compared as values, so re-indenting the file or writing a mapping in
	// flow style is no change.
	var va, vb any
	if a.Options.Decode(&va) != nil || b.Options.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// forward passes e's source changes on to the set's loop.
func (s *epochSet) forward(e *epochEntry) {
	ch := e.src.Changes()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.quit:
				return
			case <-e.stop:
				return
			case <-ch:
				s.poke()
			}
		}
	}()
}

func (s *epochSet) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run re-evaluates the epochs on every change and at the next retirement.
func (s *epochSet) run() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		s.update()
		s.mu.RLock()
		next := s.nextRetire
		s.mu.RUnlock()
		if next.IsZero() {
			t.Stop()
		} else {
			t.Reset(time.Until(next))
		}
		select {
		case <-s.quit:
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
	}
}

// update notes readiness, closes the tunnels of an epoch that lost its key
// (when its source asks for that), retires epochs whose rollover is over,
// and signals Changes when the route's summary changed.
func (s *epochSet) update() {
	now := time.Now()
	var toClose []io.Closer
	var lost []uint64
	var release []Source
	var retired []string
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	for _, e := range s.entries {
		if e.src == nil {
			continue
		}
		ready := e.src.Status().Ready
		if ready && e.readyAt.IsZero() {
			e.readyAt = now
		}
		if !ready && e.wasReady && e.closeOnLoss && len(e.conns) > 0 {
			// Consent for this epoch is gone: its tunnels go too, the other
			// epochs' stay.
			for c := range e.conns {
				toClose = append(toClose, c)
			}
			lost = append(lost, e.epoch)
		}
		e.wasReady = ready
	}
	var next time.Time
	for i, e := range s.entries {
		e.retireAt = time.Time{}
		if e.retired() {
			continue
		}
		var newer time.Time
		for _, n := range s.entries[i+1:] {
			if n.inConfig && !n.retired() && !n.readyAt.IsZero() && (newer.IsZero() || n.readyAt.Before(newer)) {
				newer = n.readyAt
			}
		}
		if newer.IsZero() {
			continue
		}
		at := newer.Add(s.rollover)
		if now.Before(at) {
			e.retireAt = at
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		if src := s.retireLocked(e, now, "rollover over: a newer epoch has been ready for "+s.rollover.String()); src != nil {
			release = append(release, src)
		}
		retired = append(retired, strconv.FormatUint(e.epoch, 10))
	}
	s.nextRetire = next
	s.pruneLocked()
	changed := s.touchLocked(now)
	s.mu.Unlock()
	for _, src := range release {
		src.Close()
	}
	for _, c := range toClose {
		c.Close()
	}
	if len(lost) > 0 {
		s.log.Warn("PSK lost for an epoch: closed its open tunnels", "epochs", fmt.Sprint(lost), "closed", len(toClose))
	}
	if len(retired) > 0 {
		s.log.Info("epochs retired: their identities are refused from now on; open tunnels keep their keys",
			"epochs", strings.Join(retired, ","), "rollover", s.rollover.String())
	}
	if changed {
		s.signal()
	}
}

// retireLocked retires e. It returns the source to close now: the key is
// released unless the epoch still has open tunnels whose consent its
// source watches (then it is released when the last one closes).
func (s *epochSet) retireLocked(e *epochEntry, now time.Time, why string) Source {
	e.retiredAt, e.why, e.retireAt = now, why, time.Time{}
	s.retiredSet[e.epoch] = true
	if e.closeOnLoss && len(e.conns) > 0 {
		return nil
	}
	return s.releaseLocked(e)
}

func (s *epochSet) releaseLocked(e *epochEntry) Source {
	src := e.src
	if src != nil {
		close(e.stop)
		e.src = nil
	}
	return src
}

// pruneLocked forgets epochs dropped from the config that hold nothing. It
// rewrites s.entries: never call it while ranging over them.
func (s *epochSet) pruneLocked() {
	kept := s.entries[:0]
	for _, e := range s.entries {
		if !e.inConfig && e.src == nil && len(e.conns) == 0 {
			continue
		}
		kept = append(kept, e)
	}
	clear(s.entries[len(kept):])
	s.entries = kept
}

// touchLocked records a change of the route's summary.
func (s *epochSet) touchLocked(now time.Time) bool {
	sum := s.summaryLocked()
	if sum == s.summary {
		return false
	}
	s.summary, s.since = sum, now
	return true
}

func (s *epochSet) signal() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// currentLocked is the epoch new tunnels use: the newest that is ready
// and not retired.
func (s *epochSet) currentLocked() *epochEntry {
	for i := len(s.entries) - 1; i >= 0; i-- {
		e := s.entries[i]
		if !e.retired() && e.src != nil && e.src.Status().Ready {
			return e
		}
	}
	return nil
}

func (s *epochSet) summaryLocked() string {
	var b strings.Builder
	if cur := s.currentLocked(); cur != nil {
		fmt.Fprintf(&b, "ready: epoch %d for new tunnels", cur.epoch)
	} else {
		b.WriteString("no epoch ready")
	}
	var parts []string
	for _, e := range s.entries {
		switch {
		case e.retired():
			parts = append(parts, fmt.Sprintf("%d retired", e.epoch))
		case e.src.Status().Ready:
			parts = append(parts, fmt.Sprintf("%d ready", e.epoch))
		default:
			parts = append(parts, fmt.Sprintf("%d: %s", e.epoch, e.src.Status().State))
		}
	}
	if len(parts) > 0 {
		b.WriteString("; epochs " + strings.Join(parts, ", "))
	}
	return b.String()
}

// Key answers a server's lookup of IDENTITY/EPOCH: the epoch's key if the
// epoch is known, not retired and ready. Anything else is an unknown
// identity (alert unknown_psk_identity), a known epoch whose key is not
// ready yet included: a client proxy falls back on that alert.
func (s *epochSet) Key(identity string) ([]byte, error) {
	id, ep, ok := parseEpochIdentity(identity)
	if !ok {
		return nil, ErrUnknownIdentity
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.entries {
		if e.epoch == ep && e.inConfig && !e.retired() && e.src != nil {
			k, err := e.src.Key(id)
			if errors.Is(err, ErrNotReady) {
				// The epoch's key is not gathered here yet (per-epoch
				// consent reaches the two proxies at slightly different
				// moments): answer unknown_psk_identity, which tells a
				// client proxy to fall back to an older epoch it holds
				// (refusedByServer), instead of internal_error.
				return nil, ErrUnknownIdentity
			}
			return k, err
		}
	}
	return nil, ErrUnknownIdentity
}

// clientKey is a client's choice for a new tunnel: the newest ready epoch's
// identity and key.
func (s *epochSet) clientKey() (string, []byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.clientLocked(time.Now())
	if e == nil {
		return epochIdentity(s.identity, 0), nil, NotReady(s.summaryLocked())
	}
	k, err := e.src.Key(e.identity)
	return epochIdentity(e.identity, e.epoch), k, err
}

func (s *epochSet) Status() SourceStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return SourceStatus{Ready: s.currentLocked() != nil, State: s.summaryLocked(), Since: s.since}
}

func (s *epochSet) Changes() <-chan struct{} { return s.changes }

func (s *epochSet) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var srcs []Source
	for _, e := range s.entries {
		if e.src != nil {
			srcs = append(srcs, e.src)
		}
	}
	s.mu.Unlock()
	close(s.quit)
	s.wg.Wait()
	var errs []error
	for _, src := range srcs {
		if err := src.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reload re-reads every epoch's source that can (SIGHUP without a config
// file to re-read).
func (s *epochSet) Reload() error {
	s.mu.RLock()
	var rls []struct {
		ep uint64
		rl Reloader
	}
	for _, e := range s.entries {
		if rl, ok := e.src.(Reloader); ok && e.src != nil && !e.retired() {
			rls = append(rls, struct {
				ep uint64
				rl Reloader
			}{e.epoch, rl})
		}
	}
	s.mu.RUnlock()
	var errs []error
	for _, x := range rls {
		if err := x.rl.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("epoch %d: %w", x.ep, err))
		}
	}
	s.poke()
	return errors.Join(errs...)
}

// apply installs the epochs of r, the route as a reloaded config has it:
// new epochs are built (all or none: a failure changes nothing), epochs no
// longer listed are retired at once, kept ones are reloaded. Open tunnels
// are never touched.
func (s *epochSet) apply(r *Route) error {
	if len(r.PSK.Epochs) == 0 {
		return errors.New("psk.epochs: the reloaded config gives this route one key source instead of epochs; that change needs a restart")
	}
	if r.EffectiveIdentity() != s.identity {
		return fmt.Errorf("identity: the reloaded config changes it from %q to %q; that needs a restart", s.identity, r.EffectiveIdentity())
	}
	s.mu.RLock()
	// Epochs still listed keep their entry, retired or not (re-reading an
	// unchanged file changes nothing).
	keep := map[uint64]*epochEntry{}
	for _, e := range s.entries {
		if e.inConfig {
			keep[e.epoch] = e
		}
	}
	s.mu.RUnlock()
	entries, err := s.buildEntries(r, keep)
	if err != nil {
		return err
	}
	now := time.Now()
	var release []Source
	var added, dropped []string
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		for _, e := range entries {
			if keep[e.epoch] == nil {
				e.src.Close()
			}
		}
		return errors.New("the route is closing")
	}
	listed := map[uint64]bool{}
	for _, e := range entries {
		listed[e.epoch] = true
		if keep[e.epoch] == nil {
			added = append(added, strconv.FormatUint(e.epoch, 10))
			s.forward(e)
		}
	}
	var all []*epochEntry
	for _, e := range s.entries {
		if listed[e.epoch] && keep[e.epoch] == e {
			continue // in entries
		}
		if e.inConfig && !listed[e.epoch] {
			e.inConfig = false
			if !e.retired() {
				dropped = append(dropped, strconv.FormatUint(e.epoch, 10))
				if src := s.retireLocked(e, now, "removed from the config by a reload"); src != nil {
					release = append(release, src)
				}
			}
		}
		all = append(all, e)
	}
	all = append(all, entries...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].epoch < all[j].epoch })
	s.entries = all
	s.pruneLocked()
	s.rollover = rolloverOf(&r.PSK)
	s.cfg = *r
	s.mu.Unlock()
	for _, src := range release {
		src.Close()
	}
	s.log.Info("epochs reloaded", "added", strings.Join(added, ","), "retired", strings.Join(dropped, ","), "rollover", s.rollover.String())
	var errs []error
	for _, e := range entries {
		if keep[e.epoch] == nil || e.retired() {
			continue
		}
		if rl, ok := e.src.(Reloader); ok {
			if err := rl.Reload(); err != nil {
				errs = append(errs, fmt.Errorf("epoch %d: %w", e.epoch, err))
			}
		}
	}
	s.update()
	s.poke() // the loop sets its timer for the new retirements
	return errors.Join(errs...)
}

// opened records a tunnel on the epoch its identity names; the returned
// function records its end.
func (s *epochSet) opened(identity string, c io.Closer) func() {
	_, ep, ok := parseEpochIdentity(identity)
	if !ok {
		return func() {}
	}
	s.mu.Lock()
	s.openedN[ep]++
	var e *epochEntry
	for _, x := range s.entries {
		if x.epoch == ep {
			e = x
		}
	}
	if e != nil {
		e.conns[c] = struct{}{}
	}
	s.mu.Unlock()
	if e == nil {
		return func() {}
	}
	return func() {
		var src Source
		s.mu.Lock()
		delete(e.conns, c)
		if e.retired() && len(e.conns) == 0 && e.src != nil {
			src = s.releaseLocked(e)
		}
		if len(e.conns) == 0 {
			s.pruneLocked()
		}
		s.mu.Unlock()
		if src != nil {
			src.Close()
		}
	}
}

// EpochsStatus is the epochs part of a route's /status.
type EpochsStatus struct {
	// Current is the epoch new tunnels use (a client's choice; on a server
	// the newest epoch it accepts); null when no epoch is ready.
	Current  *uint64       `json:"current"`
	Rollover string        `json:"rollover"`
	Epochs   []EpochStatus `json:"epochs"`
}

// EpochStatus is one epoch in /status. It never holds key material.
type EpochStatus struct {
	Epoch    uint64 `json:"epoch"`
	Identity string `json:"identity"` // the PSK identity on the wire
	Ready    bool   `json:"ready"`
	// Phase: "current" (new tunnels), "rollover" (still accepted until
	// retire_at), "pending" (key not ready) or "retired".
	Phase     string     `json:"phase"`
	State     string     `json:"state"` // the source's state, or why it was retired
	ReadyAt   *time.Time `json:"ready_at,omitempty"`
	RetireAt  *time.Time `json:"retire_at,omitempty"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
	InConfig  bool       `json:"in_config"`
	Open      int        `json:"open"`   // tunnels open on this epoch
	Opened    uint64     `json:"opened"` // tunnels opened on it since the start
	// Client only: handshakes on this epoch the server answered with
	// unknown_psk_identity, and while that lasts, until when new tunnels
	// use an older epoch instead (the fallback; docs/key-rotation.md).
	ServerRefused      uint64     `json:"server_refused,omitempty"`
	ServerRefusedUntil *time.Time `json:"server_refused_until,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (s *epochSet) status() *EpochsStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := &EpochsStatus{Rollover: s.rollover.String(), Epochs: []EpochStatus{}}
	cur := s.currentLocked()
	if s.mode == ModeClient {
		cur = s.clientLocked(time.Now()) // with a fallback in force, the older epoch
	}
	if cur != nil {
		ep := cur.epoch
		out.Current = &ep
	}
	for _, e := range s.entries {
		st := EpochStatus{Epoch: e.epoch, Identity: epochIdentity(e.identity, e.epoch), ReadyAt: timePtr(e.readyAt),
			RetireAt: timePtr(e.retireAt), RetiredAt: timePtr(e.retiredAt), InConfig: e.inConfig, Open: len(e.conns), Opened: s.openedN[e.epoch],
			ServerRefused: e.refusedN}
		if e.refused && !e.retired() {
			st.ServerRefusedUntil = timePtr(e.refusedUntil)
		}
		switch {
		case e.retired():
			st.Phase, st.State = "retired", e.why
		default:
			ss := e.src.Status()
			st.Ready, st.State = ss.Ready, ss.State
			switch {
			case e == cur:
				st.Phase = "current"
			case ss.Ready:
				st.Phase = "rollover"
			default:
				st.Phase = "pending"
			}
		}
		out.Epochs = append(out.Epochs, st)
	}
	return out
}

// Collector makes the set a MetricsSource: the epoch gauges and counters,
// and each live epoch's own source metrics with an "epoch" label. It is an
// unchecked collector (Describe sends nothing) because the epochs change
// with reloads.
func (s *epochSet) Collector() prometheus.Collector { return epochCollector{s} }

type epochCollector struct{ s *epochSet }

func (epochCollector) Describe(chan<- *prometheus.Desc) {}

func (c epochCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	s.mu.RLock()
	var subs []prometheus.Collector
	cur := s.currentLocked()
	if s.mode == ModeClient {
		cur = s.clientLocked(time.Now()) // with a fallback in force, the older epoch
	}
	if cur != nil {
		ch <- prometheus.MustNewConstMetric(s.curDesc, prometheus.GaugeValue, float64(cur.epoch))
	}
	seen := map[uint64]bool{}
	for _, e := range s.entries {
		ep := strconv.FormatUint(e.epoch, 10)
		ready := 0.0
		if !e.retired() && e.src != nil && e.src.Status().Ready {
			ready = 1
		}
		if !seen[e.epoch] {
			ch <- prometheus.MustNewConstMetric(s.readyDesc, prometheus.GaugeValue, ready, ep)
			seen[e.epoch] = true
		}
		if ms, ok := e.src.(MetricsSource); ok && e.src != nil {
			subs = append(subs, prometheus.WrapCollectorWith(prometheus.Labels{"epoch": ep}, ms.Collector()))
		}
	}
	for ep, n := range s.openedN {
		ch <- prometheus.MustNewConstMetric(s.openedDesc, prometheus.CounterValue, float64(n), strconv.FormatUint(ep, 10))
	}
	s.mu.RUnlock()
	for _, sub := range subs {
		sub.Collect(ch)
	}
}

// epochs is the route's epoch set, nil for a route with one key source.
func (r *route) epochs() *epochSet {
	es, _ := r.src.(*epochSet)
	return es
}

// clientKey is the identity and key a client proxy's new tunnel uses: the
// route's identity and key, or with epochs the newest ready epoch's
// IDENTITY/EPOCH and key (TCP tunnels and UDP sessions alike).
func (r *route) clientKey() (string, []byte, error) {
	if es := r.epochs(); es != nil {
		return es.clientKey()
	}
	k, err := r.src.Key(r.identity)
	return r.identity, k, err
}

// epochOpened records a UDP session (or any tunnel) opened with identity
// on its epoch, so that losing the epoch's consent closes it; the returned
// function records its end.
func (r *route) epochOpened(identity string, c io.Closer) func() {
	if es := r.epochs(); es != nil {
		return es.opened(identity, c)
	}
	return func() {}
}

// epochRefused is told a client handshake with identity failed for
// reason; true means: retry once, clientKey now gives an older epoch.
func (r *route) epochRefused(identity, reason string) bool {
	es := r.epochs()
	if es == nil || reason != reasonUnknownIdentity || r.ctx.Err() != nil {
		return false
	}
	return es.refusedByServer(identity)
}

// epochAccepted is told the server accepted a handshake with identity.
func (r *route) epochAccepted(identity string) {
	if es := r.epochs(); es != nil {
		es.acceptedByServer(identity)
	}
}

// epochTunnel records the TCP tunnel a-b on the epoch its TLS side's PSK
// identity names (nothing without epochs); the returned function records
// its end.
func (r *route) epochTunnel(a, b net.Conn) func() {
	es := r.epochs()
	if es == nil {
		return func() {}
	}
	for _, c := range []net.Conn{a, b} {
		if tc, ok := c.(*tlspsk.Conn); ok {
			return es.opened(tc.ConnectionState().PSKIdentity, tc)
		}
	}
	return func() {}
}

// epochStatus is the route's epochs for /status, nil without epochs.
func (r *route) epochStatus() *EpochsStatus {
	if es := r.epochs(); es != nil {
		return es.status()
	}
	return nil
}

// reloadEpochConfig re-reads the config file for SIGHUP when some route has
// epochs or a source that takes its options from it (SpecReloader; only
// those are applied from it). nil, nil when there is no file to re-read or
// no such route.
func (p *Proxy) reloadEpochConfig() (*Config, error) {
	if p.cfg.reload == nil {
		return nil, nil
	}
	some := false
	for _, r := range p.routes {
		some = some || r.base().epochs() != nil || wantsSpec(r.base())
	}
	if !some {
		return nil, nil
	}
	next, err := p.cfg.reload()
	if err != nil {
		return nil, fmt.Errorf("re-reading the config: %w", err)
	}
	return next, nil
}

// reloadFrom applies a reloaded config (or its error) to an epoch route.
func (es *epochSet) reloadFrom(next *Config, cfgErr error) error {
	if cfgErr != nil {
		return cfgErr
	}
	for i := range next.Routes {
		if next.Routes[i].Name == es.route {
			return es.apply(&next.Routes[i])
		}
	}
	return fmt.Errorf("the reloaded config has no route %q; adding or removing routes needs a restart", es.route)
}

// EpochRoutes is the route as each of its psk.epochs entries' sources sees
// it: a copy whose psk block is that entry's key source, with the entry's
// epoch; nil without epochs. For checks that look at each source without
// building the route ('mcbn proxy check' dry-runs a shares source this way).
func (r *Route) EpochRoutes() (routes []Route, epochs []uint64) {
	for _, e := range r.PSK.Epochs {
		if e.Epoch == nil {
			continue
		}
		rc := *r
		rc.PSK = e.PSKConfig
		rc.PSK.Epochs, rc.PSK.Rollover = nil, 0
		routes = append(routes, rc)
		epochs = append(epochs, *e.Epoch)
	}
	return routes, epochs
}

// refusalBackoff is how long a client opens new tunnels on an older epoch
// after the server answered unknown_psk_identity for the newest one; then
// it tries the newest again.
const refusalBackoff = time.Second

// clientLocked is a client's epoch for a new tunnel: the newest ready,
// unretired epoch the server has not refused within refusalBackoff, else
// the newest ready one. It only ever picks among epochs this proxy holds
// keys for and never a retired one, so the fallback cannot lower what the
// config allows: it only waits for the server to catch up.
func (s *epochSet) clientLocked(now time.Time) *epochEntry {
	for i := len(s.entries) - 1; i >= 0; i-- {
		e := s.entries[i]
		if e.retired() || e.src == nil || !e.src.Status().Ready {
			continue
		}
		if e.refused && now.Before(e.refusedUntil) {
			continue
		}
		return e
	}
	return s.currentLocked()
}

// refusedByServer notes that the server proxy answered unknown_psk_identity
// for identity's epoch (its key is not gathered there yet, or a reload has
// not added it yet): new tunnels use an older ready epoch for
// refusalBackoff. It reports whether such an older epoch exists, i.e.
// whether a retry with clientKey would offer another identity. Logged once
// per episode, not per connection.
func (s *epochSet) refusedByServer(identity string) bool {
	_, ep, ok := parseEpochIdentity(identity)
	if !ok {
		return false
	}
	now := time.Now()
	s.mu.Lock()
	var e *epochEntry
	for _, x := range s.entries {
		if x.epoch == ep && !x.retired() && x.src != nil {
			e = x
		}
	}
	if e == nil {
		s.mu.Unlock()
		return false
	}
	first := !e.refused
	e.refused, e.refusedUntil = true, now.Add(refusalBackoff)
	e.refusedN++
	alt := s.clientLocked(now)
	retry := alt != nil && alt.epoch < ep
	var altEp uint64
	if retry {
		altEp = alt.epoch
	}
	s.mu.Unlock()
	if first {
		if retry {
			s.log.Warn("the server proxy does not accept our newest epoch yet (unknown_psk_identity): new tunnels use the older one and retry the newest every "+refusalBackoff.String(),
				"epoch", ep, "using", altEp)
		} else {
			s.log.Warn("the server proxy does not accept our newest epoch (unknown_psk_identity) and we hold no older ready epoch", "epoch", ep)
		}
	}
	return retry
}

// acceptedByServer ends a refusal episode of identity's epoch.
func (s *epochSet) acceptedByServer(identity string) {
	_, ep, ok := parseEpochIdentity(identity)
	if !ok {
		return
	}
	s.mu.Lock()
	var was bool
	for _, e := range s.entries {
		if e.epoch == ep && e.refused {
			e.refused, e.refusedUntil, was = false, time.Time{}, true
		}
	}
	s.mu.Unlock()
	if was {
		s.log.Info("the server proxy accepts our newest epoch now: new tunnels use it", "epoch", ep)
	}
}
