package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProxyCheckEpochs: 'mcbn proxy check' dry-runs each psk.epochs entry
// with a shares source (named "routes[0] (app) epoch 2") instead of
// building it, which would gather shares and derive the key in the
// checking process, and still builds the other epochs' sources as the
// proxy does (a missing key file fails the check). A revocation below the
// threshold fails it, like for a route without epochs.
func TestProxyCheckEpochs(t *testing.T) {
	n := startConsentNet(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "epoch1.psk")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// n.options is indented for a route's psk.options; an epoch's options
	// sit four columns deeper.
	opts := strings.ReplaceAll("\n"+strings.TrimSuffix(n.options, "\n"), "\n", "\n    ")
	config := func(name, file string) string {
		p := filepath.Join(dir, name)
		y := fmt.Sprintf("mode: client\nroutes:\n  - name: app\n    listen: tcp://127.0.0.1:0\n    connect: tls://127.0.0.1:9\n    psk:\n      epochs:\n"+
			"        - epoch: 1\n          file: %s\n        - epoch: 2\n          source: shares\n          options:%s\n", file, opts)
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := config("client.yaml", keyFile)
	code, out, errs := proxyCLI("proxy", "check", "--config", cfg)
	if code != 0 || !strings.Contains(out, "routes[0] (app) epoch 2: 3/3 shares (threshold 2): alice ok, bob ok, carol ok") {
		t.Fatalf("check: exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out, "epoch 1:") {
		t.Fatalf("the file epoch was dry-run as shares:\n%s", out)
	}

	code, _, errs = proxyCLI("proxy", "check", "--config", config("nokey.yaml", filepath.Join(dir, "missing.psk")))
	if code != 1 || !strings.Contains(errs, "psk.epochs") || !strings.Contains(errs, "missing.psk") {
		t.Fatalf("check with epoch 1's key file missing: exit %d: %s", code, errs)
	}

	n.revoke(t, "bob", "carol")
	code, out, errs = proxyCLI("proxy", "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "routes[0] (app) epoch 2: 1/3 shares (threshold 2): alice ok, bob refused: consent_revoked, carol refused: consent_revoked") ||
		!strings.Contains(errs, "below the threshold") {
		t.Fatalf("check after revocation: exit %d\n%s%s", code, out, errs)
	}
}
