package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every command, group or leaf, answers --help on stdout with exit 0 and
// teaches by example.
func TestEveryHelpHasAnExample(t *testing.T) {
	var walk func(c *command, path []string)
	walk = func(c *command, path []string) {
		args := append(append([]string(nil), path...), "--help")
		var out, errb bytes.Buffer
		if code := dispatch(args, &out, &errb); code != 0 {
			t.Errorf("mcbn %s: exit %d, stderr %q", strings.Join(args, " "), code, errb.String())
		}
		if !strings.Contains(out.String(), "Example") {
			t.Errorf("mcbn %s: no example in the help", strings.Join(args, " "))
		}
		for _, s := range c.sub {
			walk(s, append(append([]string(nil), path...), s.name))
		}
	}
	walk(root, nil)
}
