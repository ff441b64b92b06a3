package attest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The collateral cache: a directory holding, for each vendor URL the
// verifiers need (Intel PCS TCB info, QE identity, PCK CRL, root CA CRL; AMD
// KDS VCEK/VLEK certificates), the reply fetched by `mcbn shareholder
// collateral fetch`. Release-time verification reads only this directory:
// it never touches the network, so a shareholder keeps working (and cannot
// be steered by a network attacker) when Intel's or AMD's services are away.
// Freshness is judged at verification time against the collateral's own
// nextUpdate (TCB info, QE identity, CRLs): past it, evidence is refused
// with ErrCollateralExpired until the cache is fetched again.

// Canonical vendor URLs, the cache keys.
const (
	IntelPCSSGXBase  = "https://api.trustedservices.intel.com/sgx/certification/v4"
	IntelPCSTDXBase  = "https://api.trustedservices.intel.com/tdx/certification/v4"
	IntelRootCRLURL  = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
	maxCollateralLen = 1 << 20
)

// Issuer-chain headers the TDX verifier reads from PCS replies; nothing
// else of a reply's header is kept.
var keptHeaders = []string{"Tcb-Info-Issuer-Chain", "Sgx-Enclave-Identity-Issuer-Chain", "Sgx-Pck-Crl-Issuer-Chain"}

// CollateralEntry is one cached reply.
type CollateralEntry struct {
	URL       string              `json:"url"`
	FetchedAt time.Time           `json:"fetched_at"`
	Header    map[string][]string `json:"header,omitempty"`
	Body      []byte              `json:"body"`
}

// CollateralCache reads and writes a collateral cache directory.
type CollateralCache struct {
	Dir string

	mu     sync.Mutex
	missed string // first URL asked for and not cached (for the error)
}

// CollateralFile is the cache file name of url: a hash, so that any URL
// maps to one safe file name.
func CollateralFile(dir, url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(dir, hex.EncodeToString(sum[:16])+".json")
}

// Load returns the cached entry for url.
func (c *CollateralCache) Load(url string) (*CollateralEntry, error) {
	f, err := os.Open(CollateralFile(c.Dir, url))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 2*maxCollateralLen))
	if err != nil {
		return nil, err
	}
	var e CollateralEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("cache file for %s: %s", url, jsonErrorKind(err))
	}
	if e.URL != url {
		return nil, fmt.Errorf("cache file for %s holds %s", url, clip(e.URL))
	}
	return &e, nil
}

// Store writes an entry atomically (temporary file, then rename).
func (c *CollateralCache) Store(e *CollateralEntry) error {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	dst := CollateralFile(c.Dir, e.URL)
	tmp, err := os.CreateTemp(c.Dir, ".fetch-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// Get serves url from the cache in the shape go-tdx-guest's getter wants.
func (c *CollateralCache) Get(url string) (map[string][]string, []byte, error) {
	e, err := c.Load(url)
	if err != nil {
		c.mu.Lock()
		if c.missed == "" {
			c.missed = url
		}
		c.mu.Unlock()
		return nil, nil, fmt.Errorf("not in the collateral cache: %s", url)
	}
	return e.Header, e.Body, nil
}

// Missed returns the first URL looked up and not found.
func (c *CollateralCache) Missed() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.missed
}

// sevGetter adapts the cache to go-sev-guest's getter.
type sevGetter struct{ c *CollateralCache }

func (g sevGetter) Get(url string) ([]byte, error) {
	_, b, err := g.c.Get(url)
	return b, err
}

// FetchOptions says what `collateral fetch` fetches.
type FetchOptions struct {
	// FMSPCs of the TDX platforms (12 hex digits each, from the PCK
	// certificate; `mcbn` prints it when a quote is refused for missing
	// collateral).
	FMSPCs []string
	// CA is the PCK CA for the PCK CRL: "platform" (default) or "processor".
	CA string
	// URLs are extra URLs to cache as they are (e.g. AMD KDS VCEK or VLEK
	// URLs for reports without certificates).
	URLs []string
	// Rewrite maps a canonical URL prefix to the one actually fetched
	// (tests, mirrors); the cache key stays canonical.
	Rewrite map[string]string
	// Client fetches (nil: a client with a 30 s timeout).
	Client *http.Client
	// Now stamps entries (nil: time.Now).
	Now func() time.Time
}

var fmspcRE = regexp.MustCompile(`^[0-9a-f]{12}$`)

// CollateralURLs returns the URLs FetchCollateral fetches for o.
func CollateralURLs(o FetchOptions) ([]string, error) {
	ca := o.CA
	if ca == "" {
		ca = "platform"
	}
	if ca != "platform" && ca != "processor" {
		return nil, fmt.Errorf("PCK CA %q, want platform or processor", ca)
	}
	var urls []string
	for _, f := range o.FMSPCs {
		f = strings.ToLower(f)
		if !fmspcRE.MatchString(f) {
			return nil, fmt.Errorf("FMSPC %q is not 12 hex digits", f)
		}
		urls = append(urls, IntelPCSTDXBase+"/tcb?fmspc="+f)
	}
	if len(o.FMSPCs) > 0 {
		urls = append(urls, IntelPCSTDXBase+"/qe/identity", IntelPCSSGXBase+"/pckcrl?ca="+ca+"&encoding=der", IntelRootCRLURL)
	}
	for _, u := range o.URLs {
		if !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("URL %s is not https", clip(u))
		}
		urls = append(urls, u)
	}
	if len(urls) == 0 {
		return nil, errors.New("nothing to fetch: give at least one FMSPC or URL")
	}
	return urls, nil
}

// FetchCollateral fetches every URL of o into cache. It stops at the first
// failure; entries already written stay (each is complete on its own).
func FetchCollateral(ctx context.Context, cache *CollateralCache, o FetchOptions) ([]string, error) {
	urls, err := CollateralURLs(o)
	if err != nil {
		return nil, err
	}
	client := o.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	for _, u := range urls {
		get := u
		for from, to := range o.Rewrite {
			if strings.HasPrefix(u, from) {
				get = to + strings.TrimPrefix(u, from)
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, get, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetching %s: %v", u, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxCollateralLen+1))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("fetching %s: %v", u, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetching %s: %s", u, resp.Status)
		}
		if len(body) > maxCollateralLen {
			return nil, fmt.Errorf("fetching %s: reply larger than %d bytes", u, maxCollateralLen)
		}
		e := &CollateralEntry{URL: u, FetchedAt: now().UTC(), Body: body}
		for _, h := range keptHeaders {
			if v := resp.Header.Values(h); len(v) > 0 {
				if e.Header == nil {
					e.Header = map[string][]string{}
				}
				e.Header[h] = v
			}
		}
		if err := cache.Store(e); err != nil {
			return nil, fmt.Errorf("caching %s: %v", u, err)
		}
	}
	return urls, nil
}
