package shareholder

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzConsentLine: the consent line parser never panics, accepts only
// granted or revoked, and a revoke never leaves anything that reads as
// granted — neither to the line parser nor, if the file loads, to the full
// config parser.
func FuzzConsentLine(f *testing.F) {
	f.Add([]byte(minimalConfig))
	f.Add([]byte(strings.Replace(minimalConfig, "audit_log:", "audit_lgo:", 1)))
	f.Add([]byte("consent: granted # who decided\n"))
	f.Add([]byte("consent: 'granted'\r\nconsent: \"revoked\"\n"))
	f.Add([]byte("\ufeffconsent: granted"))
	f.Add([]byte("a: b\rconsent: granted\r"))
	f.Add([]byte("consent:granted#x"))
	f.Add([]byte("policy: |\n  consent: granted\nconsent: revoked\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if v, err := ParseConsentLine(data); err == nil && v != ConsentGranted && v != ConsentRevoked {
			t.Fatalf("consent line %q accepted", v)
		}
		out := revokeConsent(data)
		if v, err := ParseConsentLine(out); err == nil && v != ConsentRevoked {
			t.Fatalf("after a revoke the consent line reads %q", v)
		}
		if c, err := ParseConfig(out, "/nonexistent"); err == nil && c.Consent != ConsentRevoked {
			t.Fatalf("after a revoke the config loads with consent %q", c.Consent)
		}
		if c, err := ParseConfig(data, "/nonexistent"); err == nil {
			if v, err := ParseConsentLine(data); err != nil || v != c.Consent {
				t.Fatalf("a config that loads has consent %q, its line %q %v", c.Consent, v, err)
			}
		}
	})
}

// FuzzParseControlStatus: no panic; an accepted answer is consistent and
// survives a round trip.
func FuzzParseControlStatus(f *testing.F) {
	for _, st := range []ControlStatus{
		{Generation: 3, Consent: ConsentGranted, Releasing: true, State: StateReleasing, ConfigSHA256: strings.Repeat("ab", 32)},
		{Generation: 4, Consent: ConsentRevoked, State: StateConsentRevoked},
		{Generation: 5, Consent: "unknown", State: checkConfigUnreadable, ConfigError: "config x: no such file"},
		{Consent: ConsentGranted, Releasing: true, State: checkConfigInvalid},
		{Error: "unknown request"},
	} {
		b, _ := json.Marshal(st)
		f.Add(append(b, '\n'))
	}
	f.Add([]byte(`{"consent":"granted","releasing":true,"state":"releasing"} {}`))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseControlStatus(data)
		if err != nil {
			return
		}
		if st.Releasing != (st.State == StateReleasing) || st.Releasing && st.Consent != ConsentGranted {
			t.Fatalf("inconsistent status accepted: %+v", st)
		}
		b, _ := json.Marshal(st)
		again, err := ParseControlStatus(b)
		if err != nil || *again != *st {
			t.Fatalf("round trip: %+v -> %+v %v", st, again, err)
		}
	})
}
