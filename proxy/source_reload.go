package proxy

import (
	"errors"
	"fmt"
)

// SpecReloader is implemented by sources whose psk.options may change on
// SIGHUP (the shares source: its group descriptor and shareholders list,
// for the switch-over after a reshare). When the proxy's config came from
// a file, SIGHUP re-reads it and hands such a source the spec its route now
// has; without a file to re-read the source gets Reload instead. A failed
// ReloadSpec keeps the source's previous state and key and returns the
// error, like Reload.
type SpecReloader interface {
	Reloader
	ReloadSpec(spec SourceSpec) error
}

// wantsSpec reports whether a route's own (not epochs, not given by
// Options.Sources) source takes its options from a re-read config.
func wantsSpec(b *route) bool {
	_, ok := b.src.(SpecReloader)
	return ok && !b.cfg.external && b.epochs() == nil
}

// reloadSpec reloads b's source with the route as next (the re-read
// config) has it; a config that did not load (cfgErr) changes nothing.
func (p *Proxy) reloadSpec(b *route, next *Config, cfgErr error) error {
	if cfgErr != nil {
		return cfgErr
	}
	sr := b.src.(SpecReloader)
	for i := range next.Routes {
		r := &next.Routes[i]
		if r.Name != b.cfg.Name {
			continue
		}
		switch {
		case len(r.PSK.Epochs) > 0:
			return errors.New("psk.epochs: the reloaded config gives this route epochs instead of one key source; that change needs a restart")
		case r.PSK.Source != b.cfg.PSK.Source:
			return fmt.Errorf("psk.source: the reloaded config changes it from %q to %q; that needs a restart", b.cfg.PSK.Source, r.PSK.Source)
		case r.EffectiveIdentity() != b.cfg.EffectiveIdentity():
			return fmt.Errorf("identity: the reloaded config changes it from %q to %q; that needs a restart", b.cfg.EffectiveIdentity(), r.EffectiveIdentity())
		}
		return sr.ReloadSpec(SourceSpec{Route: r.Name, Mode: p.cfg.Mode, Identity: r.EffectiveIdentity(), Logger: b.log, Decode: nodeDecoder(&r.PSK.Options)})
	}
	return fmt.Errorf("the reloaded config has no route %q; adding or removing routes needs a restart", b.cfg.Name)
}
