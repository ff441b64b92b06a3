package attest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// signRaw signs exactly header and payload (bytes as given, trailing data
// included) with RS256, as a compromised or buggy signer could.
func signRaw(t testing.TB, key *rsa.PrivateKey, header, payload []byte) string {
	t.Helper()
	input := b64url(header) + "." + b64url(payload)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64url(sig)
}

// nonces returns n distinct nonces of length size, the last one testNonce
// when size is its length.
func nonces(n, size int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = strings.Repeat(string(rune('a'+i)), size)
	}
	return out
}

// Token age: iat older than the max age (plus skew) is refused even while
// exp is still ahead; iat ahead of now beyond the skew is refused too.
func TestVerifyTokenAge(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	short, err := NewVerifier(VerifierConfig{Issuer: d.Issuer(), Audience: testAudience, Now: clk.Now, Logger: quietLogger(), MaxTokenAge: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Hour)
	cases := []struct {
		name     string
		v        *Verifier
		iat      time.Time
		sentinel error
		code     string
	}{
		{"one hour old", v, now.Add(-time.Hour), nil, "ok"},
		{"older than an hour, within skew", v, now.Add(-time.Hour - 29*time.Second), nil, "ok"},
		{"older than an hour beyond skew", v, now.Add(-time.Hour - 31*time.Second), ErrTooOld, "too_old"},
		{"a day old, exp still ahead", v, now.Add(-24 * time.Hour), ErrTooOld, "too_old"},
		{"configured max age", short, now.Add(-11 * time.Minute), ErrTooOld, "too_old"},
		{"configured max age, fresh enough", short, now.Add(-9 * time.Minute), nil, "ok"},
		{"iat ahead within skew", v, now.Add(29 * time.Second), nil, "ok"},
		{"iat ahead beyond skew", v, now.Add(31 * time.Second), ErrIssuedInFuture, "issued_in_future"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d.SetMutate(SetTimes(tc.iat, tc.iat.Add(-time.Hour), later))
			_, err := tc.v.Verify(context.Background(), tokenViaSocket(t, d, testAudience, testNonce), testNonce)
			if tc.sentinel == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantErr(t, err, tc.sentinel, tc.code)
			if !strings.Contains(err.Error(), "iat") && tc.sentinel == ErrTooOld {
				t.Errorf("error does not name iat: %v", err)
			}
		})
	}
	for _, age := range []time.Duration{-time.Second, MaxMaxTokenAge + time.Second} {
		if _, err := NewVerifier(VerifierConfig{Issuer: d.Issuer(), Audience: testAudience, MaxTokenAge: age}); err == nil {
			t.Errorf("MaxTokenAge %v accepted", age)
		}
	}
}

// eat_nonce holds at most 6 entries of 8..88 bytes each (what the launcher
// can issue); more, shorter or longer is refused as malformed, before any
// key fetch.
func TestVerifyNonceBounds(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	key, _ := testKeys(t)
	with := func(list ...any) []any { return append(list, testNonce) }
	cases := []struct {
		name  string
		nonce any
		ok    bool
	}{
		{"six entries", with(nonces(5, 20)...), true},
		{"seven entries", with(nonces(6, 20)...), false},
		{"a hundred entries", with(nonces(99, 10)...), false},
		{"8 bytes", with("12345678"), true},
		{"7 bytes", with("1234567"), false},
		{"empty entry", with(""), false},
		{"88 bytes", with(strings.Repeat("x", 88)), true},
		{"89 bytes", with(strings.Repeat("x", 89)), false},
		{"single string of 89 bytes", strings.Repeat("x", 89), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := decodeClaims(t, tokenViaSocket(t, d, testAudience, testNonce))
			c["eat_nonce"] = tc.nonce
			tok := signWith(t, key, d.KeyID(), c)
			_, err := v.Verify(context.Background(), tok, testNonce)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantErr(t, err, ErrMalformed, "malformed")
			if !strings.Contains(err.Error(), "eat_nonce") {
				t.Errorf("error does not name eat_nonce: %v", err)
			}
		})
	}
}

// A header or claims object followed by anything, even a stray "}" or "]",
// is refused as malformed, although correctly signed and before any key
// fetch.
func TestVerifyTrailingBytes(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	key, _ := testKeys(t)
	claims, err := json.Marshal(decodeClaims(t, tokenViaSocket(t, d, testAudience, testNonce)))
	if err != nil {
		t.Fatal(err)
	}
	header := []byte(`{"alg":"RS256","kid":"` + d.KeyID() + `","typ":"JWT"}`)
	if _, err := v.Verify(context.Background(), signRaw(t, key, header, claims), testNonce); err != nil {
		t.Fatalf("the untouched token is refused: %v", err)
	}
	fetches := d.JWKSRequests()
	for _, tail := range []string{"}", "]", "}}", " ", "\n", "{}", "null", "\x00"} {
		for _, where := range []string{"header", "claims"} {
			h, c := header, claims
			if where == "header" {
				h = append(append([]byte(nil), header...), tail...)
			} else {
				c = append(append([]byte(nil), claims...), tail...)
			}
			_, err := v.Verify(context.Background(), signRaw(t, key, h, c), testNonce)
			t.Run(fmt.Sprintf("%s/%q", where, tail), func(t *testing.T) {
				wantErr(t, err, ErrMalformed, "malformed")
				if !strings.Contains(err.Error(), where) {
					t.Errorf("error does not name the %s: %v", where, err)
				}
			})
		}
		if _, err := parseClaims(append(append([]byte(nil), claims...), tail...)); err == nil {
			t.Errorf("parseClaims accepts claims followed by %q", tail)
		}
	}
	if d.JWKSRequests() != fetches {
		t.Errorf("tokens with trailing bytes made the verifier fetch keys")
	}
}

// jwk renders an RSA public key as a JWKS entry.
func jwk(t *testing.T, key *rsa.PrivateKey, kid string) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An issuer whose JWKS lists one key id twice is refused: otherwise the
// last entry silently wins, and a key appended under the genuine key's id
// would verify tokens in its name.
func TestVerifyJWKSDuplicateKid(t *testing.T) {
	clk := newClock()
	genuine, attacker := testKeys(t)
	var keys []json.RawMessage
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"keys": keys})
	})
	claims := devClaims(srv.URL, testAudience, []string{testNonce}, clk.Now(), time.Hour, testDigest, "r")
	forged := signWith(t, attacker, "k1", claims)

	keys = []json.RawMessage{jwk(t, genuine, "k1"), jwk(t, attacker, "k1")}
	v := newTestVerifier(t, srv.URL, clk)
	_, err := v.Verify(context.Background(), forged, testNonce)
	wantErr(t, err, ErrKeysUnavailable, "keys_unavailable")
	if !strings.Contains(err.Error(), `key id "k1" more than once`) {
		t.Errorf("error does not name the duplicate kid: %v", err)
	}

	// The same, with the duplicate being a key we would not use anyway.
	enc, _ := json.Marshal(jose.JSONWebKey{Key: &attacker.PublicKey, KeyID: "k1", Algorithm: "RSA-OAEP", Use: "enc"})
	keys = []json.RawMessage{jwk(t, genuine, "k1"), enc}
	v = newTestVerifier(t, srv.URL, clk)
	_, err = v.Verify(context.Background(), signWith(t, genuine, "k1", claims), testNonce)
	wantErr(t, err, ErrKeysUnavailable, "keys_unavailable")

	// Distinct ids: the genuine key verifies, the other one's tokens fail.
	keys = []json.RawMessage{jwk(t, genuine, "k1"), jwk(t, attacker, "k2")}
	v = newTestVerifier(t, srv.URL, clk)
	if _, err := v.Verify(context.Background(), signWith(t, genuine, "k1", claims), testNonce); err != nil {
		t.Fatalf("genuine token: %v", err)
	}
	_, err = v.Verify(context.Background(), forged, testNonce)
	wantErr(t, err, ErrSignature, "signature")
}
