package shareholder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"time"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/internal/cfgfile"
)

// Consent values.
const (
	ConsentGranted = "granted"
	ConsentRevoked = "revoked"
)

// Defaults of the daemon.
const (
	DefaultListen         = "127.0.0.1:8441"
	DefaultRatePerSecond  = 1.0
	DefaultRateBurst      = 10
	DefaultMaxClients     = 10000
	DefaultReloadInterval = 2 * time.Second
	DefaultCostLimit      = 100000
	// DefaultMetricsListen is loopback: the metrics name refusal details
	// (which check a forged token failed) and the consent state, which the
	// release port deliberately keeps to itself.
	DefaultMetricsListen = "127.0.0.1:9464"
	// DefaultMaxConnections caps open connections on the release listener,
	// far below usual descriptor limits so the process never runs out.
	DefaultMaxConnections = 512
	// DefaultAuditRefusalsPerSecond is the global budget of refusals of
	// unverified requests written to the audit log one by one.
	DefaultAuditRefusalsPerSecond = 10
	maxConfigSize                 = 1 << 20
)

// Config is the shareholder daemon's YAML configuration. Relative paths are
// resolved against the directory of the config file.
type Config struct {
	// Name of this participant, as in the group descriptor (for logs).
	Name   string `yaml:"name"`
	Listen string `yaml:"listen"`
	// ListenAllInterfaces says that a listen address with an empty or
	// unspecified host (every interface) is intended; without it the daemon
	// warns at start.
	ListenAllInterfaces bool      `yaml:"listen_all_interfaces"`
	TLS                 TLSConfig `yaml:"tls"`
	// ShareStore is file:///path or gcpsm://projects/P/secrets/S/versions/V.
	ShareStore string `yaml:"share_store"`
	// Group is the path of the public group descriptor.
	Group    string         `yaml:"group"`
	Verifier VerifierConfig `yaml:"verifier"`
	// Exactly one of Policy (CEL text) and PolicyFile.
	Policy     string `yaml:"policy"`
	PolicyFile string `yaml:"policy_file"`
	// Consent is "granted" or "revoked".
	Consent  string `yaml:"consent"`
	AuditLog string `yaml:"audit_log"`
	// AuditRotateBytes, when > 0, rotates the audit log before it would
	// grow past this size (AuditOptions.RotateBytes).
	AuditRotateBytes int64 `yaml:"audit_rotate_bytes"`
	// RateLimit applies per remote IP address to requests that fail before
	// their token verifies, and per token subject to verified requests.
	RateLimit      RateLimitConfig `yaml:"rate_limit"`
	MaxBodyBytes   int64           `yaml:"max_body_bytes"`
	ReloadInterval time.Duration   `yaml:"reload_interval"`
	// PolicyCostLimit bounds the CEL evaluation cost.
	PolicyCostLimit uint64 `yaml:"policy_cost_limit"`
	// MaxConnections caps open connections on the release listener.
	MaxConnections int `yaml:"max_connections"`
	// AuditRefusalsPerSecond is the global budget of refusals of requests
	// whose token did not verify that get an audit line each; the rest are
	// counted in one summary line per second.
	AuditRefusalsPerSecond int `yaml:"audit_refusals_per_second"`
	// Metrics is the separate Prometheus listener.
	Metrics MetricsConfig `yaml:"metrics"`
	// ControlSocket is the daemon's local control socket (consent
	// confirmation); default: beside the config file (ControlSocketPath).
	ControlSocket string `yaml:"control_socket"`
	// Release is "any" (default) or "evaluate-only"; Evaluate is the epoch
	// window of partial evaluations (evaluate.go, docs/share-release.md).
	Release  string         `yaml:"release"`
	Evaluate EvaluateConfig `yaml:"evaluate"`

	// Resolved at load time.
	dir        string
	policyText string
	fileSum    string // SHA-256 (hex) of the config file text as loaded
}

// MetricsConfig is the metrics listener: plain HTTP, GET /metrics only.
type MetricsConfig struct {
	// Listen is host:port; absent: DefaultMetricsListen; "" disables.
	Listen *string `yaml:"listen"`
	// ListenAllInterfaces: as the top-level field, for this listener.
	ListenAllInterfaces bool `yaml:"listen_all_interfaces"`
}

// TLSConfig names the participant's certificate and key (PEM). Both empty:
// a self-signed ECDSA P-256 certificate is generated at start.
type TLSConfig struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// VerifierConfig configures attestation token verification.
type VerifierConfig struct {
	Issuer    string        `yaml:"issuer"`
	Audience  string        `yaml:"audience"`
	ClockSkew time.Duration `yaml:"clock_skew"`
	// MaxTokenAge refuses tokens issued longer ago than this (default 1h,
	// the lifetime of a Confidential Space token; at most 24h).
	MaxTokenAge time.Duration `yaml:"max_token_age"`
	// TEE enables raw TDX / SEV-SNP evidence (evidence.go).
	TEE TEEConfig `yaml:"tee"`
}

// RateLimitConfig sizes the token buckets: one per remote address for
// requests that fail before their token verifies, one per token subject
// for requests that verify.
type RateLimitConfig struct {
	PerSecond  float64 `yaml:"per_second"`
	Burst      int     `yaml:"burst"`
	MaxClients int     `yaml:"max_clients"`
}

// ConfigError is a configuration error naming the field at fault.
type ConfigError struct {
	Field string
	Msg   string
	// Err is the underlying error when there is one (e.g. a file read
	// error), so callers can tell a local I/O failure from bad content.
	Err error
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap returns the underlying error, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

func fieldErr(field, format string, a ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// ioFieldErr wraps an I/O error for field, keeping it for errors.Is/As.
func ioFieldErr(field string, err error) error {
	return &ConfigError{Field: field, Msg: err.Error(), Err: err}
}

// LoadConfig reads, parses and validates the config file at path, reading
// the policy file if one is named.
func LoadConfig(path string) (*Config, error) {
	data, err := readSmallFile(path, maxConfigSize)
	if err != nil {
		return nil, &ConfigFileError{Path: path, Err: err}
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := ParseConfig(data, dir)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ConfigFileError is a config file that could not be read (as opposed to
// one that was read and is wrong): a local failure such as a missing file
// or no free file descriptor.
type ConfigFileError struct {
	Path string
	Err  error
}

func (e *ConfigFileError) Error() string { return "config " + e.Path + ": " + e.Err.Error() }

// Unwrap returns the read error.
func (e *ConfigFileError) Unwrap() error { return e.Err }

// ParseConfig parses and validates YAML config text; dir resolves relative
// paths (and policy_file is read from it).
func ParseConfig(data []byte, dir string) (*Config, error) {
	var c Config
	if err := decodeYAMLStrict(data, &c); err != nil {
		return nil, err
	}
	c.dir = dir
	if err := c.validate(); err != nil {
		return nil, err
	}
	// The consent line must say what the YAML says: `consent revoke` edits
	// that line alone (it must work on a file that does not load), and the
	// daemon reads it alone when the rest of the file is broken.
	line, err := ParseConsentLine(data)
	if err != nil {
		return nil, fieldErr("consent", "%v", err)
	}
	if line != c.Consent {
		return nil, fieldErr("consent", "the consent line says %q but the YAML value is %q", line, c.Consent)
	}
	c.fileSum = sha256Hex(data)
	return &c, nil
}

// The shared readers (internal/cfgfile), under the names this package uses.
var (
	decodeYAMLStrict = cfgfile.DecodeStrict
	yamlError        = cfgfile.YAMLError
	readSmallFile    = cfgfile.ReadSmall
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (c *Config) validate() error {
	if c.Name != "" && !nameRE.MatchString(c.Name) {
		return fieldErr("name", "%q is not a valid name (1-64 of A-Z a-z 0-9 . _ -)", c.Name)
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fieldErr("listen", "%q is not host:port", c.Listen)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return fieldErr("tls", "set both tls.cert and tls.key, or neither for a generated self-signed certificate")
	}
	c.TLS.Cert, c.TLS.Key = c.abs(c.TLS.Cert), c.abs(c.TLS.Key)
	if c.ShareStore == "" {
		return fieldErr("share_store", "missing (file:///path/share.json or gcpsm://projects/P/secrets/S/versions/V)")
	}
	if _, err := parseStoreURL(c.ShareStore, c.dir); err != nil {
		return fieldErr("share_store", "%v", err)
	}
	if c.Group == "" {
		return fieldErr("group", "missing: the path of the group descriptor (group.json)")
	}
	c.Group = c.abs(c.Group)
	// A shareholder that verifies only raw TEE evidence against Intel's
	// and AMD's roots need not trust any token issuer (issue 14: a
	// participant may refuse one cloud's verifier in its trust base); it
	// then refuses every token. Without either, nothing could ever verify.
	if c.Verifier.Issuer == "" && !c.Verifier.TEE.Accept.Any() {
		return fieldErr("verifier.issuer", "missing: the token issuer to trust (e.g. https://confidentialcomputing.googleapis.com), or leave it empty and list raw TEE evidence kinds in verifier.tee.accept")
	}
	if c.Verifier.Audience == "" {
		return fieldErr("verifier.audience", "missing: the audience proxies ask tokens for, e.g. this daemon's URL")
	}
	if c.Verifier.MaxTokenAge < 0 || c.Verifier.MaxTokenAge > attest.MaxMaxTokenAge {
		return fieldErr("verifier.max_token_age", "%v outside 0..%v", c.Verifier.MaxTokenAge, attest.MaxMaxTokenAge)
	}
	if c.Verifier.ClockSkew < 0 || c.Verifier.ClockSkew > 5*time.Minute {
		return fieldErr("verifier.clock_skew", "%v outside 0..5m", c.Verifier.ClockSkew)
	}
	if err := c.validateTEE(); err != nil {
		return err
	}
	switch {
	case c.Policy != "" && c.PolicyFile != "":
		return fieldErr("policy", "set policy or policy_file, not both")
	case c.Policy == "" && c.PolicyFile == "":
		return fieldErr("policy", "missing: a CEL expression (see mcbn shareholder policy confidential-space)")
	case c.PolicyFile != "":
		c.PolicyFile = c.abs(c.PolicyFile)
		b, err := readSmallFile(c.PolicyFile, 64<<10)
		if err != nil {
			return ioFieldErr("policy_file", err)
		}
		c.policyText = string(b)
	default:
		c.policyText = c.Policy
	}
	switch c.Consent {
	case ConsentGranted, ConsentRevoked:
	case "":
		return fieldErr("consent", "missing: granted or revoked")
	default:
		return fieldErr("consent", "%q, want granted or revoked", c.Consent)
	}
	if err := c.validateRelease(); err != nil {
		return err
	}
	if c.AuditLog == "" {
		return fieldErr("audit_log", "missing: the path of the hash-chained audit log")
	}
	c.AuditLog = c.abs(c.AuditLog)
	if c.AuditRotateBytes < 0 || c.AuditRotateBytes > 0 && c.AuditRotateBytes < 4096 {
		return fieldErr("audit_rotate_bytes", "%d: 0 (no rotation) or at least 4096", c.AuditRotateBytes)
	}
	rl := &c.RateLimit
	switch {
	case rl.PerSecond < 0:
		return fieldErr("rate_limit.per_second", "must not be negative")
	case rl.PerSecond == 0:
		rl.PerSecond = DefaultRatePerSecond
	}
	switch {
	case rl.Burst < 0:
		return fieldErr("rate_limit.burst", "must not be negative")
	case rl.Burst == 0:
		rl.Burst = DefaultRateBurst
	}
	switch {
	case rl.MaxClients < 0:
		return fieldErr("rate_limit.max_clients", "must not be negative")
	case rl.MaxClients == 0:
		rl.MaxClients = DefaultMaxClients
	}
	switch {
	case c.MaxBodyBytes < 0 || c.MaxBodyBytes > 1<<20:
		return fieldErr("max_body_bytes", "%d outside 1..1048576", c.MaxBodyBytes)
	case c.MaxBodyBytes == 0:
		c.MaxBodyBytes = DefaultMaxBody
	}
	switch {
	case c.ReloadInterval < 0:
		return fieldErr("reload_interval", "must not be negative")
	case c.ReloadInterval == 0:
		c.ReloadInterval = DefaultReloadInterval
	}
	if c.PolicyCostLimit == 0 {
		c.PolicyCostLimit = DefaultCostLimit
	}
	switch {
	case c.MaxConnections < 0 || c.MaxConnections > 1<<16:
		return fieldErr("max_connections", "%d outside 1..65536", c.MaxConnections)
	case c.MaxConnections == 0:
		c.MaxConnections = DefaultMaxConnections
	}
	switch {
	case c.AuditRefusalsPerSecond < 0 || c.AuditRefusalsPerSecond > 10000:
		return fieldErr("audit_refusals_per_second", "%d outside 1..10000", c.AuditRefusalsPerSecond)
	case c.AuditRefusalsPerSecond == 0:
		c.AuditRefusalsPerSecond = DefaultAuditRefusalsPerSecond
	}
	if c.Metrics.Listen == nil {
		def := DefaultMetricsListen
		c.Metrics.Listen = &def
	}
	if m := *c.Metrics.Listen; m != "" {
		if _, _, err := net.SplitHostPort(m); err != nil {
			return fieldErr("metrics.listen", "%q is not host:port (or \"\" to disable metrics)", m)
		}
	}
	if c.ControlSocket != "" {
		c.ControlSocket = c.abs(c.ControlSocket)
	}
	if _, err := CompilePolicy(c.policyText, c.PolicyCostLimit); err != nil {
		field := "policy"
		if c.PolicyFile != "" {
			field = "policy_file"
		}
		return fieldErr(field, "%v", err)
	}
	return nil
}

// PolicyText returns the CEL text in force (inline or read from the file).
func (c *Config) PolicyText() string { return c.policyText }

// MetricsListen returns the metrics listener's address ("" when disabled).
func (c *Config) MetricsListen() string {
	if c.Metrics.Listen == nil {
		return DefaultMetricsListen
	}
	return *c.Metrics.Listen
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (c *Config) abs(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}
