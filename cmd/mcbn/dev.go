package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mcbn/mcbn/attest"
)

// The dev command group: local stand-ins for what production gets from the
// cloud. Logic lives in package attest; this file parses flags and prints.

func newDevCmd() *cobra.Command {
	return group("dev", "local stand-ins for development and tests (not for production)",
		`mcbn dev runs local stand-ins for the cloud services mcbn relies on in
production, so the whole system can run on one machine.

Nothing under 'mcbn dev' provides any security: use it for demos and tests.`,
		`  $ mcbn dev attester --socket /tmp/teeserver.sock --image-digest sha256:$(printf x | sha256sum | cut -c1-64)`,
		newDevAttesterCmd())
}

const devAttesterLong = `Runs a local stand-in for Google Cloud Confidential Space until interrupted:

  - an OIDC issuer on loopback HTTP (discovery at /.well-known/openid-configuration,
    keys at /jwks); its issuer URL is http://127.0.0.1:PORT;
  - the launcher's token API on a Unix socket (POST /v1/token with
    {"audience", "token_type": "OIDC", "nonces"}), for the proxy's "dev" provider.

Tokens are RS256 and shaped like Confidential Space tokens, with the image
digest given (default: the SHA-256 of this mcbn executable). They carry
swname MCBN_DEV_ATTESTER, dbgstat enabled and no support attributes, so a
production policy never accepts them. The signing key is generated at start
unless --key-file names one (created with mode 0600 if missing).`

const devAttesterExample = `  $ mcbn dev attester --socket /tmp/mcbn-dev/teeserver.sock
  issuer:       http://127.0.0.1:40123
  ...
  $ curl --unix-socket /tmp/mcbn-dev/teeserver.sock -d '{"audience":"https://alice.example","token_type":"OIDC","nonces":["0123456789abcdef"]}' http://localhost/v1/token`

// devSignalContext is replaced by tests to stop the attester.
var devSignalContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

var imageDigestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func newDevAttesterCmd() *cobra.Command {
	c := leaf("attester [--listen 127.0.0.1:0] [--socket PATH] [--image-digest sha256:...] [--key-file FILE]",
		"a local Confidential Space stand-in: OIDC issuer plus launcher token socket",
		devAttesterLong, devAttesterExample, noArgs)
	fs := c.Flags()
	listen := fs.String("listen", "127.0.0.1:0", "loopback `ADDRESS` for OIDC discovery and JWKS")
	socket := fs.String("socket", "", "`PATH` of the token socket (default: teeserver.sock in a new private temporary directory)")
	digest := fs.String("image-digest", "", "image `DIGEST` put in tokens, sha256:<64 hex> (default: SHA-256 of this executable)")
	reference := fs.String("image-reference", "", "image `REFERENCE` put in tokens (default: localhost/mcbn-dev@DIGEST)")
	keyFile := fs.String("key-file", "", "PEM RSA signing key `FILE`, created (0600) if missing (default: a fresh key each start)")
	group := fs.Bool("group-access", false, "make the socket 0660 instead of 0600 (for a proxy running as another user of the same group)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runDevAttester(c.OutOrStdout(), c.ErrOrStderr(), *listen, *socket, *digest, *reference, *keyFile, *group)
	}
	return c
}

func runDevAttester(stdout, stderr io.Writer, listen, socket, digest, reference, keyFile string, group bool) error {
	if digest != "" && !imageDigestRE.MatchString(digest) {
		return usagef("--image-digest %q: want sha256: followed by 64 lowercase hex digits", digest)
	}
	if socket == "" {
		dir, err := os.MkdirTemp("", "mcbn-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		socket = filepath.Join(dir, "teeserver.sock")
	}
	mode := os.FileMode(0o600)
	if group {
		mode = 0o660
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	d, err := attest.StartDevAttester(attest.DevAttesterConfig{
		Listen:         listen,
		Socket:         socket,
		SocketMode:     mode,
		ImageDigest:    digest,
		ImageReference: reference,
		KeyFile:        keyFile,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	ctx, stop := devSignalContext()
	defer stop()
	fmt.Fprintf(stdout, `mcbn dev attester: a local stand-in for Confidential Space (not a TEE; its tokens never pass a production policy)
issuer:       %s
jwks:         %s
token socket: %s
image digest: %s
key id:       %s

Point a verifier (shareholder) at issuer %s with your audience, and a proxy at
token provider "dev" with socket %s. Try:
  curl --unix-socket %s -d '{"audience":"https://alice.example","token_type":"OIDC","nonces":["0123456789abcdef"]}' http://localhost/v1/token
Stop with Ctrl-C.
`, d.Issuer(), d.JWKSURL(), d.Socket(), d.ImageDigest(), d.KeyID(), d.Issuer(), d.Socket(), d.Socket())
	<-ctx.Done()
	if err := d.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
