package attest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// The whole path: dev attester -> provider over the Unix socket -> verifier
// over HTTP discovery and JWKS.
func TestVerifyEndToEnd(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	tok := tokenViaSocket(t, d, testAudience, testNonce)

	c, err := v.Verify(context.Background(), tok, testNonce)
	if err != nil {
		t.Fatalf("Verify: %v (reason %s)", err, Reason(err))
	}
	checks := map[string][2]string{
		"iss":          {c.Issuer(), d.Issuer()},
		"sub":          {c.Subject(), DevSubject},
		"image_digest": {c.ImageDigest(), testDigest},
		"image_ref":    {c.ImageReference(), "localhost/mcbn-dev@" + testDigest},
		"swname":       {c.SWName(), DevSWName},
		"dbgstat":      {c.DebugStatus(), "enabled"},
		"hwmodel":      {c.HWModel(), DevHWModel},
		"project":      {c.ProjectID(), DevProjectID},
	}
	for name, got := range checks {
		if got[0] != got[1] {
			t.Errorf("%s = %q, want %q", name, got[0], got[1])
		}
	}
	if a := c.Audience(); len(a) != 1 || a[0] != testAudience {
		t.Errorf("aud = %v", a)
	}
	if n := c.Nonces(); len(n) != 1 || n[0] != testNonce {
		t.Errorf("eat_nonce = %v", n)
	}
	if sa := c.ServiceAccounts(); len(sa) != 1 || sa[0] != DevServiceAccount {
		t.Errorf("google_service_accounts = %v", sa)
	}
	if attrs, ok := c.Lookup("submods", "confidential_space", "support_attributes"); !ok || len(attrs.([]any)) != 0 {
		t.Errorf("support_attributes = %v, %v; want present and empty", attrs, ok)
	}
	if !c.Expiry().Equal(clk.Now().Add(time.Hour)) || !c.IssuedAt().Equal(clk.Now()) || !c.NotBefore().Equal(clk.Now()) {
		t.Errorf("times: iat %v nbf %v exp %v, now %v", c.IssuedAt(), c.NotBefore(), c.Expiry(), clk.Now())
	}
	if _, ok := c.Raw["submods"].(map[string]any); !ok {
		t.Errorf("Raw has no submods object: %v", c.Raw)
	}
	if s := c.String(); strings.Contains(s, tok) || !strings.Contains(s, testDigest) {
		t.Errorf("String() = %q", s)
	}
	// A production-style policy refuses the dev token.
	stable := false
	for _, a := range c.SupportAttributes() {
		stable = stable || a == "STABLE"
	}
	if c.SWName() == "CONFIDENTIAL_SPACE" || c.DebugStatus() == "disabled-since-boot" || stable {
		t.Errorf("dev token looks like production: swname %q dbgstat %q STABLE %v", c.SWName(), c.DebugStatus(), stable)
	}
}

// A token obtained for one connection's nonce is refused on another.
func TestVerifyReplayOtherConnection(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	tok := tokenViaSocket(t, d, testAudience, testNonce)
	_, err := v.Verify(context.Background(), tok, otherNonce)
	wantErr(t, err, ErrNonce, "nonce")
	_, err = v.Verify(context.Background(), tok, "")
	wantErr(t, err, ErrNonce, "nonce")
	// Same length, one character off: still refused.
	_, err = v.Verify(context.Background(), tok, testNonce[:63]+"c")
	wantErr(t, err, ErrNonce, "nonce")
}

func TestVerifyNonceArray(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	tok := tokenViaSocket(t, d, testAudience, "another-nonce-0001", testNonce)
	if got := decodeClaims(t, tok)["eat_nonce"]; len(got.([]any)) != 2 {
		t.Fatalf("eat_nonce = %v, want an array of 2", got)
	}
	if _, err := v.Verify(context.Background(), tok, testNonce); err != nil {
		t.Fatalf("nonce in array refused: %v", err)
	}
	_, err := v.Verify(context.Background(), tok, otherNonce)
	wantErr(t, err, ErrNonce, "nonce")
}

// Each claim check, through tokens minted by the real socket path with
// claim overrides.
func TestVerifyClaimChecks(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	cases := []struct {
		name     string
		mutate   func(map[string]any)
		audience string // requested audience ("" -> testAudience)
		sentinel error  // nil: accepted
		code     string
	}{
		{"valid", nil, "", nil, "ok"},
		{"wrong audience", nil, "https://shareholder.bob.example", ErrAudience, "audience"},
		{"audience array containing ours", SetClaim([]any{"https://other.example", testAudience}, "aud"), "", nil, "ok"},
		{"audience array without ours", SetClaim([]any{"https://other.example"}, "aud"), "", ErrAudience, "audience"},
		{"wrong issuer", SetClaim(IssuerConfidentialSpace, "iss"), "", ErrIssuer, "issuer"},
		{"missing issuer", func(c map[string]any) { delete(c, "iss") }, "", ErrIssuer, "issuer"},
		{"expired", SetTimes(now.Add(-2*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)), "", ErrExpired, "expired"},
		{"expired beyond skew", SetTimes(now.Add(-time.Hour), now.Add(-time.Hour), now.Add(-31*time.Second)), "", ErrExpired, "expired"},
		{"expired within skew", SetTimes(now.Add(-time.Hour), now.Add(-time.Hour), now.Add(-29*time.Second)), "", nil, "ok"},
		{"not yet valid", SetTimes(now, now.Add(time.Minute), now.Add(time.Hour)), "", ErrNotYetValid, "not_yet_valid"},
		{"nbf within skew", SetTimes(now, now.Add(20*time.Second), now.Add(time.Hour)), "", nil, "ok"},
		{"issued in the future", SetTimes(now.Add(10*time.Minute), now, now.Add(time.Hour)), "", ErrIssuedInFuture, "issued_in_future"},
		{"missing exp", func(c map[string]any) { delete(c, "exp") }, "", ErrMalformed, "malformed"},
		{"exp as string", SetClaim("1800003600", "exp"), "", ErrMalformed, "malformed"},
		{"aud as number", SetClaim(42, "aud"), "", ErrMalformed, "malformed"},
		{"eat_nonce as object", SetClaim(map[string]any{"n": testNonce}, "eat_nonce"), "", ErrMalformed, "malformed"},
		{"foreign digest accepted by the verifier", SetClaim("sha256:00", "submods", "container", "image_digest"), "", nil, "ok"},
	}
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mutate != nil {
				d.SetMutate(tc.mutate)
			} else {
				d.SetMutate()
			}
			aud := tc.audience
			if aud == "" {
				aud = testAudience
			}
			tok := tokenViaSocket(t, d, aud, testNonce)
			_, err := v.Verify(context.Background(), tok, testNonce)
			if tc.sentinel == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantErr(t, err, tc.sentinel, tc.code)
		})
	}
}

// An unknown key id makes the verifier refetch the JWKS once; further
// unknown ids within the interval are refused without contacting the issuer.
func TestVerifyUnknownKeyRefetchRateLimited(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tokenViaSocket(t, d, testAudience, testNonce), testNonce); err != nil {
		t.Fatal(err)
	}
	if n := d.JWKSRequests(); n != 1 {
		t.Fatalf("JWKS served %d times after the first token, want 1", n)
	}
	_, other := testKeys(t)
	claims := decodeClaims(t, tokenViaSocket(t, d, testAudience, testNonce))
	forged := signWith(t, other, "made-up-kid", claims)

	_, err := v.Verify(ctx, forged, testNonce)
	wantErr(t, err, ErrUnknownKey, "unknown_key")
	if n := d.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS served %d times after an unknown kid, want 2 (one refetch)", n)
	}
	for i := 0; i < 20; i++ {
		_, err = v.Verify(ctx, forged, testNonce)
		wantErr(t, err, ErrUnknownKey, "unknown_key")
	}
	if n := d.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS served %d times during a flood of unknown kids, want still 2", n)
	}
	// Known keys keep working while the refetch is rate-limited.
	if _, err := v.Verify(ctx, tokenViaSocket(t, d, testAudience, testNonce), testNonce); err != nil {
		t.Fatal(err)
	}
	// After the interval, a concurrent flood causes exactly one refetch.
	clk.Advance(DefaultMinRefetchInterval + time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(ctx, forged, testNonce); !errors.Is(err, ErrUnknownKey) {
				t.Errorf("concurrent unknown kid: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := d.JWKSRequests(); n != 3 || v.keys.fetchCount() != 3 {
		t.Fatalf("JWKS served %d times (verifier counted %d) after the interval, want 3", n, v.keys.fetchCount())
	}
}

// Keys are refreshed after KeysMaxAge; while the issuer is down, cached keys
// keep verifying, and an issuer that stays down is not hammered.
func TestVerifyKeysRefreshAndOutage(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	ctx := context.Background()
	if _, err := v.Verify(ctx, tokenViaSocket(t, d, testAudience, testNonce), testNonce); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultKeysMaxAge + time.Minute)
	if _, err := v.Verify(ctx, tokenViaSocket(t, d, testAudience, testNonce), testNonce); err != nil {
		t.Fatal(err)
	}
	if n := d.JWKSRequests(); n != 2 {
		t.Fatalf("JWKS served %d times, want 2 (one refresh after max age)", n)
	}
	tok := tokenViaSocket(t, d, testAudience, testNonce)
	d.Close() // the issuer goes away
	clk.Advance(DefaultKeysMaxAge + time.Minute)
	// Still within maxStale: the cached key verifies. The token was minted
	// an hour ago, so allow for that with a fresh one minted offline.
	key, _ := testKeys(t)
	claims := decodeClaims(t, tok)
	SetTimes(clk.Now(), clk.Now(), clk.Now().Add(time.Hour))(claims)
	fresh := signWith(t, key, d.KeyID(), claims)
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(ctx, fresh, testNonce); err != nil {
			t.Fatalf("cached key during outage: %v", err)
		}
	}
	if n := v.keys.fetchCount(); n != 3 {
		t.Fatalf("verifier tried %d fetches, want 3 (one failed refresh, then rate-limited)", n)
	}
}

// A rotated key (new kid) is picked up by the refetch.
func TestVerifyKeyRotation(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	ctx := context.Background()
	old := tokenViaSocket(t, d, testAudience, testNonce)
	if _, err := v.Verify(ctx, old, testNonce); err != nil {
		t.Fatal(err)
	}
	_, other := testKeys(t)
	if err := d.RotateKey(other); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, tokenViaSocket(t, d, testAudience, testNonce), testNonce); err != nil {
		t.Fatalf("token under the rotated key: %v", err)
	}
	if _, err := v.Verify(ctx, old, testNonce); err != nil {
		t.Fatalf("token under the previous key: %v", err)
	}
}

// A token signed by another key but naming the attester's kid.
func TestVerifyWrongKeySameKid(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	_, other := testKeys(t)
	forged := signWith(t, other, d.KeyID(), decodeClaims(t, tokenViaSocket(t, d, testAudience, testNonce)))
	_, err := v.Verify(context.Background(), forged, testNonce)
	wantErr(t, err, ErrSignature, "signature")
}

func TestVerifyAlgNone(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	claims := decodeClaims(t, tokenViaSocket(t, d, testAudience, testNonce))
	for _, alg := range []string{"none", "None", "NONE", ""} {
		tok := rawToken(t, map[string]any{"alg": alg, "kid": d.KeyID(), "typ": "JWT"}, claims, nil)
		_, err := v.Verify(context.Background(), tok, testNonce)
		wantErr(t, err, ErrAlgorithm, "algorithm")
	}
	if d.JWKSRequests() != 0 {
		t.Errorf("alg none made the verifier fetch keys")
	}
}

// The classic confusion attack: HS256 keyed with the issuer's public key.
func TestVerifyHS256WithPublicKey(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	key, _ := testKeys(t)
	claims := decodeClaims(t, tokenViaSocket(t, d, testAudience, testNonce))
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for name, secret := range map[string][]byte{"pem": pemKey, "der": der, "modulus": key.N.Bytes()} {
		for _, alg := range []string{"HS256", "HS384", "HS512", "ES256", "PS256", "RS384", "RS512"} {
			hdr := map[string]any{"alg": alg, "kid": d.KeyID(), "typ": "JWT"}
			unsigned := rawToken(t, hdr, claims, nil)
			unsigned = unsigned[:len(unsigned)-1] // drop the trailing "." of the empty signature
			mac := hmac.New(sha256.New, secret)
			mac.Write([]byte(unsigned))
			tok := unsigned + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
			_, err := v.Verify(context.Background(), tok, testNonce)
			t.Run(name+"/"+alg, func(t *testing.T) { wantErr(t, err, ErrAlgorithm, "algorithm") })
		}
	}
}

func TestVerifyTamperedSignature(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	tok := tokenViaSocket(t, d, testAudience, testNonce)
	parts := strings.Split(tok, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	for _, i := range []int{0, len(sig) / 2, len(sig) - 1} {
		bad := append([]byte(nil), sig...)
		bad[i] ^= 0x01
		_, err := v.Verify(context.Background(), parts[0]+"."+parts[1]+"."+b64url(bad), testNonce)
		wantErr(t, err, ErrSignature, "signature")
	}
	// Truncated signature.
	_, err := v.Verify(context.Background(), parts[0]+"."+parts[1]+"."+b64url(sig[:len(sig)-1]), testNonce)
	wantErr(t, err, ErrSignature, "signature")
}

func TestVerifyTamperedPayload(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	tok := tokenViaSocket(t, d, testAudience, testNonce)
	parts := strings.Split(tok, ".")
	edits := []func(map[string]any){
		SetClaim("CONFIDENTIAL_SPACE", "swname"),
		SetClaim("disabled-since-boot", "dbgstat"),
		SetClaim("sha256:0000000000000000000000000000000000000000000000000000000000000000", "submods", "container", "image_digest"),
		SetClaim(otherNonce, "eat_nonce"),
	}
	for i, edit := range edits {
		c := decodeClaims(t, tok)
		edit(c)
		forged := rawToken(t, map[string]any{}, c, nil) // only its payload segment is used
		payload := strings.Split(forged, ".")[1]
		_, err := v.Verify(context.Background(), parts[0]+"."+payload+"."+parts[2], testNonce)
		if i == 3 {
			_, err = v.Verify(context.Background(), parts[0]+"."+payload+"."+parts[2], otherNonce)
		}
		wantErr(t, err, ErrSignature, "signature")
	}
}

func TestVerifyMalformed(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	tok := tokenViaSocket(t, d, testAudience, testNonce)
	parts := strings.Split(tok, ".")
	hdr := parts[0]
	cases := map[string]string{
		"empty":                 "",
		"one part":              "abc",
		"two parts":             parts[0] + "." + parts[1],
		"four parts":            tok + ".x",
		"bad base64 header":     "!!!." + parts[1] + "." + parts[2],
		"padded header":         parts[0] + "==." + parts[1] + "." + parts[2],
		"header not JSON":       b64url([]byte("not json")) + "." + parts[1] + "." + parts[2],
		"header JSON array":     b64url([]byte(`["RS256"]`)) + "." + parts[1] + "." + parts[2],
		"bad base64 payload":    hdr + ".%%%." + parts[2],
		"payload not JSON":      hdr + "." + b64url([]byte("{not json")) + "." + parts[2],
		"payload JSON array":    hdr + "." + b64url([]byte(`[1,2]`)) + "." + parts[2],
		"payload null":          hdr + "." + b64url([]byte(`null`)) + "." + parts[2],
		"payload trailing data": hdr + "." + b64url([]byte(`{"exp":1,"iat":1} {}`)) + "." + parts[2],
		"bad base64 signature":  parts[0] + "." + parts[1] + ".***",
		"empty signature":       parts[0] + "." + parts[1] + ".",
		"no kid":                b64url([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2],
		"crit header":           b64url([]byte(`{"alg":"RS256","kid":"k","crit":["exp"],"exp":1}`)) + "." + parts[1] + "." + parts[2],
		"oversize":              hdr + "." + strings.Repeat("A", MaxTokenSize) + "." + parts[2],
		"JSON serialization":    `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`,
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), bad, testNonce)
			wantErr(t, err, ErrMalformed, "malformed")
			if strings.Contains(err.Error(), parts[2]) || (len(bad) > 20 && strings.Contains(err.Error(), bad)) {
				t.Errorf("error echoes the token: %v", err)
			}
		})
	}
	if d.JWKSRequests() != 0 {
		t.Errorf("malformed tokens made the verifier fetch keys")
	}
}

func TestVerifyKeysUnavailable(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	tok := tokenViaSocket(t, d, testAudience, testNonce)
	ctx := context.Background()

	// Nothing listens at the issuer.
	srv := httptest.NewServer(http.NotFoundHandler())
	dead := srv.URL
	srv.Close()
	v := newTestVerifier(t, dead, clk)
	_, err := v.Verify(ctx, tok, testNonce)
	wantErr(t, err, ErrKeysUnavailable, "keys_unavailable")

	// Discovery names another issuer (e.g. a proxy in the way).
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"issuer": d.Issuer(), "jwks_uri": d.JWKSURL()})
	})
	mux.HandleFunc("/big/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"issuer":"` + strings.Repeat("x", maxDiscoveryBody) + `"}`))
	})
	other := httptest.NewServer(mux)
	defer other.Close()
	v = newTestVerifier(t, other.URL, clk)
	_, err = v.Verify(ctx, tok, testNonce)
	wantErr(t, err, ErrKeysUnavailable, "keys_unavailable")

	v = newTestVerifier(t, other.URL+"/big", clk)
	_, err = v.Verify(ctx, tok, testNonce)
	wantErr(t, err, ErrKeysUnavailable, "keys_unavailable")
	if !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversize discovery error = %v", err)
	}
}

func TestNewVerifierConfig(t *testing.T) {
	bad := []VerifierConfig{
		{Audience: testAudience},
		{Issuer: IssuerConfidentialSpace},
		{Issuer: "http://confidentialcomputing.googleapis.com", Audience: testAudience},
		{Issuer: "ftp://127.0.0.1", Audience: testAudience},
		{Issuer: IssuerConfidentialSpace, Audience: testAudience, ClockSkew: MaxClockSkew + time.Second},
		{Issuer: IssuerConfidentialSpace, Audience: testAudience, ClockSkew: -time.Second},
		{Issuer: IssuerConfidentialSpace, Audience: strings.Repeat("a", MaxAudienceLen+1)},
	}
	for i, cfg := range bad {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("case %d: NewVerifier(%+v) accepted", i, cfg)
		}
	}
	v, err := NewVerifier(VerifierConfig{Issuer: IssuerConfidentialSpace, Audience: testAudience, ClockSkew: MaxClockSkew})
	if err != nil || v.Issuer() != IssuerConfidentialSpace || v.Audience() != testAudience {
		t.Fatalf("NewVerifier: %v", err)
	}
}

func TestReason(t *testing.T) {
	if Reason(nil) != "ok" || Reason(context.Canceled) != "canceled" || Reason(http.ErrBodyNotAllowed) != "internal" {
		t.Error("Reason of nil, canceled or foreign error")
	}
	seen := map[string]bool{}
	for _, r := range reasons {
		if got := Reason(wrapf(r.err, "detail")); got != r.code {
			t.Errorf("Reason(%v) = %q, want %q", r.err, got, r.code)
		}
		if seen[r.code] {
			t.Errorf("duplicate code %q", r.code)
		}
		seen[r.code] = true
	}
}

// A caller that gives up does not make the key fetch fail for everyone.
func TestVerifyCanceledCallerDoesNotPoisonFetch(t *testing.T) {
	clk := newClock()
	d := startAttester(t, clk)
	v := newTestVerifier(t, d.Issuer(), clk)
	tok := tokenViaSocket(t, d, testAudience, testNonce)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, tok, testNonce); err != nil {
		t.Fatalf("Verify with a canceled context: %v", err)
	}
	if _, err := v.Verify(context.Background(), tok, testNonce); err != nil {
		t.Fatalf("Verify after: %v", err)
	}
	if n := d.JWKSRequests(); n != 1 {
		t.Errorf("JWKS served %d times, want 1", n)
	}
}
