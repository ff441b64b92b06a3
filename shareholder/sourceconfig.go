package shareholder

import (
	"fmt"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
)

// Defaults of the shares source.
const (
	DefaultRefresh = 30 * time.Second
	DefaultTimeout = 10 * time.Second
	// maxRetry bounds the wait before gathering again while not ready.
	maxRetry = 5 * time.Second
)

// SharesSourceConfig is the `shares` PSK source: the YAML block under a
// proxy route's psk.options (with psk.source: shares), or under the
// top-level `shares:` key of a file given to `mcbn proxy check`.
type SharesSourceConfig struct {
	// Group is the path of the public group descriptor.
	Group        string              `yaml:"group"`
	Shareholders []ShareholderConfig `yaml:"shareholders"`
	Attestation  AttestationConfig   `yaml:"attestation"`
	// Identity is the PSK identity the key is derived for (default: the
	// route's identity, else Client_identity). Both proxies must agree.
	Identity string `yaml:"identity"`
	// Epoch is the key rotation counter fed to the derivation.
	Epoch uint64 `yaml:"epoch"`
	// KeyLength in bytes (default 32).
	KeyLength int `yaml:"key_length"`
	// Refresh is how often shares are gathered again (default 30s).
	Refresh time.Duration `yaml:"refresh"`
	// Timeout bounds one shareholder's exchange (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// CloseTunnelsOnLoss asks the proxy to close open tunnels when the key
	// is lost, not only to refuse new ones. Unset means true: withdrawn
	// consent must reach the traffic, not only new connections.
	CloseTunnelsOnLoss *bool `yaml:"close_tunnels_on_loss"`
}

// ShareholderConfig is one shareholder as seen by a proxy.
type ShareholderConfig struct {
	// Name as in the group descriptor.
	Name string `yaml:"name"`
	// URL of the daemon, https://host:port.
	URL string `yaml:"url"`
	// Pin is the daemon's SPKI pin (sha256:<hex>); or CAFile, a PEM bundle.
	Pin    string `yaml:"pin"`
	CAFile string `yaml:"ca_file"`
	// Audience the token is asked for; must equal the daemon's
	// verifier.audience (default: URL).
	Audience string `yaml:"audience"`
}

// AttestationConfig names the token provider inside the TEE.
type AttestationConfig struct {
	// Provider is "confidential-space" or "dev".
	Provider string `yaml:"provider"`
	// Socket of the launcher (default for confidential-space) or dev attester.
	Socket string `yaml:"socket"`
}

// prepared is a validated source config with its group loaded.
type prepared struct {
	cfg        SharesSourceConfig
	group      *psk.Group
	clients    []*releaseClient
	hedgeAfter time.Duration // see gather
}

// prepare validates cfg (errors name the field under prefix, e.g.
// "shares.shareholders[1].pin") and loads the group descriptor.
func prepare(cfg SharesSourceConfig, prefix string) (*prepared, error) {
	f := func(name string) string {
		if prefix == "" {
			return name
		}
		return prefix + "." + name
	}
	if cfg.Group == "" {
		return nil, fieldErr(f("group"), "missing: the path of the group descriptor")
	}
	g, err := psk.LoadGroup(cfg.Group)
	if err != nil {
		return nil, fieldErr(f("group"), "%v", err)
	}
	if g.Scheme != psk.SchemeShamir {
		return nil, fieldErr(f("group"), "group %q is %s; the shares source gathers %s shares", g.Name, g.Scheme, psk.SchemeShamir)
	}
	if len(cfg.Shareholders) == 0 {
		return nil, fieldErr(f("shareholders"), "missing: list the shareholders (name, url, pin)")
	}
	if len(cfg.Shareholders) < g.Threshold {
		return nil, fieldErr(f("shareholders"), "%d listed, but the group needs %d shares", len(cfg.Shareholders), g.Threshold)
	}
	seen := map[string]bool{}
	p := &prepared{cfg: cfg, group: g, hedgeAfter: defaultHedgeAfter}
	for i, sh := range cfg.Shareholders {
		field := fmt.Sprintf("%s[%d]", f("shareholders"), i)
		if sh.Name == "" {
			return nil, fieldErr(field+".name", "missing")
		}
		if g.ParticipantByName(sh.Name) == nil {
			return nil, fieldErr(field+".name", "%q is not a participant of group %q", sh.Name, g.Name)
		}
		if seen[sh.Name] {
			return nil, fieldErr(field+".name", "%q listed twice", sh.Name)
		}
		seen[sh.Name] = true
		c, err := newReleaseClient(sh, g.ID, field)
		if err != nil {
			return nil, err
		}
		p.clients = append(p.clients, c)
	}
	switch cfg.Attestation.Provider {
	case attest.KindConfidentialSpace:
	case attest.KindDev:
		if cfg.Attestation.Socket == "" {
			return nil, fieldErr(f("attestation.socket"), "missing: the dev attester's socket path")
		}
	case "":
		return nil, fieldErr(f("attestation.provider"), "missing: confidential-space or dev")
	default:
		return nil, fieldErr(f("attestation.provider"), "%q, want confidential-space or dev", cfg.Attestation.Provider)
	}
	if p.cfg.Identity == "" {
		p.cfg.Identity = psk.DefaultIdentity
	}
	if p.cfg.KeyLength == 0 {
		p.cfg.KeyLength = psk.DefaultPSKLength
	}
	if p.cfg.KeyLength < 16 || p.cfg.KeyLength > 64 {
		return nil, fieldErr(f("key_length"), "%d outside 16..64", p.cfg.KeyLength)
	}
	switch {
	case p.cfg.Refresh < 0:
		return nil, fieldErr(f("refresh"), "must not be negative")
	case p.cfg.Refresh == 0:
		p.cfg.Refresh = DefaultRefresh
	}
	switch {
	case p.cfg.Timeout < 0:
		return nil, fieldErr(f("timeout"), "must not be negative")
	case p.cfg.Timeout == 0:
		p.cfg.Timeout = DefaultTimeout
	}
	return p, nil
}

// provider builds the configured token provider.
func (p *prepared) provider() (attest.TokenProvider, error) {
	return attest.NewProvider(p.cfg.Attestation.Provider, p.cfg.Attestation.Socket)
}
