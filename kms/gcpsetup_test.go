package kms

import (
	"strings"
	"testing"

	"github.com/mcbn/mcbn/attest"
	"github.com/mcbn/mcbn/shareholder"
)

const operatorProject = "operator-project"

// presetCondition is the WIF form of the confidential-space preset for the
// test digest and operator project.
func presetCondition(t *testing.T, digests ...string) string {
	t.Helper()
	policy, err := shareholder.ConfidentialSpacePolicy(shareholder.CSPolicyOptions{ImageDigests: digests, Projects: []string{operatorProject}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := WIFCondition(policy)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// productionClaims makes dev attester tokens look like production
// Confidential Space tokens of the operator's project.
func productionClaims() []func(map[string]any) {
	return []func(map[string]any){
		attest.SetClaim("CONFIDENTIAL_SPACE", "swname"),
		attest.SetClaim("disabled-since-boot", "dbgstat"),
		attest.SetClaim("GCP_INTEL_TDX", "hwmodel"),
		attest.SetClaim(true, "secboot"),
		attest.SetClaim([]any{"LATEST", "STABLE", "USABLE"}, "submods", "confidential_space", "support_attributes"),
		attest.SetClaim(operatorProject, "submods", "gce", "project_id"),
	}
}

// The generated condition, evaluated by the fake STS the way WIF evaluates
// it, admits a production token of the approved image and refuses each
// deviation the preset guards against.
func TestGeneratedConditionAdmitsOnlyTheApprovedWorkload(t *testing.T) {
	e := newEnv(t)
	if err := e.fake.SetCondition(e.aud, presetCondition(t, testDigest)); err != nil {
		t.Fatal(err)
	}
	e.dev.SetMutate(productionClaims()...)
	e.refreshToken(AttestationAudience)
	e.wantShare(e.fetch(e.opts()))

	for _, c := range []struct {
		name string
		hook func(map[string]any)
	}{
		{"debug image", attest.SetClaim("enabled", "dbgstat")},
		{"not Confidential Space", attest.SetClaim("GCE", "swname")},
		{"no STABLE support", attest.SetClaim([]any{"LATEST"}, "submods", "confidential_space", "support_attributes")},
		{"shielded VM", attest.SetClaim("GCP_SHIELDED_VM", "hwmodel")},
		{"no secure boot", attest.SetClaim(false, "secboot")},
		{"another image", attest.SetClaim("sha256:"+strings.Repeat("9", 64), "submods", "container", "image_digest")},
		{"another project", attest.SetClaim("mallory-project", "submods", "gce", "project_id")},
		{"command override", attest.SetClaim([]any{"sh"}, "submods", "container", "cmd_override")},
		{"environment override", attest.SetClaim(map[string]any{"X": "1"}, "submods", "container", "env_override")},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.dev.SetMutate(append(productionClaims(), c.hook)...)
			e.refreshToken(AttestationAudience)
			_, err := e.fetch(e.opts())
			e.wantClass(err, ErrSTSRejected, "attribute condition")
		})
	}
}

func setupOptions(t *testing.T) GCPSetupOptions {
	return GCPSetupOptions{
		Project: "alice-project", ImageDigests: []string{testDigest},
		Condition: presetCondition(t, testDigest), Participant: "alice",
	}
}

// wantSetupElements checks what every setup must contain.
func wantSetupElements(t *testing.T, out string, extra ...string) {
	t.Helper()
	for _, want := range append([]string{
		ConfidentialSpaceIssuerURI, AttestationAudience, RoleDecrypter, RoleEncrypter,
		"google.subject", "assertion.sub", "attribute.image_digest", "assertion.submods.container.image_digest",
		"assertion.swname == 'CONFIDENTIAL_SPACE'",
		"assertion.dbgstat == 'disabled-since-boot'",
		"'STABLE' in assertion.submods.confidential_space.support_attributes",
		"assertion.hwmodel in ['GCP_AMD_SEV', 'GCP_AMD_SEV_ES', 'GCP_INTEL_TDX']",
		"assertion.secboot == true",
		"assertion.submods.container.image_digest == '" + testDigest + "'",
		"assertion.submods.gce.project_id == '" + operatorProject + "'",
		"assertion.submods.container.cmd_override == null",
		"assertion.submods.container.env_override == null",
		"/attribute.image_digest/" + testDigest,
		"principalSet://iam.googleapis.com/",
		"alice-project", "mcbn-proxies", "confidential-space", "mcbn-share",
		"kind: kms", "wif_audience: //iam.googleapis.com/",
	}, extra...) {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

func TestGCPSetupCommands(t *testing.T) {
	out, err := GCPSetupCommands(setupOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	wantSetupElements(t, out,
		"gcloud kms keyrings create mcbn --location=global",
		"gcloud kms keys create mcbn-share --keyring=mcbn --location=global",
		"--purpose=encryption",
		"gcloud iam workload-identity-pools create mcbn-proxies --location=global",
		"gcloud iam workload-identity-pools providers create-oidc confidential-space",
		"--issuer-uri=\"https://confidentialcomputing.googleapis.com/\"",
		"--allowed-audiences=\"https://sts.googleapis.com\"",
		"--attribute-mapping=\"google.subject=assertion.sub,attribute.image_digest=assertion.submods.container.image_digest\"",
		"--attribute-condition=\"$CONDITION\"",
		"gcloud kms keys add-iam-policy-binding mcbn-share",
		"--role=roles/cloudkms.cryptoKeyDecrypter",
		"mcbn psk seal --kms projects/alice-project/locations/global/keyRings/mcbn/cryptoKeys/mcbn-share --share alice.share.json",
	)
	// The condition sits alone on its heredoc line, verbatim.
	if !strings.Contains(out, "\n"+setupOptions(t).Condition+"\nMCBN_CONDITION\n") {
		t.Error("the condition is not written verbatim into the heredoc")
	}
	if strings.Contains(out, "workloadIdentityUser") {
		t.Error("impersonation binding without --service-account")
	}
}

func TestGCPSetupTerraform(t *testing.T) {
	out, err := GCPSetupTerraform(setupOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	wantSetupElements(t, out,
		`resource "google_kms_key_ring" "mcbn"`,
		`resource "google_kms_crypto_key" "share"`,
		`purpose  = "ENCRYPT_DECRYPT"`,
		`resource "google_iam_workload_identity_pool" "mcbn"`,
		`resource "google_iam_workload_identity_pool_provider" "confidential_space"`,
		`issuer_uri        = "https://confidentialcomputing.googleapis.com/"`,
		`allowed_audiences = ["https://sts.googleapis.com"]`,
		`attribute_condition = "`+setupOptions(t).Condition+`"`,
		`resource "google_kms_crypto_key_iam_member" "decrypt_0"`,
		`member        = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.mcbn.name}/attribute.image_digest/`+testDigest+`"`,
		`output "wif_audience"`,
	)
	if strings.Count(out, "{") != strings.Count(out, "}") {
		t.Error("unbalanced braces")
	}
}

func TestGCPSetupWithImpersonationAndTwoDigests(t *testing.T) {
	d2 := "sha256:" + strings.Repeat("ab", 32)
	o := setupOptions(t)
	o.ImageDigests = []string{testDigest, d2}
	o.Condition = presetCondition(t, testDigest, d2)
	o.ServiceAccount = testSA
	cmds, err := GCPSetupCommands(o)
	if err != nil {
		t.Fatal(err)
	}
	tf, err := GCPSetupTerraform(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{cmds, tf} {
		for _, want := range []string{RoleWorkloadIdentityUser, "serviceAccount:" + testSA, "/attribute.image_digest/" + d2, "service_account: " + testSA} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
	}
	if !strings.Contains(cmds, "gcloud iam service-accounts add-iam-policy-binding "+testSA) || !strings.Contains(tf, `resource "google_service_account_iam_member" "workload_identity_1"`) {
		t.Error("no impersonation binding per digest")
	}
}

func TestGCPSetupRefusesBadOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(o *GCPSetupOptions)
		want string
	}{
		{"no project", func(o *GCPSetupOptions) { o.Project = "" }, "--project"},
		{"bad location", func(o *GCPSetupOptions) { o.Location = "US Central" }, "--location"},
		{"bad key ring", func(o *GCPSetupOptions) { o.KeyRing = "a/b" }, "--key-ring"},
		{"bad key", func(o *GCPSetupOptions) { o.Key = "" + strings.Repeat("k", 64) }, "--key"},
		{"bad pool", func(o *GCPSetupOptions) { o.Pool = "UP" }, "--pool"},
		{"gcp- provider", func(o *GCPSetupOptions) { o.Provider = "gcp-cs" }, "--provider"},
		{"bad service account", func(o *GCPSetupOptions) { o.ServiceAccount = "x" }, "--service-account"},
		{"bad participant", func(o *GCPSetupOptions) { o.Participant = "a b" }, "--participant"},
		{"no digest", func(o *GCPSetupOptions) { o.ImageDigests = nil }, "--image-digest"},
		{"bad digest", func(o *GCPSetupOptions) { o.ImageDigests = []string{"sha256:XY"} }, "--image-digest"},
		{"digest not in condition", func(o *GCPSetupOptions) { o.ImageDigests = []string{"sha256:" + strings.Repeat("0", 64)} }, "does not admit"},
		{"no condition", func(o *GCPSetupOptions) { o.Condition, o.ImageDigests = "", nil }, "--image-digest"},
		{"shell in condition", func(o *GCPSetupOptions) { o.Condition += " && '$(reboot)' == ''" }, "one line without"},
		{"long condition", func(o *GCPSetupOptions) { o.Condition += strings.Repeat(" ", MaxConditionLen) }, "at most"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := setupOptions(t)
			c.edit(&o)
			for _, gen := range []func(GCPSetupOptions) (string, error){GCPSetupCommands, GCPSetupTerraform} {
				if _, err := gen(o); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("err = %v, want one mentioning %q", err, c.want)
				}
			}
		})
	}
}

func TestWIFCondition(t *testing.T) {
	c, err := WIFCondition("// comment\nassertion.a == 'x' &&\n  assertion.b == 'y'\n")
	if err != nil || c != "assertion.a == 'x' && assertion.b == 'y'" {
		t.Fatalf("%q %v", c, err)
	}
	if _, err := WIFCondition("assertion.a == 'x' // trailing\n"); err == nil {
		t.Error("trailing comment accepted")
	}
	if _, err := WIFCondition("// only a comment\n"); err == nil {
		t.Error("empty condition accepted")
	}
}
