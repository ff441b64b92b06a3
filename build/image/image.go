package main

import (
	"bytes"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// namedImage is one of the images this tool produces.
type namedImage struct {
	name string
	img  v1.Image
}

// flavours are the images built: the same layer, a different entrypoint.
var flavours = []struct {
	name       string
	entrypoint []string
	labels     map[string]string
}{
	{"mcbn-proxy", []string{"/mcbn", "proxy"}, map[string]string{
		// Confidential Space launch policy: the operator may choose the
		// arguments (which subcommand and config), and the attestation
		// reports them in submods.container.args for the policy to check.
		"tee.launch_policy.allow_cmd_override": "true",
		"tee.launch_policy.log_redirect":       "always",
	}},
	{"mcbn-shareholder", []string{"/mcbn", "shareholder", "serve"}, nil},
}

// buildImages assembles every flavour from one static binary.
func buildImages(binaryPath, goarch string, created time.Time) ([]namedImage, error) {
	data, err := layerTar(binaryPath, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	var out []namedImage
	for _, f := range flavours {
		img, err := assemble(layer, goarch, created, f.entrypoint, f.labels)
		if err != nil {
			return nil, err
		}
		out = append(out, namedImage{name: f.name, img: img})
	}
	return out, nil
}

// assemble builds an OCI image with one layer and a config whose every
// field is fixed.
func assemble(layer v1.Layer, goarch string, created time.Time, entrypoint []string, extra map[string]string) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	ts := v1.Time{Time: created}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: ts, CreatedBy: "go run ./build/image", Comment: "static mcbn, CA bundle, nonroot user"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	labels := map[string]string{
		"org.opencontainers.image.title":  "mcbn",
		"org.opencontainers.image.source": "https://github.com/mcbn/mcbn",
	}
	for k, v := range extra {
		labels[k] = v
	}
	cf.Created, cf.OS, cf.Architecture = ts, "linux", goarch
	cf.Config = v1.Config{
		User:       "65532:65532",
		WorkingDir: "/",
		Entrypoint: entrypoint,
		Env:        []string{"PATH=/", "SSL_CERT_FILE=/" + caPath},
		Labels:     labels,
	}
	return mutate.ConfigFile(img, cf)
}

// writeLayout writes the images into an OCI image layout directory, each
// named by the org.opencontainers.image.ref.name annotation.
func writeLayout(dir string, imgs []namedImage) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	for _, im := range imgs {
		if err := p.AppendImage(im.img, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": im.name,
		})); err != nil {
			return err
		}
	}
	return nil
}
