package proxy

import (
	"fmt"
	"strings"

	"github.com/pion/dtls/v3"
)

// dtlsSuiteNames maps OpenSSL and IANA names to the PSK suites pion offers.
var dtlsSuiteNames = map[string]dtls.CipherSuiteID{
	"PSK-AES128-GCM-SHA256":                       dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
	"TLS_PSK_WITH_AES_128_GCM_SHA256":             dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
	"PSK-AES128-CCM8":                             dtls.TLS_PSK_WITH_AES_128_CCM_8,
	"TLS_PSK_WITH_AES_128_CCM_8":                  dtls.TLS_PSK_WITH_AES_128_CCM_8,
	"PSK-AES128-CCM":                              dtls.TLS_PSK_WITH_AES_128_CCM,
	"TLS_PSK_WITH_AES_128_CCM":                    dtls.TLS_PSK_WITH_AES_128_CCM,
	"PSK-AES256-CCM8":                             dtls.TLS_PSK_WITH_AES_256_CCM_8,
	"TLS_PSK_WITH_AES_256_CCM_8":                  dtls.TLS_PSK_WITH_AES_256_CCM_8,
	"PSK-AES128-CBC-SHA256":                       dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	"TLS_PSK_WITH_AES_128_CBC_SHA256":             dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	"PSK-CHACHA20-POLY1305":                       dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
	"TLS_PSK_WITH_CHACHA20_POLY1305_SHA256":       dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-PSK-AES128-CBC-SHA256":                 dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
	"TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256":       dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256,
	"ECDHE-PSK-CHACHA20-POLY1305":                 dtls.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
	"TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256": dtls.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
}

// defaultDTLSSuites: AEAD suites first; ECDHE-PSK (forward secrecy) is
// offered too, but OpenSSL's -dtls1_2 peers commonly ask for plain PSK.
var defaultDTLSSuites = []dtls.CipherSuiteID{
	dtls.TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256,
	dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
	dtls.TLS_PSK_WITH_AES_128_CCM_8,
	dtls.TLS_PSK_WITH_AES_128_CCM,
}

func dtlsSuites(names []string) ([]dtls.CipherSuiteID, error) {
	if len(names) == 0 {
		return defaultDTLSSuites, nil
	}
	var out []dtls.CipherSuiteID
	for _, n := range names {
		id, ok := dtlsSuiteNames[strings.ToUpper(n)]
		if !ok {
			return nil, fmt.Errorf("unknown or unsupported DTLS PSK suite %q (pion offers %s)", n, strings.Join(dtlsSuiteList(), ", "))
		}
		out = append(out, id)
	}
	return out, nil
}

func dtlsSuiteList() []string {
	var out []string
	for n := range dtlsSuiteNames {
		if !strings.HasPrefix(n, "TLS_") {
			out = append(out, n)
		}
	}
	sortStrings(out)
	return out
}
