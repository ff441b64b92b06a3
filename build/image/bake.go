package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcbn/mcbn/proxy"
	// The shares PSK source registers itself with proxy; the baked
	// configuration is validated with it, as the binary would.
	_ "github.com/mcbn/mcbn/gather"
	_ "github.com/mcbn/mcbn/kms"
)

// A baked image is the generic image plus one layer holding a deployment's
// configuration at /etc/mcbn, with an entrypoint that runs exactly that
// configuration. Its digest therefore pins where traffic goes (listen,
// connect, shareholders, pins), and its launch policy forbids command and
// environment overrides, so an operator who runs it on Confidential Space
// cannot point the approved proxy elsewhere and still be released shares.
// This is the trust-model rule: anything that changes where traffic goes is
// fixed by the image or pinned by the release policy.

const (
	bakedDir    = "etc/mcbn"
	bakedConfig = "/etc/mcbn/proxy.yaml"
	// maxBakeFile bounds what goes into a layer: configuration, group
	// descriptors and pins are small; anything large is a mistake.
	maxBakeFile = 1 << 20
)

// bakedLabels are the Confidential Space launch policy of a baked image.
// allow_cmd_override false is also the launcher's default; it is written
// out so that whoever inspects the image sees the decision.
var bakedLabels = map[string]string{
	"tee.launch_policy.allow_cmd_override": "false",
	"tee.launch_policy.log_redirect":       "always",
}

// bake is one deployment directory read and checked.
type bake struct {
	name       string // image name: mcbn-proxy-<dir name>
	entrypoint []string
	files      []entry // under etc/mcbn/, sorted
}

// readBake reads DIR: it must hold proxy.yaml, every route must gather its
// key from shareholders, nothing in it may be a secret, and every
// /etc/mcbn/... path the configuration names must be a file of DIR.
func readBake(dir string) (*bake, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("--bake %s: %v", dir, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("--bake %s: not a directory", dir)
	}
	b := &bake{name: "mcbn-proxy-" + imageNamePart(filepath.Base(filepath.Clean(dir)))}
	have := map[string]bool{}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." {
				if strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				b.files = append(b.files, entry{name: bakedDir + "/" + rel + "/", mode: 0o555, dir: true})
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file (symlinks and devices are not baked)", p)
		}
		data, err := readBounded(p)
		if err != nil {
			return err
		}
		if err := refuseSecret(p, data); err != nil {
			return err
		}
		// Files are world-readable in the image: nothing here is secret
		// (checked above), and the proxy runs as 65532, not as root.
		b.files = append(b.files, entry{name: bakedDir + "/" + rel, mode: 0o444, data: data})
		have["/"+bakedDir+"/"+rel] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("--bake %s: %w", dir, err)
	}
	sort.Slice(b.files, func(i, j int) bool { return b.files[i].name < b.files[j].name })
	cfgPath := filepath.Join(dir, "proxy.yaml")
	if !have[bakedConfig] {
		return nil, fmt.Errorf("--bake %s: no proxy.yaml (the configuration the image runs)", dir)
	}
	data, _ := os.ReadFile(cfgPath)
	cfg, err := proxy.ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", cfgPath, err)
	}
	if cfg.Mode != proxy.ModeClient && cfg.Mode != proxy.ModeServer {
		return nil, fmt.Errorf("%s: mode: want client or server in a baked configuration, got %q", cfgPath, cfg.Mode)
	}
	if len(cfg.Routes) == 0 {
		return nil, fmt.Errorf("%s: routes: a baked configuration needs at least one route", cfgPath)
	}
	for i, r := range cfg.Routes {
		// With psk.epochs every epoch's source is held to the same rule
		// (the proxy refuses a top-level source beside epochs).
		if len(r.PSK.Epochs) == 0 {
			if !sharesOnly(r.PSK) {
				return nil, fmt.Errorf("%s: routes[%d].psk: %s", cfgPath, i, notShares)
			}
			continue
		}
		for j, e := range r.PSK.Epochs {
			if !sharesOnly(e.PSKConfig) {
				return nil, fmt.Errorf("%s: routes[%d].psk.epochs[%d]: %s", cfgPath, i, j, notShares)
			}
		}
	}
	if err := checkPaths(cfgPath, data, have); err != nil {
		return nil, err
	}
	// The proxy's own loading and validation, as the image will run it:
	// with exactly its argv, no flags, no environment, /etc/mcbn read from
	// the directory. A configuration the proxy would refuse at start (a
	// public plaintext listener on a client, an unknown cipher suite) is
	// refused here rather than restart-looping on the VM.
	files := map[string][]byte{}
	for _, e := range b.files {
		if !e.dir {
			files["/"+e.name] = e.data
		}
	}
	_, err = proxy.LoadConfig(cfg.Mode, proxy.LoadOptions{
		Flags:   map[string]string{"config": bakedConfig},
		Getenv:  func(string) (string, bool) { return "", false },
		Environ: func() []string { return nil },
		Read: func(name string) ([]byte, error) {
			if d, ok := files[path.Clean(name)]; ok {
				return d, nil
			}
			return nil, fmt.Errorf("%s is not in the baked directory", name)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: the proxy would refuse it: %v", cfgPath, err)
	}
	b.entrypoint = []string{"/" + binPath, "proxy", string(cfg.Mode), "--config", bakedConfig}
	return b, nil
}

const notShares = "a baked image must gather its key from shareholders (source: shares); a key in an image is readable by anyone who pulls it, and a key from the environment or a file is the operator's choice"

// sharesOnly reports whether a key source is the shares source and nothing
// else.
func sharesOnly(p proxy.PSKConfig) bool {
	return p.Source == "shares" && p.Hex == "" && p.Env == "" && p.File == "" && p.Secrets == ""
}

// imageNamePart keeps a directory name usable in an image name.
func imageNamePart(s string) string {
	s = strings.ToLower(s)
	var out strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			out.WriteRune(r)
		} else {
			out.WriteRune('-')
		}
	}
	return strings.Trim(out.String(), "-")
}

func readBounded(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxBakeFile {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d a configuration file may have", p, st.Size(), maxBakeFile)
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(f)
	return buf.Bytes(), err
}

// refuseSecret stops the obvious ways a secret lands in a public image.
func refuseSecret(p string, data []byte) error {
	name := filepath.Base(p)
	switch {
	case strings.HasSuffix(name, ".share.json"):
		return fmt.Errorf("%s: a share file; shares stay with their participants, never in an image", p)
	case bytes.Contains(data, []byte("PRIVATE KEY-----")):
		return fmt.Errorf("%s: holds a private key; an image is public", p)
	case bytes.Contains(data, []byte(`"share":`)) || bytes.Contains(data, []byte(`"secret":`)):
		return fmt.Errorf("%s: looks like key material (a \"share\" or \"secret\" field); an image is public", p)
	}
	return nil
}

// checkPaths requires that every string in the configuration that names a
// path under /etc/mcbn/ is a file baked with it: a configuration that
// points at a file the image lacks would restart-loop on the VM.
func checkPaths(cfgPath string, data []byte, have map[string]bool) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return fmt.Errorf("%s: %v", cfgPath, err)
	}
	var missing []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && strings.HasPrefix(n.Value, "/etc/mcbn/") {
			if !have[path.Clean(n.Value)] {
				missing = append(missing, fmt.Sprintf("%s (line %d)", n.Value, n.Line))
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&root)
	if len(missing) > 0 {
		return fmt.Errorf("%s: names %s, which is not in the baked directory", cfgPath, strings.Join(missing, ", "))
	}
	return nil
}

// bakeTar renders a baked directory as a layer with fixed headers.
func bakeTar(b *bake, mtime time.Time) ([]byte, error) {
	entries := append([]entry{{name: bakedDir + "/", mode: 0o555, dir: true}}, b.files...)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := writeEntry(tw, e, mtime); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
