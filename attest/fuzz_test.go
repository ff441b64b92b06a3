package attest

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// FuzzParseClaims: any payload either parses into claims whose accessors are
// safe to call, or fails as ErrMalformed.
func FuzzParseClaims(f *testing.F) {
	f.Add([]byte(`{"iss":"https://confidentialcomputing.googleapis.com","aud":"a","exp":1800003600,"iat":1800000000,"nbf":1800000000,"eat_nonce":"0123456789"}`))
	f.Add([]byte(`{"aud":["a","b"],"exp":1.5,"iat":0,"eat_nonce":["0123456789","x"],"submods":{"container":{"image_digest":"sha256:00"}}}`))
	f.Add([]byte(`{"exp":1e300,"iat":-1}`))
	f.Add([]byte(`{"exp":"1","iat":1}`))
	f.Add([]byte(`{"aud":[1],"exp":1,"iat":1}`))
	f.Add([]byte(`{"submods":[],"swname":7,"exp":1,"iat":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"exp":1,"iat":1}{}`))
	f.Add([]byte(`{"exp":1,"exp":2,"iat":1}`))
	// Trailing bytes after the object, and eat_nonce beyond the launcher's
	// bounds (6 entries of 8..88 bytes).
	f.Add([]byte(`{"exp":1,"iat":1}}`))
	f.Add([]byte(`{"exp":1,"iat":1}]`))
	f.Add([]byte(`{"exp":1,"iat":1} `))
	f.Add([]byte(`{"exp":1,"iat":1,"eat_nonce":["aaaaaaaa","bbbbbbbb","cccccccc","dddddddd","eeeeeeee","ffffffff","gggggggg"]}`))
	f.Add([]byte(`{"exp":1,"iat":1,"eat_nonce":"1234567"}`))
	f.Add([]byte(`{"exp":1,"iat":1,"eat_nonce":["` + strings.Repeat("x", 89) + `"]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := parseClaims(payload)
		if err != nil {
			if Reason(err) != "malformed" {
				t.Fatalf("error %v has reason %q", err, Reason(err))
			}
			return
		}
		if _, ok := c.Raw["exp"].(float64); !ok {
			t.Fatalf("parsed without a numeric exp: %s", payload)
		}
		if !json.Valid(payload) || len(bytes.TrimRight(payload, " \t\r\n")) != len(payload) {
			t.Fatalf("accepted trailing data: %q", payload)
		}
		if n := c.Nonces(); len(n) > MaxTokenNonces {
			t.Fatalf("accepted %d nonces", len(n))
		}
		for _, n := range c.Nonces() {
			if len(n) < MinTokenNonceLen || len(n) > MaxTokenNonceLen {
				t.Fatalf("accepted a nonce of %d bytes", len(n))
			}
		}
		_ = c.ImageDigest() + c.ImageReference() + c.SWName() + c.DebugStatus() + c.HWModel() + c.ProjectID() + c.String()
		_ = c.SupportAttributes()
		_ = c.ServiceAccounts()
		_ = c.Audience()
		_ = c.Nonces()
	})
}

// fuzzVerifier returns a verifier holding key under kid, with fetching
// disabled, so fuzzing never touches the network.
func fuzzVerifier(key *rsa.PrivateKey, kid string, now time.Time) *Verifier {
	v, err := NewVerifier(VerifierConfig{Issuer: "http://127.0.0.1:9", Audience: testAudience, Now: func() time.Time { return now }, Logger: quietLogger()})
	if err != nil {
		panic(err)
	}
	v.keys.keys = map[string]*rsa.PublicKey{kid: &key.PublicKey}
	v.keys.fetchedAt = now
	v.keys.unknownAt = now
	v.keys.failedAt = now // no fetch attempt of any kind
	return v
}

// FuzzVerify: arbitrary tokens never panic, always fail with a classified
// error, and whatever is accepted really carries the issuer, audience and
// nonce.
func FuzzVerify(f *testing.F) {
	key, _ := testKeys(f)
	now := time.Unix(1_800_000_000, 0)
	claims := devClaims("http://127.0.0.1:9", testAudience, []string{testNonce}, now, time.Hour, testDigest, "r")
	valid := signWith(f, key, "k1", claims)
	parts := strings.Split(valid, ".")
	f.Add(valid)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(rawToken(f, map[string]any{"alg": "none", "kid": "k1"}, claims, nil))
	f.Add(rawToken(f, map[string]any{"alg": "HS256", "kid": "k1"}, claims, []byte("0123456789abcdef0123456789abcdef")))
	f.Add(rawToken(f, map[string]any{"alg": "RS256", "kid": "k1", "crit": []string{"b64"}, "b64": false}, claims, []byte{1}))
	f.Add(rawToken(f, map[string]any{"alg": "RS256", "kid": "unknown"}, claims, []byte{1, 2, 3}))
	f.Add("a.b.c")
	f.Add("..")
	f.Add(`{"payload":"e30","signatures":[]}`)
	hdr := []byte(`{"alg":"RS256","kid":"k1","typ":"JWT"}`)
	payload, _ := json.Marshal(claims)
	f.Add(signRaw(f, key, hdr, append(payload, '}')))
	f.Add(signRaw(f, key, hdr, append(payload, ']')))
	f.Add(signRaw(f, key, hdr, append(payload, ' ')))
	f.Add(signRaw(f, key, append(hdr, '}'), payload))
	f.Add(signRaw(f, key, append(hdr, ' '), payload))
	old := devClaims("http://127.0.0.1:9", testAudience, []string{testNonce}, now.Add(-2*time.Hour), 3*time.Hour, testDigest, "r")
	f.Add(signWith(f, key, "k1", old))
	many := devClaims("http://127.0.0.1:9", testAudience, []string{"aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd", "eeeeeeeeee", "ffffffffff", testNonce}, now, time.Hour, testDigest, "r")
	f.Add(signWith(f, key, "k1", many))
	v := fuzzVerifier(key, "k1", now)
	if _, err := v.Verify(context.Background(), valid, testNonce); err != nil {
		f.Fatalf("the valid seed is refused: %v", err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(context.Background(), token, testNonce)
		if err != nil {
			if Reason(err) == "internal" {
				t.Fatalf("unclassified error: %v", err)
			}
			if len(token) > 40 && strings.Contains(err.Error(), token) {
				t.Fatalf("error echoes the token")
			}
			return
		}
		if c.Issuer() != "http://127.0.0.1:9" || !slices.Contains(c.Audience(), testAudience) || !slices.Contains(c.Nonces(), testNonce) {
			t.Fatalf("accepted claims %v", c.Raw)
		}
		if now.Sub(c.IssuedAt()) > DefaultMaxTokenAge+DefaultClockSkew || len(c.Nonces()) > MaxTokenNonces {
			t.Fatalf("accepted an old token or too many nonces: %v", c.Raw)
		}
	})
}

// FuzzTokenRequest: the dev attester's request parser accepts only requests
// within the launcher's limits, and what it accepts survives a round trip.
func FuzzTokenRequest(f *testing.F) {
	f.Add([]byte(`{"audience":"https://a.example","token_type":"OIDC","nonces":["0123456789"]}`))
	f.Add([]byte(`{"audience":"a","token_type":"OIDC"}`))
	f.Add([]byte(`{"token_type":"OIDC"}`))
	f.Add([]byte(`{"audience":"a","token_type":"PKI","nonces":[]}`))
	f.Add([]byte(`{"audience":"a","token_type":"OIDC","nonces":["aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa","aaaaaaaaaa"]}`))
	f.Add([]byte(`{"audience":"a","token_type":"OIDC","nonces":"0123456789"}`))
	f.Add([]byte(`{"audience":"a","token_type":"OIDC","extra":1}`))
	f.Add([]byte(`{"audience":"a","token_type":"OIDC"} {}`))
	f.Add([]byte(`{"audience":"\u0000","token_type":"OIDC","nonces":["\ud800\ud800\ud800\ud800\ud800"]}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := parseTokenRequest(body)
		if err != nil {
			if Reason(err) != "bad_request" {
				t.Fatalf("error %v has reason %q", err, Reason(err))
			}
			return
		}
		if req.TokenType != "OIDC" {
			t.Fatalf("accepted token_type %q", req.TokenType)
		}
		if err := ValidateTokenRequest(req.Audience, req.Nonces); err != nil {
			t.Fatalf("accepted a request beyond the limits: %v", err)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := parseTokenRequest(again)
		if err != nil || req2.Audience != req.Audience || !slices.Equal(req2.Nonces, req.Nonces) {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", req, again, req2, err)
		}
	})
}

// FuzzParseJWKS: a key set either yields RS256 keys of at least 2048 bits,
// each under a key id the set lists once, or fails as keys_unavailable.
func FuzzParseJWKS(f *testing.F) {
	key, other := testKeys(f)
	entry := func(k *rsa.PrivateKey, kid, alg, use string) string {
		b, _ := json.Marshal(jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: alg, Use: use})
		return string(b)
	}
	f.Add([]byte(`{"keys":[` + entry(key, "k1", "RS256", "sig") + `]}`))
	f.Add([]byte(`{"keys":[` + entry(key, "k1", "RS256", "sig") + `,` + entry(other, "k1", "RS256", "sig") + `]}`))
	f.Add([]byte(`{"keys":[` + entry(key, "k1", "RS256", "sig") + `,` + entry(other, "k1", "RSA-OAEP", "enc") + `]}`))
	f.Add([]byte(`{"keys":[` + entry(key, "k1", "RS256", "sig") + `,` + entry(other, "k2", "", "") + `]}`))
	f.Add([]byte(`{"keys":[` + entry(key, "", "RS256", "sig") + `]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"k1"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := parseJWKS(body, "https://issuer.example/jwks")
		if err != nil {
			if Reason(err) != "keys_unavailable" {
				t.Fatalf("error %v has reason %q", err, Reason(err))
			}
			return
		}
		var set jose.JSONWebKeySet
		if json.Unmarshal(body, &set) != nil {
			t.Fatal("parseJWKS accepted a set that does not decode")
		}
		count := map[string]int{}
		for _, k := range set.Keys {
			count[k.KeyID]++
		}
		for kid, k := range keys {
			if kid == "" || k.N.BitLen() < minRSABits {
				t.Fatalf("kept key %q of %d bits", kid, k.N.BitLen())
			}
			if count[kid] > 1 {
				t.Fatalf("kept key id %q listed %d times", kid, count[kid])
			}
		}
	})
}
