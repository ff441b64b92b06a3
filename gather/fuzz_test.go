package gather

import (
	"strings"
	"testing"
)

// FuzzParseCheckTargets: whatever file is given to `mcbn proxy check`, the
// parser returns targets or an error without panicking or expanding alias
// bombs, and every participant's options: block decodes or fails cleanly
// (errors without the block's line numbers, which would not be the file's).
func FuzzParseCheckTargets(f *testing.F) {
	f.Add([]byte("shares:\n  group: g.json\n"))
	f.Add([]byte("routes:\n- psk: {source: shares, options: {group: g.json}}\n"))
	f.Add([]byte("shares:\n  shareholders:\n    - {name: a, kind: kms, options: {key: k, n: [1, 2]}}\n    - {name: b, url: \"https://x:1\", pin: \"sha256:00\"}\n"))
	f.Add([]byte("x: &x {share: s, mode: ok}\nshares:\n  shareholders: [{name: a, kind: fake, options: *x}]\n"))
	f.Add([]byte("shares:\n  shareholders: [{name: a, options: [1]}]\n"))
	f.Add([]byte("routes:\n- name: r\n  identity: i\n  psk: {source: shares, options: {shareholders: [{name: a, options: {<<: {share: s}}}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		targets, err := ParseCheckTargets(data)
		if err != nil {
			return
		}
		for _, tg := range targets {
			for _, sh := range tg.Config.Shareholders {
				var o fakeOptions
				if err := decodeOptions(sh.Options.node, &o); err != nil && strings.Contains(err.Error(), "(line ") {
					t.Fatalf("options error keeps a line number of the block: %v", err)
				}
			}
		}
	})
}
