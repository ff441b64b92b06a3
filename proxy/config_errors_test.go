package proxy

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// optsKindOptions is a source's options with the shapes a real one has
// (the shares source: nested lists of mappings, durations, numbers).
type optsKindOptions struct {
	Group        string        `yaml:"group"`
	Refresh      time.Duration `yaml:"refresh"`
	KeyLength    int           `yaml:"key_length"`
	Shareholders []struct {
		Name string `yaml:"name"`
		URL  string `yaml:"url"`
	} `yaml:"shareholders"`
	Attestation struct {
		Provider string `yaml:"provider"`
	} `yaml:"attestation"`
}

func init() {
	RegisterSource("test-opts", func(spec SourceSpec) (Source, error) {
		var o optsKindOptions
		if err := spec.Decode(&o); err != nil {
			return nil, err
		}
		return NewStaticSource(spec.Identity, bytes.Repeat([]byte{1}, 16)), nil
	})
}

// TestSourceOptionErrorsUseFileLines: an error in psk.options names the
// line in the config file (not in the options block) and says what the
// YAML should hold, without Go type names.
func TestSourceOptionErrorsUseFileLines(t *testing.T) {
	const head = `# a comment line
mode: server

routes:
  - name: web
    listen: tls://127.0.0.1:0
    connect: tcp://127.0.0.1:9
    psk:
      source: test-opts
      options:
        group: g.json
        attestation: {provider: dev}
`
	for _, tc := range []struct{ name, tail, want string }{
		{"unknown nested key", "        shareholders:\n          - name: alice\n            url: https://a\n          - name: bob\n            ulr: https://b\n",
			`psk.source test-opts: line 17: unknown key "ulr"`},
		{"unknown key in a flow mapping", "        shareholders: [{name: alice, url: https://a}, {name: bob, ulr: https://b}]\n", `line 13: unknown key "ulr"`},
		{"duration", "        refresh: soon\n", "line 13: got a string (value hidden), want a duration (e.g. 10s)"},
		{"number", "        key_length: [32]\n", "line 13: got a list, want a whole number"},
		{"mapping", "        shareholders: alice\n", "line 13: got a string (value hidden), want a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(head + tc.tail))
			if err == nil {
				_, err = New(c, Options{Logger: discardLogger()})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v\nwant %q", err, tc.want)
			}
			for _, goName := range []string{"time.Duration", "[]struct", "proxy.", "optsKindOptions", "!!", "int"} {
				if strings.Contains(err.Error(), goName) {
					t.Fatalf("error %q shows the Go-internal %q", err, goName)
				}
			}
		})
	}
	// Anchors and merge keys (examples/local uses psk: *shares) decode too.
	good := head + "  - name: dns\n    listen: tls://127.0.0.1:0\n    connect: tcp://127.0.0.1:9\n    psk:\n      source: test-opts\n      options:\n        <<: {group: g.json}\n        refresh: 2s\n"
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(c, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}

// TestModeErrors: a misspelt mode names the valid ones, in the file and
// against the subcommand.
func TestModeErrors(t *testing.T) {
	for _, m := range []Mode{ModeClient, ModeServer} {
		_, err := load(t, m, "mode: sever\n"+goodServer, nil, nil)
		if err == nil || !strings.Contains(err.Error(), `mode: unknown mode "sever" (want client or server)`) {
			t.Fatalf("%s: %v", m, err)
		}
	}
	if _, err := load(t, ModeClient, "mode: server\n"+goodServer, nil, nil); err == nil || !strings.Contains(err.Error(), "the config file is for a server proxy, but this is mcbn proxy client") {
		t.Fatalf("mismatch: %v", err)
	}
}

// TestPSKSecretsOddHex: a PSKsecrets key of an odd number of hex digits
// stops the start, naming the line and the setting that allows it; with
// psk.odd_hex_as_text: true it is the ASCII key stunnel would use.
func TestPSKSecretsOddHex(t *testing.T) {
	odd := "0123456789abcdef0123456789abcdef0" // 33 digits
	file := writeSecret(t, "psk.txt", "alice:"+odd+"\n")
	yml := func(extra string) string {
		return fmt.Sprintf("mode: server\nroutes:\n  - name: web\n    listen: tls://127.0.0.1:0\n    connect: tcp://127.0.0.1:9\n    psk:\n      secrets: %s\n%s", file, extra)
	}
	c, err := ParseConfig([]byte(yml("")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(c, Options{Logger: discardLogger()})
	if err == nil || !strings.Contains(err.Error(), `psk.secrets: `+file+`: line 1: key for "alice" is 33 hex digits, an odd number`) ||
		!strings.Contains(err.Error(), "psk.odd_hex_as_text: true") || strings.Contains(err.Error(), odd) {
		t.Fatalf("odd hex key: %v", err)
	}
	c, err = ParseConfig([]byte(yml("      odd_hex_as_text: true\n")))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(c, Options{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if k, err := p.routes[0].base().src.Key("alice"); err != nil || string(k) != odd {
		t.Fatalf("with odd_hex_as_text the key is %q, %v; want the ASCII text", k, err)
	}
	c, _ = ParseConfig([]byte("mode: server\nroutes:\n  - listen: tls://127.0.0.1:0\n    connect: tcp://127.0.0.1:9\n    psk: {hex: 00112233445566778899aabbccddeeff, odd_hex_as_text: true}\n"))
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "psk.odd_hex_as_text: only used with psk.secrets") {
		t.Fatalf("odd_hex_as_text without secrets: %v", err)
	}
}

// TestFailedReloadShows: a SIGHUP reload that fails shows in /status (the
// route's reload block) and in /readyz's answer, which stays 200 because
// the route still serves with the previous key; a good reload clears it.
func TestFailedReloadShows(t *testing.T) {
	key := randomKey(t)
	kf := writeSecret(t, "psk.hex", hexKey(key))
	srv := startYAML(t, fmt.Sprintf("mode: server\nadmin: 127.0.0.1:0\nroutes:\n  - name: web\n    listen: tls://127.0.0.1:0\n    connect: tcp://%s\n    psk: {file: %s}\n",
		echoServer(t), kf))
	admin := "http://" + srv.AdminAddr().String()
	if r := getStatus(t, srv).Routes[0]; r.Reload != nil {
		t.Fatalf("reload state before any reload: %+v", r.Reload)
	}
	if err := writeFile(kf, "not hex"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err == nil {
		t.Fatal("a broken key file reloaded")
	}
	r := getStatus(t, srv).Routes[0]
	if r.Reload == nil || r.Reload.State != "failed" || !strings.Contains(r.Reload.Error, "key is not valid hex") || !r.PSK.Ready {
		t.Fatalf("/status after a failed reload: %+v %+v", r.Reload, r.PSK)
	}
	code, body := httpGet(t, admin+"/readyz")
	if code != 200 || !strings.Contains(body, "route web: last reload failed at ") || !strings.Contains(body, "serving with the previous key") {
		t.Fatalf("/readyz after a failed reload: %d %q", code, body)
	}
	if err := writeFile(kf, hexKey(randomKey(t))); err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := getStatus(t, srv).Routes[0]; r.Reload == nil || r.Reload.State != "ok" || r.Reload.Error != "" {
		t.Fatalf("/status after a good reload: %+v", r.Reload)
	}
	if code, body := httpGet(t, admin+"/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz after a good reload: %d %q", code, body)
	}
}

// writeFile replaces a 0600 file's content.
func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
