package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// The proof: two separate builds of the binary, each packed into
// the images, give the same digests. The source is snapshotted once and
// copied to two different directories, so the builds see the same commit
// (the working tree is shared and may change meanwhile) from two different
// paths (which -trimpath must hide). A build takes most of a minute here,
// so it is skipped under -short. With MCBN_IMAGE_FRESH_CACHE=1 the second
// build also uses an empty GOCACHE (slower, proves more).
func TestReproducibleImages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice; skipped under -short")
	}
	src, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(t.TempDir(), "checkout-a")
	if err := copyTree(src, snap); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	created := time.Unix(1700000000, 0).UTC()
	var digests [2][]string
	var layouts [2][]byte
	for i := range 2 {
		root := snap
		if i == 1 {
			root = filepath.Join(t.TempDir(), "elsewhere", "checkout-b")
			if err := copyTree(snap, root); err != nil {
				t.Fatal(err)
			}
		}
		bin := filepath.Join(t.TempDir(), "build", "mcbn")
		if i == 1 && os.Getenv("MCBN_IMAGE_FRESH_CACHE") == "1" {
			t.Setenv("GOCACHE", t.TempDir())
		}
		if err := buildBinary(ctx, root, bin, "amd64", "test"); err != nil {
			t.Fatal(err)
		}
		imgs, err := buildImages(bin, "amd64", created)
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
			checkImages(t, out, imgs, root)
		}
	}
	t.Logf("digests: %v", digests[0])
	if strings.Join(digests[0], ",") != strings.Join(digests[1], ",") {
		t.Fatalf("two builds differ:\n%v\n%v", digests[0], digests[1])
	}
	if !bytes.Equal(layouts[0], layouts[1]) {
		t.Fatal("the two OCI layouts' index.json differ")
	}
}

// checkImages reads the layout back and checks what the issue asks of the
// images: non-root, no shell, a static binary, CA roots, fixed metadata.
func checkImages(t *testing.T, dir string, imgs []namedImage, root string) {
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
		if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/mcbn" || !cf.Created.Time.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: config %+v created %v", imgs[i].name, cf.Config, cf.Created)
		}
	}
	img, _ := idx.Image(im.Manifests[0].Digest)
	files := layerFiles(t, img)
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

// copyTree copies the module's regular files (not .git or other hidden
// directories) from src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

// layerFiles reads the single layer of img, checking each header is fixed.
func layerFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
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
		if h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(1700000000, 0)) {
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
	err := run(context.Background(), []string{"--binary", bin, "--epoch", "0", "--out", t.TempDir()}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "mcbn-proxy sha256:") || !strings.HasPrefix(lines[1], "mcbn-shareholder sha256:") {
		t.Fatalf("output %q", out.String())
	}
	if !strings.HasSuffix(lines[0], digest(0)) {
		t.Fatalf("printed digest %q is not the built one %s", lines[0], digest(0))
	}
	if err := run(context.Background(), nil, io.Discard, io.Discard); err == nil {
		t.Fatal("no --out and no --push accepted")
	}
}
