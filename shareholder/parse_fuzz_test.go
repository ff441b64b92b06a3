package shareholder

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// FuzzParsePin: no panic; an accepted pin is 32 bytes and round-trips.
func FuzzParsePin(f *testing.F) {
	for _, s := range []string{"sha256:" + strings.Repeat("ab", 32), "SHA256:" + strings.Repeat("AB", 32), " sha256:" + strings.Repeat("0", 64) + " ",
		"sha256:", "sha1:" + strings.Repeat("ab", 20), strings.Repeat("ab", 32), "sha256:" + strings.Repeat("zz", 32)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParsePin(s)
		if err != nil {
			return
		}
		if len(b) != 32 {
			t.Fatalf("%q: %d-byte pin", s, len(b))
		}
		if again, err := ParsePin(pinPrefix + hex.EncodeToString(b)); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%q does not round-trip: %v", s, err)
		}
	})
}

// FuzzEditConsent edits arbitrary config text: no panic, and an accepted
// edit changes only the value of the consent line.
func FuzzEditConsent(f *testing.F) {
	f.Add("consent: granted # who decided\n")
	f.Add("share: {file: a.json}\nconsent: \"revoked\"\n")
	f.Add("consent: granted\nconsent: revoked\n")
	f.Add("# consent: granted\n")
	f.Add("nested:\n  consent: granted\n")
	f.Fuzz(func(t *testing.T, text string) {
		out, err := editConsent([]byte(text), ConsentRevoked)
		if err != nil {
			return
		}
		locs := findConsentLines(out)
		if len(locs) != 1 || string(out[locs[0].valStart:locs[0].valEnd]) != ConsentRevoked {
			t.Fatalf("after the edit: %q", out)
		}
		in := findConsentLines([]byte(text))[0]
		l := locs[0]
		if text[:in.valStart] != string(out[:l.valStart]) || text[in.valEnd:] != string(out[l.valEnd:]) {
			t.Fatalf("the edit changed more than the value: %q -> %q", text, out)
		}
	})
}
