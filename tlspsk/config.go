package tlspsk

import (
	"crypto"
	"crypto/rand"
	"errors"
	"io"
	"time"
)

// Protocol versions.
const (
	VersionTLS12 uint16 = 0x0303
	VersionTLS13 uint16 = 0x0304
)

// CurveID is a TLS named group.
type CurveID uint16

// Key exchange groups.
const (
	CurveP256      CurveID = 23
	X25519         CurveID = 29
	X25519MLKEM768 CurveID = 0x11EC
)

// String returns the IANA name of the group.
func (c CurveID) String() string {
	switch c {
	case CurveP256:
		return "P-256"
	case X25519:
		return "X25519"
	case X25519MLKEM768:
		return "X25519MLKEM768"
	case 0:
		return "none"
	}
	return "unknown"
}

// DefaultIdentity is the identity OpenSSL uses when none is given.
const DefaultIdentity = "Client_identity"

// Config configures a client or server. A Config may be shared by many
// connections and must not be modified once in use.
type Config struct {
	// Client: the identity and key it offers. A server with no GetKey
	// accepts exactly this identity and key.
	Identity string
	Key      []byte
	// GetKey looks up the key for an identity. Returning (nil, nil) means
	// "unknown identity" (alert unknown_psk_identity).
	GetKey func(identity string) ([]byte, error)
	// IdentityHint is the TLS 1.2 server hint (optional, unused by 1.3).
	IdentityHint string
	// PSKHash is the hash the PSK is tied to: crypto.SHA256 (default) or
	// crypto.SHA384. TLS 1.3 suites are filtered by it.
	PSKHash crypto.Hash
	// MinVersion and MaxVersion bound the protocol version; zero means
	// VersionTLS12 and VersionTLS13.
	MinVersion, MaxVersion uint16
	// CipherSuites in preference order; nil means the defaults.
	CipherSuites []uint16
	// CurvePreferences in preference order; nil means X25519MLKEM768,
	// X25519, P-256.
	CurvePreferences []CurveID
	// AllowPSKOnly permits psk_ke (no forward secrecy). Off by default.
	// For TLS 1.2 it makes a client offer the plain PSK suites (RFC 4279,
	// no forward secrecy) after ECDHE_PSK; a client also offers the ones
	// named in CipherSuites. A TLS 1.2 server accepts plain PSK suites by
	// default, but only from clients that offer no ECDHE_PSK suite it
	// shares (like openssl s_client -cipher PSK-AES128-GCM-SHA256); see
	// RequireForwardSecrecy.
	AllowPSKOnly bool
	// RequireForwardSecrecy refuses the TLS 1.2 plain PSK suites in both
	// roles, even when named in CipherSuites. It cannot be combined with
	// AllowPSKOnly.
	RequireForwardSecrecy bool
	// KeyLogWriter receives secrets in the NSS key log format, for
	// Wireshark. It defeats the security of the connection: debug only.
	KeyLogWriter io.Writer
	// Rand is the source of randomness; nil means crypto/rand.
	Rand io.Reader
	// KeyShares, when set, supplies pre-generated ephemeral X25519 and
	// ML-KEM-768 key pairs for TLS 1.3 key shares (each used once; see
	// KeySharePool). Ignored when Rand is set. nil: generated per handshake.
	KeyShares *KeySharePool
	// Time returns the current time; nil means time.Now. TLS 1.3 PSK
	// without tickets has no use for it; it is kept for TLS 1.2 and the API.
	Time func() time.Time
}

// Clone returns a shallow copy of c.
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	n := *c
	return &n
}

func (c *Config) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Config) pskHash() crypto.Hash {
	if c.PSKHash == 0 {
		return crypto.SHA256
	}
	return c.PSKHash
}

func (c *Config) minVersion() uint16 {
	if c.MinVersion == 0 {
		return VersionTLS12
	}
	return c.MinVersion
}

func (c *Config) maxVersion() uint16 {
	if c.MaxVersion == 0 {
		return VersionTLS13
	}
	return c.MaxVersion
}

var defaultCurves = []CurveID{X25519MLKEM768, X25519, CurveP256}

func (c *Config) curves() []CurveID {
	var out []CurveID
	src := c.CurvePreferences
	if src == nil {
		src = defaultCurves
	}
	for _, g := range src {
		if g == X25519 || g == CurveP256 || g == X25519MLKEM768 {
			out = append(out, g)
		}
	}
	return out
}

// suites13 returns the TLS 1.3 suites the config allows for its PSK hash,
// in preference order.
func (c *Config) suites13() []*cipherSuite {
	ids := c.CipherSuites
	if ids == nil {
		ids = defaultSuites13
	}
	var out []*cipherSuite
	for _, id := range ids {
		s := suiteByID(id)
		if s != nil && s.tls13 && s.hash == c.pskHash() {
			out = append(out, s)
		}
	}
	return out
}

// suites12 returns the TLS 1.2 suites the config allows, in preference
// order. A client leaves out plain PSK unless AllowPSKOnly is set or
// CipherSuites names them; ECDHE_PSK needs a TLS 1.2 group.
func (c *Config) suites12(isClient bool) []*cipherSuite {
	ids := c.CipherSuites
	if ids == nil {
		ids = defaultSuites12
	}
	hasGroup := len(c.curves12()) > 0
	var out []*cipherSuite
	for _, id := range ids {
		s := suiteByID(id)
		if s == nil || s.tls13 || !s.impl {
			continue
		}
		if s.ecdhe && !hasGroup {
			continue
		}
		if !s.ecdhe && (c.RequireForwardSecrecy || isClient && c.CipherSuites == nil && !c.AllowPSKOnly) {
			continue
		}
		out = append(out, s)
	}
	return out
}

// curves12 returns the groups usable with TLS 1.2 ECDHE_PSK (not the
// hybrid, which is TLS 1.3 only).
func (c *Config) curves12() []CurveID {
	var out []CurveID
	for _, g := range c.curves() {
		if g == X25519 || g == CurveP256 {
			out = append(out, g)
		}
	}
	return out
}

func (c *Config) check(isClient bool) error {
	if c == nil {
		return errors.New("tlspsk: nil Config")
	}
	if h := c.pskHash(); h != crypto.SHA256 && h != crypto.SHA384 {
		return errors.New("tlspsk: PSKHash must be SHA-256 or SHA-384")
	}
	if isClient && len(c.Key) == 0 && c.GetKey == nil {
		return errors.New("tlspsk: client Config needs Key or GetKey")
	}
	if !isClient && c.GetKey == nil && len(c.Key) == 0 {
		return errors.New("tlspsk: server Config needs GetKey or Key")
	}
	if c.AllowPSKOnly && c.RequireForwardSecrecy {
		return errors.New("tlspsk: AllowPSKOnly and RequireForwardSecrecy exclude each other")
	}
	if c.minVersion() > c.maxVersion() {
		return errors.New("tlspsk: MinVersion above MaxVersion")
	}
	return nil
}

// clientKey returns the identity and key the client offers.
func (c *Config) clientKey() (string, []byte, error) {
	id := c.Identity
	if id == "" {
		id = DefaultIdentity
	}
	if len(c.Key) > 0 {
		return id, c.Key, nil
	}
	k, err := c.GetKey(id)
	if err != nil {
		return "", nil, err
	}
	if len(k) == 0 {
		return "", nil, errors.New("tlspsk: no key for the client identity")
	}
	return id, k, nil
}

// serverKey looks up identity; (nil, nil) means unknown.
func (c *Config) serverKey(identity string) ([]byte, error) {
	if c.GetKey != nil {
		return c.GetKey(identity)
	}
	want := c.Identity
	if want == "" {
		want = DefaultIdentity
	}
	if identity == want {
		return c.Key, nil
	}
	return nil, nil
}
