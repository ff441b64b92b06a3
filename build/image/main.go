package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"
)

// options are the command's flags.
type options struct {
	out       string
	dockerTar string
	binary    string
	goarch    string
	version   string
	epoch     int64
	push      string
	tag       string
	bakes     []string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	var bakes []*bake
	for _, dir := range o.bakes {
		b, err := readBake(dir)
		if err != nil {
			return err
		}
		bakes = append(bakes, b)
	}
	epoch, how, warning, err := resolveEpoch(o.epoch, root)
	if err != nil {
		return err
	}
	log.Info("creation time", "epoch", epoch, "from", string(how))
	if warning != "" {
		log.Warn(warning)
	}
	bin := o.binary
	if bin == "" {
		tmp, err := os.MkdirTemp("", "mcbn-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		bin = filepath.Join(tmp, "mcbn")
		log.Info("building the binary", "goarch", o.goarch, "version", o.version)
		if err := buildBinary(ctx, root, bin, o.goarch, o.version); err != nil {
			return err
		}
	}
	created := time.Unix(epoch, 0).UTC()
	imgs, err := buildImages(bin, o.goarch, created, bakes...)
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := writeLayout(o.out, imgs); err != nil {
			return err
		}
		log.Info("wrote OCI layout", "dir", o.out)
	}
	if o.dockerTar != "" {
		if err := writeDockerTar(o.dockerTar, imgs, o.tag); err != nil {
			return err
		}
		log.Info("wrote a tarball for docker load", "file", o.dockerTar)
	}
	for _, im := range imgs {
		d, err := im.img.Digest()
		if err != nil {
			return err
		}
		if im.argv != nil {
			// The argv a policy pins with --args (submods.container.args).
			argv, _ := json.Marshal(im.argv)
			fmt.Fprintf(stdout, "%s %s args=%s\n", im.name, d, argv)
			continue
		}
		fmt.Fprintf(stdout, "%s %s\n", im.name, d)
	}
	if o.push != "" {
		for _, im := range imgs {
			ref, d, err := push(ctx, o.push, im, o.tag)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "pushed %s@%s\n", ref, d)
		}
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "", "write the images as an OCI layout into `DIR`")
	fs.StringVar(&o.dockerTar, "docker-tar", "", "write the images as a tarball for `docker load -i FILE` (tagged mcbn-proxy:TAG, ...)")
	fs.Func("bake", "also build mcbn-proxy-<name> with `DIR`'s configuration (proxy.yaml, group.json, ...) baked into /etc/mcbn (repeatable); for Confidential Space", func(v string) error {
		o.bakes = append(o.bakes, v)
		return nil
	})
	fs.StringVar(&o.binary, "binary", "", "use this prebuilt static mcbn `FILE` instead of building one")
	fs.StringVar(&o.goarch, "goarch", "amd64", "target `ARCH` (amd64 or arm64)")
	fs.StringVar(&o.version, "version", "dev", "version stamped into the binary (main.version)")
	fs.Int64Var(&o.epoch, "epoch", -1, "image creation time, Unix `SECONDS` (default $SOURCE_DATE_EPOCH, else the git commit time, else the time git archive recorded)")
	fs.StringVar(&o.push, "push", "", "push to `REPO`/mcbn-proxy and REPO/mcbn-shareholder (e.g. europe-docker.pkg.dev/P/mcbn)")
	fs.StringVar(&o.tag, "tag", "latest", "tag used with --push")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.out == "" && o.push == "" && o.dockerTar == "" {
		return o, fmt.Errorf("nothing to do: give --out DIR, --docker-tar FILE and/or --push REPO")
	}
	if o.goarch != "amd64" && o.goarch != "arm64" {
		return o, fmt.Errorf("--goarch %q: want amd64 or arm64", o.goarch)
	}
	return o, nil
}
