package shareholder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const minimalConfig = `listen: 127.0.0.1:8441
share_store: file:///etc/mcbn/alice.share.json
group: group.json
verifier:
  issuer: https://confidentialcomputing.googleapis.com
  audience: https://alice.example:8441
policy: assertion.swname == 'CONFIDENTIAL_SPACE'
consent: granted
audit_log: audit.jsonl
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(minimalConfig), "/etc/mcbn")
	if err != nil {
		t.Fatal(err)
	}
	if c.Group != "/etc/mcbn/group.json" || c.AuditLog != "/etc/mcbn/audit.jsonl" || c.MaxBodyBytes != DefaultMaxBody || c.RateLimit.Burst != DefaultRateBurst {
		t.Fatalf("defaults or paths wrong: %+v", c)
	}
}

// Every config error names the field at fault.
func TestConfigErrorsNameTheField(t *testing.T) {
	edit := func(old, new string) string { return strings.Replace(minimalConfig, old, new, 1) }
	cases := map[string]string{
		minimalConfig + "colour: blue\n":                                                        "unknown key colour",
		edit("  audience:", "  audeince:"):                                                      "unknown key audeince",
		edit("consent: granted", "consent: maybe"):                                              "consent:",
		edit("consent: granted\n", ""):                                                          "consent:",
		edit("share_store: file:///etc/mcbn/alice.share.json", "share_store: s3://x"):           "share_store:",
		edit("group: group.json\n", ""):                                                         "group:",
		edit("  issuer: https://confidentialcomputing.googleapis.com\n", ""):                    "verifier.issuer:",
		edit("  audience: https://alice.example:8441\n", ""):                                    "verifier.audience:",
		edit("policy: assertion.swname == 'CONFIDENTIAL_SPACE'", "policy: assertion.swname =="): "policy: CEL: ERROR: <input>:1:",
		edit("policy: assertion.swname == 'CONFIDENTIAL_SPACE'\n", ""):                          "policy:",
		edit("audit_log: audit.jsonl\n", ""):                                                    "audit_log:",
		edit("listen: 127.0.0.1:8441", "listen: nowhere"):                                       "listen:",
		minimalConfig + "max_body_bytes: 99999999\n":                                            "max_body_bytes:",
		minimalConfig + "rate_limit:\n  burst: -1\n":                                            "rate_limit.burst:",
		minimalConfig + "verifier2: {}\n":                                                       "unknown key verifier2",
		minimalConfig + "tls:\n  cert: a.pem\n":                                                 "tls:",
		minimalConfig + "reload_interval: soon\n":                                               "reload_interval",
		edit("  audience: https://alice.example:8441\n", "  audience: https://alice.example:8441\n  max_token_age: 48h\n"): "verifier.max_token_age:",
		"": "empty",
	}
	for text, want := range cases {
		_, err := ParseConfig([]byte(text), "/etc/mcbn")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to contain %q\n%s", err, want, text)
		}
	}
}

func TestPolicyFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.cel"), []byte("// comment\nassertion.swname == 'X'\n"), 0o644)
	c, err := ParseConfig([]byte(strings.Replace(minimalConfig, "policy: assertion.swname == 'CONFIDENTIAL_SPACE'", "policy_file: p.cel", 1)), dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.PolicyText(), "'X'") {
		t.Fatal("policy file not read")
	}
	os.WriteFile(filepath.Join(dir, "p.cel"), []byte("assertion.swname ==\n"), 0o644)
	_, err = ParseConfig([]byte(strings.Replace(minimalConfig, "policy: assertion.swname == 'CONFIDENTIAL_SPACE'", "policy_file: p.cel", 1)), dir)
	if err == nil || !strings.HasPrefix(err.Error(), "policy_file: CEL: ERROR: <input>:2:1") {
		t.Fatalf("error %v", err)
	}
}

// SetConsent edits only the consent line and keeps comments.
func TestSetConsent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alice.yaml")
	text := "# Alice's daemon\n" + strings.Replace(minimalConfig, "consent: granted", "consent: granted   # ask legal first", 1)
	os.WriteFile(path, []byte(text), 0o600)
	changed, err := SetConsent(path, ConsentRevoked)
	if err != nil || !changed {
		t.Fatalf("revoke: %v %v", changed, err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != strings.Replace(text, "consent: granted", "consent: revoked", 1) {
		t.Fatalf("edited file:\n%s", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode changed to %04o", fi.Mode().Perm())
	}
	if changed, err := SetConsent(path, ConsentRevoked); err != nil || changed {
		t.Fatalf("second revoke: %v %v", changed, err)
	}
	if _, err := SetConsent(path, "maybe"); err == nil {
		t.Fatal("accepted consent maybe")
	}
}

func TestSelfSignedPin(t *testing.T) {
	cert, err := SelfSignedCert("alice", []string{"alice.example", "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pin := SPKIPin(cert.Leaf)
	b, err := ParsePin(pin)
	if err != nil || len(b) != 32 {
		t.Fatalf("pin %s: %v", pin, err)
	}
	if err := pinVerifier(b)(tlsState(cert)); err != nil {
		t.Fatal(err)
	}
	other, _ := SelfSignedCert("mallory", nil)
	if err := pinVerifier(b)(tlsState(other)); err == nil {
		t.Fatal("another certificate passed the pin")
	}
	for _, bad := range []string{"", "sha256:", "sha1:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("g", 64)} {
		if _, err := ParsePin(bad); err == nil {
			t.Errorf("pin %q accepted", bad)
		}
	}
}
