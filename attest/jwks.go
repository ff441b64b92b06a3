package attest

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Bounds on what the verifier fetches from an issuer.
const (
	maxDiscoveryBody = 64 << 10
	maxJWKSBody      = 256 << 10
	maxJWKSKeys      = 100
	minRSABits       = 2048
	fetchTimeout     = 10 * time.Second
	// maxStale bounds how long cached keys keep being used while the issuer
	// cannot be reached, so a withdrawn key is not trusted forever.
	maxStale = 24 * time.Hour
)

// keyCache holds an issuer's signing keys, fetched through OIDC discovery.
// A fetch happens when the cache is empty or older than maxAge, or when a
// token names an unknown key id. Fetches caused by unknown key ids happen at
// most once per minInterval, so a flood of tokens with made-up key ids
// cannot hammer the issuer; after a failed fetch, none happens for
// minInterval either.
type keyCache struct {
	issuer      string
	client      *http.Client
	maxAge      time.Duration
	minInterval time.Duration
	now         func() time.Time
	log         *slog.Logger

	sem chan struct{} // one fetch at a time

	mu        sync.Mutex
	keys      map[string]*rsa.PublicKey
	fetchedAt time.Time // last successful fetch
	failedAt  time.Time // last failed fetch (zero after a success)
	unknownAt time.Time // last fetch caused by an unknown key id
	fetches   int       // number of fetch attempts
}

func newKeyCache(issuer string, client *http.Client, maxAge, minInterval time.Duration, now func() time.Time, log *slog.Logger) *keyCache {
	return &keyCache{
		issuer: issuer, client: client, maxAge: maxAge, minInterval: minInterval, now: now, log: log,
		sem: make(chan struct{}, 1),
	}
}

// lookup returns the cached key for kid (nil when unknown or older than
// maxStale) and whether the cache is fresh.
func (c *keyCache) lookup(kid string) (*rsa.PublicKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	age := c.now().Sub(c.fetchedAt)
	if c.keys == nil || age >= maxStale {
		return nil, false
	}
	return c.keys[kid], age < c.maxAge
}

// key returns the issuer's public key for kid, fetching keys when needed and
// allowed by the rate limits.
func (c *keyCache) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	if k, fresh := c.lookup(kid); k != nil && fresh {
		return k, nil
	}
	select {
	case c.sem <- struct{}{}:
	default:
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, wrapf(ErrKeysUnavailable, "waiting for the key fetch: %v", ctx.Err())
		}
	}
	defer func() { <-c.sem }()
	// Another caller may have fetched while we waited.
	k, fresh := c.lookup(kid)
	if k != nil && fresh {
		return k, nil
	}
	c.mu.Lock()
	now := c.now()
	haveKeys := c.keys != nil && now.Sub(c.fetchedAt) < maxStale
	unknown := haveKeys && k == nil // a fresh-enough set that lacks kid
	recentFailure := !c.failedAt.IsZero() && now.Sub(c.failedAt) < c.minInterval
	recentUnknown := !c.unknownAt.IsZero() && now.Sub(c.unknownAt) < c.minInterval
	limited := recentFailure || (unknown && recentUnknown)
	if !limited {
		c.fetches++
		if unknown {
			c.unknownAt = now
		}
	}
	c.mu.Unlock()
	if limited {
		switch {
		case k != nil: // stale but known: better than nothing until the next fetch
			return k, nil
		case haveKeys:
			return nil, wrapf(ErrUnknownKey, "key id %s not in the issuer's key set (refetch rate-limited)", clip(kid))
		default:
			return nil, wrapf(ErrKeysUnavailable, "no keys from %s (retry rate-limited)", c.issuer)
		}
	}
	keys, err := c.fetch(ctx)
	if err != nil {
		c.mu.Lock()
		c.failedAt = c.now()
		c.mu.Unlock()
		if k != nil {
			c.log.Warn("attest: refreshing issuer keys failed; using cached keys", "issuer", c.issuer, "err", err)
			return k, nil
		}
		return nil, err
	}
	c.mu.Lock()
	c.keys, c.fetchedAt, c.failedAt = keys, c.now(), time.Time{}
	c.mu.Unlock()
	c.log.Debug("attest: fetched issuer keys", "issuer", c.issuer, "keys", len(keys))
	if k := keys[kid]; k != nil {
		return k, nil
	}
	return nil, wrapf(ErrUnknownKey, "key id %s not in the issuer's key set", clip(kid))
}

// fetchCount returns how many JWKS fetches were attempted.
func (c *keyCache) fetchCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

type discoveryDoc struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// fetch reads <issuer>/.well-known/openid-configuration, checks that it names
// the same issuer, then reads the JWKS it points to and keeps the RSA
// signing keys.
func (c *keyCache) fetch(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	// Detached from the caller: a client that hangs up mid-fetch must not
	// count as an issuer failure (that would rate-limit everyone's fetches).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	discoveryURL := strings.TrimSuffix(c.issuer, "/") + "/.well-known/openid-configuration"
	var doc discoveryDoc
	if err := c.getJSON(ctx, discoveryURL, maxDiscoveryBody, &doc); err != nil {
		return nil, err
	}
	if doc.Issuer != c.issuer {
		return nil, wrapf(ErrKeysUnavailable, "discovery at %s names issuer %s, want %q", discoveryURL, clip(doc.Issuer), c.issuer)
	}
	if err := checkFetchURL(doc.JWKSURI); err != nil {
		return nil, wrapf(ErrKeysUnavailable, "discovery at %s: jwks_uri: %v", discoveryURL, err)
	}
	body, err := c.getBody(ctx, doc.JWKSURI, maxJWKSBody)
	if err != nil {
		return nil, err
	}
	return parseJWKS(body, doc.JWKSURI)
}

// parseJWKS decodes a JWKS fetched from where and keeps the keys we would
// accept an RS256 signature from. A key id listed twice refuses the whole
// set: which key a token's kid names would be ambiguous (and a set that
// silently kept the last one could be shadowed by an entry appended later).
func parseJWKS(body []byte, where string) (map[string]*rsa.PublicKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, wrapf(ErrKeysUnavailable, "JWKS at %s: %v", where, jsonErrorKind(err))
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, wrapf(ErrKeysUnavailable, "JWKS at %s has %d keys, more than %d", where, len(set.Keys), maxJWKSKeys)
	}
	seen := make(map[string]bool, len(set.Keys))
	keys := make(map[string]*rsa.PublicKey)
	for _, k := range set.Keys {
		if k.KeyID != "" && seen[k.KeyID] {
			return nil, wrapf(ErrKeysUnavailable, "JWKS at %s lists key id %s more than once", where, clip(k.KeyID))
		}
		seen[k.KeyID] = true
		pub, ok := k.Key.(*rsa.PublicKey)
		if !ok || k.KeyID == "" || (k.Use != "" && k.Use != "sig") ||
			(k.Algorithm != "" && k.Algorithm != string(jose.RS256)) || pub.N.BitLen() < minRSABits {
			continue // not a key we would accept an RS256 signature from
		}
		keys[k.KeyID] = pub
	}
	if len(keys) == 0 {
		return nil, wrapf(ErrKeysUnavailable, "JWKS at %s has no usable RS256 keys", where)
	}
	return keys, nil
}

func (c *keyCache) getJSON(ctx context.Context, u string, limit int64, out any) error {
	body, err := c.getBody(ctx, u, limit)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return wrapf(ErrKeysUnavailable, "GET %s: %v", u, jsonErrorKind(err))
	}
	return nil
}

// getBody GETs u and returns a 200 reply's body of at most limit bytes.
func (c *keyCache) getBody(ctx context.Context, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, wrapf(ErrKeysUnavailable, "%v", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, wrapf(ErrKeysUnavailable, "%v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, wrapf(ErrKeysUnavailable, "GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, wrapf(ErrKeysUnavailable, "GET %s: %v", u, err)
	}
	if int64(len(body)) > limit {
		return nil, wrapf(ErrKeysUnavailable, "GET %s: body larger than %d bytes", u, limit)
	}
	return body, nil
}

// checkFetchURL allows https URLs, and plain http only to a loopback IP
// address (the dev attester).
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("not an absolute URL: %s", clip(raw))
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("plain http is allowed only to a loopback address")
	default:
		return fmt.Errorf("scheme %s not allowed", clip(u.Scheme))
	}
}

// defaultHTTPClient has bounded timeouts and follows redirects only to URLs
// checkFetchURL allows.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: fetchTimeout,
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			TLSHandshakeTimeout:    5 * time.Second,
			ResponseHeaderTimeout:  fetchTimeout,
			MaxResponseHeaderBytes: 64 << 10,
			IdleConnTimeout:        90 * time.Second,
			MaxIdleConns:           4,
			ForceAttemptHTTP2:      true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			return checkFetchURL(req.URL.String())
		},
	}
}
