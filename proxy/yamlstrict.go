package proxy

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	unknownFieldRE = regexp.MustCompile(`field (\S+) not found in type [\w.]+`)
	quotedValueRE  = regexp.MustCompile("`[^`]*`")
)

// yamlError rewrites yaml.v3's messages in the words of a config file. It
// hides the values yaml.v3 quotes: a misplaced key must not reach a log.
func yamlError(err error, target reflect.Type) error {
	return fmt.Errorf("config: %s", yamlMessage(err, target))
}

// yamlMessage is yamlError's text: values hidden, unknown fields called
// keys, and Go type names (proxy.PSKConfig, time.Duration) replaced by
// what the YAML should have held ("a mapping", "a duration").
func yamlMessage(err error, target reflect.Type) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		// One entry per error: rewrite each on its own, so a value that
		// holds backticks, " into " or line breaks cannot leak or confuse.
		words := typeWords(target)
		parts := make([]string, len(te.Errors))
		for i, e := range te.Errors {
			parts[i] = typeErrorMessage(e, words)
		}
		return strings.Join(parts, "; ")
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = quotedValueRE.ReplaceAllString(msg, "(value hidden)")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	return msg
}

var linePrefixRE = regexp.MustCompile(`^line \d+: `)

// typeErrorMessage rewrites one of yaml.v3's decode errors: "line N:
// cannot unmarshal TAG `VALUE` into TYPE" or "line N: field K not found in
// type T".
func typeErrorMessage(e string, words map[string]string) string {
	prefix := linePrefixRE.FindString(e)
	rest := e[len(prefix):]
	if m := unknownFieldRE.FindStringSubmatch(rest); m != nil && strings.HasPrefix(rest, "field ") {
		return prefix + "unknown key \"" + m[1] + "\""
	}
	const cannot = "cannot unmarshal "
	if !strings.HasPrefix(rest, cannot) {
		return prefix + quotedValueRE.ReplaceAllString(rest, "(value hidden)")
	}
	rest = rest[len(cannot):]
	tag, rest, _ := strings.Cut(rest, " ")
	i := strings.LastIndex(rest, "into ")
	if i < 0 {
		return prefix + "got " + tagWord(tag) + " (value hidden) of the wrong kind"
	}
	typ := rest[i+len("into "):]
	got := tagWord(tag)
	if strings.TrimSpace(rest[:i]) != "" {
		got += " (value hidden)"
	}
	want, ok := words[strings.TrimLeft(typ, "*")]
	if !ok {
		want = kindWordFromName(typ)
	}
	return prefix + "got " + got + ", want " + want
}

func tagWord(tag string) string {
	switch tag {
	case "!!str":
		return "a string"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "true or false"
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	case "!!null":
		return "nothing"
	}
	return "a value"
}

var durationType = reflect.TypeOf(Duration(0))

// typeWords maps the name of every type reachable from t (as yaml.v3
// prints it, e.g. "proxy.Mode") to what it looks like in YAML.
func typeWords(t reflect.Type) map[string]string {
	out := map[string]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		if t == nil {
			return
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		name := t.String()
		if _, seen := out[name]; seen {
			return
		}
		out[name] = kindWord(t)
		switch t.Kind() {
		case reflect.Struct:
			for i := 0; i < t.NumField(); i++ {
				if t.Field(i).IsExported() {
					walk(t.Field(i).Type)
				}
			}
		case reflect.Slice, reflect.Array, reflect.Map:
			walk(t.Elem())
		}
	}
	walk(t)
	return out
}

func kindWord(t reflect.Type) string {
	if t == durationType || t.String() == "time.Duration" {
		return "a duration (e.g. 10s)"
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another kind of value"
}

// kindWordFromName is kindWord for a type name not reachable from the
// target (it should not happen; the word is then a guess from the name).
func kindWordFromName(name string) string {
	name = strings.TrimLeft(name, "*")
	switch {
	case strings.HasPrefix(name, "[]"):
		return "a list"
	case strings.HasPrefix(name, "map["):
		return "a mapping"
	case name == "time.Duration":
		return "a duration (e.g. 10s)"
	case name == "string":
		return "a string"
	case name == "bool":
		return "true or false"
	case strings.HasPrefix(name, "int"), strings.HasPrefix(name, "uint"):
		return "a whole number"
	case strings.HasPrefix(name, "float"):
		return "a number"
	}
	return "another kind of value"
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	nodeType        = reflect.TypeOf(yaml.Node{})
)

// checkKnownKeys walks n against the Go type t the way yaml.v3 would decode
// it and returns the first mapping key that t has no field for, with the
// key's line in the file. yaml.v3's own strict mode exists only on a
// Decoder, which would need the node re-encoded and so lose its lines.
// Type mismatches are left to the decoder.
func checkKnownKeys(n *yaml.Node, t reflect.Type) error {
	k := keyWalk{seen: map[walkStep]bool{}}
	return k.knownKeys(n, t, 0)
}

// keyWalk visits each (node, type) pair once: aliases can make a small
// document a huge tree ("billion laughs"), but not more pairs than nodes
// times types.
type keyWalk struct{ seen map[walkStep]bool }

type walkStep struct {
	n *yaml.Node
	t reflect.Type
}

func (w *keyWalk) knownKeys(n *yaml.Node, t reflect.Type, depth int) error {
	if n == nil || t == nil || depth > 64 {
		return nil
	}
	if w.seen[walkStep{n, t}] {
		return nil
	}
	w.seen[walkStep{n, t}] = true
	for n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode {
		if n.Kind == yaml.AliasNode {
			if n.Alias == nil {
				return nil
			}
			n = n.Alias
			depth++
			if depth > 64 {
				return nil
			}
			continue
		}
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType || reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		fields := map[string]reflect.Type{}
		structFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!null" {
				continue // yaml.v3 skips a null key
			}
			if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge") {
				if err := w.knownKeys(v, t, depth+1); err != nil {
					return err
				}
				if v.Kind == yaml.SequenceNode {
					for _, m := range v.Content {
						if err := w.knownKeys(m, t, depth+1); err != nil {
							return err
						}
					}
				}
				continue
			}
			ft, ok := fields[k.Value]
			if !ok {
				ft, ok = fields[anyKey]
			}
			if !ok {
				return fmt.Errorf("line %d: unknown key %q", k.Line, shortIdentity(k.Value))
			}
			if err := w.knownKeys(v, ft, depth+1); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for _, e := range n.Content {
				if err := w.knownKeys(e, t.Elem(), depth+1); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 1; i < len(n.Content); i += 2 {
				if err := w.knownKeys(n.Content[i], t.Elem(), depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// anyKey stands for the keys an inline map field takes (no YAML key can
// be this string: it holds a NUL).
const anyKey = "\x00any"

// structFields collects the YAML keys of a struct as yaml.v3 names them:
// the tag's name, else the field name in lower case; ",inline" structs
// add their fields; "-" is skipped.
func structFields(t reflect.Type, out map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				structFields(ft, out)
			case reflect.Map:
				out[anyKey] = ft.Elem() // an inline map takes every other key
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
}
