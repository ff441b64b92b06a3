package examples_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every diagram source has its SVG and PNG next to it, the SVG names what
// the source names, and the source still renders when Graphviz is present.
func TestDiagrams(t *testing.T) {
	sources, _ := filepath.Glob(filepath.Join("..", "images", "*.dot"))
	if len(sources) < 2 {
		t.Fatalf("want the architecture and share-release diagrams, found %v", sources)
	}
	for _, src := range sources {
		base := strings.TrimSuffix(src, ".dot")
		for _, ext := range []string{".svg", ".png"} {
			if st, err := os.Stat(base + ext); err != nil || st.Size() == 0 {
				t.Errorf("%s: no rendered %s", src, ext)
			}
		}
		svg := readExample(t, base+".svg")
		if !strings.Contains(svg, "<svg") || !strings.Contains(svg, "mcbn") {
			t.Errorf("%s.svg does not look like the rendered diagram", base)
		}
		if _, err := exec.LookPath("dot"); err == nil {
			if out, err := exec.Command("dot", "-Tsvg", src, "-o", os.DevNull).CombinedOutput(); err != nil {
				t.Errorf("%s does not render: %v\n%s", src, err, out)
			}
		}
	}
}
