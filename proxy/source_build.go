package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"

	"gopkg.in/yaml.v3"
)

// buildSource makes the route's source and settles its identity: the
// configured one, else the first of a PSKsecrets file (client, as stunnel
// does), else Client_identity.
func buildSource(r *Route, mode Mode, log *slog.Logger) (Source, string, error) {
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
		s, err := NewPSKSecretsSource(p.Secrets)
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
		spec := SourceSpec{Route: r.Name, Mode: mode, Identity: def(), Logger: log, Decode: nodeDecoder(&p.Options)}
		s, err := f(spec)
		if err != nil {
			return nil, "", fmt.Errorf("psk.source %s: %v", p.Source, err)
		}
		return s, def(), nil
	}
	return nil, "", errors.New("psk: missing")
}

var lineRE = regexp.MustCompile(`line \d+: `)

// nodeDecoder decodes psk.options strictly: unknown keys are errors.
func nodeDecoder(n *yaml.Node) func(v any) error {
	return func(v any) error {
		if n.Kind == 0 {
			return nil
		}
		b, err := yaml.Marshal(n)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(v); err != nil {
			// Lines in err count from the options block, not the file.
			msg := lineRE.ReplaceAllString(yamlMessage(err), "")
			return fmt.Errorf("in the options at line %d: %s", n.Line, msg)
		}
		return nil
	}
}
