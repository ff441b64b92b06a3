package tlspsk

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"slices"
	"strings"
)

// DTLS 1.2 cipher suites: the TLS 1.2 PSK AEAD suites of suites.go, plus
// the AES-CCM PSK suites of RFC 6655 (with the 8-byte tag of CCM_8), which
// constrained DTLS peers often ask for and which Go's standard library
// lacks (dtls_ccm.go implements CCM). The CCM suites are offered for DTLS
// only: TLS keeps its suite set unchanged.
const (
	TLS_PSK_WITH_AES_128_CCM   uint16 = 0xC0A4
	TLS_PSK_WITH_AES_256_CCM   uint16 = 0xC0A5
	TLS_PSK_WITH_AES_128_CCM_8 uint16 = 0xC0A8
	TLS_PSK_WITH_AES_256_CCM_8 uint16 = 0xC0A9
)

func newCCM16(key []byte) (cipher.AEAD, error) { return newCCMAEAD(key, 16) }
func newCCM8(key []byte) (cipher.AEAD, error)  { return newCCMAEAD(key, 8) }

func newCCMAEAD(key []byte, tag int) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return newCCM(b, tag, 12)
}

// RFC 6655 3: the CCM suites use the TLS 1.2 PRF with SHA-256, also with
// AES-256.
var dtlsCCMSuites = []*cipherSuite{
	{id: TLS_PSK_WITH_AES_128_CCM, name: "PSK-AES128-CCM", iana: "TLS_PSK_WITH_AES_128_CCM", hash: crypto.SHA256, keyLen: 16, newAEAD: newCCM16, impl: true},
	{id: TLS_PSK_WITH_AES_256_CCM, name: "PSK-AES256-CCM", iana: "TLS_PSK_WITH_AES_256_CCM", hash: crypto.SHA256, keyLen: 32, newAEAD: newCCM16, impl: true},
	{id: TLS_PSK_WITH_AES_128_CCM_8, name: "PSK-AES128-CCM8", iana: "TLS_PSK_WITH_AES_128_CCM_8", hash: crypto.SHA256, keyLen: 16, newAEAD: newCCM8, impl: true},
	{id: TLS_PSK_WITH_AES_256_CCM_8, name: "PSK-AES256-CCM8", iana: "TLS_PSK_WITH_AES_256_CCM_8", hash: crypto.SHA256, keyLen: 32, newAEAD: newCCM8, impl: true},
}

// defaultDTLSSuites: ECDHE_PSK (forward secrecy) first, in the order of
// ecdhePSKDefaults, then plain PSK with AES-128-GCM, ChaCha20-Poly1305 and
// the CCM suites that constrained peers (and OpenSSL's -cipher
// PSK-AES128-CCM8) use.
var defaultDTLSSuites = append(ecdhePSKDefaults(hasFastAESGCM),
	TLS_PSK_WITH_AES_128_GCM_SHA256,
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
	TLS_PSK_WITH_AES_128_CCM,
	TLS_PSK_WITH_AES_128_CCM_8,
	TLS_PSK_WITH_AES_256_GCM_SHA384,
)

// DefaultDTLSCipherSuites returns the DTLS 1.2 suites a DTLSConfig without
// CipherSuites allows, in preference order: which ECDHE_PSK suite comes
// first depends on the CPU (AES-128-GCM where it is accelerated).
func DefaultDTLSCipherSuites() []uint16 { return slices.Clone(defaultDTLSSuites) }

// dtlsSuiteByID returns a DTLS 1.2 suite: a TLS 1.2 AEAD suite or a CCM one.
func dtlsSuiteByID(id uint16) *cipherSuite {
	if s := suiteByID(id); s != nil {
		if s.tls13 || !s.impl {
			return nil
		}
		return s
	}
	for _, s := range dtlsCCMSuites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// DTLSCipherSuites lists every DTLS 1.2 suite this package implements.
func DTLSCipherSuites() []uint16 {
	var out []uint16
	for _, s := range allSuites {
		if !s.tls13 && s.impl {
			out = append(out, s.id)
		}
	}
	for _, s := range dtlsCCMSuites {
		out = append(out, s.id)
	}
	return out
}

// DTLSCipherSuiteName returns the OpenSSL name of a DTLS suite
// ("PSK-AES128-CCM8"), or a hex form for unknown ones.
func DTLSCipherSuiteName(id uint16) string {
	if s := dtlsSuiteByID(id); s != nil {
		return s.name
	}
	return CipherSuiteName(id)
}

// DTLSCipherSuiteByName accepts the OpenSSL and IANA names of the DTLS
// suites, case-insensitively.
func DTLSCipherSuiteByName(name string) (uint16, bool) {
	for _, id := range DTLSCipherSuites() {
		s := dtlsSuiteByID(id)
		if strings.EqualFold(name, s.name) || strings.EqualFold(name, s.iana) {
			return id, true
		}
	}
	return 0, false
}

// dtlsSuites returns the DTLS suites the config allows, in preference
// order, with the TLS 1.2 rules of Config.suites12: a client leaves out
// plain PSK unless AllowPSKOnly is set or CipherSuites names them;
// ECDHE_PSK needs a group.
func (c *Config) dtlsSuites(isClient bool) []*cipherSuite {
	ids := c.CipherSuites
	if ids == nil {
		ids = defaultDTLSSuites
	}
	hasGroup := len(c.curves12()) > 0
	var out []*cipherSuite
	for _, id := range ids {
		s := dtlsSuiteByID(id)
		if s == nil {
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
