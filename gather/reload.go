package gather

import (
	"fmt"
	"reflect"

	"github.com/mcbn/mcbn/proxy"
)

var _ proxy.SpecReloader = (*SharesSource)(nil)

// Reload (SIGHUP without a config file to re-read: a proxy configured by
// flags or by ParseConfig) re-reads the group descriptor at the configured
// path and rebuilds the participants from the shareholders list the source
// was built with, then gathers again at once. What it accepts and refuses
// is ReloadSpec's.
func (s *SharesSource) Reload() error {
	s.mu.RLock()
	cfg := s.p.cfg
	s.mu.RUnlock()
	err := s.reload(cfg)
	if s.fromSpec {
		err = optionsErr(err)
	}
	return err
}

// ReloadSpec is SIGHUP with the proxy's config file re-read: the route's
// psk.options as the file now has them, so a new group: descriptor and a
// new shareholders: list take effect without a restart (the switch-over of
// a reshare or refresh, docs/key-lifecycle.md section 5).
func (s *SharesSource) ReloadSpec(spec proxy.SourceSpec) error {
	cfg, err := configFromSpec(spec)
	if err != nil {
		return err
	}
	return optionsErr(s.reload(cfg))
}

// reload validates cfg completely (group descriptor read and checked,
// every participant built) before anything changes: a reload that fails
// keeps the previous group, participants and key, and returns the error
// (proxy.Reloader's contract: never fail open, never drop the key because
// a file was half written).
//
// Only what keeps the PSK exactly as it is may change: the group (same
// KeyID: a reshare or a refresh), the participants, their endpoints, the
// attestation provider, refresh and timeout. A different KeyID, identity,
// epoch, mode or key length would give another key: that is a rotation,
// done with the route's psk.epochs, where both keys coexist for a rollover
// window, and never silently by a reload.
func (s *SharesSource) reload(cfg SharesSourceConfig) error {
	s.reloadMu.Lock() // one reload at a time: each compares with what it replaces
	defer s.reloadMu.Unlock()
	s.mu.RLock()
	old := s.p
	s.mu.RUnlock()
	np, err := prepare(cfg, s.baseLog)
	if err != nil {
		return err
	}
	if err := sameKey(old, np); err != nil {
		np.close()
		return err
	}
	provider := s.provider
	if !s.fixedProvider && !reflect.DeepEqual(np.cfg.Attestation, old.cfg.Attestation) {
		if provider, err = np.provider(); err != nil {
			np.close()
			return fieldErr("attestation", "%v", err)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		np.close()
		return fmt.Errorf("the source is closed")
	}
	s.p, s.provider = np, provider
	// Closed by the gathering loop once no round uses them any more.
	s.retiredPrep = append(s.retiredPrep, old)
	// The progress (and the preferred order drawn from it) names the old
	// participants; logOutcomes starts afresh for the new ones.
	s.progress = Progress{}
	s.mu.Unlock()
	if np.group.ID != old.group.ID {
		s.log.Info("group descriptor reloaded: same key id, new group", "group_id", np.group.ID, "threshold", np.group.Threshold, "participants", np.group.N())
	} else {
		s.log.Info("shares source reloaded", "participants", len(np.participants))
	}
	s.kickRound()
	return nil
}

// kickRound makes the gathering loop start a round now.
func (s *SharesSource) kickRound() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// sameKey refuses a reloaded config that would derive another PSK, naming
// the field. Key ids are public (hashes of public descriptors).
func sameKey(old, np *prepared) error {
	switch {
	case np.group.KeyID() != old.group.KeyID():
		return fieldErr("group", "%s has key id %.16s…, the running group %q has %.16s…: a new key is a rotation (add it as a new psk.epochs entry), not a reload; a reshared or refreshed group keeps its key id",
			np.cfg.Group, np.group.KeyID(), old.group.Name, old.group.KeyID())
	case np.cfg.Identity != old.cfg.Identity:
		return fieldErr("identity", "the reload changes it from %q to %q; that changes the key: restart or rotate", old.cfg.Identity, np.cfg.Identity)
	case np.cfg.Epoch != old.cfg.Epoch:
		return fieldErr("epoch", "the reload changes it from %d to %d; a new epoch is a new psk.epochs entry", old.cfg.Epoch, np.cfg.Epoch)
	case np.cfg.Mode != old.cfg.Mode:
		return fieldErr("mode", "the reload changes it from %s to %s; that changes the key: restart or rotate", old.cfg.Mode, np.cfg.Mode)
	case np.cfg.KeyLength != old.cfg.KeyLength:
		return fieldErr("key_length", "the reload changes it from %d to %d; that changes the key: restart or rotate", old.cfg.KeyLength, np.cfg.KeyLength)
	case !sameBoolPtr(np.cfg.CloseTunnelsOnLoss, old.cfg.CloseTunnelsOnLoss):
		// The proxy reads it once, when it builds the route.
		return fieldErr("close_tunnels_on_loss", "the reload changes it; that needs a restart")
	}
	return nil
}

func sameBoolPtr(a, b *bool) bool {
	av, bv := a == nil || *a, b == nil || *b
	return av == bv
}

// closeRetired closes the prepared configs replaced by reloads; called by
// the gathering loop between rounds (no round uses them then) and by Close.
func (s *SharesSource) closeRetired() {
	s.mu.Lock()
	ps := s.retiredPrep
	s.retiredPrep = nil
	s.mu.Unlock()
	for _, p := range ps {
		p.close()
	}
}
