package shareholder

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/mcbn/mcbn/attest"
	"go.yaml.in/yaml/v3"
)

// Check is the dry run behind `mcbn proxy check`: it asks every
// shareholder for its share exactly as the proxy would, verifies each one
// against the group, wipes them all at once and reports the progress. No
// share is kept and nothing is reconstructed. provider nil means the one
// cfg.Attestation names.
func Check(ctx context.Context, cfg SharesSourceConfig, provider attest.TokenProvider) (Progress, error) {
	p, err := prepare(cfg, "")
	if err != nil {
		return Progress{}, err
	}
	if provider == nil {
		if provider, err = p.provider(); err != nil {
			return Progress{}, fieldErr("attestation", "%v", err)
		}
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
// socket paths are resolved against the file's directory; in a proxy config
// they are left as the proxy reads them (relative to the working directory).
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

// mapGet returns the value of key in mapping m, following YAML aliases
// (examples/local/client.yaml shares one psk block between routes with
// &shares / *shares).
func mapGet(m *yaml.Node, key string) *yaml.Node {
	m = deref(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return deref(m.Content[i+1])
		}
	}
	return nil
}

// maxResolvedNodes bounds what resolveAliases may build: aliases of
// aliases expand exponentially (the "billion laughs" file).
const maxResolvedNodes = 100_000

// resolveAliases returns a copy of n with every alias replaced by a copy
// of what it names, so that a subtree marshals on its own (an alias inside
// it would otherwise name an anchor outside). Merge keys (<<) then merge
// as usual when the copy is decoded. It stops, leaving *budget negative,
// once it has built maxResolvedNodes nodes.
func resolveAliases(n *yaml.Node, budget *int) *yaml.Node {
	n = deref(n)
	if n == nil || *budget < 0 {
		return n
	}
	*budget--
	c := *n
	c.Anchor = ""
	if len(n.Content) > 0 {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			c.Content[i] = resolveAliases(k, budget)
		}
	}
	return &c
}

// deref follows alias nodes to what they name (bounded: yaml.v3 refuses
// alias cycles while parsing, but the bound costs nothing).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// decodeNodeStrict decodes a node rejecting unknown keys.
func decodeNodeStrict(n *yaml.Node, v any) error {
	budget := maxResolvedNodes
	r := resolveAliases(n, &budget)
	if budget < 0 {
		return errors.New("too many YAML aliases (expands past 100,000 nodes)")
	}
	b, err := yaml.Marshal(r)
	if err != nil {
		return err
	}
	return decodeYAMLStrict(b, v)
}

// resolvePaths makes relative paths of a shares block relative to dir.
func resolvePaths(c *SharesSourceConfig, dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.Group = abs(c.Group)
	if c.Attestation.Socket != "" {
		c.Attestation.Socket = abs(c.Attestation.Socket)
	}
	for i := range c.Shareholders {
		c.Shareholders[i].CAFile = abs(c.Shareholders[i].CAFile)
	}
}
