package gather

import (
	"errors"
	"fmt"

	"github.com/mcbn/mcbn/proxy"
)

// SourceKind is the proxy config's psk.source value for this source.
const SourceKind = "shares"

// The proxy finds the shares source through its registry: a route with
//
//	psk:
//	  source: shares
//	  options: {group: ..., shareholders: [...], attestation: {...}, ...}
//
// gets a SharesSource built from options (a SharesSourceConfig).
func init() {
	proxy.RegisterSource(SourceKind, newFromSpec)
}

func newFromSpec(spec proxy.SourceSpec) (proxy.Source, error) {
	cfg, err := configFromSpec(spec)
	if err != nil {
		return nil, err
	}
	s, err := NewSharesSource(cfg, nil, spec.Logger)
	if err != nil {
		return nil, optionsErr(err)
	}
	s.fromSpec = true
	return s, nil
}

// configFromSpec decodes the route's psk.options and settles identity and
// epoch with the route's.
func configFromSpec(spec proxy.SourceSpec) (SharesSourceConfig, error) {
	var cfg SharesSourceConfig
	if err := spec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("psk.options: %w", err)
	}
	switch {
	case cfg.Identity == "":
		cfg.Identity = spec.Identity
	case spec.Identity != "" && cfg.Identity != spec.Identity:
		return cfg, fieldErr("psk.options.identity", "%q differs from the route's identity %q", cfg.Identity, spec.Identity)
	}
	// The route's psk.epochs entry names the epoch; options.epoch may only
	// repeat it.
	switch {
	case cfg.Epoch == 0:
		cfg.Epoch = spec.Epoch
	case spec.Epoch != 0 && cfg.Epoch != spec.Epoch:
		return cfg, fieldErr("psk.options.epoch", "%d differs from the epoch %d of the route's psk.epochs entry", cfg.Epoch, spec.Epoch)
	}
	return cfg, nil
}

// optionsErr names a ConfigError's field where the proxy config has it.
func optionsErr(err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return &ConfigError{Field: "psk.options." + ce.Field, Msg: ce.Msg}
	}
	return err
}
