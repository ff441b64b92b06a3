package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const exampleBake = "../../examples/confidential-space/server"

// The shipped Confidential Space deployment bakes: its configuration ends up
// in /etc/mcbn, read-only, the entrypoint runs exactly it, and the launch
// policy forbids overrides.
func TestBakeExample(t *testing.T) {
	b, err := readBake(exampleBake)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.entrypoint, " "); got != "/mcbn proxy server --config /etc/mcbn/proxy.yaml" {
		t.Fatalf("entrypoint %q", got)
	}
	bin := filepath.Join(t.TempDir(), "fake")
	os.WriteFile(bin, []byte("\x7fELF not really"), 0o755)
	created := time.Unix(1700000000, 0)
	imgs, err := buildImages(bin, "amd64", created, b)
	if err != nil {
		t.Fatal(err)
	}
	baked := imgs[len(imgs)-1]
	if baked.name != "mcbn-proxy-server" {
		t.Fatalf("baked image named %q", baked.name)
	}
	cf, _ := baked.img.ConfigFile()
	if cf.Config.Labels["tee.launch_policy.allow_cmd_override"] != "false" {
		t.Errorf("labels %v: the baked image must forbid command overrides", cf.Config.Labels)
	}
	if _, ok := cf.Config.Labels["tee.launch_policy.allow_env_override"]; ok {
		t.Error("the baked image allows environment overrides")
	}
	if strings.Join(cf.Config.Entrypoint, " ") != strings.Join(b.entrypoint, " ") || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %v cmd %v", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	for _, im := range imgs[:len(imgs)-1] {
		cf, _ := im.img.ConfigFile()
		if v, ok := cf.Config.Labels["tee.launch_policy.allow_cmd_override"]; ok && v != "false" {
			t.Errorf("%s: the generic image allows command overrides (%s)", im.name, v)
		}
	}
	layers, _ := baked.img.Layers()
	if len(layers) != 2 {
		t.Fatalf("%d layers, want the generic one and the configuration", len(layers))
	}
	generic, _ := imgs[0].img.Layers()
	d0, _ := generic[0].Digest()
	d1, _ := layers[0].Digest()
	if d0 != d1 {
		t.Error("the baked image does not share the generic layer")
	}
	files := tarFiles(t, layers[1], created)
	want, _ := os.ReadFile(filepath.Join(exampleBake, "proxy.yaml"))
	if string(files["etc/mcbn/proxy.yaml"]) != string(want) {
		t.Error("proxy.yaml missing or altered in the layer")
	}
	if _, ok := files["etc/mcbn/group.json"]; !ok {
		t.Error("group.json missing from the layer")
	}
	// A different configuration is a different digest: the digest pins it.
	dir := copyBake(t)
	os.WriteFile(filepath.Join(dir, "proxy.yaml"), []byte(strings.Replace(string(want), "10.0.0.12:8080", "10.0.0.13:8080", 1)), 0o644)
	b2, err := readBake(dir)
	if err != nil {
		t.Fatal(err)
	}
	imgs2, _ := buildImages(bin, "amd64", created, b2)
	x, _ := baked.img.Digest()
	y, _ := imgs2[len(imgs2)-1].img.Digest()
	if x == y {
		t.Fatal("another connect address gives the same digest")
	}
}

// copyBake copies the example into a directory named "server" for edits.
func copyBake(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "server")
	os.MkdirAll(dir, 0o755)
	for _, f := range []string{"proxy.yaml", "group.json"} {
		b, err := os.ReadFile(filepath.Join(exampleBake, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	return dir
}

// What must never be baked, and configurations that would not start, are
// refused with an error naming the file and the reason.
func TestBakeRefuses(t *testing.T) {
	cfg, _ := os.ReadFile(filepath.Join(exampleBake, "proxy.yaml"))
	edit := func(old, new string) func(string) {
		return func(dir string) {
			os.WriteFile(filepath.Join(dir, "proxy.yaml"), []byte(strings.Replace(string(cfg), old, new, 1)), 0o644)
		}
	}
	for name, c := range map[string]struct {
		change func(dir string)
		want   string
	}{
		"no proxy.yaml": {func(d string) { os.Remove(filepath.Join(d, "proxy.yaml")) }, "no proxy.yaml"},
		"static key": {edit("psk: &shares\n      source: shares\n      options:", "psk: &shares\n      hex: 00112233445566778899aabbccddeeff\n      options:"),
			"must gather its key from shareholders"},
		"key file": {edit("source: shares", "source: shares\n      file: /etc/mcbn/psk.txt"), "must gather its key from shareholders"},
		"epoch with a static key": {edit("psk: &shares\n      source: shares", "psk: &shares\n      epochs:\n        - epoch: 1\n          hex: 00112233445566778899aabbccddeeff\n      source: shares"),
			"routes[0].psk.epochs[0]: a baked image must gather"},
		"missing group": {func(d string) { os.Remove(filepath.Join(d, "group.json")) }, "/etc/mcbn/group.json (line"},
		"unknown key":   {edit("log_format: json", "log_format: json\nlisten_everywhere: true"), "listen_everywhere"},
		"no mode":       {edit("mode: server", ""), "mode"},
		"share file":    {func(d string) { os.WriteFile(filepath.Join(d, "alice.share.json"), []byte("{}"), 0o600) }, "a share file"},
		"private key": {func(d string) {
			os.WriteFile(filepath.Join(d, "tls.pem"), []byte("-----BEGIN EC PRIVATE KEY-----\n"), 0o600)
		}, "private key"},
		"share material": {func(d string) { os.WriteFile(filepath.Join(d, "x.json"), []byte(`{"share": "00"}`), 0o644) }, "key material"},
		"symlink":        {func(d string) { os.Symlink("/etc/passwd", filepath.Join(d, "passwd")) }, "not a regular file"},
		// Refused by the proxy's own validation, which bake runs.
		"bad listen scheme": {edit("listen: tls://0.0.0.0:8443", "listen: tcp://0.0.0.0:8443"), "the proxy would refuse it"},
		"unknown suite":     {edit("    psk: &shares", "    tls: {cipher_suites: [NOPE]}\n    psk: &shares"), "the proxy would refuse it"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := copyBake(t)
			c.change(dir)
			_, err := readBake(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("a multi-line error: %q", err)
			}
		})
	}
}

// The creation time follows one rule, with no silent fallback.
func TestResolveEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	os.Unsetenv("SOURCE_DATE_EPOCH")
	dir := t.TempDir() // not a git checkout, no recorded time
	if _, _, _, err := resolveEpoch(-1, dir); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Fatalf("no source of time: %v, want an error naming SOURCE_DATE_EPOCH", err)
	}
	os.MkdirAll(filepath.Join(dir, "build", "image"), 0o755)
	os.WriteFile(filepath.Join(dir, epochFile), []byte("$Format:%ct$\n"), 0o644)
	if _, _, _, err := resolveEpoch(-1, dir); err == nil {
		t.Fatal("an unsubstituted placeholder was taken as a time")
	}
	os.WriteFile(filepath.Join(dir, epochFile), []byte("1700000000\n"), 0o644)
	if v, how, _, err := resolveEpoch(-1, dir); err != nil || v != 1700000000 || !strings.Contains(string(how), "git archive") {
		t.Fatalf("recorded time: %d %q %v", v, how, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1600000000")
	if v, how, _, err := resolveEpoch(-1, dir); err != nil || v != 1600000000 || how != "SOURCE_DATE_EPOCH" {
		t.Fatalf("SOURCE_DATE_EPOCH: %d %q %v", v, how, err)
	}
	if v, how, _, err := resolveEpoch(5, dir); err != nil || v != 5 || how != "--epoch" {
		t.Fatalf("--epoch: %d %q %v", v, how, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, _, _, err := resolveEpoch(-1, dir); err == nil {
		t.Fatal("a malformed SOURCE_DATE_EPOCH was accepted")
	}
}

// A route with psk.epochs bakes when every epoch gathers from shareholders,
// so a baked proxy can rotate its key without downtime (docs/key-rotation.md).
func TestBakeEpochs(t *testing.T) {
	cfg, _ := os.ReadFile(filepath.Join(exampleBake, "proxy.yaml"))
	epochs := strings.Replace(string(cfg), "    psk: &shares\n      source: shares\n      options:\n",
		"    psk:\n      epochs:\n        - epoch: 7\n          source: shares\n          options: &opts\n", 1)
	if epochs == string(cfg) {
		t.Fatal("the example's psk block changed; update this test")
	}
	// The options block moves two levels in; the second epoch reuses it.
	var out []string
	inOpts := false
	for _, line := range strings.Split(epochs, "\n") {
		switch {
		case strings.HasPrefix(line, "          options: &opts"):
			inOpts = true
		case inOpts && strings.HasPrefix(line, "        "):
			line = "    " + line
		case inOpts:
			inOpts = false
			out = append(out, "        - epoch: 8", "          source: shares", "          options: *opts")
		}
		out = append(out, line)
	}
	dir := copyBake(t)
	os.WriteFile(filepath.Join(dir, "proxy.yaml"), []byte(strings.Join(out, "\n")), 0o644)
	if _, err := readBake(dir); err != nil {
		t.Fatalf("a shares-only epochs route refused: %v\n%s", err, strings.Join(out, "\n"))
	}
}
