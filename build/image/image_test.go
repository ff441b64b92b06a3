package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// One commit, two documented paths, one digest: a git checkout (the
// creation time from git) and a `git archive` export (no .git; the time
// recorded by export-subst), each in a directory of its own (which
// -trimpath must hide), each building its own binary, including a baked
// deployment image. Both are made from HEAD, so uncommitted changes in the
// working tree are not what is compared. A build takes most of a minute
// here, so it is skipped under -short. With MCBN_IMAGE_FRESH_CACHE=1 the
// second build also uses an empty GOCACHE (slower, proves more).
func TestReproducibleImages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice; skipped under -short")
	}
	src, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, ".git")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs from a git checkout, but %s has no .git", src)
		}
		t.Skip("not a git checkout: the two documented paths both start from git")
	}
	checkout := filepath.Join(t.TempDir(), "checkout")
	gitRun(t, src, "clone", "--quiet", "--no-hardlinks", src, checkout)
	export := filepath.Join(t.TempDir(), "elsewhere", "export")
	if err := os.MkdirAll(export, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "src.tar")
	gitRun(t, src, "archive", "--format=tar", "-o", archive, "HEAD")
	if out, err := exec.Command("tar", "-xf", archive, "-C", export).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var digests [2][]string
	var layouts [2][]byte
	var epochs [2]int64
	for i, root := range []string{checkout, export} {
		epoch, how, warning, err := resolveEpoch(-1, root)
		if err != nil {
			t.Fatalf("%s: %v", root, err)
		}
		if warning != "" {
			t.Errorf("%s: %s", root, warning)
		}
		want := epochSource("git commit time")
		if i == 1 {
			want = epochFile + " (git archive)"
		}
		if how != want {
			t.Errorf("path %d took the time from %q, want %q", i, how, want)
		}
		epochs[i] = epoch
		bin := filepath.Join(t.TempDir(), "build", "mcbn")
		if i == 1 && os.Getenv("MCBN_IMAGE_FRESH_CACHE") == "1" {
			t.Setenv("GOCACHE", t.TempDir())
		}
		if err := buildBinary(ctx, root, bin, "amd64", "test"); err != nil {
			t.Fatal(err)
		}
		b, err := readBake(filepath.Join(root, "examples", "confidential-space", "server"))
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := buildImages(bin, "amd64", time.Unix(epoch, 0).UTC(), b)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "oci")
		if err := writeLayout(out, imgs); err != nil {
			t.Fatal(err)
		}
		layouts[i], _ = os.ReadFile(filepath.Join(out, "index.json"))
		for _, im := range imgs {
			d, _ := im.img.Digest()
			digests[i] = append(digests[i], im.name+" "+d.String())
		}
		if i == 0 {
			checkImages(t, out, imgs, root, time.Unix(epoch, 0))
		}
	}
	t.Logf("epoch %d, digests: %v", epochs[0], digests[0])
	if epochs[0] != epochs[1] {
		t.Fatalf("the checkout and the archive give different creation times: %d and %d", epochs[0], epochs[1])
	}
	if strings.Join(digests[0], ",") != strings.Join(digests[1], ",") {
		t.Fatalf("two builds differ:\n%v\n%v", digests[0], digests[1])
	}
	if !bytes.Equal(layouts[0], layouts[1]) {
		t.Fatal("the two OCI layouts' index.json differ")
	}
}

func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// checkImages reads the layout back and checks what the issue asks of the
// images: non-root, no shell, a static binary, CA roots, fixed metadata.
func checkImages(t *testing.T, dir string, imgs []namedImage, root string, created time.Time) {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != len(imgs) {
		t.Fatalf("layout has %d images, want %d", len(im.Manifests), len(imgs))
	}
	for i, desc := range im.Manifests {
		if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != imgs[i].name {
			t.Errorf("image %d named %q, want %q", i, got, imgs[i].name)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/mcbn" || !cf.Created.Time.Equal(created) {
			t.Errorf("%s: config %+v created %v", imgs[i].name, cf.Config, cf.Created)
		}
	}
	img, _ := idx.Image(im.Manifests[0].Digest)
	files := layerFiles(t, img, created)
	if _, ok := files["bin/sh"]; ok {
		t.Error("the image has a shell")
	}
	if !bytes.Equal(files[caPath], caBundle) {
		t.Error("the CA bundle is missing or altered")
	}
	f, err := elf.NewFile(bytes.NewReader(files[binPath]))
	if err != nil {
		t.Fatalf("binary: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary is dynamically linked")
		}
	}
	if bytes.Contains(files[binPath], []byte(root)) {
		t.Error("the binary holds the build directory's path (-trimpath missing)")
	}
}

// layerFiles reads the single layer of img, checking each header is fixed.
func layerFiles(t *testing.T, img v1.Image, created time.Time) map[string][]byte {
	t.Helper()
	layers, _ := img.Layers()
	files := map[string][]byte{}
	for _, l := range layers {
		for k, v := range tarFiles(t, l, created) {
			files[k] = v
		}
	}
	return files
}

// tarFiles reads one layer, checking each header is fixed.
func tarFiles(t *testing.T, l v1.Layer, created time.Time) map[string][]byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(created) {
			t.Errorf("%s: header not fixed: %q %q %v", h.Name, h.Uname, h.Gname, h.ModTime)
		}
		if h.Uid != 0 && h.Name != "home/nonroot/" {
			t.Errorf("%s owned by %d", h.Name, h.Uid)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	return files
}

// Without the toolchain: the same input file gives the same digests, a
// different creation time a different one, and the CLI prints one line per
// image. Runs under -short too.
func TestDigestDependsOnlyOnInputs(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "fake")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	digest := func(sec int64) string {
		imgs, err := buildImages(bin, "amd64", time.Unix(sec, 0))
		if err != nil {
			t.Fatal(err)
		}
		d, _ := imgs[0].img.Digest()
		return d.String()
	}
	if digest(0) != digest(0) {
		t.Fatal("same inputs, different digests")
	}
	if digest(0) == digest(1) {
		t.Fatal("the creation time does not reach the digest")
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"--binary", bin, "--epoch", "0", "--out", t.TempDir(), "--bake", "../../examples/confidential-space/server"}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "mcbn-proxy sha256:") || !strings.HasPrefix(lines[1], "mcbn-shareholder sha256:") ||
		!strings.HasPrefix(lines[2], "mcbn-proxy-server sha256:") || !strings.HasSuffix(lines[2], ` args=["/mcbn","proxy","server","--config","/etc/mcbn/proxy.yaml"]`) {
		t.Fatalf("output %q", out.String())
	}
	if !strings.HasSuffix(lines[0], digest(0)) {
		t.Fatalf("printed digest %q is not the built one %s", lines[0], digest(0))
	}
	if err := run(context.Background(), nil, io.Discard, io.Discard); err == nil {
		t.Fatal("no --out and no --push accepted")
	}
}
