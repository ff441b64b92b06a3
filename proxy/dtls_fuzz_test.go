package proxy

import (
	"strings"
	"testing"

	"github.com/mcbn/mcbn/tlspsk"
)

// FuzzDTLSSuites: dtls.cipher_suites parsing never panics, never accepts a
// CBC suite, and every accepted name maps to a suite tlspsk implements.
func FuzzDTLSSuites(f *testing.F) {
	for _, s := range []string{"PSK-AES128-GCM-SHA256", "psk-aes128-ccm8", "TLS_PSK_WITH_AES_128_CBC_SHA256",
		"ECDHE-PSK-AES128-CBC-SHA256", "ECDHE-PSK-CHACHA20-POLY1305,PSK-AES256-CCM", "", "PSK-RC4", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names := strings.Split(s, ",")
		ids, err := dtlsSuites(names)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if len(ids) != len(names) {
			t.Fatalf("%d names gave %d suites", len(names), len(ids))
		}
		for i, id := range ids {
			if strings.Contains(strings.ToUpper(tlspsk.DTLSCipherSuiteName(id)), "CBC") {
				t.Fatalf("%q accepted as CBC suite %s", names[i], tlspsk.DTLSCipherSuiteName(id))
			}
		}
	})
}
