package gather

import (
	"bytes"
	"context"
	"crypto/subtle"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/proxy"
	"github.com/mcbn/mcbn/psk"
	"github.com/prometheus/client_golang/prometheus"
)

// SharesSource is the proxy's `shares` PSK source: it gathers T shares from
// the participants (of any kind), reconstructs the group secret, derives the PSK and
// gathers again every refresh interval. Below T it drops the key.
type SharesSource struct {
	log     *slog.Logger // with the group's name
	baseLog *slog.Logger // without it: for the participants a reload builds
	metrics *sourceMetrics
	// fixedProvider: the token provider was given to NewSharesSource, so a
	// reload keeps it rather than building the configured one.
	fixedProvider bool
	// fromSpec: built from a proxy route (errors name psk.options.FIELD).
	fromSpec bool
	reloadMu sync.Mutex

	mu sync.RWMutex
	// p and provider are swapped by a reload (reload.go); a round works on
	// the ones it started with.
	p           *prepared
	provider    attest.TokenProvider
	retiredPrep []*prepared // replaced by reloads, closed between rounds
	closed      bool

	key      []byte
	status   string
	since    time.Time
	progress Progress
	rounds   int
	// last outcome per participant, so logs say what changed, not every
	// round; of the participants of outcomesOf. Only the gathering loop
	// touches them.
	lastOutcome map[string]string
	outcomesOf  *prepared

	// rand draws from [0, 1) for the jitter of the wait between rounds
	// (see nextWait); onWait, when set, sees every wait (tests).
	rand   func() float64
	onWait func(time.Duration)

	changes chan struct{}
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// sourceOptions are test seams of newSharesSource.
type sourceOptions struct {
	rand   func() float64
	onWait func(time.Duration)
}

var _ proxy.Source = (*SharesSource)(nil)
var _ proxy.Reloader = (*SharesSource)(nil)

// NewSharesSource validates cfg, loads the group descriptor and starts
// gathering in the background. provider nil means the one cfg.Attestation
// names; logger nil means slog.Default(). Close stops it and wipes the key.
func NewSharesSource(cfg SharesSourceConfig, provider attest.TokenProvider, logger *slog.Logger) (*SharesSource, error) {
	return newSharesSource(cfg, provider, logger, sourceOptions{})
}

func newSharesSource(cfg SharesSourceConfig, provider attest.TokenProvider, logger *slog.Logger, opts sourceOptions) (*SharesSource, error) {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("source", "shares")
	p, err := prepare(cfg, logger)
	if err != nil {
		return nil, err
	}
	fixed := provider != nil
	if provider == nil {
		if provider, err = p.provider(); err != nil {
			p.close()
			return nil, fieldErr("attestation", "%v", err)
		}
	}
	s := &SharesSource{
		p: p, provider: provider, log: logger.With("group", p.group.Name), baseLog: logger,
		fixedProvider: fixed, metrics: newSourceMetrics(),
		status: "gathering shares", since: time.Now(), lastOutcome: map[string]string{},
		rand: opts.rand, onWait: opts.onWait,
		changes: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if s.rand == nil {
		s.rand = rand.Float64 // safe for concurrent use; jitter needs no secrecy
	}
	go s.run()
	return s, nil
}

// Key returns a copy of the PSK for the configured identity.
func (s *SharesSource) Key(identity string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.key == nil {
		return nil, proxy.NotReady(s.status)
	}
	if identity != s.p.cfg.Identity {
		return nil, proxy.ErrUnknownIdentity
	}
	return bytes.Clone(s.key), nil
}

// Status reports readiness and the last round's progress.
func (s *SharesSource) Status() proxy.SourceStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return proxy.SourceStatus{Ready: s.key != nil, State: s.status, Since: s.since}
}

// Progress returns the last round's per-participant outcomes.
func (s *SharesSource) Progress() Progress {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.progress
}

// Rounds returns how many gathering rounds have completed.
func (s *SharesSource) Rounds() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rounds
}

// Identity returns the PSK identity the key is derived for.
func (s *SharesSource) Identity() string { return s.cur().cfg.Identity }

// cur is the prepared config in use (a reload swaps it).
func (s *SharesSource) cur() *prepared {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.p
}

// CloseTunnelsOnLoss reports whether open tunnels should be closed when the
// key is dropped.
func (s *SharesSource) CloseTunnelsOnLoss() bool {
	c := s.cur().cfg.CloseTunnelsOnLoss
	return c == nil || *c
}

// Changes is signalled when the key or readiness changes.
func (s *SharesSource) Changes() <-chan struct{} { return s.changes }

// Close stops gathering, wipes the key and closes the participants that
// hold resources (io.Closer).
func (s *SharesSource) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		psk.Wipe(s.key)
		s.key = nil
		s.status = "closed"
		s.closed = true
		p := s.p
		s.mu.Unlock()
		s.closeRetired()
		p.close()
	})
	return nil
}

func (s *SharesSource) run() {
	defer close(s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-s.done:
		}
	}()
	for {
		wait := s.nextWait(s.round(ctx))
		s.closeRetired()
		if s.onWait != nil {
			s.onWait(wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-s.stop:
			t.Stop()
			return
		case <-s.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// jitterFraction spreads every wait between rounds over ±20 % of its
// nominal value, so that many proxies started together (a rollout, a zone
// restart) do not keep asking the shareholders in the same instant.
const jitterFraction = 0.2

// nextWait is the jittered wait before the next round: the refresh
// interval when ready, at most maxRetry when not.
func (s *SharesSource) nextWait(ready bool) time.Duration {
	wait := s.cur().cfg.Refresh
	if !ready && wait > maxRetry {
		wait = maxRetry
	}
	return jitter(wait, s.rand())
}

// jitter scales d by a factor in [1-jitterFraction, 1+jitterFraction),
// chosen by r in [0, 1) (clamped).
func jitter(d time.Duration, r float64) time.Duration {
	r = max(0, min(r, 1))
	f := 1 - jitterFraction + 2*jitterFraction*r
	return time.Duration(float64(d) * f)
}

// round gathers once and installs or drops the key; it reports readiness.
func (s *SharesSource) round(ctx context.Context) bool {
	s.mu.RLock()
	p, provider := s.p, s.provider
	prefer := releasedLast(s.progress)
	s.mu.RUnlock()
	if p.tprf != nil {
		return s.roundEvaluate(ctx, p, provider, prefer)
	}
	prog, shares := gather(ctx, p, provider, true, prefer)
	defer wipeShares(shares)
	if ctx.Err() != nil {
		return false
	}
	s.metrics.observe(prog)
	var key []byte
	status := prog.String()
	if prog.Enough() {
		secret, bad, err := psk.CombineValid(p.group, shares)
		for _, b := range bad {
			s.log.Error("share set aside", "err", b)
		}
		if err == nil {
			key, err = psk.DerivePSK(secret, p.group.KeyID(), p.cfg.Identity, p.cfg.Epoch, p.cfg.KeyLength)
			psk.Wipe(secret)
		}
		if err != nil {
			s.log.Error("reconstruction failed", "err", err)
			status += "; reconstruction failed"
			key = nil
		}
	}
	s.logOutcomes(p, prog)
	s.install(p, key, prog, status)
	return key != nil
}

// install swaps the key (wiping the old one) and signals a change when the
// key or readiness changed.
func (s *SharesSource) install(p *prepared, key []byte, prog Progress, status string) {
	s.mu.Lock()
	old, prevStatus := s.key, s.status
	changed := (old == nil) != (key == nil) || (old != nil && subtle.ConstantTimeCompare(old, key) != 1)
	wasReady := old != nil
	s.key, s.status = key, status
	s.rounds++
	if p == s.p {
		s.progress = prog // else a reload replaced the participants it names
	}
	if changed {
		s.since = time.Now()
	}
	s.mu.Unlock()
	psk.Wipe(old)
	s.metrics.setReady(key != nil)
	switch {
	case key != nil && !wasReady:
		s.log.Info("PSK ready", "progress", status, "identity", p.cfg.Identity)
	case key == nil && wasReady:
		s.log.Error("PSK dropped: "+why(prog), "progress", status)
	case key == nil && status != prevStatus:
		s.log.Warn("PSK not available: "+why(prog), "progress", status)
	default:
		s.log.Debug("shares gathered", "progress", status)
	}
	if changed {
		select {
		case s.changes <- struct{}{}:
		default:
		}
	}
}

// why words a lost or missing key: the round's shortfall, or, when T
// shares did arrive, the reconstruction that failed.
func why(prog Progress) string {
	if sf := prog.Shortfall(); sf != "" {
		return sf
	}
	return "reconstruction failed"
}

// Collector returns the source's metrics (mcbn_shares_results_total,
// mcbn_shares_ready) for the proxy to register; they never hold key
// material. Register it once per source (add a route label with
// prometheus.WrapRegistererWith when there are several).
func (s *SharesSource) Collector() prometheus.Collector { return s.metrics }

// logOutcomes logs each shareholder whose outcome changed since the last
// round: who refused and why, who returned an invalid share, who recovered.
// Metrics count every round.
func (s *SharesSource) logOutcomes(p *prepared, prog Progress) {
	if s.outcomesOf != p {
		s.outcomesOf, s.lastOutcome = p, map[string]string{}
	}
	for _, o := range prog.Outcomes {
		if o.State == StateNotNeeded {
			continue
		}
		now := o.String()
		if s.lastOutcome[o.Name] == now {
			continue
		}
		s.lastOutcome[o.Name] = now
		switch o.State {
		case StateInvalid:
			s.log.Error("shareholder returned an invalid share; using the others", "shareholder", o.Name, "kind", o.Kind, "reason", o.Reason)
		case StateRefused, StateUnreachable:
			s.log.Warn("shareholder did not release", "shareholder", o.Name, "kind", o.Kind, "state", o.State, "reason", o.Reason)
		case StateOK:
			s.log.Info("shareholder released", "shareholder", o.Name, "kind", o.Kind)
		}
	}
}
