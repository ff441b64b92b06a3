package shareholder

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/mcbn/mcbn/psk"
	"google.golang.org/api/option"
)

// A ShareStore holds this participant's share. LoadShare returns a fresh
// copy each time; the caller wipes it.
type ShareStore interface {
	LoadShare(ctx context.Context) (*psk.Share, error)
	// String names the store (path or resource name) for logs; never secret.
	String() string
	Close() error
}

// storeURL is a parsed share_store value.
type storeURL struct {
	scheme string // "file" or "gcpsm"
	path   string // file path
	name   string // Secret Manager resource name
}

var smNameRE = regexp.MustCompile(`^projects/[A-Za-z0-9._:-]{1,100}/secrets/[A-Za-z0-9_-]{1,255}/versions/([1-9][0-9]{0,18}|latest)$`)

// parseStoreURL accepts file:///abs/path, file://rel/path (relative to dir,
// no host part allowed otherwise) and
// gcpsm://projects/P/secrets/S/versions/V.
func parseStoreURL(s, dir string) (storeURL, error) {
	switch {
	case strings.HasPrefix(s, "file://"):
		p := strings.TrimPrefix(s, "file://")
		if p == "" {
			return storeURL{}, errors.New("file:// needs a path, e.g. file:///etc/mcbn/alice.share.json")
		}
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		return storeURL{scheme: "file", path: filepath.Clean(p)}, nil
	case strings.HasPrefix(s, "gcpsm://"):
		n := strings.TrimPrefix(s, "gcpsm://")
		if !smNameRE.MatchString(n) {
			return storeURL{}, fmt.Errorf("%q is not gcpsm://projects/P/secrets/S/versions/V", s)
		}
		return storeURL{scheme: "gcpsm", name: n}, nil
	default:
		return storeURL{}, fmt.Errorf("%q: want file:///path or gcpsm://projects/P/secrets/S/versions/V", s)
	}
}

// OpenStore opens the share store named by a share_store value. opts are
// passed to the Secret Manager client (tests point it at a local server).
func OpenStore(ctx context.Context, spec, dir string, opts ...option.ClientOption) (ShareStore, error) {
	u, err := parseStoreURL(spec, dir)
	if err != nil {
		return nil, err
	}
	if u.scheme == "file" {
		return fileStore{path: u.path}, nil
	}
	return newSecretManagerStore(ctx, u.name, opts...)
}

// fileStore reads a share file; psk.LoadShare refuses one that group or
// others can read.
type fileStore struct{ path string }

func (f fileStore) LoadShare(context.Context) (*psk.Share, error) { return psk.LoadShare(f.path) }
func (f fileStore) String() string                                { return "file://" + f.path }
func (f fileStore) Close() error                                  { return nil }
