package demo

import (
	"path/filepath"
	"strings"
	"testing"
)

// The lines to try by hand run mcbn the way the caller says it runs: after
// 'go run' there need be no mcbn on PATH.
func TestHandTryLinesUseTheCommand(t *testing.T) {
	in := Info{Dir: "/tmp/mcbn-demo-1", ServerTLS: "127.0.0.1:4443", ClientHTTP: "127.0.0.1:8080", Identity: "Client_identity"}
	combine := "psk combine --group " + filepath.Join(in.Dir, "group.json") + " " +
		filepath.Join(in.Dir, "alice.share.json") + " " + filepath.Join(in.Dir, "bob.share.json")
	for _, tc := range []struct{ cmd, want string }{
		{"", "mcbn"},
		{"go run ./cmd/mcbn", "go run ./cmd/mcbn"},
		{"'/home/a b/mcbn'", "'/home/a b/mcbn'"},
	} {
		text := strings.Join(handTryLines(in, false, tc.cmd), "\n")
		if !strings.Contains(text, `-psk "$(`+tc.want+" "+combine+`)" -connect 127.0.0.1:4443`) {
			t.Errorf("%q: openssl line does not run %q:\n%s", tc.cmd, tc.want, text)
		}
		if !strings.Contains(text, "(run '"+tc.want+" demo --keep'") {
			t.Errorf("%q: no --keep hint with %q:\n%s", tc.cmd, tc.want, text)
		}
		if strings.Contains(strings.Join(handTryLines(in, true, tc.cmd), "\n"), "demo --keep") {
			t.Errorf("%q: --keep hint while kept", tc.cmd)
		}
		// The hint runs the same demo: --dkg and --kms are repeated.
		if text := strings.Join(handTryLines(in, false, tc.cmd, "--dkg", "--kms"), "\n"); !strings.Contains(text, "(run '"+tc.want+" demo --dkg --kms --keep'") {
			t.Errorf("%q: --keep hint drops the demo's flags:\n%s", tc.cmd, text)
		}
	}
}
