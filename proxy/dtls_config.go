package proxy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/mcbn/mcbn/tlspsk"
)

// proxyDTLSSuites are the suites a UDP route allows by default: both
// ECDHE-PSK suites (forward secrecy), then the plain PSK AEAD suites
// OpenSSL's -dtls1_2 peers commonly ask for.
var proxyDTLSSuites = []uint16{
	tlspsk.TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256,
	tlspsk.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
	tlspsk.TLS_PSK_WITH_AES_128_GCM_SHA256,
	tlspsk.TLS_PSK_WITH_AES_128_CCM_8,
	tlspsk.TLS_PSK_WITH_AES_128_CCM,
}

// defaultDTLSSuiteNames are proxyDTLSSuites in tlspsk's default order:
// ECDHE-PSK first, and of its two suites the faster on this CPU first
// (AES-128-GCM where the CPU accelerates it, docs/udp.md "The cipher").
func defaultDTLSSuiteNames() []string {
	var out []string
	for _, id := range tlspsk.DefaultDTLSCipherSuites() {
		if slices.Contains(proxyDTLSSuites, id) {
			out = append(out, tlspsk.DTLSCipherSuiteName(id))
		}
	}
	return out
}

// removedDTLSSuites are the CBC suites pion offered, by OpenSSL and IANA
// name. tlspsk does not implement them on purpose: MAC-then-encrypt CBC is
// the source of Lucky13-style timing attacks, and every peer of a proxy has
// AEAD suites. A config naming one gets an error saying so rather than
// "unknown suite".
var removedDTLSSuites = map[string]bool{
	"PSK-AES128-CBC-SHA256":                 true,
	"TLS_PSK_WITH_AES_128_CBC_SHA256":       true,
	"ECDHE-PSK-AES128-CBC-SHA256":           true,
	"TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256": true,
}

// dtlsSuites maps dtls.cipher_suites (OpenSSL or IANA names, any case) to
// tlspsk suite IDs; nothing means the defaults.
func dtlsSuites(names []string) ([]uint16, error) {
	if len(names) == 0 {
		names = defaultDTLSSuiteNames()
	}
	var out []uint16
	for _, n := range names {
		if removedDTLSSuites[strings.ToUpper(n)] {
			return nil, fmt.Errorf("DTLS suite %q is no longer supported: CBC (MAC-then-encrypt) suites are open to Lucky13-style timing attacks; use an AEAD suite (%s)", n, strings.Join(dtlsSuiteList(), ", "))
		}
		id, ok := tlspsk.DTLSCipherSuiteByName(n)
		if !ok {
			return nil, fmt.Errorf("unknown or unsupported DTLS PSK suite %q (supported: %s)", n, strings.Join(dtlsSuiteList(), ", "))
		}
		out = append(out, id)
	}
	return out, nil
}

// dtlsSuiteList names the suites tlspsk's DTLS implements.
func dtlsSuiteList() []string {
	var out []string
	for _, id := range tlspsk.DTLSCipherSuites() {
		out = append(out, tlspsk.DTLSCipherSuiteName(id))
	}
	return out
}

// cidLength is the length of the connection IDs a server proxy issues
// (RFC 9146); tlspsk routes datagrams by CID, so a client whose NAT binding
// changes keeps its session.
const cidLength = 8

// maxDTLSMTU is the largest MTU tlspsk accepts (the largest UDP payload
// over IPv4); dtls.mtu may say up to 65535.
const maxDTLSMTU = 65507

// dtlsConfig is the tlspsk configuration both sides of a UDP route share;
// the caller adds the key (client) or GetKey (server).
func dtlsConfig(r *Route) *tlspsk.DTLSConfig {
	suites, _ := dtlsSuites(r.DTLS.CipherSuites) // checked by Validate
	c := &tlspsk.DTLSConfig{
		Config: tlspsk.Config{
			// Named suites are what the route allows: a client offers plain
			// PSK suites only when they are named, and the proxy always
			// names them (the defaults above included).
			CipherSuites: suites,
		},
		MTU:                min(r.DTLS.MTU, maxDTLSMTU),
		RetransmitInterval: r.DTLS.FlightInterval.D(),
		HandshakeTimeout:   r.Timeouts.Handshake.D(),
		// GSO/GRO on the tunnel hop, where both ends are ours
		// (udpOffload, udp_batch.go).
		UDPOffload: udpOffload,
	}
	if r.DTLS.ConnectionID != nil && *r.DTLS.ConnectionID {
		c.ConnectionIDLength = cidLength
	}
	return c
}
