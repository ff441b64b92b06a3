package gather

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/psk/tprf"
)

// Defaults of the shares source.
const (
	DefaultRefresh = 30 * time.Second
	DefaultTimeout = 10 * time.Second
	// maxRetry bounds the wait before gathering again while not ready.
	maxRetry = 5 * time.Second
	// maxConfigSize bounds a file given to `mcbn proxy check`.
	maxConfigSize = 1 << 20
)

// SharesSourceConfig is the `shares` PSK source: the YAML block under a
// proxy route's psk.options (with psk.source: shares), or under the
// top-level `shares:` key of a file given to `mcbn proxy check`.
type SharesSourceConfig struct {
	// Group is the path of the public group descriptor.
	Group string `yaml:"group"`
	// Shareholders are the participants asked for shares, of any kind.
	Shareholders []ShareholderConfig `yaml:"shareholders"`
	Attestation  AttestationConfig   `yaml:"attestation"`
	// Identity is the PSK identity the key is derived for (default: the
	// route's identity, else Client_identity). Both proxies must agree.
	Identity string `yaml:"identity"`
	// Epoch is the key rotation counter fed to the derivation (default:
	// the epoch of the route's psk.epochs entry).
	Epoch uint64 `yaml:"epoch"`
	// Mode is "share" (default: gather shares, reconstruct the secret) or
	// "evaluate" (gather threshold PRF partials; evaluate.go).
	Mode string `yaml:"mode"`
	// KeyLength in bytes (default 32).
	KeyLength int `yaml:"key_length"`
	// Refresh is how often shares are gathered again (default 30s).
	Refresh time.Duration `yaml:"refresh"`
	// Timeout bounds one participant's exchange (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// CloseTunnelsOnLoss asks the proxy to close open tunnels when the key
	// is lost, not only to refuse new ones. Unset means true: withdrawn
	// consent must reach the traffic, not only new connections.
	CloseTunnelsOnLoss *bool `yaml:"close_tunnels_on_loss"`
	// BaseDir, when set, is the directory relative paths in participants'
	// options are resolved against (Entry.Path); LoadCheckTargets sets it
	// to a shares: file's directory. Empty: the working directory, as the
	// proxy reads its config.
	BaseDir string `yaml:"-"`
}

// ShareholderConfig is one participant as seen by a proxy: an entry of
// the shareholders: list.
type ShareholderConfig struct {
	// Name as in the group descriptor.
	Name string `yaml:"name"`
	// Kind of participant: "daemon" (the default, `mcbn shareholder
	// serve`) or a kind registered with RegisterKind, such as "kms".
	Kind string `yaml:"kind"`
	// URL of the daemon, https://host:port (kind daemon).
	URL string `yaml:"url"`
	// Pin is the daemon's SPKI pin (sha256:<hex>); or CAFile, a PEM bundle
	// (kind daemon).
	Pin    string `yaml:"pin"`
	CAFile string `yaml:"ca_file"`
	// Audience the token is asked for; must equal the daemon's
	// verifier.audience (default: URL) (kind daemon).
	Audience string `yaml:"audience"`
	// Options are the settings of any other kind, decoded by that kind
	// (Entry.Decode).
	Options Options `yaml:"options,omitempty"`
}

// Options holds a participant kind's settings as written (YAML), for the
// kind to decode strictly into its own type (Entry.Decode). It keeps the
// node aside rather than decoding it: the source does not know the kind's
// fields, and a *yaml.Node field would be decoded as a struct by yaml.v3.
type Options struct{ node *yaml.Node }

// NewOptions encodes v (a struct with yaml tags, or a map) as options, for
// programs that build a SharesSourceConfig in Go.
func NewOptions(v any) (Options, error) {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return Options{}, err
	}
	return Options{node: &n}, nil
}

// UnmarshalYAML keeps the node.
func (o *Options) UnmarshalYAML(n *yaml.Node) error {
	c := *n
	o.node = &c
	return nil
}

// MarshalYAML writes the options back as they were.
func (o Options) MarshalYAML() (any, error) { return o.node, nil }

// IsZero reports whether no options were given.
func (o Options) IsZero() bool { return o.node == nil || o.node.Kind == 0 }

// AttestationConfig names the token provider inside the TEE.
type AttestationConfig struct {
	// Provider is "confidential-space", "dev", "tdx", "sev-snp" or
	// "mock-tsm" (raw TEE evidence: attest.EvidenceProvider).
	Provider string `yaml:"provider"`
	// Socket of the launcher (default for confidential-space) or dev
	// attester; for mock-tsm, the mock-tsm directory.
	Socket string `yaml:"socket"`
}

// ConfigError is a configuration error naming the field at fault.
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, a ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// prepared is a validated source config with its group loaded and its
// participants built.
type prepared struct {
	cfg          SharesSourceConfig
	group        *psk.Group
	participants []Participant
	requests     []FetchRequest // per participant, without the token provider
	hedgeAfter   time.Duration  // see gather
	tprf         *tprf.Group    // mode evaluate only
}

// prepare validates cfg (errors name the field, e.g.
// "shareholders[1].pin"), loads the group descriptor and builds every
// participant through its kind's builder.
func prepare(cfg SharesSourceConfig, logger *slog.Logger) (p *prepared, err error) {
	if logger == nil {
		logger = slog.Default()
	}
	if cfg.Group == "" {
		return nil, fieldErr("group", "missing: the path of the group descriptor")
	}
	g, err := psk.LoadGroup(cfg.Group)
	if err != nil {
		return nil, fieldErr("group", "%v", err)
	}
	if g.Scheme != psk.SchemeShamir {
		return nil, fieldErr("group", "group %q is %s; the shares source gathers %s shares", g.Name, g.Scheme, psk.SchemeShamir)
	}
	if len(cfg.Shareholders) == 0 {
		return nil, fieldErr("shareholders", "missing: list the shareholders (name, url, pin)")
	}
	if len(cfg.Shareholders) < g.Threshold {
		return nil, fieldErr("shareholders", "%d listed, but the group needs %d shares", len(cfg.Shareholders), g.Threshold)
	}
	switch cfg.Attestation.Provider {
	case attest.KindConfidentialSpace:
	case attest.KindDev:
		if cfg.Attestation.Socket == "" {
			return nil, fieldErr("attestation.socket", "missing: the dev attester's socket path")
		}
	case attest.KindTDX, attest.KindSEVSNP: // raw evidence via configfs-tsm (docs/attestation.md)
	case attest.KindMockTSM:
		if cfg.Attestation.Socket == "" {
			return nil, fieldErr("attestation.socket", "missing: the mock-tsm directory (tests only)")
		}
	case "":
		return nil, fieldErr("attestation.provider", "missing: confidential-space or dev")
	default:
		return nil, fieldErr("attestation.provider", "%q, want confidential-space, dev, tdx, sev-snp or mock-tsm", cfg.Attestation.Provider)
	}
	p = &prepared{cfg: cfg, group: g, hedgeAfter: defaultHedgeAfter}
	if err := p.checkMode(); err != nil {
		return nil, err
	}
	if p.cfg.Identity == "" {
		p.cfg.Identity = psk.DefaultIdentity
	}
	if p.cfg.KeyLength == 0 {
		p.cfg.KeyLength = psk.DefaultPSKLength
	}
	if p.cfg.KeyLength < 16 || p.cfg.KeyLength > 64 {
		return nil, fieldErr("key_length", "%d outside 16..64", p.cfg.KeyLength)
	}
	switch {
	case p.cfg.Refresh < 0:
		return nil, fieldErr("refresh", "must not be negative")
	case p.cfg.Refresh == 0:
		p.cfg.Refresh = DefaultRefresh
	}
	switch {
	case p.cfg.Timeout < 0:
		return nil, fieldErr("timeout", "must not be negative")
	case p.cfg.Timeout == 0:
		p.cfg.Timeout = DefaultTimeout
	}
	defer func() {
		if err != nil {
			p.close() // the participants built before the bad entry
			p = nil
		}
	}()
	seen := map[string]bool{}
	for i, sh := range cfg.Shareholders {
		field := fmt.Sprintf("shareholders[%d]", i)
		if sh.Name == "" {
			return p, fieldErr(field+".name", "missing")
		}
		gp := g.ParticipantByName(sh.Name)
		if gp == nil {
			return p, fieldErr(field+".name", "%q is not a participant of group %q", sh.Name, g.Name)
		}
		if seen[sh.Name] {
			return p, fieldErr(field+".name", "%q listed twice", sh.Name)
		}
		seen[sh.Name] = true
		pt, err := p.build(sh, *gp, field, logger)
		if err != nil {
			return p, err
		}
		p.participants = append(p.participants, pt)
		p.requests = append(p.requests, FetchRequest{
			Group: g, Participant: *gp, Identity: p.cfg.Identity, Epoch: p.cfg.Epoch, Timeout: p.cfg.Timeout,
		})
	}
	return p, nil
}

// build makes one entry's participant with its kind's builder.
func (p *prepared) build(sh ShareholderConfig, gp psk.Participant, field string, logger *slog.Logger) (Participant, error) {
	kind := sh.Kind
	if kind == "" {
		kind = KindDaemon
	}
	build, ok := kindBuilder(kind)
	if !ok {
		return nil, fieldErr(field+".kind", "unknown participant kind %q (this binary knows %s)", clipField(kind, 64), strings.Join(Kinds(), ", "))
	}
	if kind != KindDaemon && (sh.URL != "" || sh.Pin != "" || sh.CAFile != "" || sh.Audience != "") {
		return nil, fieldErr(field, "url, pin, ca_file and audience are settings of kind daemon; a %s participant takes its settings under options:", kind)
	}
	e := Entry{
		Name: sh.Name, Kind: kind, Config: sh, Group: p.group, Participant: gp, Field: field,
		Decode: func(v any) error {
			if err := decodeOptions(sh.Options.node, v); err != nil {
				return fieldErr(field+".options", "%v", err)
			}
			return nil
		},
		Path:   func(s string) string { return resolvePath(p.cfg.BaseDir, s) },
		Logger: logger.With("shareholder", sh.Name, "kind", kind),
	}
	pt, err := build(e)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, fieldErr(field, "%v", err)
	}
	if pt == nil || pt.Name() != sh.Name || pt.Kind() != kind {
		// A builder bug would otherwise misname outcomes and shares.
		return nil, fieldErr(field, "kind %s built a participant that does not answer to name %q and kind %q", kind, sh.Name, kind)
	}
	return pt, nil
}

// close closes every participant that holds resources.
func (p *prepared) close() {
	if p == nil {
		return
	}
	for _, pt := range p.participants {
		if c, ok := pt.(io.Closer); ok {
			c.Close()
		}
	}
}

// provider builds the configured token provider.
func (p *prepared) provider() (attest.TokenProvider, error) {
	return attest.NewProvider(p.cfg.Attestation.Provider, p.cfg.Attestation.Socket)
}

// resolvePath makes a relative path relative to dir ("" leaves it as it
// is).
func resolvePath(dir, p string) string {
	if p == "" || dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// clipField bounds an untrusted string and makes it valid UTF-8.
func clipField(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return string(bytes.ToValidUTF8([]byte(s), []byte("?")))
}
