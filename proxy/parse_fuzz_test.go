package proxy

import (
	"strings"
	"testing"
)

// FuzzParseEndpoint: no panic; an accepted endpoint prints back to
// something that parses to the same endpoint.
func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"tcp://127.0.0.1:8080", "tls://:8443", "udp://[::1]:53", "dtls://host.example:8853",
		"127.0.0.1:80", "ftp://h:1", "tcp://h:99999", "tcp://h h:1", "tcp://[::1", "tls://h:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEndpoint(s)
		if err != nil {
			return
		}
		again, err := ParseEndpoint(e.String())
		if err != nil || again != e {
			t.Fatalf("%q parsed to %+v, which prints as %q and parses back to %+v, %v", s, e, e.String(), again, err)
		}
	})
}

// FuzzParseHexKey: no panic, accepted keys are within the length bounds,
// and an error never quotes the input (it may be a key with a typo).
func FuzzParseHexKey(f *testing.F) {
	for _, s := range []string{"00112233445566778899aabbccddeeff", "0x" + strings.Repeat("ab", 32), " " + strings.Repeat("cd", 20) + "\n",
		"", "0x", "abc", "zz" + strings.Repeat("00", 16), strings.Repeat("00", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseHexKey(s)
		if err != nil {
			if trimmed := strings.TrimSpace(s); len(trimmed) >= 8 && strings.Contains(err.Error(), trimmed) {
				t.Fatalf("error quotes the input: %v", err)
			}
			return
		}
		if len(k) < minKeyLen || len(k) > maxKeyLen {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
	})
}
