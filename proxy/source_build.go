package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// buildSource makes the route's source and settles its identity: the
// configured one, else the first of a PSKsecrets file (client, as stunnel
// does), else Client_identity.
func buildSource(r *Route, mode Mode, log *slog.Logger) (Source, string, error) {
	if len(r.PSK.Epochs) > 0 {
		return buildEpochSet(r, mode, log)
	}
	return buildKeySource(r, mode, log, 0)
}

// buildKeySource builds the one key source of r.PSK (without epochs, or
// an epochs entry copied there), for epoch.
func buildKeySource(r *Route, mode Mode, log *slog.Logger, epoch uint64) (Source, string, error) {
	id := r.Identity
	p := &r.PSK
	def := func() string {
		if id == "" {
			return DefaultIdentity
		}
		return id
	}
	switch {
	case p.Hex != "":
		k, err := ParseHexKey(p.Hex)
		if err != nil {
			return nil, "", fmt.Errorf("psk.hex: %v", err)
		}
		return NewStaticSource(def(), k), def(), nil
	case p.Env != "":
		v, ok := os.LookupEnv(p.Env)
		if !ok || v == "" {
			return nil, "", fmt.Errorf("psk.env: environment variable %s is not set", p.Env)
		}
		k, err := ParseHexKey(v)
		if err != nil {
			return nil, "", fmt.Errorf("psk.env: %s: %v", p.Env, err)
		}
		return NewStaticSource(def(), k), def(), nil
	case p.File != "":
		s, err := NewFileSource(def(), p.File)
		if err != nil {
			return nil, "", fmt.Errorf("psk.file: %v", err)
		}
		return s, def(), nil
	case p.Secrets != "":
		s, err := NewPSKSecretsSource(p.Secrets, p.OddHexAsText)
		if err != nil {
			return nil, "", fmt.Errorf("psk.secrets: %v", err)
		}
		if id == "" && mode == ModeClient {
			id = s.FirstIdentity()
		}
		if mode == ModeClient {
			if _, err := s.Key(id); err != nil {
				return nil, "", fmt.Errorf("psk.secrets: identity %q is not in %s", id, p.Secrets)
			}
		}
		return s, def(), nil
	case p.Source != "":
		f, ok := sourceFactory(p.Source)
		if !ok {
			return nil, "", fmt.Errorf("psk.source: unknown kind %q", p.Source)
		}
		spec := SourceSpec{Route: r.Name, Mode: mode, Identity: def(), Epoch: epoch, Logger: log, Decode: nodeDecoder(&p.Options)}
		s, err := f(spec)
		if err != nil {
			return nil, "", fmt.Errorf("psk.source %s: %v", p.Source, err)
		}
		return s, def(), nil
	}
	return nil, "", errors.New("psk: missing")
}

// nodeDecoder decodes psk.options strictly: an unknown key is an error
// naming it and its line in the config file. The node is decoded where it
// is, not re-encoded, so every line number is the file's.
func nodeDecoder(n *yaml.Node) func(v any) error {
	return func(v any) error {
		if n.Kind == 0 {
			return nil
		}
		t := reflect.TypeOf(v)
		if err := checkKnownKeys(n, t); err != nil {
			return err
		}
		if err := n.Decode(v); err != nil {
			return errors.New(yamlMessage(err, t))
		}
		return nil
	}
}

// DecodeSourceOptions decodes the route's psk.options into v exactly as
// the route's registered source gets them (SourceSpec.Decode): strictly,
// errors naming the key and its line in the config file. For checks that
// run a source's dry run without building it ('mcbn proxy check').
func (r *Route) DecodeSourceOptions(v any) error { return nodeDecoder(&r.PSK.Options)(v) }

// EffectiveIdentity is the identity a registered source is built for: the
// configured one, else Client_identity (SourceSpec.Identity).
func (r *Route) EffectiveIdentity() string {
	if r.Identity == "" {
		return DefaultIdentity
	}
	return r.Identity
}
