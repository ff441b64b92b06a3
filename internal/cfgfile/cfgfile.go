// Package cfgfile reads the small configuration files of the shareholder
// daemon and the proxy's shares source the same way: bounded reads of
// regular files only, and strict YAML whose errors name the key and its
// line instead of Go type names.
package cfgfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DecodeStrict decodes one YAML document into v, rejecting unknown keys
// (the error names the key and its line).
func DecodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty configuration")
		}
		return nameKeys(YAMLError(err), data)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return errors.New("yaml: more than one document")
	}
	return nil
}

var lineRE = regexp.MustCompile(`line (\d+): `)

// nameKeys prefixes each "line N:" of a YAML error with the dotted key
// written on that line, so a type error names its field too.
func nameKeys(err error, data []byte) error {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return err
	}
	keys := map[int]string{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				if prefix != "" {
					k = prefix + "." + k
				}
				if _, ok := keys[n.Content[i].Line]; !ok {
					keys[n.Content[i].Line] = k
				}
				walk(n.Content[i+1], k)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", prefix, i))
			}
		}
	}
	walk(&doc, "")
	msg := lineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		var line int
		fmt.Sscanf(m, "line %d: ", &line)
		if k, ok := keys[line]; ok && !strings.Contains(err.Error(), "unknown key") {
			return k + " (" + strings.TrimSuffix(m, ": ") + "): "
		}
		return m
	})
	return errors.New(msg)
}

// typeNameRE matches yaml.v3's "not found in type pkg.T" suffix.
var typeNameRE = regexp.MustCompile(`field (\S+) not found in type \S+`)

// YAMLError rewrites yaml.v3's messages so an unknown key reads as such.
func YAMLError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "unmarshal errors:\n  ", "")
	msg = typeNameRE.ReplaceAllString(msg, "unknown key $1")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	return errors.New(msg)
}

// ReadSmall reads a regular file of at most limit bytes.
func ReadSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}
