package main

import (
	"context"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/google"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// push uploads one image to repo/NAME:tag. Credentials come from the Docker
// config (authn.DefaultKeychain) or, on Google Cloud (Cloud Build, gcloud),
// from Application Default Credentials (google.Keychain). The digest pushed
// is the one printed before: the registry stores the bytes as built.
func push(ctx context.Context, repo string, im namedImage, tag string) (string, v1.Hash, error) {
	ref, err := name.NewTag(fmt.Sprintf("%s/%s:%s", repo, im.name, tag))
	if err != nil {
		return "", v1.Hash{}, err
	}
	d, err := im.img.Digest()
	if err != nil {
		return "", v1.Hash{}, err
	}
	kc := authn.NewMultiKeychain(authn.DefaultKeychain, google.Keychain)
	if err := remote.Write(ref, im.img, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)); err != nil {
		return "", v1.Hash{}, fmt.Errorf("push %s: %w", ref, err)
	}
	return ref.Context().Name(), d, nil
}

// writeDockerTar writes every image into one tarball that `docker load`
// reads, each tagged NAME:tag. Docker then holds the very bytes whose
// digests were printed; there is no second, Docker-built image to pin.
func writeDockerTar(file string, imgs []namedImage, tag string) error {
	refs := map[name.Reference]v1.Image{}
	for _, im := range imgs {
		ref, err := name.NewTag(im.name + ":" + tag)
		if err != nil {
			return err
		}
		refs[ref] = im.img
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := tarball.MultiRefWrite(refs, f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", file, err)
	}
	return f.Close()
}
