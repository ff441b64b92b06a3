package gather

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/attest"
)

// Check is the dry run behind `mcbn proxy check`: it asks every
// participant, of every kind, for its share exactly as the proxy would
// (the same Participant.Fetch), verifies each one against the group, wipes
// them all at once and reports the progress. No share is kept and nothing
// is reconstructed. provider nil means the one cfg.Attestation names.
func Check(ctx context.Context, cfg SharesSourceConfig, provider attest.TokenProvider) (Progress, error) {
	p, err := prepare(cfg, nil)
	if err != nil {
		return Progress{}, err
	}
	defer p.close()
	if provider == nil {
		if provider, err = p.provider(); err != nil {
			return Progress{}, fieldErr("attestation", "%v", err)
		}
	}
	if p.tprf != nil {
		// Mode evaluate: partials, as the proxy would ask (an
		// evaluate-only daemon refuses a share request).
		prog, _ := gatherPartials(ctx, p, provider, false, nil)
		return prog, nil
	}
	prog, shares := gather(ctx, p, provider, false, nil)
	wipeShares(shares)
	return prog, nil
}

// CheckTarget is one shares block found in a file given to proxy check.
type CheckTarget struct {
	// Where names the block: "shares" or "routes[i] (name)".
	Where  string
	Config SharesSourceConfig
}

// LoadCheckTargets reads the shares blocks of a file: either a top-level
// `shares:` block (a SharesSourceConfig), or a proxy config whose routes
// have `psk: {source: shares, options: ...}`. A route's identity is used
// when its options name none. In a shares: file, relative group, ca_file and
// socket paths are resolved against the file's directory (and BaseDir set
// to it for the paths of other kinds' options); in a proxy config they are
// left as the proxy reads them (relative to the working directory).
func LoadCheckTargets(path string) ([]CheckTarget, error) {
	data, err := readSmallFile(path, maxConfigSize)
	if err != nil {
		return nil, err
	}
	targets, err := ParseCheckTargets(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	for i := range targets {
		// A proxy resolves route paths against its working directory, so
		// only the stand-alone shares: form is relative to the file.
		if targets[i].Where == "shares" {
			resolvePaths(&targets[i].Config, dir)
		}
	}
	return targets, nil
}

// ParseCheckTargets is LoadCheckTargets on bytes, without path resolution.
func ParseCheckTargets(data []byte) ([]CheckTarget, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("expected a YAML mapping with a shares: block or routes:")
	}
	top := doc.Content[0]
	if n := mapGet(top, "shares"); n != nil {
		var c SharesSourceConfig
		if err := decodeNodeStrict(n, &c); err != nil {
			return nil, fmt.Errorf("shares: %w", err)
		}
		return []CheckTarget{{Where: "shares", Config: c}}, nil
	}
	routes := mapGet(top, "routes")
	if routes == nil || routes.Kind != yaml.SequenceNode {
		return nil, errors.New("no shares: block and no routes: list")
	}
	var out []CheckTarget
	for i, r := range routes.Content {
		pskNode := mapGet(r, "psk")
		if pskNode == nil {
			continue
		}
		src := mapGet(pskNode, "source")
		if src == nil || src.Value != SourceKind {
			continue
		}
		where := fmt.Sprintf("routes[%d]", i)
		if name := mapGet(r, "name"); name != nil {
			where += " (" + name.Value + ")"
		}
		var c SharesSourceConfig
		if opts := mapGet(pskNode, "options"); opts != nil {
			if err := decodeNodeStrict(opts, &c); err != nil {
				return nil, fmt.Errorf("%s psk.options: %w", where, err)
			}
		}
		if c.Identity == "" {
			if id := mapGet(r, "identity"); id != nil {
				c.Identity = id.Value
			}
		}
		out = append(out, CheckTarget{Where: where, Config: c})
	}
	if len(out) == 0 {
		return nil, errors.New("no route uses psk.source: shares")
	}
	return out, nil
}

// resolvePaths makes relative paths of a shares block relative to dir, and
// sets BaseDir so that kinds resolve the paths in their options alike.
func resolvePaths(c *SharesSourceConfig, dir string) {
	c.Group = resolvePath(dir, c.Group)
	c.Attestation.Socket = resolvePath(dir, c.Attestation.Socket)
	for i := range c.Shareholders {
		c.Shareholders[i].CAFile = resolvePath(dir, c.Shareholders[i].CAFile)
	}
	c.BaseDir = dir
}
