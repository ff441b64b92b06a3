package cfgfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type sample struct {
	Name  string `yaml:"name"`
	Limit int    `yaml:"limit"`
	Inner struct {
		Port int `yaml:"port"`
	} `yaml:"inner"`
}

func TestDecodeStrictNamesKeys(t *testing.T) {
	for text, want := range map[string]string{
		"name: a\ncolour: blue\n":           "unknown key colour",
		"name: a\nlimit: many\n":            "limit (line 2)",
		"inner:\n  port: x\n":               "inner.port (line 2)",
		"":                                  "empty configuration",
		"name: a\n---\nname: b\n":           "more than one document",
		"name: a\ninner: {port: 1, x: 2}\n": "unknown key x",
	} {
		var s sample
		err := DecodeStrict([]byte(text), &s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to mention %q", text, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "cfgfile.sample") {
			t.Errorf("%q: a Go type name in %v", text, err)
		}
	}
}

func TestReadSmall(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a")
	os.WriteFile(f, []byte("12345"), 0o600)
	if b, err := ReadSmall(f, 5); err != nil || string(b) != "12345" {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := ReadSmall(f, 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
	if _, err := ReadSmall(dir, 1<<20); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
}

func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{"name: a\n", "inner:\n  port: 1\n", "a: &x [*x]\n", "name: [\n", "limit: 99999999999999999999\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var s sample
		_ = DecodeStrict(data, &s)
	})
}
