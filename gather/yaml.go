package gather

import (
	"errors"
	"regexp"

	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/internal/cfgfile"
)

// The shared readers (internal/cfgfile), under the names this package uses.
var (
	decodeYAMLStrict = cfgfile.DecodeStrict
	yamlError        = cfgfile.YAMLError
	readSmallFile    = cfgfile.ReadSmall
)

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

// lineRefRE matches the line references of a YAML error.
var lineRefRE = regexp.MustCompile(` ?\(line \d+\)|line \d+: `)

// decodeOptions decodes a participant's options: block into v strictly.
// The block is decoded on its own, so line numbers in yaml.v3's errors
// would count from the block, not the file: they are dropped, and the key
// named instead. A missing block leaves v as it is.
func decodeOptions(n *yaml.Node, v any) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	if d := deref(n); d == nil || d.Kind != yaml.MappingNode {
		return errors.New("want a mapping of the kind's settings")
	}
	if err := decodeNodeStrict(n, v); err != nil {
		return errors.New(lineRefRE.ReplaceAllString(err.Error(), ""))
	}
	return nil
}
