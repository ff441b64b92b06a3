package gather

import (
	"path/filepath"
	"testing"
)

// The example's stand-alone shares: file for `mcbn proxy check` loads, with
// its paths resolved against its directory.
func TestExampleCheckFile(t *testing.T) {
	path := filepath.Join("..", "examples", "shareholder", "check.yaml")
	targets, err := LoadCheckTargets(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || len(targets[0].Config.Shareholders) != 3 || targets[0].Config.Attestation.Provider != "dev" {
		t.Fatalf("check.yaml: %+v", targets)
	}
	for i, sh := range targets[0].Config.Shareholders {
		if sh.Name != names[i] || sh.Audience != "https://127.0.0.1:844"+string(rune('1'+i)) || sh.Kind != "" {
			t.Errorf("check.yaml shareholder %d: %+v", i, sh)
		}
	}
	dir, _ := filepath.Abs(filepath.Dir(path))
	if c := targets[0].Config; !filepath.IsAbs(c.Group) || c.BaseDir != dir {
		t.Errorf("check.yaml paths not resolved against %s: group %s, base %s", dir, c.Group, c.BaseDir)
	}
}
