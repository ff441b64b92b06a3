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
	argv []string // a baked image's argv, which a release policy may pin
}

// flavours are the generic images: the same layer, a different entrypoint.
// Both take the rest of the command as arguments ([server, --config, F] for
// the proxy; [--config, F] for the shareholder). The generic proxy image
// carries no Confidential Space launch policy labels, so the launcher's
// default applies (no command override): on Confidential Space only a baked
// image (--bake), which holds its configuration, can do anything.
var flavours = []struct {
	name       string
	entrypoint []string
}{
	{"mcbn-proxy", []string{"/mcbn", "proxy"}},
	{"mcbn-shareholder", []string{"/mcbn", "shareholder", "serve"}},
}

// buildImages assembles every generic flavour from one static binary, then
// one baked proxy image per deployment directory.
func buildImages(binaryPath, goarch string, created time.Time, bakes ...*bake) ([]namedImage, error) {
	data, err := layerTar(binaryPath, created)
	if err != nil {
		return nil, err
	}
	layer, err := layerFrom(data)
	if err != nil {
		return nil, err
	}
	var out []namedImage
	for _, f := range flavours {
		img, err := assemble([]v1.Layer{layer}, goarch, created, f.entrypoint, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, namedImage{name: f.name, img: img})
	}
	for _, b := range bakes {
		data, err := bakeTar(b, created)
		if err != nil {
			return nil, err
		}
		cfgLayer, err := layerFrom(data)
		if err != nil {
			return nil, err
		}
		img, err := assemble([]v1.Layer{layer, cfgLayer}, goarch, created, b.entrypoint, bakedLabels)
		if err != nil {
			return nil, err
		}
		out = append(out, namedImage{name: b.name, img: img, argv: b.entrypoint})
	}
	return out, nil
}

func layerFrom(data []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// assemble builds an OCI image with one layer and a config whose every
// field is fixed.
func assemble(layers []v1.Layer, goarch string, created time.Time, entrypoint []string, extra map[string]string) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	ts := v1.Time{Time: created}
	comments := []string{"static mcbn, CA bundle, nonroot user", "baked configuration in /etc/mcbn"}
	img := base
	for i, layer := range layers {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: ts, CreatedBy: "go run ./build/image", Comment: comments[i]},
		})
		if err != nil {
			return nil, err
		}
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
