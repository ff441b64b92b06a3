package proxy

import (
	"crypto"
	"fmt"
	"slices"
	"strings"

	"github.com/mcbn/mcbn/tlspsk"
)

// tlsSettings turns a route's tls block into a tlspsk.Config template
// (without identity or key, which come from the source per tunnel).
func tlsSettings(r *Route) (*tlspsk.Config, error) {
	c := &tlspsk.Config{IdentityHint: r.TLS.IdentityHint, AllowPSKOnly: r.TLS.AllowPSKOnly, RequireForwardSecrecy: r.TLS.RequireForwardSecrecy}
	if c.AllowPSKOnly && c.RequireForwardSecrecy {
		return nil, fmt.Errorf("allow_psk_only and require_forward_secrecy exclude each other")
	}
	var err error
	if c.MinVersion, err = tlsVersion(r.TLS.MinVersion); err != nil {
		return nil, fmt.Errorf("min_version: %v", err)
	}
	if c.MaxVersion, err = tlsVersion(r.TLS.MaxVersion); err != nil {
		return nil, fmt.Errorf("max_version: %v", err)
	}
	if c.MinVersion > c.MaxVersion {
		return nil, fmt.Errorf("min_version %s is above max_version %s", r.TLS.MinVersion, r.TLS.MaxVersion)
	}
	switch r.TLS.PSKHash {
	case "sha256", "SHA256", "SHA-256":
		c.PSKHash = crypto.SHA256
	case "sha384", "SHA384", "SHA-384":
		c.PSKHash = crypto.SHA384
	default:
		return nil, fmt.Errorf("psk_hash: %q is not sha256 or sha384", r.TLS.PSKHash)
	}
	for _, name := range r.TLS.CipherSuites {
		id, ok := tlspsk.CipherSuiteByName(name)
		if !ok {
			return nil, fmt.Errorf("cipher_suites: unknown suite %q", name)
		}
		c.CipherSuites = append(c.CipherSuites, id)
	}
	if c.CurvePreferences, err = tlsGroups(r.TLS.Groups, c.MinVersion); err != nil {
		return nil, fmt.Errorf("groups: %v", err)
	}
	return c, nil
}

// knownGroups are the key exchange groups tlspsk implements, in its
// default order, with the other names OpenSSL and others give them.
var knownGroups = []struct {
	id      tlspsk.CurveID
	aliases []string
}{
	{tlspsk.X25519MLKEM768, nil},
	{tlspsk.X25519, nil},
	{tlspsk.CurveP256, []string{"P256", "secp256r1", "prime256v1"}},
}

func groupByName(name string) (tlspsk.CurveID, bool) {
	for _, g := range knownGroups {
		if strings.EqualFold(name, g.id.String()) {
			return g.id, true
		}
		for _, a := range g.aliases {
			if strings.EqualFold(name, a) {
				return g.id, true
			}
		}
	}
	return 0, false
}

// tlsGroups turns group names into tlspsk's CurvePreferences; an empty
// list keeps tlspsk's default. The hybrid is TLS 1.3 only, so a list of
// only the hybrid needs min_version 1.3.
func tlsGroups(names []string, minVersion uint16) ([]tlspsk.CurveID, error) {
	if len(names) == 0 {
		return nil, nil
	}
	var out []tlspsk.CurveID
	classical := false
	for _, name := range names {
		id, ok := groupByName(name)
		if !ok {
			known := make([]string, len(knownGroups))
			for i, g := range knownGroups {
				known[i] = g.id.String()
			}
			return nil, fmt.Errorf("unknown group %q (known: %s)", name, strings.Join(known, ", "))
		}
		if slices.Contains(out, id) {
			return nil, fmt.Errorf("%s is listed twice", id)
		}
		out = append(out, id)
		classical = classical || id != tlspsk.X25519MLKEM768
	}
	if !classical && minVersion < tlspsk.VersionTLS13 {
		return nil, fmt.Errorf("%s is TLS 1.3 only, so TLS 1.2 (min_version 1.2) would have no group for ECDHE_PSK: add X25519 or P-256, or set min_version: 1.3", tlspsk.X25519MLKEM768)
	}
	return out, nil
}

func tlsVersion(s string) (uint16, error) {
	switch s {
	case "1.2", "TLSv1.2", "tls1.2":
		return tlspsk.VersionTLS12, nil
	case "1.3", "TLSv1.3", "tls1.3":
		return tlspsk.VersionTLS13, nil
	}
	return 0, fmt.Errorf("%q is not 1.2 or 1.3", s)
}

func tlsVersionName(v uint16) string {
	switch v {
	case tlspsk.VersionTLS12:
		return "TLS1.2"
	case tlspsk.VersionTLS13:
		return "TLS1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}
