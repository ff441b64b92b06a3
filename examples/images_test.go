package examples_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every diagram source has its SVG and PNG next to it, the SVG names what
// the source names.
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
	}
}

// The diagram sources still render (Graphviz; required in CI).
func TestDiagramsRender(t *testing.T) {
	dot := needTool(t, "dot")
	sources, _ := filepath.Glob(filepath.Join("..", "images", "*.dot"))
	for _, src := range sources {
		out, err := exec.Command(dot, "-Tsvg", src).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "<svg") {
			t.Errorf("%s does not render: %v\n%s", src, err, out)
		}
	}
}
