package examples_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docs/threat-model.md names, for each attack, the test that proves the
// defence. A renamed or deleted test must not leave the table pointing at
// nothing: every `pkg: TestName` it cites is a test function in that
// package.
func TestThreatModelCitesRealTests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "threat-model.md"))
	if err != nil {
		t.Fatal(err)
	}
	cites := regexp.MustCompile("`([a-z][a-z/]*): ((?:Test|Fuzz)[A-Za-z0-9_]+)`").FindAllStringSubmatch(string(b), -1)
	if len(cites) < 40 {
		t.Fatalf("only %d test citations found; the table lost its proofs", len(cites))
	}
	sources := map[string]string{}
	for _, c := range cites {
		pkg, name := c[1], c[2]
		src, ok := sources[pkg]
		if !ok {
			files, _ := filepath.Glob(filepath.Join("..", pkg, "*_test.go"))
			if len(files) == 0 {
				t.Errorf("threat-model.md cites package %s, which has no tests", pkg)
			}
			var all strings.Builder
			for _, f := range files {
				data, _ := os.ReadFile(f)
				all.Write(data)
			}
			src = all.String()
			sources[pkg] = src
		}
		if !regexp.MustCompile(`(?m)^func ` + name + `\(`).MatchString(src) {
			t.Errorf("threat-model.md cites %s: %s, which does not exist", pkg, name)
		}
	}
}
