package proxy

import (
	"crypto"
	"fmt"

	"github.com/mcbn/mcbn/tlspsk"
)

// tlsSettings turns a route's tls block into a tlspsk.Config template
// (without identity or key, which come from the source per tunnel).
func tlsSettings(r *Route) (*tlspsk.Config, error) {
	c := &tlspsk.Config{IdentityHint: r.TLS.IdentityHint, AllowPSKOnly: r.TLS.AllowPSKOnly}
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
	return c, nil
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
