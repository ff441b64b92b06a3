package proxy

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable the proxy reads.
const EnvPrefix = "MCBN_PROXY_"

// ParseConfig decodes a YAML config. Unknown keys are errors that name the
// key and its line.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil // an empty file: flags may still give a route
		}
		return nil, yamlError(err, reflect.TypeOf(c))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("config: more than one YAML document")
	}
	c.probeSet = hasKey(data, "probe_interval")
	return c, nil
}

func hasKey(data []byte, key string) bool {
	var n yaml.Node
	if yaml.Unmarshal(data, &n) != nil || len(n.Content) == 0 {
		return false
	}
	m := n.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// field is one setting that a flag and an environment variable can give.
type field struct {
	flag  string // flag name; the environment variable is EnvPrefix + upper(flag) with - as _
	key   string // YAML key, for messages
	usage string
	bool  bool
	set   func(c *Config, r *Route, v string) error // r is nil for global fields
	// pinned says what the field decides, for a route setting that must
	// come from the config file when there is one ("addresses" in "a
	// route's addresses come from the config file"); empty for tuning.
	pinned string
}

// What pinned route settings decide, in the words of the error.
const (
	pinAddresses = "addresses come"
	pinKey       = "PSK and identity come"
	pinTLS       = "TLS settings come"
	pinDTLS      = "DTLS settings come"
	pinName      = "name and transport come"
)

// EnvName is the environment variable for a flag, e.g. psk-file ->
// MCBN_PROXY_PSK_FILE.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// RouteEnvName is the environment variable for a setting of the named
// route, e.g. ("web", "psk-file") -> MCBN_PROXY_ROUTE_WEB_PSK_FILE.
func RouteEnvName(route, flag string) string {
	n := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		if 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '_'
	}, route)
	return EnvPrefix + "ROUTE_" + n + "_" + strings.TrimPrefix(EnvName(flag), EnvPrefix)
}

func setDur(dst *Duration) func(*Config, *Route, string) error {
	return func(_ *Config, _ *Route, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 10s)", v)
		}
		*dst = Duration(d)
		return nil
	}
}

func parseInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", v)
	}
	return n, nil
}

func parseList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

var globalFields = []field{
	{flag: "admin", key: "admin", usage: "admin listener host:port for /healthz, /readyz, /status, /metrics (empty: off)",
		set: func(c *Config, _ *Route, v string) error { c.Admin = v; return nil }},
	{flag: "log-format", key: "log_format", usage: "log format: text or json (default text)",
		set: func(c *Config, _ *Route, v string) error { c.LogFormat = v; return nil }},
	{flag: "log-level", key: "log_level", usage: "log level: debug, info, warn or error (default info)",
		set: func(c *Config, _ *Route, v string) error { c.LogLevel = v; return nil }},
	{flag: "drain-timeout", key: "drain_timeout", usage: "on SIGTERM, how long open tunnels may finish (default 30s)",
		set: func(c *Config, _ *Route, v string) error { return setDur(&c.DrainTimeout)(c, nil, v) }},
	{flag: "probe-interval", key: "probe_interval", usage: "how often to test-dial each TCP route's destination for /status; 0 turns it off (default 10s)",
		set: func(c *Config, _ *Route, v string) error {
			c.probeSet = true
			return setDur(&c.ProbeInterval)(c, nil, v)
		}},
}

var routeFields = []field{
	{flag: "name", key: "name", usage: "route name, used in logs, metrics and /status (default route1)",
		set: func(_ *Config, r *Route, v string) error { r.Name = v; return nil }, pinned: pinName},
	{flag: "transport", key: "transport", usage: "tcp or udp (default: from the listen scheme)",
		set: func(_ *Config, r *Route, v string) error { r.Transport = v; return nil }, pinned: pinName},
	{flag: "listen", key: "listen", usage: "listen address: client tcp://host:port or udp://..., server tls://host:port or dtls://...",
		set: func(_ *Config, r *Route, v string) error { r.Listen = v; return nil }, pinned: pinAddresses},
	{flag: "connect", key: "connect", usage: "destination: client tls://server:port or dtls://..., server tcp://backend:port or udp://...",
		set: func(_ *Config, r *Route, v string) error { r.Connect = v; return nil }, pinned: pinAddresses},
	{flag: "allow-public-listen", key: "allow_public_listen", bool: true, usage: "client: allow a plain listener on an address other than loopback (anyone who reaches it gets a tunnel)",
		set: func(_ *Config, r *Route, v string) error {
			b, err := strconv.ParseBool(v)
			r.AllowPublicListen = b
			return err
		}, pinned: pinAddresses},
	{flag: "identity", key: "identity", usage: "PSK identity (default Client_identity, or the first identity of --psk-secrets)",
		set: func(_ *Config, r *Route, v string) error { r.Identity = v; return nil }, pinned: pinKey},
	{flag: "psk", key: "psk.hex", usage: "PSK in hex (visible in ps: prefer --psk-file or --psk-env)",
		set: func(_ *Config, r *Route, v string) error { r.PSK.Hex = v; return nil }, pinned: pinKey},
	{flag: "psk-env", key: "psk.env", usage: "name of an environment variable holding the PSK in hex",
		set: func(_ *Config, r *Route, v string) error { r.PSK.Env = v; return nil }, pinned: pinKey},
	{flag: "psk-file", key: "psk.file", usage: "file holding the PSK in hex (mode 0600 or stricter); re-read on SIGHUP",
		set: func(_ *Config, r *Route, v string) error { r.PSK.File = v; return nil }, pinned: pinKey},
	{flag: "psk-secrets", key: "psk.secrets", usage: "stunnel PSKsecrets file, IDENTITY:KEY a line; re-read on SIGHUP",
		set: func(_ *Config, r *Route, v string) error { r.PSK.Secrets = v; return nil }, pinned: pinKey},
	{flag: "psk-odd-hex-as-text", key: "psk.odd_hex_as_text", bool: true, usage: "use a --psk-secrets key of an odd number of hex digits as ASCII text (stunnel's rule) instead of refusing it",
		set: func(_ *Config, r *Route, v string) error {
			b, err := strconv.ParseBool(v)
			r.PSK.OddHexAsText = b
			return err
		}, pinned: pinKey},
	{flag: "psk-source", key: "psk.source", usage: "a registered PSK source kind (its options come from the config file)",
		set: func(_ *Config, r *Route, v string) error { r.PSK.Source = v; return nil }, pinned: pinKey},
	{flag: "tls-min-version", key: "tls.min_version", usage: "lowest TLS version: 1.2 or 1.3 (default 1.2)",
		set: func(_ *Config, r *Route, v string) error { r.TLS.MinVersion = v; return nil }, pinned: pinTLS},
	{flag: "tls-max-version", key: "tls.max_version", usage: "highest TLS version: 1.2 or 1.3 (default 1.3)",
		set: func(_ *Config, r *Route, v string) error { r.TLS.MaxVersion = v; return nil }, pinned: pinTLS},
	{flag: "tls-cipher-suites", key: "tls.cipher_suites", usage: "comma-separated TLS suites, OpenSSL or IANA names (default: tlspsk's)",
		set: func(_ *Config, r *Route, v string) error { r.TLS.CipherSuites = parseList(v); return nil }, pinned: pinTLS},
	{flag: "tls-groups", key: "tls.groups", usage: "comma-separated key exchange groups in preference order: X25519MLKEM768, X25519, P-256 (default X25519MLKEM768,X25519,P-256)",
		set: func(_ *Config, r *Route, v string) error { r.TLS.Groups = parseList(v); return nil }, pinned: pinTLS},
	{flag: "tls-identity-hint", key: "tls.identity_hint", usage: "TLS 1.2 PSK identity hint a server sends",
		set: func(_ *Config, r *Route, v string) error { r.TLS.IdentityHint = v; return nil }, pinned: pinTLS},
	{flag: "tls-psk-hash", key: "tls.psk_hash", usage: "hash a TLS 1.3 PSK is tied to: sha256 or sha384 (default sha256)",
		set: func(_ *Config, r *Route, v string) error { r.TLS.PSKHash = v; return nil }, pinned: pinTLS},
	{flag: "tls-allow-psk-only", key: "tls.allow_psk_only", bool: true, usage: "allow PSK without (EC)DHE, i.e. without forward secrecy",
		set: func(_ *Config, r *Route, v string) error {
			b, err := strconv.ParseBool(v)
			r.TLS.AllowPSKOnly = b
			return err
		}, pinned: pinTLS},
	{flag: "tls-require-forward-secrecy", key: "tls.require_forward_secrecy", bool: true, usage: "refuse TLS 1.2 plain PSK suites (no forward secrecy) even from peers that offer nothing else",
		set: func(_ *Config, r *Route, v string) error {
			b, err := strconv.ParseBool(v)
			r.TLS.RequireForwardSecrecy = b
			return err
		}, pinned: pinTLS},
	{flag: "dtls-cipher-suites", key: "dtls.cipher_suites", usage: "comma-separated DTLS suites (default " + strings.Join(defaultDTLSSuiteNames(), ",") + ")",
		set: func(_ *Config, r *Route, v string) error { r.DTLS.CipherSuites = parseList(v); return nil }, pinned: pinDTLS},
	{flag: "dtls-connection-id", key: "dtls.connection_id", bool: true, usage: "use DTLS connection IDs, RFC 9146 (default true)",
		set: func(_ *Config, r *Route, v string) error {
			b, err := strconv.ParseBool(v)
			r.DTLS.ConnectionID = &b
			return err
		}, pinned: pinDTLS},
	{flag: "dtls-identity-hint", key: "dtls.identity_hint", usage: "DTLS PSK identity hint a server sends",
		set: func(_ *Config, r *Route, v string) error { r.DTLS.IdentityHint = v; return nil }, pinned: pinDTLS},
	{flag: "dtls-flight-interval", key: "dtls.flight_interval", usage: "DTLS handshake retransmission interval (default 1s)",
		set: func(_ *Config, r *Route, v string) error { return setDur(&r.DTLS.FlightInterval)(nil, r, v) }},
	{flag: "dtls-mtu", key: "dtls.mtu", usage: "DTLS handshake MTU in bytes (default 1200)",
		set: func(_ *Config, r *Route, v string) error {
			n, err := parseInt(v)
			r.DTLS.MTU = n
			return err
		}},
	{flag: "handshake-timeout", key: "timeouts.handshake", usage: "bound on a TLS or DTLS handshake (default 10s)",
		set: func(_ *Config, r *Route, v string) error { return setDur(&r.Timeouts.Handshake)(nil, r, v) }},
	{flag: "dial-timeout", key: "timeouts.dial", usage: "bound on connecting to the destination (default 5s)",
		set: func(_ *Config, r *Route, v string) error { return setDur(&r.Timeouts.Dial)(nil, r, v) }},
	{flag: "first-byte-timeout", key: "timeouts.first_byte", usage: "server: close a connection that sends no byte of its handshake for this long (default 5s)",
		set: func(_ *Config, r *Route, v string) error { return setDur(&r.Timeouts.FirstByte)(nil, r, v) }},
	{flag: "idle-timeout", key: "timeouts.idle", usage: "close a tunnel or UDP session idle this long (default: TCP never, UDP 2m)",
		set: func(_ *Config, r *Route, v string) error {
			var d Duration
			err := setDur(&d)(nil, r, v)
			r.Timeouts.Idle = &d
			return err
		}},
	{flag: "max-connections", key: "limits.max_connections", usage: "TCP tunnels open at once (default 4096)",
		set: func(_ *Config, r *Route, v string) error {
			n, err := parseInt(v)
			r.Limits.MaxConnections = n
			return err
		}},
	{flag: "max-sessions", key: "limits.max_sessions", usage: "UDP sessions open at once (default 1024)",
		set: func(_ *Config, r *Route, v string) error {
			n, err := parseInt(v)
			r.Limits.MaxSessions = n
			return err
		}},
	{flag: "max-pending-handshakes", key: "limits.max_pending_handshakes", usage: "server: TLS/DTLS handshakes in progress at once; TLS: when full the oldest is dropped; DTLS: new ones are dropped (default 1024)",
		set: func(_ *Config, r *Route, v string) error {
			n, err := parseInt(v)
			r.Limits.MaxPendingHandshakes = n
			return err
		}},
	{flag: "session-queue", key: "limits.session_queue", usage: "datagrams a new UDP session queues during its handshake (default 64)",
		set: func(_ *Config, r *Route, v string) error {
			n, err := parseInt(v)
			r.Limits.SessionQueue = n
			return err
		}},
}

// flagValue records a flag in a map so that only flags given on the
// command line override the config file and the environment.
type flagValue struct {
	name   string
	isBool bool
	vals   map[string]string
}

func (f *flagValue) String() string   { return "" }
func (f *flagValue) IsBoolFlag() bool { return f.isBool }
func (f *flagValue) Set(v string) error {
	f.vals[f.name] = v
	return nil
}

// RegisterFlags defines --config and one flag per setting on fs. The
// returned map holds the flags given, by name, after fs.Parse.
func RegisterFlags(fs *flag.FlagSet) map[string]string {
	vals := map[string]string{}
	fs.Var(&flagValue{name: "config", vals: vals}, "config", "YAML config file with routes (env "+EnvName("config")+")")
	for _, f := range append(append([]field(nil), globalFields...), routeFields...) {
		fs.Var(&flagValue{name: f.flag, isBool: f.bool, vals: vals}, f.flag, f.usage+" (env "+EnvName(f.flag)+", yaml "+f.key+")")
	}
	return vals
}

// LoadOptions are the inputs of LoadConfig besides the mode.
type LoadOptions struct {
	Flags  map[string]string            // from RegisterFlags
	Getenv func(string) (string, bool)  // nil: os.LookupEnv
	Read   func(string) ([]byte, error) // nil: os.ReadFile
	// Environ lists the environment, to refuse MCBN_PROXY_* variables
	// that are no setting (a typo would otherwise be ignored). nil:
	// os.Environ when Getenv is nil too; no check when only Getenv is set.
	Environ func() []string
}

// LoadConfig builds and validates the config of a proxy in mode from, in
// increasing precedence: defaults, the --config file, environment
// variables, flags. Flags and MCBN_PROXY_<FLAG> variables that describe a
// route apply to the only route (creating it when there is no file);
// MCBN_PROXY_ROUTE_<NAME>_<FLAG> applies to the named route.
//
// With a config file, the settings that decide where traffic goes and with
// which key (addresses, PSK, identity, TLS and DTLS settings) come from the
// file only: a flag or variable for one of them is an error. The file is
// what participants approve (baked into the image or pinned by the release
// policy), while flags and the environment are the operator's, and the
// operator is not trusted: "--connect tcp://attacker" on a server proxy
// would hand it the decrypted traffic. Timeouts, limits, logging and the
// admin listener may still be tuned.
func LoadConfig(mode Mode, o LoadOptions) (*Config, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	read := o.Read
	if read == nil {
		read = os.ReadFile
	}
	env := func(name string) (string, bool) {
		v, ok := getenv(name)
		return v, ok && v != ""
	}
	lookup := func(flag string) (string, string, bool) {
		if v, ok := o.Flags[flag]; ok {
			return v, "--" + flag, true
		}
		if v, ok := env(EnvName(flag)); ok {
			return v, EnvName(flag), true
		}
		return "", "", false
	}
	c := &Config{}
	path, pathFrom, fromFile := lookup("config")
	if fromFile {
		data, err := read(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if c, err = ParseConfig(data); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if c.Mode != "" {
			if err := checkMode(c.Mode); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	if c.Mode != "" && c.Mode != mode {
		return nil, fmt.Errorf("mode: the config file is for a %s proxy, but this is mcbn proxy %s", c.Mode, mode)
	}
	c.Mode = mode
	for _, f := range globalFields {
		if v, from, ok := lookup(f.flag); ok {
			if err := f.set(c, nil, v); err != nil {
				return nil, fmt.Errorf("%s (%s): %v", f.key, from, err)
			}
		}
	}
	var given []string
	for _, f := range routeFields {
		if _, from, ok := lookup(f.flag); ok {
			if fromFile && f.pinned != "" {
				return nil, pinnedError(from, pathFrom, f)
			}
			given = append(given, from)
		}
	}
	if len(given) > 0 {
		switch len(c.Routes) {
		case 0:
			c.Routes = []Route{{}}
		case 1:
		default:
			return nil, fmt.Errorf("%s set one route, but the config file has %d routes: use MCBN_PROXY_ROUTE_<NAME>_... or edit the file", strings.Join(given, ", "), len(c.Routes))
		}
		for _, f := range routeFields {
			if v, from, ok := lookup(f.flag); ok {
				if err := f.set(c, &c.Routes[0], v); err != nil {
					return nil, fmt.Errorf("%s (%s): %v", f.key, from, err)
				}
			}
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("route%d", i+1)
		}
		for _, f := range routeFields {
			name := RouteEnvName(r.Name, f.flag)
			if v, ok := env(name); ok {
				if fromFile && f.pinned != "" {
					return nil, fmt.Errorf("routes[%d] (%s): %w", i, r.Name, pinnedError(name, pathFrom, f))
				}
				if err := f.set(c, r, v); err != nil {
					return nil, fmt.Errorf("routes[%d] (%s): %s (%s): %v", i, r.Name, f.key, name, err)
				}
			}
		}
	}
	environ := o.Environ
	if environ == nil && o.Getenv == nil {
		environ = os.Environ
	}
	if environ != nil {
		if err := checkEnvNames(environ(), c); err != nil {
			return nil, err
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if fromFile {
		c.reload = func() (*Config, error) { return LoadConfig(mode, o) }
	}
	return c, nil
}

// pinnedError refuses a flag or variable (from) that would change a
// route setting the config file (named by configFrom) decides.
func pinnedError(from, configFrom string, f field) error {
	if !strings.HasPrefix(configFrom, "--") {
		configFrom = "--config (" + configFrom + ")"
	}
	return fmt.Errorf("%s conflicts with %s: a route's %s from the config file, which the release policy pins (set %s in the file)", from, configFrom, f.pinned, f.key)
}

// checkEnvNames refuses an MCBN_PROXY_* variable that names no setting, or
// a route that does not exist: a misspelt MCBN_PROXY_PSK_FLIE would
// otherwise leave the proxy on another key source without a word.
func checkEnvNames(environ []string, c *Config) error {
	known := map[string]bool{EnvName("config"): true}
	for _, f := range globalFields {
		known[EnvName(f.flag)] = true
	}
	for _, f := range routeFields {
		known[EnvName(f.flag)] = true
		for _, r := range c.Routes {
			known[RouteEnvName(r.Name, f.flag)] = true
		}
	}
	for _, r := range c.Routes {
		if r.PSK.Env != "" {
			known[r.PSK.Env] = true // a key variable may carry our prefix
		}
		for _, e := range r.PSK.Epochs {
			if e.Env != "" {
				known[e.Env] = true
			}
		}
	}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || known[name] {
			continue
		}
		if strings.HasPrefix(name, EnvPrefix+"ROUTE_") {
			return fmt.Errorf("environment: %s names no route and setting of this config (MCBN_PROXY_ROUTE_<NAME>_<FLAG>, NAME one of the routes' names in upper case)", name)
		}
		return fmt.Errorf("environment: %s is not a setting of mcbn proxy (run 'mcbn proxy %s --help' for the variables)", name, c.Mode)
	}
	return nil
}
