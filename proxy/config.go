package proxy

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Mode says which side of the tunnel a proxy is.
type Mode string

// The two modes.
const (
	ModeClient Mode = "client" // plain listener, tunnel on the connect side
	ModeServer Mode = "server" // tunnel listener, plain connect side
)

// DefaultIdentity is the PSK identity OpenSSL uses when none is given.
const DefaultIdentity = "Client_identity"

// Defaults.
const (
	DefaultDrainTimeout     = 30 * time.Second
	DefaultProbeInterval    = 10 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 5 * time.Second
	DefaultUDPIdleTimeout   = 2 * time.Minute
	DefaultMaxConnections   = 4096
	DefaultMaxSessions      = 1024
	DefaultSessionQueue     = 64
	DefaultFlightInterval   = time.Second
	// DefaultFirstByteTimeout bounds how long a server proxy waits for the
	// first byte of a TLS handshake: a connection that sends nothing is
	// closed long before the handshake timeout.
	DefaultFirstByteTimeout = 5 * time.Second
	// DefaultMaxPendingHandshakes bounds the TLS or DTLS handshakes in
	// progress on one server route, apart from max_connections and
	// max_sessions (which count established tunnels only).
	DefaultMaxPendingHandshakes = 1024
)

// Config is a whole proxy process: global settings and its routes.
type Config struct {
	Mode          Mode     `yaml:"mode"`
	Admin         string   `yaml:"admin"`
	LogFormat     string   `yaml:"log_format"`
	LogLevel      string   `yaml:"log_level"`
	DrainTimeout  Duration `yaml:"drain_timeout"`
	ProbeInterval Duration `yaml:"probe_interval"`
	Routes        []Route  `yaml:"routes"`

	probeSet bool // probe_interval given, so 0 means "off"
	// reload re-reads the config as LoadConfig read it (set when it came
	// from a file): SIGHUP applies the routes' psk.epochs from it.
	reload func() (*Config, error)
}

// Route is one tunnel: a listener, a destination and a PSK.
type Route struct {
	Name      string     `yaml:"name"`
	Transport string     `yaml:"transport"`
	Listen    string     `yaml:"listen"`
	Connect   string     `yaml:"connect"`
	Identity  string     `yaml:"identity"`
	PSK       PSKConfig  `yaml:"psk"`
	TLS       TLSConfig  `yaml:"tls"`
	DTLS      DTLSConfig `yaml:"dtls"`
	Timeouts  Timeouts   `yaml:"timeouts"`
	Limits    Limits     `yaml:"limits"`
	// AllowPublicListen lets a client proxy's plain listener bind an
	// address other than loopback. Without it such a listen is an error:
	// whoever reaches that listener gets a tunnel to the server app.
	AllowPublicListen bool `yaml:"allow_public_listen"`
	// Preconnect (TCP): on a client route, how many handshaken tunnels to
	// keep ready for new local connections (0: none); on a server route,
	// any value above 0 makes it dial the backend only when a tunnel's
	// first application record arrives (see preconnect.go).
	Preconnect int `yaml:"preconnect"`

	listen, connect Endpoint // parsed by validate
	external        bool     // source given by Options.Sources
}

// PSKConfig names exactly one key source.
type PSKConfig struct {
	Hex     string    `yaml:"hex"`
	Env     string    `yaml:"env"`
	File    string    `yaml:"file"`
	Secrets string    `yaml:"secrets"`
	Source  string    `yaml:"source"`
	Options yaml.Node `yaml:"options"`
	// OddHexAsText makes a PSKsecrets key made only of an odd number of hex
	// digits its ASCII bytes (stunnel's rule) instead of an error.
	OddHexAsText bool `yaml:"odd_hex_as_text"`
	// Epochs, instead of the one key source above, gives one key source per
	// epoch: the PSK identity becomes IDENTITY/EPOCH (key rotation, see
	// epochs.go and docs/key-rotation.md).
	Epochs []EpochConfig `yaml:"epochs"`
	// Rollover is how long an epoch is still accepted after a newer one
	// became ready (default 10m); only with epochs.
	Rollover Duration `yaml:"rollover"`
}

// TLSConfig tunes TCP routes (tlspsk).
type TLSConfig struct {
	MinVersion   string   `yaml:"min_version"`
	MaxVersion   string   `yaml:"max_version"`
	CipherSuites []string `yaml:"cipher_suites"`
	// Groups are the key exchange groups in preference order (nil: tlspsk's
	// X25519MLKEM768, X25519, P-256).
	Groups       []string `yaml:"groups"`
	IdentityHint string   `yaml:"identity_hint"`
	PSKHash      string   `yaml:"psk_hash"`
	AllowPSKOnly bool     `yaml:"allow_psk_only"`
	// RequireForwardSecrecy refuses the TLS 1.2 plain PSK suites, which a
	// server otherwise accepts from a client that offers nothing better.
	RequireForwardSecrecy bool `yaml:"require_forward_secrecy"`
}

// DTLSConfig tunes UDP routes (tlspsk DTLS 1.2).
type DTLSConfig struct {
	CipherSuites   []string `yaml:"cipher_suites"`
	ConnectionID   *bool    `yaml:"connection_id"`
	IdentityHint   string   `yaml:"identity_hint"`
	FlightInterval Duration `yaml:"flight_interval"`
	MTU            int      `yaml:"mtu"`
}

// Timeouts of a route. Idle is off for TCP unless set; UDP sessions
// always expire (default 2m).
type Timeouts struct {
	Handshake Duration  `yaml:"handshake"`
	Dial      Duration  `yaml:"dial"`
	Idle      *Duration `yaml:"idle"`
	// FirstByte bounds the wait for a TLS peer's first byte on a server
	// proxy (default 5s).
	FirstByte Duration `yaml:"first_byte"`
}

// Limits of a route.
type Limits struct {
	MaxConnections int `yaml:"max_connections"`
	MaxSessions    int `yaml:"max_sessions"`
	SessionQueue   int `yaml:"session_queue"`
	// MaxPendingHandshakes bounds the handshakes in progress on a server
	// route; when full, the oldest is dropped to admit a new one.
	MaxPendingHandshakes int `yaml:"max_pending_handshakes"`
}

// Duration is a time.Duration written as "10s", "1m30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 10s or 2m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ListenEndpoint and ConnectEndpoint are the parsed addresses (after
// validation).
func (r *Route) ListenEndpoint() Endpoint  { return r.listen }
func (r *Route) ConnectEndpoint() Endpoint { return r.connect }

// IdleTimeout is the effective idle timeout (0: none).
func (r *Route) IdleTimeout() time.Duration {
	if r.Timeouts.Idle == nil {
		return 0
	}
	return r.Timeouts.Idle.D()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// fieldError names the route and field an error is about.
func fieldError(i int, r *Route, field string, format string, a ...any) error {
	return fmt.Errorf("routes[%d] (%s): %s: %s", i, r.Name, field, fmt.Sprintf(format, a...))
}

// applyDefaults fills what the user left out.
func (c *Config) applyDefaults() {
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = Duration(DefaultDrainTimeout)
	}
	if c.ProbeInterval == 0 && !c.probeSet {
		c.ProbeInterval = Duration(DefaultProbeInterval)
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("route%d", i+1)
		}
		if r.Timeouts.Handshake == 0 {
			r.Timeouts.Handshake = Duration(DefaultHandshakeTimeout)
		}
		if r.Timeouts.Dial == 0 {
			r.Timeouts.Dial = Duration(DefaultDialTimeout)
		}
		if r.Timeouts.FirstByte == 0 {
			r.Timeouts.FirstByte = Duration(DefaultFirstByteTimeout)
		}
		if r.Limits.MaxPendingHandshakes == 0 {
			r.Limits.MaxPendingHandshakes = DefaultMaxPendingHandshakes
		}
		if r.Limits.MaxConnections == 0 {
			r.Limits.MaxConnections = DefaultMaxConnections
		}
		if r.Limits.MaxSessions == 0 {
			r.Limits.MaxSessions = DefaultMaxSessions
		}
		if r.Limits.SessionQueue == 0 {
			r.Limits.SessionQueue = DefaultSessionQueue
		}
		if r.DTLS.FlightInterval == 0 {
			r.DTLS.FlightInterval = Duration(DefaultFlightInterval)
		}
		if r.DTLS.ConnectionID == nil {
			t := true
			r.DTLS.ConnectionID = &t
		}
		if r.TLS.MinVersion == "" {
			r.TLS.MinVersion = "1.2"
		}
		if r.TLS.MaxVersion == "" {
			r.TLS.MaxVersion = "1.3"
		}
		if r.TLS.PSKHash == "" {
			r.TLS.PSKHash = "sha256"
		}
	}
}

// Validate applies defaults and checks everything that can be checked
// without touching the network or the PSK sources. Errors name the field.
func (c *Config) Validate() error {
	c.applyDefaults()
	if err := checkMode(c.Mode); err != nil {
		return err
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format: %q is not text or json", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log_level: %v", err)
	}
	if c.DrainTimeout < 0 {
		return errors.New("drain_timeout: must not be negative")
	}
	if c.ProbeInterval < 0 {
		return errors.New("probe_interval: must not be negative (0 turns probing off)")
	}
	var admin Endpoint
	if c.Admin != "" {
		e, err := ParseEndpoint("tcp://" + c.Admin)
		if err != nil {
			return fmt.Errorf("admin: %v", err)
		}
		admin = e
	}
	if len(c.Routes) == 0 {
		return errors.New("routes: none configured (give --listen, --connect and a PSK, or a --config file with routes)")
	}
	names := map[string]int{}
	for i := range c.Routes {
		r := &c.Routes[i]
		if !nameRE.MatchString(r.Name) {
			return fieldError(i, r, "name", "%q: use letters, digits, '_', '.', '-' (at most 63)", r.Name)
		}
		if j, dup := names[r.Name]; dup {
			return fieldError(i, r, "name", "the same name as routes[%d]", j)
		}
		names[r.Name] = i
		if err := c.validateRoute(i, r); err != nil {
			return err
		}
		for j := 0; j < i; j++ {
			if r.listen.overlaps(c.Routes[j].listen) {
				return fieldError(i, r, "listen", "%s overlaps the listener of routes[%d] (%s)", r.Listen, j, c.Routes[j].Listen)
			}
		}
		if c.Admin != "" && r.listen.overlaps(admin) {
			return fieldError(i, r, "listen", "%s overlaps the admin listener %s", r.Listen, c.Admin)
		}
	}
	return nil
}

func (c *Config) validateRoute(i int, r *Route) error {
	if r.Listen == "" {
		return fieldError(i, r, "listen", "missing (e.g. %s)", exampleListen(c.Mode))
	}
	l, err := ParseEndpoint(r.Listen)
	if err != nil {
		return fieldError(i, r, "listen", "%v", err)
	}
	if r.Connect == "" {
		return fieldError(i, r, "connect", "missing")
	}
	d, err := ParseEndpoint(r.Connect)
	if err != nil {
		return fieldError(i, r, "connect", "%v", err)
	}
	if c.Mode == ModeServer && !l.Secure() {
		return fieldError(i, r, "listen", "a server proxy listens for tunnels: use tls:// or dtls://, not %s://", l.Scheme)
	}
	if c.Mode == ModeServer && d.Secure() {
		return fieldError(i, r, "connect", "a server proxy connects to a plain backend: use tcp:// or udp://, not %s://", d.Scheme)
	}
	if c.Mode == ModeClient && l.Secure() {
		return fieldError(i, r, "listen", "a client proxy listens for plain traffic: use tcp:// or udp://, not %s://", l.Scheme)
	}
	if c.Mode == ModeClient && !d.Secure() {
		return fieldError(i, r, "connect", "a client proxy connects to a server proxy: use tls:// or dtls://, not %s://", d.Scheme)
	}
	if l.Network() != d.Network() {
		return fieldError(i, r, "connect", "%s is %s but listen %s is %s", r.Connect, d.Network(), r.Listen, l.Network())
	}
	switch r.Transport {
	case "":
		r.Transport = l.Network()
	case "tcp", "udp":
		if r.Transport != l.Network() {
			return fieldError(i, r, "transport", "%q does not match listen %s", r.Transport, r.Listen)
		}
	default:
		return fieldError(i, r, "transport", "%q is not tcp or udp", r.Transport)
	}
	if d.Host == "" || d.Port == 0 {
		return fieldError(i, r, "connect", "%q needs a host and a non-zero port", r.Connect)
	}
	r.listen, r.connect = l, d
	// A client proxy's plain listener is the entrance to the server app:
	// whoever can connect to it gets a tunnel. Only loopback is safe to
	// assume; anything else must be asked for in the (pinned) route config.
	if c.Mode == ModeClient && !r.AllowPublicListen && !isLoopbackHost(l.Host) {
		return fieldError(i, r, "listen", "%s is not a loopback address: a client proxy hands decrypted traffic to whoever connects to it; listen on 127.0.0.1 or ::1, or set allow_public_listen: true on the route", r.Listen)
	}
	if r.AllowPublicListen && c.Mode == ModeServer {
		return fieldError(i, r, "allow_public_listen", "only for a client proxy's plain listener")
	}
	if r.Preconnect < 0 || r.Preconnect > maxPreconnect || (r.Preconnect > 0 && r.Transport != "tcp") {
		return fieldError(i, r, "preconnect", "%d: use 0 to %d, on a TCP route", r.Preconnect, maxPreconnect)
	}
	if !r.external {
		if err := validatePSK(i, r); err != nil {
			return err
		}
	}
	if len(r.Identity) > 65535 || strings.ContainsAny(r.Identity, "\x00\n\r") {
		return fieldError(i, r, "identity", "must be at most 65535 bytes, without NUL or line breaks")
	}
	if r.Timeouts.Handshake < 0 || r.Timeouts.Dial < 0 || r.Timeouts.FirstByte < 0 || (r.Timeouts.Idle != nil && *r.Timeouts.Idle < 0) {
		return fieldError(i, r, "timeouts", "must not be negative")
	}
	if r.Limits.MaxConnections < 0 || r.Limits.MaxSessions < 0 || r.Limits.SessionQueue < 0 || r.Limits.MaxPendingHandshakes < 0 {
		return fieldError(i, r, "limits", "must not be negative")
	}
	if r.Transport == "tcp" {
		if _, err := tlsSettings(r); err != nil {
			return fieldError(i, r, "tls", "%v", err)
		}
	} else {
		if _, err := dtlsSuites(r.DTLS.CipherSuites); err != nil {
			return fieldError(i, r, "dtls.cipher_suites", "%v", err)
		}
		if r.DTLS.MTU != 0 && (r.DTLS.MTU < 256 || r.DTLS.MTU > 65535) {
			return fieldError(i, r, "dtls.mtu", "%d is out of range 256..65535", r.DTLS.MTU)
		}
		if r.DTLS.FlightInterval < 0 {
			return fieldError(i, r, "dtls.flight_interval", "must not be negative")
		}
	}
	return nil
}

func validatePSK(i int, r *Route) error {
	if len(r.PSK.Epochs) > 0 || r.PSK.Rollover != 0 {
		return validateEpochs(i, r)
	}
	return validateKeySource(i, r, &r.PSK, "psk")
}

// validateKeySource checks one key source: the route's psk block, or one
// entry of psk.epochs (at is the field path, "psk" or "psk.epochs[1]").
func validateKeySource(i int, r *Route, p *PSKConfig, at string) error {
	var set []string
	for _, f := range []struct{ name, v string }{
		{at + ".hex", p.Hex}, {at + ".env", p.Env}, {at + ".file", p.File}, {at + ".secrets", p.Secrets}, {at + ".source", p.Source},
	} {
		if f.v != "" {
			set = append(set, f.name)
		}
	}
	switch {
	case len(set) == 0 && at == "psk":
		return fieldError(i, r, "psk", "missing: set one of psk.file, psk.secrets, psk.env, psk.hex, psk.source or psk.epochs (flags --psk-file, --psk-secrets, --psk-env, --psk)")
	case len(set) == 0:
		return fieldError(i, r, at, "no key source: set one of hex, env, file, secrets or source")
	case len(set) > 1:
		return fieldError(i, r, at, "%s are all set; choose one", strings.Join(set, " and "))
	}
	if p.OddHexAsText && p.Secrets == "" {
		return fieldError(i, r, at+".odd_hex_as_text", "only used with %s.secrets", at)
	}
	if p.Options.Kind != 0 && p.Source == "" {
		return fieldError(i, r, at+".options", "only used with %s.source", at)
	}
	if p.Hex != "" {
		if _, err := ParseHexKey(p.Hex); err != nil {
			return fieldError(i, r, at+".hex", "%v", err)
		}
	}
	if p.Source != "" {
		if _, ok := sourceFactory(p.Source); !ok {
			return fieldError(i, r, at+".source", "unknown kind %q (known: %s)", p.Source, strings.Join(append([]string{"hex", "env", "file", "secrets"}, sourceKinds()...), ", "))
		}
	}
	return nil
}

// checkMode names the valid modes when the config has another.
func checkMode(m Mode) error {
	switch m {
	case ModeClient, ModeServer:
		return nil
	}
	return fmt.Errorf("mode: unknown mode %q (want client or server)", string(m))
}

func exampleListen(m Mode) string {
	if m == ModeServer {
		return "tls://:8443"
	}
	return "tcp://127.0.0.1:8080"
}

// adminAddr is checked by Validate; this resolves it for net.Listen.
func (c *Config) adminAddr() string {
	if c.Admin == "" {
		return ""
	}
	host, port, _ := net.SplitHostPort(c.Admin)
	return net.JoinHostPort(host, port)
}
