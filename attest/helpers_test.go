package attest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Keys are generated once per test binary: RSA generation is slow.
var (
	keysOnce          sync.Once
	testKey, otherKey *rsa.PrivateKey
)

func testKeys(t testing.TB) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if testKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if otherKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return testKey, otherKey
}

// clock is a settable clock shared by an attester and a verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	testAudience = "https://shareholder.alice.example"
	// testNonce has the shape the proxy uses: hex of a 32-byte EKM.
	testNonce  = "4f2a9c0d3b1e8f7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b"
	otherNonce = "0000000000000000000000000000000000000000000000000000000000000001"
	testDigest = "sha256:a76fd40d851d895f6eee2b047ceaf84fcb06812ef1707dbc9a22e4e74f4cfd1f"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startAttester starts a dev attester on a short socket path in t.TempDir().
func startAttester(t *testing.T, clk *clock, mutate ...func(map[string]any)) *DevAttester {
	t.Helper()
	key, _ := testKeys(t)
	d, err := StartDevAttester(DevAttesterConfig{
		Socket:      filepath.Join(t.TempDir(), "a.sock"),
		ImageDigest: testDigest,
		Key:         key,
		Now:         clk.Now,
		Mutate:      mutate,
		Logger:      quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func newTestVerifier(t *testing.T, issuer string, clk *clock) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Issuer: issuer, Audience: testAudience, Now: clk.Now, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tokenViaSocket gets a token from the attester through the real socket path.
func tokenViaSocket(t *testing.T, d *DevAttester, audience string, nonces ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := d.Provider().Token(ctx, audience, nonces)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signWith signs claims with key under kid, outside any attester.
func signWith(t testing.TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawToken assembles a token from a header and claims as JSON and a raw
// signature, for attacks go-jose would not produce.
func rawToken(t testing.TB, header, claims any, sig []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return b64url(h) + "." + b64url(c) + "." + b64url(sig)
}

// decodeClaims returns the (unverified) claims of a token.
func decodeClaims(t testing.TB, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// wantErr checks err matches sentinel and that Reason gives code.
func wantErr(t *testing.T, err, sentinel error, code string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
	if got := Reason(err); got != code {
		t.Fatalf("Reason(%v) = %q, want %q", err, got, code)
	}
}
