package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/mcbn/mcbn/kms"
	"github.com/mcbn/mcbn/psk"
	"github.com/mcbn/mcbn/shareholder"
)

// KMS participants: `mcbn psk seal` (a participant seals its share with its
// Cloud KMS key) and `mcbn participant gcp-setup` (the participant's key,
// pool, provider and bindings). Logic lives in package kms; see
// docs/participants.md.

const pskSealLong = `Encrypts a share file with the participant's Cloud KMS key (KMS Encrypt, with
CRC32C integrity checks) and writes the sealed share (mode 0644, refusing to
overwrite). The additional authenticated data binds the group id, the share
index and the participant name, so the sealed share cannot stand in for
another participant's or another group's. The sealed file is not secret: give
it to the operator with the proxy entry 'mcbn participant gcp-setup' prints.
Only the approved workload, through your Workload Identity Federation pool,
can have KMS decrypt it; disabling the key version revokes your consent.

Credentials are Application Default Credentials (gcloud auth
application-default login); you need roles/cloudkms.cryptoKeyEncrypter on the
key. --group checks the share against the group descriptor first.

See docs/key-derivation.md ("Sealed shares") for the format.`

func newPskSealCmd() *cobra.Command {
	c := leaf("seal --kms projects/P/locations/L/keyRings/R/cryptoKeys/K --share FILE --out FILE [--group FILE]",
		"encrypt a share with the participant's Cloud KMS key (a KMS participant)", pskSealLong,
		"  $ mcbn psk seal --kms projects/alice-prj/locations/global/keyRings/mcbn/cryptoKeys/mcbn-share \\\n      --share alice.share.json --out alice.share.kms.json", noArgs)
	fs := c.Flags()
	key := fs.String("kms", "", "the Cloud KMS crypto `KEY` (projects/P/locations/L/keyRings/R/cryptoKeys/K)")
	shareFile := fs.String("share", "", "the share `FILE` to seal (mode 0600)")
	out := fs.String("out", "", "the sealed share `FILE` to write")
	groupFile := fs.String("group", "", "check the share against this group descriptor `FILE` first")
	// For the local fakes of the demo and tests.
	endpoint := fs.String("kms-endpoint", "", "KMS gRPC `HOST:PORT` (default Cloud KMS; for local fakes)")
	insecure := fs.Bool("kms-insecure", false, "plaintext gRPC to a loopback --kms-endpoint (local fakes only)")
	tokenFile := fs.String("access-token-file", "", "read an OAuth2 access token from `FILE` instead of Application Default Credentials")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runPskSeal(c.Context(), *key, *shareFile, *out, *groupFile, *endpoint, *insecure, *tokenFile, c.OutOrStdout())
	}
	return c
}

func runPskSeal(ctx context.Context, key, shareFile, out, groupFile, endpoint string, insecure bool, tokenFile string, stdout io.Writer) error {
	if key == "" || shareFile == "" || out == "" {
		return usagef("--kms, --share and --out are required")
	}
	if !kms.ValidKMSKey(key) {
		return usagef("--kms %q is not projects/P/locations/L/keyRings/R/cryptoKeys/K", key)
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("%s: already exists, refusing to overwrite", out)
	}
	share, err := psk.LoadShare(shareFile)
	if err != nil {
		return err
	}
	defer share.Wipe()
	if groupFile != "" {
		g, err := psk.LoadGroup(groupFile)
		if err != nil {
			return err
		}
		if share.GroupID != g.ID {
			return fmt.Errorf("%s is a share of group %s, not of %s (%s)", shareFile, share.GroupID[:12], groupFile, g.ID[:12])
		}
		if err := psk.VerifyShare(g, share); err != nil {
			return fmt.Errorf("%s: %v", shareFile, err)
		}
	}
	o := kms.ClientOptions{Endpoint: endpoint, Insecure: insecure}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return err
		}
		o.TokenSource = oauth2.StaticTokenSource(&oauth2.Token{AccessToken: strings.TrimSpace(string(b)), TokenType: "Bearer"})
		clear(b)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	sealed, err := kms.Seal(ctx, o, key, share)
	if err != nil {
		return err
	}
	if err := kms.WriteSealed(out, sealed); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sealed share of participant %d %q in group %s with %s -> %s\n",
		sealed.Index, sealed.Participant, sealed.GroupID[:12], sealed.KeyVersion, out)
	return nil
}

func newParticipantCmd() *cobra.Command {
	return group("participant", "set up a participant that needs no daemon (Cloud KMS)",
		`mcbn participant prepares participants that hold their share in Cloud KMS
instead of running 'mcbn shareholder serve'. See docs/participants.md for what
each kind of participant can and cannot promise.`,
		"  $ mcbn participant gcp-setup --project alice-prj --operator-project op-prj --image-digest sha256:...",
		newParticipantGCPSetupCmd())
}

const gcpSetupLong = `Prints the gcloud commands (or, with --terraform, the Terraform) that set up a
KMS participant in its own project --project: a key ring and key; a workload
identity pool with an OIDC provider trusting Confidential Space attestation
tokens (issuer https://confidentialcomputing.googleapis.com, allowed audience
https://sts.googleapis.com, attribute mapping google.subject=assertion.sub and
attribute.image_digest), whose attribute condition is the confidential-space
release policy of 'mcbn shareholder policy confidential-space' (production
image, no debug, STABLE, TEE hardware, secure boot, the image digest, the
operator's project, no command or environment override); and the IAM binding
of roles/cloudkms.cryptoKeyDecrypter to the pool's principals running the
image digest. With --service-account the pool instead impersonates that
service account (roles/iam.workloadIdentityUser), which holds the decrypter
role. It ends with the seal command and the proxy's shareholders: entry.

--operator-project is the project the approved image runs in (required: the
image is public, so without it any project running it could decrypt);
--any-project drops that clause on purpose and prints a warning.

Nothing is run: review the output, then run or apply it.`

func newParticipantGCPSetupCmd() *cobra.Command {
	c := leaf("gcp-setup --project P --operator-project OP --image-digest sha256:... [flags]",
		"print the gcloud commands or Terraform for a KMS participant", gcpSetupLong,
		"  $ mcbn participant gcp-setup --project alice-prj --operator-project op-prj \\\n      --image-digest sha256:a76f...cfd1f --participant alice > setup.sh", noArgs)
	fs := c.Flags()
	var o kms.GCPSetupOptions
	fs.StringVar(&o.Project, "project", "", "the participant's own GCP `PROJECT` (holds the key and the pool)")
	digests := fs.StringArray("image-digest", nil, "approved image `DIGEST` sha256:<64 hex> (repeatable)")
	opProjects := fs.StringArray("operator-project", nil, "GCP `PROJECT` the approved image runs in (repeatable; required unless --any-project)")
	anyProject := fs.Bool("any-project", false, "admit the image in any GCP project (weaker; prints a warning)")
	opSAs := fs.StringArray("operator-service-account", nil, "the VM must run as this service `ACCOUNT` (repeatable)")
	argv := fs.String("args", "", "pin the container's exact argv, a JSON `LIST` of strings")
	override := fs.String("allow-cmd-override", "", "allow exactly this tee-cmd, a JSON `LIST` of strings (default: no override)")
	fs.StringVar(&o.ServiceAccount, "service-account", "", "impersonate this service `ACCOUNT` of yours, which holds the decrypter role")
	fs.StringVar(&o.Location, "location", kms.DefaultSetupLocation, "KMS `LOCATION` of the key ring")
	fs.StringVar(&o.KeyRing, "key-ring", kms.DefaultSetupKeyRing, "key ring `ID`")
	fs.StringVar(&o.Key, "key", kms.DefaultSetupKey, "crypto key `ID`")
	fs.StringVar(&o.Pool, "pool", kms.DefaultSetupPool, "workload identity pool `ID`")
	fs.StringVar(&o.Provider, "provider", kms.DefaultSetupProvider, "workload identity pool provider `ID`")
	fs.StringVar(&o.Participant, "participant", "", "your participant `NAME` in the group (for the seal command and proxy entry)")
	terraform := fs.Bool("terraform", false, "print Terraform (hashicorp/google) instead of gcloud commands")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if o.Project == "" || len(*digests) == 0 {
			return usagef("--project and --image-digest are required")
		}
		po := shareholder.CSPolicyOptions{
			ImageDigests: *digests, Projects: *opProjects, AnyProject: *anyProject, ServiceAccounts: *opSAs,
		}
		var err error
		if po.Args, err = jsonStringList("--args", *argv); err != nil {
			return usagef("%v", err)
		}
		if po.AllowCmdOverride, err = jsonStringList("--allow-cmd-override", *override); err != nil {
			return usagef("%v", err)
		}
		policy, err := shareholder.ConfidentialSpacePolicy(po)
		if err != nil {
			return usagef("%s", strings.ReplaceAll(err.Error(), "--project", "--operator-project"))
		}
		if o.Condition, err = kms.WIFCondition(policy); err != nil {
			return err
		}
		o.ImageDigests = *digests
		gen := kms.GCPSetupCommands
		if *terraform {
			gen = kms.GCPSetupTerraform
		}
		text, err := gen(o)
		if err != nil {
			return usagef("%v", err)
		}
		if *anyProject {
			fmt.Fprintln(c.ErrOrStderr(), "warning: --any-project: any GCP project that runs this image can decrypt your share; pin --operator-project unless you mean it")
		}
		fmt.Fprint(c.OutOrStdout(), text)
		return nil
	}
	return c
}
