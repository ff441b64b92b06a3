package tlspsk

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"slices"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// TLS 1.3 cipher suites (RFC 8446 B.4).
const (
	TLS_AES_128_GCM_SHA256       uint16 = 0x1301
	TLS_AES_256_GCM_SHA384       uint16 = 0x1302
	TLS_CHACHA20_POLY1305_SHA256 uint16 = 0x1303
)

// TLS 1.2 PSK cipher suites (RFC 5487, 7905, 8442): AEAD only. Of RFC
// 8442's ECDHE_PSK AES suites only AES-128-GCM is here: it is the one a
// peer on this platform implements (wolfSSL; OpenSSL 3.0 and GnuTLS 3.7
// have none of them), so the one that interop tests can prove.
const (
	TLS_PSK_WITH_AES_128_GCM_SHA256             uint16 = 0x00A8
	TLS_PSK_WITH_AES_256_GCM_SHA384             uint16 = 0x00A9
	TLS_PSK_WITH_CHACHA20_POLY1305_SHA256       uint16 = 0xCCAB
	TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256 uint16 = 0xCCAC
	TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256       uint16 = 0xD001
)

type cipherSuite struct {
	id      uint16
	name    string // OpenSSL name
	iana    string
	hash    crypto.Hash
	keyLen  int
	tls13   bool
	newAEAD func(key []byte) (cipher.AEAD, error)
	maxRecs uint64 // records per key before a KeyUpdate
	impl    bool   // handshake implemented (false: name only)
	chacha  bool
	ecdhe   bool // TLS 1.2 ECDHE_PSK (forward secrecy); false: plain PSK
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// keyUpdateAfter is the number of records sent under one key before we
// update it: far below the AES-GCM limit of RFC 8446 5.5 (2^24.5 full
// records). ChaCha20-Poly1305 has no practical limit; it uses the same.
const keyUpdateAfter = 1 << 24

var allSuites = []*cipherSuite{
	{id: TLS_AES_128_GCM_SHA256, name: "TLS_AES_128_GCM_SHA256", iana: "TLS_AES_128_GCM_SHA256", hash: crypto.SHA256, keyLen: 16, tls13: true, newAEAD: newGCM, impl: true},
	{id: TLS_AES_256_GCM_SHA384, name: "TLS_AES_256_GCM_SHA384", iana: "TLS_AES_256_GCM_SHA384", hash: crypto.SHA384, keyLen: 32, tls13: true, newAEAD: newGCM, impl: true},
	{id: TLS_CHACHA20_POLY1305_SHA256, name: "TLS_CHACHA20_POLY1305_SHA256", iana: "TLS_CHACHA20_POLY1305_SHA256", hash: crypto.SHA256, keyLen: 32, tls13: true, newAEAD: chacha20poly1305.New, impl: true, chacha: true},
	{id: TLS_PSK_WITH_AES_128_GCM_SHA256, name: "PSK-AES128-GCM-SHA256", iana: "TLS_PSK_WITH_AES_128_GCM_SHA256", hash: crypto.SHA256, keyLen: 16, newAEAD: newGCM, impl: true},
	{id: TLS_PSK_WITH_AES_256_GCM_SHA384, name: "PSK-AES256-GCM-SHA384", iana: "TLS_PSK_WITH_AES_256_GCM_SHA384", hash: crypto.SHA384, keyLen: 32, newAEAD: newGCM, impl: true},
	{id: TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, name: "PSK-CHACHA20-POLY1305", iana: "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", hash: crypto.SHA256, keyLen: 32, newAEAD: chacha20poly1305.New, chacha: true, impl: true},
	{id: TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, name: "ECDHE-PSK-CHACHA20-POLY1305", iana: "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256", hash: crypto.SHA256, keyLen: 32, newAEAD: chacha20poly1305.New, chacha: true, impl: true, ecdhe: true},
	// RFC 8442: the AES-GCM record protection of RFC 5288 (explicit nonce), as
	// for TLS_PSK_WITH_AES_128_GCM_SHA256. OpenSSL has no name for it; this
	// is wolfSSL's.
	{id: TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256, name: "ECDHE-PSK-AES128-GCM-SHA256", iana: "TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256", hash: crypto.SHA256, keyLen: 16, newAEAD: newGCM, impl: true, ecdhe: true},
}

// defaultSuites13 prefers AES-128-GCM (fast with AES-NI), then ChaCha20,
// then AES-256-GCM (which needs a SHA-384 PSK).
var defaultSuites13 = []uint16{TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_256_GCM_SHA384}

// defaultSuites12 puts ECDHE_PSK (forward secrecy) first, the faster of
// its two AEADs on this CPU first (ecdhePSKDefaults), then the plain PSK
// suites, AES-128-GCM first as the one most peers offer.
var defaultSuites12 = append(ecdhePSKDefaults(hasFastAESGCM),
	TLS_PSK_WITH_AES_128_GCM_SHA256, TLS_PSK_WITH_CHACHA20_POLY1305_SHA256, TLS_PSK_WITH_AES_256_GCM_SHA384)

// DefaultCipherSuites12 returns the TLS 1.2 suites a Config without
// CipherSuites allows, in preference order (see DefaultDTLSCipherSuites).
func DefaultCipherSuites12() []uint16 { return slices.Clone(defaultSuites12) }

// hasFastAESGCM: the CPU has AES and carry-less multiply instructions,
// which Go's AES-GCM uses. Without them AES-GCM in Go is several times
// slower than ChaCha20-Poly1305; crypto/tls orders its suites by the same
// test.
var hasFastAESGCM = cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ ||
	cpu.ARM64.HasAES && cpu.ARM64.HasPMULL ||
	cpu.S390X.HasAES && cpu.S390X.HasAESGCM

// ecdhePSKDefaults orders the two ECDHE_PSK suites: AES-128-GCM (RFC 8442)
// first where the CPU accelerates it. On a 1,200-byte datagram it costs
// about a third of ChaCha20-Poly1305's CPU here, which is what the UDP
// tunnel's rate is made of (docs/udp.md, "The cipher"). Peers without RFC
// 8442 (OpenSSL, GnuTLS) do not offer it and get ChaCha20-Poly1305 as
// before.
func ecdhePSKDefaults(fastAES bool) []uint16 {
	if fastAES {
		return []uint16{TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256, TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256}
	}
	return []uint16{TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256, TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256}
}

// scsvRenegotiation is TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 3.3).
const scsvRenegotiation uint16 = 0x00FF

func suiteByID(id uint16) *cipherSuite {
	for _, s := range allSuites {
		if s.id == id {
			return s
		}
	}
	return nil
}

// CipherSuiteName returns the OpenSSL name of a suite ("TLS_AES_128_GCM_SHA256",
// "PSK-AES128-GCM-SHA256"), or a hex form for unknown ones.
func CipherSuiteName(id uint16) string {
	if s := suiteByID(id); s != nil {
		return s.name
	}
	const hexd = "0123456789ABCDEF"
	return "0x" + string([]byte{hexd[id>>12], hexd[id>>8&15], hexd[id>>4&15], hexd[id&15]})
}

// CipherSuiteByName accepts OpenSSL and IANA names, case-insensitively.
func CipherSuiteByName(name string) (uint16, bool) {
	for _, s := range allSuites {
		if strings.EqualFold(name, s.name) || strings.EqualFold(name, s.iana) {
			return s.id, true
		}
	}
	return 0, false
}
