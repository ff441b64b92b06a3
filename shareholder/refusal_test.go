package shareholder

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/mcbn/mcbn/attest"
)

// rewriteHeader replaces a token's protected header, keeping payload and
// signature, as an attacker would.
func rewriteHeader(tok, header string) string {
	parts := strings.Split(tok, ".")
	parts[0] = base64.RawURLEncoding.EncodeToString([]byte(header))
	return strings.Join(parts, ".")
}

// Every attack is refused with the right public reason, and the audit log
// names the check that failed.
func TestRefusals(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	aud := "mcbn-test-alice"
	mint := func(t *testing.T, audience, nonce string) string {
		t.Helper()
		tok, err := f.att.Mint(audience, []string{nonce})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	reload := func(t *testing.T, policy, consent string) {
		t.Helper()
		if err := writeConfig(f, "alice", policy, consent); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	cases := []struct {
		name   string
		setup  func(t *testing.T)
		body   func(t *testing.T, c *conn) []byte
		reason string
		check  string
	}{
		{name: "replayed on another connection", reason: ReasonTokenInvalid, check: "token_nonce",
			body: func(t *testing.T, c *conn) []byte {
				other := dialServer(t, s)
				return requestBody(mint(t, aud, other.nonce))
			}},
		{name: "wrong audience", reason: ReasonTokenInvalid, check: "token_audience",
			body: func(t *testing.T, c *conn) []byte { return requestBody(mint(t, "mcbn-test-bob", c.nonce)) }},
		{name: "expired", reason: ReasonTokenInvalid, check: "token_expired",
			setup: func(t *testing.T) {
				f.att.SetMutate(attest.SetTimes(now.Add(-2*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)))
			},
			body: func(t *testing.T, c *conn) []byte { return requestBody(mint(t, aud, c.nonce)) }},
		{name: "not yet valid", reason: ReasonTokenInvalid, check: "token_not_yet_valid",
			setup: func(t *testing.T) {
				f.att.SetMutate(attest.SetTimes(now, now.Add(time.Hour), now.Add(2*time.Hour)))
			},
			body: func(t *testing.T, c *conn) []byte { return requestBody(mint(t, aud, c.nonce)) }},
		{name: "unknown key id", reason: ReasonTokenInvalid, check: "token_unknown_key",
			body: func(t *testing.T, c *conn) []byte {
				return requestBody(rewriteHeader(mint(t, aud, c.nonce), `{"alg":"RS256","kid":"not-a-known-key","typ":"JWT"}`))
			}},
		{name: "alg none", reason: ReasonTokenInvalid, check: "token_algorithm",
			body: func(t *testing.T, c *conn) []byte {
				tok := rewriteHeader(mint(t, aud, c.nonce), `{"alg":"none","typ":"JWT"}`)
				return requestBody(tok[:strings.LastIndex(tok, ".")+1])
			}},
		{name: "HS256 signed with the public key", reason: ReasonTokenInvalid, check: "token_algorithm",
			body: func(t *testing.T, c *conn) []byte {
				tok := rewriteHeader(mint(t, aud, c.nonce), `{"alg":"HS256","kid":"`+f.att.KeyID()+`","typ":"JWT"}`)
				signed := tok[:strings.LastIndex(tok, ".")]
				pub, _ := x509.MarshalPKIXPublicKey(&attesterKey().PublicKey)
				m := hmac.New(sha256.New, pub)
				m.Write([]byte(signed))
				return requestBody(signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)))
			}},
		{name: "tampered signature", reason: ReasonTokenInvalid, check: "token_signature",
			body: func(t *testing.T, c *conn) []byte {
				tok := mint(t, aud, c.nonce)
				i := strings.LastIndex(tok, ".")
				sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
				sig[10] ^= 0x01
				return requestBody(tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig))
			}},
		{name: "tampered payload", reason: ReasonTokenInvalid, check: "token_signature",
			body: func(t *testing.T, c *conn) []byte {
				parts := strings.Split(mint(t, aud, c.nonce), ".")
				p, _ := base64.RawURLEncoding.DecodeString(parts[1])
				p = bytes.Replace(p, []byte(testDigest), []byte("sha256:"+strings.Repeat("0", 64)), 1)
				parts[1] = base64.RawURLEncoding.EncodeToString(p)
				return requestBody(strings.Join(parts, "."))
			}},
		{name: "policy false", reason: ReasonPolicyDenied, check: "policy_false",
			setup: func(t *testing.T) { reload(t, "assertion.hwmodel == 'GCP_INTEL_TDX'", ConsentGranted) },
			body:  func(t *testing.T, c *conn) []byte { return requestBody(mint(t, aud, c.nonce)) }},
		{name: "image digest not allowed", reason: ReasonPolicyDenied, check: "policy_false",
			setup: func(t *testing.T) {
				p, err := ConfidentialSpacePolicy(CSPolicyOptions{ImageDigests: []string{"sha256:" + strings.Repeat("ab", 32)}, Dev: true})
				if err != nil {
					t.Fatal(err)
				}
				reload(t, p, ConsentGranted)
			},
			body: func(t *testing.T, c *conn) []byte { return requestBody(mint(t, aud, c.nonce)) }},
		{name: "production policy refuses a dev token", reason: ReasonPolicyDenied, check: "policy_false",
			setup: func(t *testing.T) {
				p, err := ConfidentialSpacePolicy(CSPolicyOptions{ImageDigests: []string{testDigest}, AnyProject: true})
				if err != nil {
					t.Fatal(err)
				}
				reload(t, p, ConsentGranted)
			},
			body: func(t *testing.T, c *conn) []byte { return requestBody(mint(t, aud, c.nonce)) }},
		{name: "consent revoked", reason: ReasonConsentRevoked, check: "consent",
			setup: func(t *testing.T) { reload(t, f.devPolicy, ConsentRevoked) },
			body:  func(t *testing.T, c *conn) []byte { return requestBody(mint(t, aud, c.nonce)) }},
		{name: "malformed JSON", reason: ReasonBadRequest, check: "json",
			body: func(t *testing.T, c *conn) []byte { return []byte(`{"version":1,"token":`) }},
		{name: "unknown field", reason: ReasonBadRequest, check: "json",
			body: func(t *testing.T, c *conn) []byte { return []byte(`{"version":1,"token":"a.b.c","share":"please"}`) }},
		{name: "oversize body", reason: ReasonTooLarge, check: "body_size",
			body: func(t *testing.T, c *conn) []byte {
				return requestBody(mint(t, aud, c.nonce) + strings.Repeat("A", DefaultMaxBody))
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.att.SetMutate()
			reload(t, f.devPolicy, ConsentGranted)
			if tc.setup != nil {
				tc.setup(t)
			}
			c := dialServer(t, s)
			code, ref, rr := c.post(t, tc.body(t, c))
			if rr != nil {
				t.Fatalf("released a share (HTTP %d)", code)
			}
			if ref.Reason != tc.reason {
				t.Fatalf("reason %q (HTTP %d), want %q", ref.Reason, code, tc.reason)
			}
			rec := lastAudit(t, f.auditPath("alice"))
			if rec.Decision != DecisionRefuse || rec.Reason != tc.reason || !strings.HasPrefix(rec.Detail, tc.check+":") {
				t.Fatalf("audit record %+v, want reason %s check %s", rec, tc.reason, tc.check)
			}
		})
	}

	// And the same connection setup with a plain token is released.
	f.att.SetMutate()
	reload(t, f.devPolicy, ConsentGranted)
	c := dialServer(t, s)
	code, _, rr := c.post(t, requestBody(mint(t, aud, c.nonce)))
	if code != 200 || rr == nil {
		t.Fatalf("control release: HTTP %d", code)
	}
	f.checkLogsClean()
	if audit, _ := readFile(f.auditPath("alice")); strings.Contains(audit, "eyJ") {
		t.Fatal("the audit log holds a token")
	}
	if !strings.Contains(f.logs.String(), "check=token_signature") {
		t.Fatal("the daemon's log lacks the detailed reason")
	}
}

func writeConfig(f *fixture, name, policy, consent string) error {
	return replaceFile(f.configPath(name), []byte(f.configYAML(name, policy, consent)), 0o600)
}

// A client over its per-address budget is refused with rate_limited.
func TestRateLimit(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	s.junk = newRateLimiter(0.001, 2, 10)
	var reasons []string
	for range 3 {
		c := dialServer(t, s)
		_, ref, _ := c.post(t, []byte(`{}`))
		reasons = append(reasons, ref.Reason)
	}
	if reasons[0] != ReasonBadRequest || reasons[1] != ReasonBadRequest || reasons[2] != ReasonRateLimited {
		t.Fatalf("reasons %v", reasons)
	}
}

func TestRateLimiterBounded(t *testing.T) {
	l := newRateLimiter(1, 1, 2)
	clk := time.Unix(0, 0)
	l.now = func() time.Time { return clk }
	if !l.allow("a") || !l.allow("b") {
		t.Fatal("first requests refused")
	}
	if l.allow("c") {
		t.Fatal("a third client was admitted into a full table of busy clients")
	}
	clk = clk.Add(2 * time.Second) // a and b refilled: evictable
	if !l.allow("c") {
		t.Fatal("idle buckets were not evicted")
	}
	if len(l.buckets) > 2 {
		t.Fatalf("%d buckets, max 2", len(l.buckets))
	}
}

// A config that no longer loads is not "the previous config": the daemon
// refuses every release (503 config_invalid, audited) until it loads again,
// and reports the consent its consent line says.
func TestReloadFailureRefuses(t *testing.T) {
	f := newFixture(t)
	s := f.startServer("alice", f.devPolicy, ConsentGranted)
	if err := writeConfig(f, "alice", "assertion.swname ==", ConsentRevoked); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "policy") {
		t.Fatalf("reload of a broken config: %v", err)
	}
	if s.Consent() != ConsentRevoked {
		t.Fatalf("consent %q, want the consent line's revoked", s.Consent())
	}
	c := dialServer(t, s)
	tok, _ := f.att.Mint("mcbn-test-alice", []string{c.nonce})
	code, ref, rr := c.post(t, requestBody(tok))
	if rr != nil || code != 503 || ref.Reason != ReasonConfigInvalid {
		t.Fatalf("after a failed reload: HTTP %d %q, want 503 %s", code, ref.Reason, ReasonConfigInvalid)
	}
	if rec := lastAudit(t, f.auditPath("alice")); rec.Reason != ReasonConfigInvalid || !strings.HasPrefix(rec.Detail, "config_invalid: ") {
		t.Fatalf("audit record %+v", rec)
	}
	// Fixed, still revoked: consent_revoked; granted: released again.
	writeConfig(f, "alice", f.devPolicy, ConsentRevoked)
	waitFor(t, "the fixed config", func() bool { return s.Status().State == StateConsentRevoked })
	writeConfig(f, "alice", f.devPolicy, ConsentGranted)
	waitFor(t, "consent granted", func() bool { return s.Status().Releasing })
	c = dialServer(t, s)
	tok, _ = f.att.Mint("mcbn-test-alice", []string{c.nonce})
	if code, ref, rr := c.post(t, requestBody(tok)); rr == nil {
		t.Fatalf("HTTP %d %s after the config was fixed", code, ref.Reason)
	}
}
