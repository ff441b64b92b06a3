package attest

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// IssuerConfidentialSpace is the issuer of Google Cloud Confidential Space
// attestation tokens.
const IssuerConfidentialSpace = "https://confidentialcomputing.googleapis.com"

// Verifier defaults and bounds.
const (
	DefaultClockSkew          = 30 * time.Second
	MaxClockSkew              = 5 * time.Minute
	DefaultKeysMaxAge         = time.Hour
	DefaultMinRefetchInterval = 30 * time.Second
	// DefaultMaxTokenAge is the oldest iat accepted (plus the clock skew):
	// Confidential Space issues tokens valid for one hour, and the proxy
	// asks for a fresh one on every connection, so an older token is one
	// kept and replayed, or minted by an issuer with a longer lifetime.
	DefaultMaxTokenAge = time.Hour
	// MaxMaxTokenAge bounds MaxTokenAge.
	MaxMaxTokenAge = 24 * time.Hour
	// MaxTokenSize bounds the compact token accepted by Verify.
	MaxTokenSize = 64 << 10
)

// allowedAlgorithms is the only signature algorithm accepted. Confidential
// Space signs its OIDC tokens with RS256 and documents no other; accepting
// more would only widen the attack surface (see docs/attestation.md).
var allowedAlgorithms = []jose.SignatureAlgorithm{jose.RS256}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the token issuer, e.g. IssuerConfidentialSpace, or a dev
	// attester's http://127.0.0.1:PORT. Keys are found through its OIDC
	// discovery document; the issuer is never taken from a token. Required.
	Issuer string
	// Audience is this relying party's audience; aud must contain it. Required.
	Audience string
	// ClockSkew tolerated on exp, nbf and iat: 0 means DefaultClockSkew; at
	// most MaxClockSkew.
	ClockSkew time.Duration
	// MaxTokenAge refuses a token whose iat is older than this plus
	// ClockSkew: 0 means DefaultMaxTokenAge; at most MaxMaxTokenAge.
	MaxTokenAge time.Duration
	// KeysMaxAge is how long fetched keys are used before refreshing them
	// (0: DefaultKeysMaxAge).
	KeysMaxAge time.Duration
	// MinRefetchInterval is the least time between two key fetches, whatever
	// the reason (0: DefaultMinRefetchInterval).
	MinRefetchInterval time.Duration
	// HTTPClient fetches discovery and JWKS; nil: a client with 10 s timeouts
	// that follows redirects only to https (or loopback http).
	HTTPClient *http.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Logger receives key-fetch events (nil: slog.Default()).
	Logger *slog.Logger
}

// Verifier checks attestation tokens for one issuer and one audience. It is
// safe for concurrent use.
type Verifier struct {
	issuer   string
	audience string
	skew     time.Duration
	maxAge   time.Duration
	now      func() time.Time
	keys     *keyCache
}

// NewVerifier checks cfg and returns a Verifier. It does not contact the
// issuer; keys are fetched on first use.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("attest: verifier needs an issuer")
	}
	if err := checkFetchURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("attest: issuer %q: %v", cfg.Issuer, err)
	}
	if cfg.Audience == "" {
		return nil, errors.New("attest: verifier needs an audience")
	}
	if len(cfg.Audience) > MaxAudienceLen {
		return nil, fmt.Errorf("attest: audience longer than %d bytes", MaxAudienceLen)
	}
	switch {
	case cfg.ClockSkew < 0 || cfg.ClockSkew > MaxClockSkew:
		return nil, fmt.Errorf("attest: clock skew %v outside 0..%v", cfg.ClockSkew, MaxClockSkew)
	case cfg.ClockSkew == 0:
		cfg.ClockSkew = DefaultClockSkew
	}
	switch {
	case cfg.MaxTokenAge < 0 || cfg.MaxTokenAge > MaxMaxTokenAge:
		return nil, fmt.Errorf("attest: max token age %v outside 0..%v", cfg.MaxTokenAge, MaxMaxTokenAge)
	case cfg.MaxTokenAge == 0:
		cfg.MaxTokenAge = DefaultMaxTokenAge
	}
	if cfg.KeysMaxAge <= 0 {
		cfg.KeysMaxAge = DefaultKeysMaxAge
	}
	if cfg.MinRefetchInterval <= 0 {
		cfg.MinRefetchInterval = DefaultMinRefetchInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = defaultHTTPClient()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Verifier{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		skew:     cfg.ClockSkew,
		maxAge:   cfg.MaxTokenAge,
		now:      cfg.Now,
		keys:     newKeyCache(cfg.Issuer, cfg.HTTPClient, cfg.KeysMaxAge, cfg.MinRefetchInterval, cfg.Now, cfg.Logger),
	}, nil
}

// Issuer returns the configured issuer.
func (v *Verifier) Issuer() string { return v.issuer }

// Audience returns the configured audience.
func (v *Verifier) Audience() string { return v.audience }

// Verify checks token and returns its claims. wantNonce is the value bound
// to the caller's connection; eat_nonce must contain it. An empty wantNonce
// is refused: a token without channel binding is replayable. Errors wrap the
// package's sentinels (see Reason) and never contain the token.
func (v *Verifier) Verify(ctx context.Context, token string, wantNonce string) (*Claims, error) {
	hdr, err := checkShape(token)
	if err != nil {
		return nil, err
	}
	jws, err := jwt.ParseSigned(token, allowedAlgorithms)
	if err != nil {
		return nil, wrapf(ErrMalformed, "not a signed JWT")
	}
	if len(jws.Headers) != 1 {
		return nil, wrapf(ErrMalformed, "want exactly one signature")
	}
	key, err := v.keys.key(ctx, hdr.Kid)
	if err != nil {
		return nil, err
	}
	// checkShape already proved the payload is a JSON object, so any error
	// here is the signature's.
	var payload rawPayload
	if err := jws.Claims(key, &payload); err != nil {
		return nil, wrapf(ErrSignature, "signature does not verify with key %s", clip(hdr.Kid))
	}
	c, err := parseClaims(payload)
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(c, wantNonce); err != nil {
		return nil, err
	}
	return c, nil
}

// checkClaims judges verified claims: issuer, audience, times, nonce.
func (v *Verifier) checkClaims(c *Claims, wantNonce string) error {
	if c.issuer != v.issuer {
		return wrapf(ErrIssuer, "iss %s, want %q", clip(c.issuer), v.issuer)
	}
	if !contains(c.audience, v.audience) {
		return wrapf(ErrAudience, "aud does not contain %q", v.audience)
	}
	now := v.now()
	if !now.Before(c.expiry.Add(v.skew)) {
		return wrapf(ErrExpired, "expired at %s (now %s, skew %v)", c.expiry.Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.skew)
	}
	if !c.notBefore.IsZero() && now.Add(v.skew).Before(c.notBefore) {
		return wrapf(ErrNotYetValid, "not valid before %s (now %s, skew %v)", c.notBefore.Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.skew)
	}
	if now.Add(v.skew).Before(c.issuedAt) {
		return wrapf(ErrIssuedInFuture, "issued at %s (now %s, skew %v)", c.issuedAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339), v.skew)
	}
	// exp alone is not enough: an issuer's lifetime is its choice, and a
	// token kept for longer than Confidential Space's hour is a replay risk.
	if now.Sub(c.issuedAt) > v.maxAge+v.skew {
		return wrapf(ErrTooOld, "iat %s is older than the max token age %v (now %s, skew %v)", c.issuedAt.Format(time.RFC3339), v.maxAge, now.UTC().Format(time.RFC3339), v.skew)
	}
	if wantNonce == "" {
		return wrapf(ErrNonce, "no nonce to check against (channel binding is mandatory)")
	}
	if !nonceIn(c.nonces, wantNonce) {
		return wrapf(ErrNonce, "eat_nonce does not contain this connection's nonce")
	}
	return nil
}

// rawPayload captures the verified payload bytes from jwt's Claims so that
// parseClaims decodes exactly what was signed.
type rawPayload []byte

func (p *rawPayload) UnmarshalJSON(b []byte) error {
	*p = append((*p)[:0], b...)
	return nil
}

// nonceIn compares want with every nonce in constant time per comparison and
// without stopping at the first match.
func nonceIn(nonces []string, want string) bool {
	found := 0
	for _, n := range nonces {
		found |= subtle.ConstantTimeCompare([]byte(n), []byte(want))
	}
	return found == 1
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// joseHeader is the part of the protected header we look at before
// go-jose does.
type joseHeader struct {
	Alg  string `json:"alg"`
	Kid  string `json:"kid"`
	Crit any    `json:"crit"`
	B64  any    `json:"b64"`
}

// checkShape classifies a token before any cryptography: size, three
// base64url segments, a JSON header naming RS256 and a key id, a JSON object
// payload. It returns the header.
func checkShape(token string) (joseHeader, error) {
	var h joseHeader
	if len(token) > MaxTokenSize {
		return h, wrapf(ErrMalformed, "token is %d bytes, at most %d allowed", len(token), MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return h, wrapf(ErrMalformed, "want 3 dot-separated parts, got %d", len(parts))
	}
	rawHeader, err := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return h, wrapf(ErrMalformed, "header is not base64url")
	}
	if err := decodeOne(rawHeader, &h); err != nil {
		return h, wrapf(ErrMalformed, "header is not one JSON object: %s", err)
	}
	if h.Alg != string(jose.RS256) {
		return h, wrapf(ErrAlgorithm, "alg %s, only RS256 is allowed", clip(h.Alg))
	}
	if h.Crit != nil || h.B64 != nil {
		return h, wrapf(ErrMalformed, "critical header extensions are not supported")
	}
	if h.Kid == "" {
		return h, wrapf(ErrMalformed, "header has no key id (kid)")
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return h, wrapf(ErrMalformed, "payload is not base64url")
	}
	if _, err := parseClaims(payload); err != nil {
		return h, err
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(parts[2]); err != nil || parts[2] == "" {
		return h, wrapf(ErrMalformed, "signature is not base64url")
	}
	return h, nil
}
